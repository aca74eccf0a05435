/* The local resource manager: makes this host's hypervisor run exactly the
 * VMs the cluster state gives this node, and reports what happened through
 * the cluster log (VmReport).
 *
 * It reconciles, never scripts: every pass compares the state (desired) with
 * what libvirt says (actual) and does the one next step for each VM. Passes
 * run when the state changes, when libvirt reports an event, when the
 * connection to libvirtd comes back, and every VIREO_VM_RECONCILE_MS in case
 * an event was lost. So vireod restarting finds its guests running and
 * adopts them; libvirtd restarting costs nothing but a pass.
 *
 * What it decides on its own: a guest of a VM that should run and died
 * anyway is started again on this host, up to vm_restart_limit times within
 * VIREO_VM_RESTART_WINDOW_MS; then the VM is reported 'error' with the
 * reason. A start that fails is tried again after VIREO_VM_START_RETRY_MS
 * within the same budget, not given up at once: what failed it often
 * passes (a full pool, the disk lock of a QEMU still dying). Everything
 * else (where a VM runs) is the manager's.
 *
 * Every hypervisor call goes to a worker (node/hv_calls.c) and the pass
 * goes on: a VM with a call in flight is skipped until its answer, and a
 * list taken before a VM's last call ended is not trusted for that VM. A
 * stalled libvirtd thus holds up its guests' management, never the loop.
 *
 * Nothing happens while this node is not in the quorate partition: it
 * could not report, and a cut-off node must not start guests (stopping
 * them is self-fencing's, node/fence.c). Nor for a detection time after
 * this host was frozen: its state may be a membership old. Back in it, a
 * guest here whose VM another node owns now (it failed over meanwhile) is
 * destroyed. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <qb/qblog.h>

#include "cluster/timeouts.h"
#include "cluster/vm.h"
#include "hypervisor/hv.h"
#include "hypervisor/hv_timeouts.h"
#include "node/daemon.h"
#include "node/hv_calls.h"
#include "sharedstore/images.h"

#define NS_PER_MS 1000000ull
#define MSG_LEN 480

/* What this node remembers about a VM between passes. */
struct local_vm {
	struct local_vm *next;
	char name[HV_NAME_MAX + 1];
	uint64_t generation;          /* the assignment the fields below belong to */
	uint32_t restarts;            /* within the current window */
	uint64_t window_start_ms;
	enum hv_event_reason last_stop;   /* why the guest last stopped (events) */
	uint64_t off_since_ms;        /* found off before its stop event, 0 = not */
	bool start_failed;            /* this generation's start failed: reported */
	bool start_is_restart;        /* the start in flight revives a guest that died */
	uint64_t start_generation;    /* the assignment the start in flight is for */
	enum hv_event_reason restart_reason;
	bool stopping;                /* asked to power off, destroyed at stop_deadline_ms */
	uint64_t stop_deadline_ms;
	uint64_t list_after_call;     /* lists submitted up to this one predate its last call */
	uint64_t report_request;      /* the report in flight, 0 = none */
	uint64_t report_deadline_ms;
	bool in_state;                /* seen in the state on the last pass */
	uint64_t retry_at_ms;         /* a failed start is tried again then, 0 = none due */
	uint64_t resumed_ms;          /* when it was last resumed, 0 = never */
	uint32_t resumes;             /* resumes since it last stayed running */
};

struct node_vms {
	const struct hv_driver *drv;
	struct hv_conn *conn;
	char accel[8];                /* "" until resolved */
	bool resolving;
	qb_loop_timer_handle pass_timer;
	bool pass_soon;
	uint64_t pass_due_ms;         /* when the scheduled pass runs (monotonic) */
	qb_loop_timer_handle periodic_timer;
	struct local_vm *vms;
	bool listing;                 /* a pass's list is in flight */
	bool pass_again;              /* a pass was due meanwhile */
	uint64_t lists;               /* lists submitted so far */
};

static void schedule_pass(struct node_daemon *d, uint64_t ms);

static struct local_vm *local_vm(struct node_vms *v, const char *name, bool create)
{
	struct local_vm *lv;

	for (lv = v->vms; lv; lv = lv->next)
		if (strcmp(lv->name, name) == 0)
			return lv;
	if (!create || !(lv = calloc(1, sizeof(*lv))))
		return NULL;
	snprintf(lv->name, sizeof(lv->name), "%s", name);
	lv->next = v->vms;
	v->vms = lv;
	return lv;
}

static void forget(struct node_vms *v, struct local_vm *gone)
{
	for (struct local_vm **pp = &v->vms; *pp; pp = &(*pp)->next) {
		if (*pp == gone) {
			*pp = gone->next;
			free(gone);
			return;
		}
	}
}

static uint32_t my_id(const struct node_daemon *d)
{
	return cluster_engine_local_id(d->engine);
}

/* A report is in flight until it is applied or VIREO_REQUEST_TIMEOUT_MS
 * passed: a proposal can be lost with the membership it was sent in (a
 * corosync restart, a partition), and must not block the VM for good. */
static bool report_in_flight(struct node_daemon *d, struct local_vm *lv)
{
	uint64_t now = node_now_mono_ms();

	if (!lv->report_request)
		return false;
	if (now >= lv->report_deadline_ms) {
		lv->report_request = 0;
		return false;
	}
	schedule_pass(d, lv->report_deadline_ms - now);
	return true;
}

/* Proposes what this node observed about vm; one report per VM in flight. */
static void report(struct node_daemon *d, struct local_vm *lv, const Vireo__Vm *vm,
		   Vireo__VmState s, const char *message, uint32_t restarts)
{
	Vireo__Op op = VIREO__OP__INIT;
	Vireo__VmReport r = VIREO__VM_REPORT__INIT;
	uint64_t id;
	int rc;

	if (report_in_flight(d, lv))
		return;
	if (vm->state == s && vm->restarts == restarts && strcmp(vm->message, message) == 0)
		return;
	r.name = vm->spec->name;
	r.generation = vm->generation;
	r.state = s;
	r.message = (char *)message;
	r.restarts = restarts;
	op.body_case = VIREO__OP__BODY_VM_REPORT;
	op.vm_report = &r;
	if ((rc = cluster_engine_propose(d->engine, &op, &id)) < 0) {
		qb_log(LOG_WARNING, "VM %s: cannot report it %s: %s; trying again", vm->spec->name,
		       cluster_vm_state_name(s), strerror(-rc));
		return;
	}
	qb_log(LOG_INFO, "VM %s: reporting %s%s%s", vm->spec->name, cluster_vm_state_name(s),
	       message[0] ? ": " : "", message);
	lv->report_request = id;
	lv->report_deadline_ms = node_now_mono_ms() + VIREO_REQUEST_TIMEOUT_MS(d->token_ms);
}

static enum hv_disk_format disk_format(const char *fmt)
{
	return strcmp(fmt, "raw") == 0 ? HV_DISK_RAW : HV_DISK_QCOW2;
}

static void start_done(struct node_daemon *d, const struct node_hv_call *call);

/* Defines the VM from its spec (again: a changed spec takes effect at this
 * start) and starts it, in a worker: start_done goes on. 0 when the call
 * is on its way, or -errno with a sentence in msg. */
static int start_guest(struct node_daemon *d, struct local_vm *lv, const Vireo__Vm *vm,
		       bool restart, char *msg, size_t len)
{
	const Vireo__VmSpec *spec = vm->spec;
	struct hv_disk disks[HV_MAX_DISKS];
	struct hv_nic nics[HV_MAX_NICS];
	char paths[HV_MAX_DISKS][320];
	char serial[320];
	struct hv_vm_spec hs = {
		.name = spec->name, .uuid = spec->uuid, .vcpus = spec->vcpus,
		.memory_mib = spec->memory_mib, .disks = disks, .nics = nics,
		.accel = HV_ACCEL_AUTO, .serial_log = serial,
	};
	const char *why = NULL;
	int rc;

	if (spec->n_disks > HV_MAX_DISKS || spec->n_nics > HV_MAX_NICS) {
		snprintf(msg, len, "too many disks or NICs for this host");
		return -EINVAL;
	}
	for (size_t i = 0; i < spec->n_disks; i++) {
		const Vireo__VmDisk *vd = spec->disks[i];
		enum store_format f = strcmp(vd->format, "raw") == 0 ? STORE_FMT_RAW : STORE_FMT_QCOW2;

		if (store_image_path(d->store, vd->image, f, paths[i], sizeof(paths[i])) < 0) {
			snprintf(msg, len, "the path of disk image %s is too long", vd->image);
			return -ENAMETOOLONG;
		}
		disks[i] = (struct hv_disk){ .path = paths[i], .format = disk_format(vd->format) };
		if (spec->boot_disk[0] && strcmp(vd->image, spec->boot_disk) == 0)
			hs.boot_disk = i;
	}
	hs.n_disks = spec->n_disks;
	for (size_t i = 0; i < spec->n_nics; i++)
		nics[i] = (struct hv_nic){ .bridge = spec->nics[i]->bridge,
					   .mac = spec->nics[i]->mac[0] ? spec->nics[i]->mac : NULL };
	hs.n_nics = spec->n_nics;
	hs.boot = spec->boot_disk[0] ? HV_BOOT_DISK : HV_BOOT_KERNEL;
	hs.kernel = spec->kernel[0] ? spec->kernel : NULL;
	hs.initrd = spec->initrd[0] ? spec->initrd : NULL;
	hs.cmdline = spec->cmdline[0] ? spec->cmdline : NULL;
	snprintf(serial, sizeof(serial), "%s/%s.log", d->cfg.console_dir, spec->name);
	if (hv_vm_spec_check(&hs, &why) < 0) {
		snprintf(msg, len, "%s", why);
		return -EINVAL;
	}
	if ((rc = node_hv_start(d, &hs, start_done, NULL)) < 0) {
		snprintf(msg, len, "vireod cannot call the hypervisor: %s", strerror(-rc));
		return rc;
	}
	lv->start_is_restart = restart;
	lv->start_generation = vm->generation;
	return 0;
}

/* The answer of any call on a VM: a list submitted before it may show the
 * guest as it was before the call, and is not trusted for it. */
void node_vms_answered(struct node_daemon *d, const char *name)
{
	struct local_vm *lv;

	if (!d->vms)
		return;
	schedule_pass(d, 0);
	if ((lv = local_vm(d->vms, name, true)))
		lv->list_after_call = d->vms->lists;
}

static struct local_vm *call_answered(struct node_daemon *d, const struct node_hv_call *call)
{
	if (call->rc == -ECANCELED || !d->vms)
		return NULL;        /* vireod stops */
	node_vms_answered(d, call->name);
	return local_vm(d->vms, call->name, false);
}

static void stop_done(struct node_daemon *d, const struct node_hv_call *call)
{
	if (call->rc == -ECANCELED)
		return;
	call_answered(d, call);
	if (call->rc < 0 && call->rc != -ESRCH && call->rc != -ENOENT)
		qb_log(LOG_ERR, "VM %s: cannot %s it: %s", call->name,
		       call->kind == NODE_HV_DESTROY ? "destroy" : "stop", call->error);
}

/* Stops a guest: destroyed at once when forced or paused (it cannot hear a
 * power-off request), else asked to power off and destroyed by a later
 * pass if it has not within VIREO_HV_SHUTDOWN_MS. */
static void stop_guest(struct node_daemon *d, struct local_vm *lv, const struct hv_vm_info *dom,
		       bool force)
{
	uint64_t now = node_now_mono_ms();
	bool destroy = force || (dom && dom->state == HV_STATE_PAUSED);
	int rc;

	if (lv->stopping && !destroy) {
		if (now < lv->stop_deadline_ms) {
			schedule_pass(d, lv->stop_deadline_ms - now);
			return;
		}
		qb_log(LOG_WARNING, "VM %s: did not power off within %u ms; destroying it", lv->name,
		       VIREO_HV_SHUTDOWN_MS(d->token_ms));
		destroy = true;
	}
	if (destroy) {
		lv->stopping = false;
		rc = node_hv_submit(d, NODE_HV_DESTROY, lv->name, stop_done, NULL);
	} else {
		rc = node_hv_submit(d, NODE_HV_SHUTDOWN, lv->name, stop_done, NULL);
		lv->stopping = rc == 0;
		lv->stop_deadline_ms = now + VIREO_HV_SHUTDOWN_MS(d->token_ms);
		schedule_pass(d, VIREO_HV_SHUTDOWN_MS(d->token_ms));
	}
	if (rc < 0)
		qb_log(LOG_ERR, "VM %s: cannot stop it: %s", lv->name, strerror(-rc));
}

static const char *stop_reason(enum hv_event_reason r)
{
	switch (r) {
	case HV_REASON_SHUTDOWN: return "the guest powered off";
	case HV_REASON_CRASHED: return "the guest crashed";
	case HV_REASON_FAILED: return "QEMU died";
	case HV_REASON_DESTROYED: return "it was destroyed outside vireo";
	default: return "it stopped";
	}
}

/* Restarts closer together than VIREO_VM_RESTART_WINDOW_MS count together. */
static void restart_window(struct node_daemon *d, struct local_vm *lv, uint64_t now)
{
	if (now - lv->window_start_ms > VIREO_VM_RESTART_WINDOW_MS(d->token_ms)) {
		lv->window_start_ms = now;
		lv->restarts = 0;
	}
}

/* A start failed: while the restart budget lasts, try again after
 * VIREO_VM_START_RETRY_MS (what made it fail may pass: a full pool, a disk
 * lock a dying QEMU has not let go yet). False when the budget is spent. */
static bool start_again_later(struct node_daemon *d, struct local_vm *lv, const char *name,
			      const char *why)
{
	uint64_t now = node_now_mono_ms(), retry = VIREO_VM_START_RETRY_MS(d->token_ms);

	restart_window(d, lv, now);
	if (lv->restarts >= d->cfg.restart_limit)
		return false;
	lv->restarts++;
	lv->retry_at_ms = now + retry;
	qb_log(LOG_WARNING, "VM %s: cannot start here: %s; trying again in %" PRIu64 " ms "
	       "(%u of %u)", name, why, retry, lv->restarts, d->cfg.restart_limit);
	schedule_pass(d, retry);
	return true;
}

/* A start is due unless a failed one waits for its retry. */
static bool start_due(struct node_daemon *d, struct local_vm *lv)
{
	uint64_t now = node_now_mono_ms();

	if (lv->retry_at_ms && now < lv->retry_at_ms) {
		schedule_pass(d, lv->retry_at_ms - now);
		return false;
	}
	lv->retry_at_ms = 0;
	return true;
}

/* A restart of a guest that died failed: try again later, or give up. */
static void restart_failed(struct node_daemon *d, struct local_vm *lv, const Vireo__Vm *vm,
			   const char *why)
{
	char msg[MSG_LEN];

	if (start_again_later(d, lv, vm->spec->name, why))
		return;
	snprintf(msg, sizeof(msg), "%s and could not be restarted (%u tries): %.*s",
		 stop_reason(lv->restart_reason), lv->restarts, MSG_LEN - 160, why);
	report(d, lv, vm, VIREO__VM_STATE__VM_ERROR, msg, lv->restarts);
}

/* A guest that should run is not running: start it again, or give up. */
static void revive(struct node_daemon *d, struct local_vm *lv, const Vireo__Vm *vm)
{
	uint64_t now = node_now_mono_ms();
	char msg[MSG_LEN], why[MSG_LEN - 160];
	const char *reason = stop_reason(lv->last_stop);

	if (report_in_flight(d, lv) || !start_due(d, lv))
		return;     /* the last report first; a failed start waits its turn */
	/* A pass can list the guest as off before the event saying why has
	 * been dispatched: give it a moment. */
	if (lv->last_stop == HV_REASON_NONE) {
		if (!lv->off_since_ms)
			lv->off_since_ms = now;
		if (now - lv->off_since_ms < VIREO_VM_STOP_EVENT_WAIT_MS(d->token_ms)) {
			schedule_pass(d, VIREO_VM_STOP_EVENT_WAIT_MS(d->token_ms) - (now - lv->off_since_ms));
			return;
		}
	}
	lv->off_since_ms = 0;
	restart_window(d, lv, now);
	if (lv->restarts >= d->cfg.restart_limit) {
		snprintf(msg, sizeof(msg), "%s and was restarted %u times within %u s; not "
			 "restarted again (see vireo vm console %s)", reason, lv->restarts,
			 VIREO_VM_RESTART_WINDOW_MS(d->token_ms) / 1000u, vm->spec->name);
		qb_log(LOG_ERR, "VM %s: %s", vm->spec->name, msg);
		report(d, lv, vm, VIREO__VM_STATE__VM_ERROR, msg, lv->restarts);
		return;
	}
	lv->restarts++;
	qb_log(LOG_WARNING, "VM %s: %s; restarting it here (%u of %u)", vm->spec->name, reason,
	       lv->restarts, d->cfg.restart_limit);
	/* The reason is kept for the answer; a stop event from now on is the
	 * new guest's. */
	lv->restart_reason = lv->last_stop;
	lv->last_stop = HV_REASON_NONE;
	if (start_guest(d, lv, vm, true, why, sizeof(why)) < 0)
		restart_failed(d, lv, vm, why);
}

/* The start of a guest that died ended. */
static void restarted(struct node_daemon *d, struct local_vm *lv, const Vireo__Vm *vm,
		      const struct node_hv_call *call)
{
	char msg[MSG_LEN];

	if (vm->state != VIREO__VM_STATE__VM_RUNNING || !vm->want_running)
		return;     /* stopped meanwhile: the pass sees to the guest */
	if (call->rc < 0) {
		restart_failed(d, lv, vm, call->error);
		return;
	}
	snprintf(msg, sizeof(msg), "restarted %u time(s): %s", lv->restarts,
		 stop_reason(lv->restart_reason));
	report(d, lv, vm, VIREO__VM_STATE__VM_RUNNING, msg, lv->restarts);
}

/* The first start of this assignment ended. */
static void started(struct node_daemon *d, struct local_vm *lv, const Vireo__Vm *vm,
		    const struct node_hv_call *call)
{
	char full[MSG_LEN + 96];

	if (vm->state != VIREO__VM_STATE__VM_STARTING)
		return;
	if (call->rc == 0) {
		qb_log(LOG_NOTICE, "VM %s: started (generation %" PRIu64 ")", vm->spec->name,
		       vm->generation);
		report(d, lv, vm, VIREO__VM_STATE__VM_RUNNING, "", lv->restarts);
		return;
	}
	if (start_again_later(d, lv, vm->spec->name, call->error))
		return;
	lv->start_failed = true;
	snprintf(full, sizeof(full), "cannot start on %s: %.*s", d->cfg.node_name, MSG_LEN,
		 call->error);
	report(d, lv, vm, VIREO__VM_STATE__VM_ERROR, full, lv->restarts);
}

static void start_done(struct node_daemon *d, const struct node_hv_call *call)
{
	struct local_vm *lv = call_answered(d, call);
	const Vireo__Vm *vm;

	if (!lv)
		return;
	vm = d->engine ? cluster_vm_find(cluster_engine_state(d->engine), call->name) : NULL;
	if (!vm || vm->generation != lv->start_generation || vm->owner != my_id(d)) {
		qb_log(LOG_INFO, "VM %s: its start ended (%s) after it was assigned elsewhere; the "
		       "next pass sees to the guest", call->name, call->rc ? call->error : "started");
		return;
	}
	if (lv->start_is_restart)
		restarted(d, lv, vm, call);
	else
		started(d, lv, vm, call);
}

static bool is_up(const struct hv_vm_info *dom)
{
	return dom && (dom->state == HV_STATE_RUNNING || dom->state == HV_STATE_PAUSED ||
		       dom->state == HV_STATE_SHUTTING_DOWN);
}

/* A guest of ours that should run is paused outside any migration: one
 * that vireod was driving when it died (its migration record is gone with
 * the fence that followed; the owner got it back). Any libvirt job still
 * on it is aborted first, then it runs on. */
static void resume_done(struct node_daemon *d, const struct node_hv_call *call)
{
	struct local_vm *lv = call_answered(d, call);
	uint64_t now = node_now_mono_ms(), retry = VIREO_VM_RESUME_RETRY_MS(d->token_ms);

	if (!lv)
		return;
	/* A failure is tried again by the periodic pass, not in a loop. */
	if (call->rc < 0) {
		qb_log(LOG_ERR, "VM %s: paused outside a migration and cannot be resumed: %s",
		       lv->name, call->error);
		return;
	}
	if (lv->resumed_ms && now - lv->resumed_ms < 2 * retry)
		lv->resumes++;
	else
		lv->resumes = 0;
	lv->resumed_ms = now;
	if (lv->resumes == 0)
		qb_log(LOG_WARNING, "VM %s: was left paused outside a migration; resumed", lv->name);
	else if (lv->resumes == 1)
		qb_log(LOG_WARNING, "VM %s: paused again after its resume (a disk write failed: is "
		       "the pool full?); resuming it every %" PRIu64 " ms until it stays running",
		       lv->name, retry);
}

/* The job check of a paused guest answered: a migration job left on it
 * was aborted, or there was none and it is resumed. */
static void job_checked(struct node_daemon *d, const struct node_hv_call *call)
{
	struct local_vm *lv = call_answered(d, call);
	int rc;

	if (!lv)
		return;
	if (call->rc < 0) {
		qb_log(LOG_WARNING, "VM %s: cannot %s: %s", lv->name,
		       call->job_active ? "abort its job" : "read its job", call->error);
		return;
	}
	if (call->job_active) {
		qb_log(LOG_WARNING, "VM %s: was paused with the job of a migration that is over; "
		       "aborted the job", lv->name);
		schedule_pass(d, VIREO_VM_STOP_EVENT_WAIT_MS(d->token_ms));
		return;
	}
	if ((rc = node_hv_submit(d, NODE_HV_RESUME, lv->name, resume_done, NULL)) < 0)
		qb_log(LOG_ERR, "VM %s: cannot resume it: %s", lv->name, strerror(-rc));
}

static void resume_left_paused(struct node_daemon *d, struct local_vm *lv)
{
	uint64_t now = node_now_mono_ms(), retry = VIREO_VM_RESUME_RETRY_MS(d->token_ms);
	int rc;

	/* Paused again right after a resume: its disk fails writes (QEMU stops
	 * the guest on ENOSPC, and the write is retried when it runs on). Try
	 * again now and then, not on every pass. */
	if (lv->resumed_ms && now - lv->resumed_ms < retry) {
		schedule_pass(d, lv->resumed_ms + retry - now);
		return;
	}
	if ((rc = node_hv_submit(d, NODE_HV_ABORT_JOB, lv->name, job_checked, NULL)) < 0)
		qb_log(LOG_ERR, "VM %s: cannot look at its job: %s", lv->name, strerror(-rc));
}

/* The one next step for a VM this node owns. */
static void reconcile_owned(struct node_daemon *d, struct local_vm *lv, const Vireo__Vm *vm,
			    const struct hv_vm_info *dom)
{
	char msg[MSG_LEN];
	bool up = is_up(dom);

	/* The guest is off: the graceful stop is over (its deadline must not
	 * destroy the next guest of this name). */
	if (!up && lv->stopping) {
		lv->stopping = false;
		qb_log(LOG_NOTICE, "VM %s: stopped", lv->name);
	}
	if (lv->generation != vm->generation) {
		/* A new assignment: counters start over (after a vireod
		 * restart, from what the state says). */
		lv->generation = vm->generation;
		lv->restarts = vm->restarts;
		lv->window_start_ms = node_now_mono_ms();
		lv->start_failed = false;
		lv->retry_at_ms = 0;
		lv->last_stop = HV_REASON_NONE;     /* that of an earlier guest */
		lv->off_since_ms = 0;
	}
	if (up && dom->state == HV_STATE_PAUSED && vm->want_running &&
	    (vm->state == VIREO__VM_STATE__VM_STARTING || vm->state == VIREO__VM_STATE__VM_RUNNING)) {
		resume_left_paused(d, lv);
		return;
	}
	switch (vm->state) {
	case VIREO__VM_STATE__VM_STARTING:
		if (up) {
			report(d, lv, vm, VIREO__VM_STATE__VM_RUNNING, "", lv->restarts);
		} else if (!lv->start_failed && start_due(d, lv)) {
			if (start_guest(d, lv, vm, false, msg, sizeof(msg)) < 0 &&
			    !start_again_later(d, lv, vm->spec->name, msg)) {
				char full[MSG_LEN + 96];

				lv->start_failed = true;
				snprintf(full, sizeof(full), "cannot start on %s: %s",
					 d->cfg.node_name, msg);
				report(d, lv, vm, VIREO__VM_STATE__VM_ERROR, full, lv->restarts);
			}
		}
		break;
	case VIREO__VM_STATE__VM_RUNNING:
		if (!up && vm->want_running)
			revive(d, lv, vm);
		break;
	case VIREO__VM_STATE__VM_STOPPING:
		if (up)
			stop_guest(d, lv, dom, vm->force_stop);
		else
			report(d, lv, vm, VIREO__VM_STATE__VM_STOPPED, "", lv->restarts);
		break;
	case VIREO__VM_STATE__VM_STOPPED:
	case VIREO__VM_STATE__VM_ERROR:
	case VIREO__VM_STATE__VM_PENDING:
		/* Stopped in the state but running here (vireod was down when
		 * it was stopped, or someone started it by hand). */
		if (up && !vm->want_running) {
			qb_log(LOG_WARNING, "VM %s: runs here although it is %s in the cluster; "
			       "stopping it", vm->spec->name, cluster_vm_state_name(vm->state));
			stop_guest(d, lv, dom, vm->force_stop);
		}
		break;
	default:
		break;     /* migrating, fencing, recovering: not this manager's */
	}
}

/* A guest of a VM another node owns runs here: this host was cut off or
 * its vireod was down while the VM moved (a failover), and it must not run
 * twice. Migrations have both ends running and are the migration's. */
static void destroy_leftover(struct node_daemon *d, const cluster_state *st, struct local_vm *lv,
			     const Vireo__Vm *vm, const struct hv_vm_info *dom)
{
	const Vireo__NodeInfo *owner = cluster_state_node(st, vm->owner);

	if (vm->state == VIREO__VM_STATE__VM_MIGRATING)
		return;
	/* Moved away by a migration whose source libvirt is still cleaning
	 * up (its confirm phase): it removes the guest itself, and a destroy
	 * now races with its undefine. */
	if (node_migration_source_busy(d, vm->spec->name))
		return;
	if (!vm->owner) {
		qb_log(LOG_WARNING, "VM %s runs here but belongs to no node", vm->spec->name);
		return;
	}
	/* Only vireo's guest of that VM: a domain someone else made under the
	 * same name is not ours to kill. */
	if (!dom->vireo && strcmp(dom->uuid, vm->spec->uuid) != 0) {
		qb_log(LOG_WARNING, "a domain named %s that vireo did not define runs here, while "
		       "node %s owns VM %s; leaving it alone", dom->name,
		       owner ? owner->name : "?", vm->spec->name);
		return;
	}
	if (owner)
		qb_log(LOG_WARNING, "VM %s runs here but node %s owns it: destroying the leftover",
		       vm->spec->name, owner->name);
	else
		qb_log(LOG_WARNING, "VM %s runs here but node %u owns it: destroying the leftover",
		       vm->spec->name, vm->owner);
	stop_guest(d, lv, dom, true);
}

static const struct hv_vm_info *find_dom(const struct hv_vm_info *doms, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(doms[i].name, name) == 0)
			return &doms[i];
	return NULL;
}

/* VMs that left the state (deleted): their guests stop and their
 * definitions go. Only vireo's own definitions (the metadata element
 * domain_xml.c writes) are touched, so a definition left behind while this
 * vireod was down goes too, and a domain someone else made on the host is
 * left alone. Guests of VMs other nodes own are pass()'s (destroy_leftover). */
static void undefined(struct node_daemon *d, const struct node_hv_call *call)
{
	if (call->rc == -ECANCELED)
		return;
	call_answered(d, call);
	if (call->rc == 0)
		qb_log(LOG_NOTICE, "VM %s is not in the cluster (deleted); its definition here is "
		       "removed", call->name);
}

static void sweep(struct node_daemon *d, const cluster_state *st, const struct hv_vm_info *doms,
		  size_t n, uint64_t list)
{
	struct node_vms *v = d->vms;
	struct local_vm *lv = v->vms, *next;

	for (; lv; lv = next) {
		const struct hv_vm_info *dom = find_dom(doms, n, lv->name);

		next = lv->next;
		if (lv->in_state || node_hv_busy(d, lv->name))
			continue;
		if (list <= lv->list_after_call) {
			v->pass_again = true;
			continue;
		}
		if (is_up(dom)) {
			qb_log(LOG_WARNING, "VM %s was deleted from the cluster but runs here; "
			       "stopping it", lv->name);
			stop_guest(d, lv, dom, true);
			continue;
		}
		forget(v, lv);
	}
	for (size_t i = 0; i < n; i++) {
		if (!doms[i].vireo || !doms[i].persistent || is_up(&doms[i]) ||
		    cluster_vm_find(st, doms[i].name) || node_hv_busy(d, doms[i].name))
			continue;
		if (node_hv_submit(d, NODE_HV_UNDEFINE, doms[i].name, undefined, NULL) < 0)
			qb_log(LOG_WARNING, "VM %s: cannot remove its definition now; trying again",
			       doms[i].name);
	}
}

/* Whether this node may act on the state now (see the top of the file). */
static bool may_act(struct node_daemon *d)
{
	struct node_vms *v = d->vms;
	uint64_t hold;

	if (!d->engine || !cluster_engine_quorate(d->engine) || cluster_engine_syncing(d->engine) ||
	    !v->drv->connected(v->conn) || !v->accel[0])
		return false;
	/* Thawed after a freeze, this node's state may be a membership old:
	 * its guest's VM may have been fenced and started elsewhere meanwhile.
	 * Wait for corosync to tell it, then look again. */
	if ((hold = cluster_engine_stall_hold_ms(d->engine)) > 0) {
		schedule_pass(d, hold);
		return false;
	}
	return true;
}

/* The one next step for every VM, from the list of this host's guests
 * that the list call numbered `list` returned. */
static void decide(struct node_daemon *d, const struct hv_vm_info *doms, size_t n, uint64_t list)
{
	struct node_vms *v = d->vms;
	const cluster_state *st = cluster_engine_state(d->engine);

	for (struct local_vm *lv = v->vms; lv; lv = lv->next)
		lv->in_state = false;
	for (size_t i = 0; i < st->n_vms; i++) {
		const Vireo__Vm *vm = st->vms[i];
		const struct hv_vm_info *dom = find_dom(doms, n, vm->spec->name);
		struct local_vm *lv = local_vm(v, vm->spec->name, vm->owner == my_id(d) || dom);

		if (lv)
			lv->in_state = true;
		/* Its call's answer comes first; a list older than that answer
		 * may show the guest as it was before the call. */
		if (node_hv_busy(d, vm->spec->name))
			continue;
		if (lv && list <= lv->list_after_call) {
			v->pass_again = true;
			continue;
		}
		/* A migrating VM is the migration's (vm_migrate.c), on both ends. */
		if (vm->state == VIREO__VM_STATE__VM_MIGRATING && vm->migration) {
			node_migration_step(d, vm, dom);
			continue;
		}
		if (!lv)
			continue;
		if (vm->owner == my_id(d))
			reconcile_owned(d, lv, vm, dom);
		else if (is_up(dom))
			destroy_leftover(d, st, lv, vm, dom);
	}
	sweep(d, st, doms, n, list);
	node_migrations_sweep(d, st);
}

static void listed(struct node_daemon *d, const struct node_hv_call *call)
{
	struct node_vms *v = d->vms;

	if (call->rc == -ECANCELED || !v)
		return;
	v->listing = false;
	if (call->rc < 0)
		qb_log(LOG_WARNING, "cannot list the guests of this host: %s; trying again",
		       call->error);
	else if (may_act(d))
		decide(d, call->vms, call->n_vms, (uint64_t)(uintptr_t)call->ctx);
	if (v->pass_again) {
		v->pass_again = false;
		schedule_pass(d, 0);
	}
}

/* Lists this host's guests in a worker; listed() decides. One list at a
 * time: a pass due meanwhile runs when it is back. */
static void pass(struct node_daemon *d)
{
	struct node_vms *v = d->vms;
	int rc;

	if (!may_act(d))
		return;
	if (v->listing) {
		v->pass_again = true;
		return;
	}
	v->lists++;
	if ((rc = node_hv_submit(d, NODE_HV_LIST, NULL, listed, (void *)(uintptr_t)v->lists)) < 0) {
		qb_log(LOG_WARNING, "cannot list the guests of this host: %s; trying again",
		       strerror(-rc));
		return;
	}
	v->listing = true;
}

static void pass_fired(void *data)
{
	struct node_daemon *d = data;

	d->vms->pass_timer = 0;
	d->vms->pass_soon = false;
	node_busy_begin(d, "the local resource manager's pass");
	pass(d);
	node_busy_end(d);
}

static void schedule_pass(struct node_daemon *d, uint64_t ms)
{
	struct node_vms *v = d->vms;

	uint64_t due = node_now_mono_ms() + ms;

	if (!v || (v->pass_soon && v->pass_due_ms <= due))
		return;
	/* A sooner pass replaces a later one. */
	if (v->pass_soon)
		qb_loop_timer_del(d->loop, v->pass_timer);
	v->pass_soon = true;
	v->pass_due_ms = due;
	qb_loop_timer_add(d->loop, QB_LOOP_MED, ms * NS_PER_MS, d, pass_fired, &v->pass_timer);
}

static void periodic_fired(void *data)
{
	struct node_daemon *d = data;

	node_busy_begin(d, "the local resource manager's pass");
	pass(d);
	node_busy_end(d);
	qb_loop_timer_add(d->loop, QB_LOOP_LOW, VIREO_VM_RECONCILE_MS(d->token_ms) * NS_PER_MS, d,
			  periodic_fired, &d->vms->periodic_timer);
}

static void accel_resolved(void *ctx, enum hv_accel accel, const char *reason)
{
	struct node_daemon *d = ctx;
	struct node_vms *v = d->vms;

	v->resolving = false;
	snprintf(v->accel, sizeof(v->accel), "%s", hv_accel_name(accel));
	qb_log(LOG_NOTICE, "guests on this host run under %s: %s", v->accel, reason);
	node_health_changed(d);
	schedule_pass(d, 0);
}

/* The acceleration is asked once per connection until it is known. */
static void resolve_accel(struct node_daemon *d)
{
	struct node_vms *v = d->vms;
	enum hv_accel want = (enum hv_accel)d->cfg.accel;
	char probe_dir[300];
	struct hv_accel_probe probe = {
		.kernel = d->cfg.probe_kernel,
		.initrd = d->cfg.probe_initrd,
		.serial_dir = probe_dir,
	};
	int rc;

	if (v->accel[0] || v->resolving || !v->drv->connected(v->conn))
		return;
	snprintf(probe_dir, sizeof(probe_dir), "%s/probe", d->cfg.state_dir);
	if (mkdir(probe_dir, 0700) < 0 && errno != EEXIST)
		qb_log(LOG_WARNING, "cannot create %s: %s", probe_dir, strerror(errno));
	if (want == HV_ACCEL_AUTO && access(probe.kernel, R_OK) < 0) {
		/* Without the test guest there is nothing to probe with: trust
		 * /dev/kvm. build-guest makes the probe possible. */
		want = access("/dev/kvm", R_OK | W_OK) == 0 ? HV_ACCEL_KVM : HV_ACCEL_TCG;
		qb_log(LOG_WARNING, "accel = auto, but the probe guest %s is missing (build it with "
		       "tools/guest/build-guest): using %s without probing", probe.kernel,
		       hv_accel_name(want));
	}
	if (want == HV_ACCEL_AUTO && probe.initrd && access(probe.initrd, R_OK) < 0)
		probe.initrd = NULL;
	v->resolving = true;
	if ((rc = v->drv->resolve_accel(v->conn, want, &probe, accel_resolved, d)) < 0) {
		v->resolving = false;
		qb_log(LOG_ERR, "cannot resolve the acceleration: %s; trying again on the next "
		       "connection", strerror(-rc));
	}
}

static void handle_hv_event(struct node_daemon *d, const struct hv_event *ev)
{
	struct local_vm *lv;

	switch (ev->type) {
	case HV_EVENT_STOPPED:
	case HV_EVENT_CRASHED:
		if ((lv = local_vm(d->vms, ev->name, false))) {
			/* A crash event carries FAILED when QEMU itself died. */
			lv->last_stop = ev->reason != HV_REASON_NONE ? ev->reason :
					ev->type == HV_EVENT_CRASHED ? HV_REASON_CRASHED : HV_REASON_OTHER;
			/* revive() waits for this event: pass now, not when its wait ends. */
			if (lv->off_since_ms && d->vms->pass_soon) {
				qb_loop_timer_del(d->loop, d->vms->pass_timer);
				d->vms->pass_timer = 0;
				d->vms->pass_soon = false;
			}
		}
		qb_log(LOG_INFO, "VM %s: %s (%s)", ev->name, hv_event_name(ev->type),
		       hv_reason_name(ev->reason));
		break;
	case HV_EVENT_CONNECTION_LOST:
		qb_log(LOG_WARNING, "lost the libvirt daemon: %s; guests keep running, vireo "
		       "reconnects", ev->message ? ev->message : "");
		return;
	case HV_EVENT_CONNECTION_RESTORED:
		resolve_accel(d);
		break;
	default:
		break;
	}
	node_migrations_hv_event(d, ev);
	schedule_pass(d, 0);
}

static void on_hv_event(void *ctx, const struct hv_event *ev)
{
	struct node_daemon *d = ctx;

	node_busy_begin(d, "a hypervisor event");
	handle_hv_event(d, ev);
	node_busy_end(d);
}

int node_vms_start(struct node_daemon *d)
{
	struct node_vms *v = calloc(1, sizeof(*v));
	struct hv_connect_params p = {
		.loop = d->loop,
		.uri = d->cfg.libvirt_uri,
		.token_ms = d->token_ms,
		.wait = true,
		.cb = { .ctx = d, .event = on_hv_event },
	};
	int rc;

	if (!v)
		return -ENOMEM;
	v->drv = &hv_libvirt_driver;
	d->vms = v;
	if ((rc = v->drv->connect(&p, &v->conn)) < 0) {
		qb_log(LOG_CRIT, "cannot use libvirt at %s: %s", d->cfg.libvirt_uri, strerror(-rc));
		free(v);
		d->vms = NULL;
		return rc;
	}
	if ((rc = node_hv_calls_start(d, v->drv, v->conn)) < 0) {
		qb_log(LOG_CRIT, "cannot start the hypervisor call workers: %s", strerror(-rc));
		v->drv->disconnect(v->conn);
		free(v);
		d->vms = NULL;
		return rc;
	}
	resolve_accel(d);
	qb_loop_timer_add(d->loop, QB_LOOP_LOW, VIREO_VM_RECONCILE_MS(d->token_ms) * NS_PER_MS, d,
			  periodic_fired, &v->periodic_timer);
	return 0;
}

void node_vms_stop(struct node_daemon *d)
{
	struct node_vms *v = d->vms;
	bool abandoned;

	if (!v)
		return;
	/* Calls not yet made are answered -ECANCELED, and change nothing. */
	abandoned = node_hv_calls_stop(d);
	/* Guests keep running: the next vireod adopts them. */
	while (v->vms) {
		struct local_vm *next = v->vms->next;

		free(v->vms);
		v->vms = next;
	}
	if (v->pass_timer)
		qb_loop_timer_del(d->loop, v->pass_timer);
	if (v->periodic_timer)
		qb_loop_timer_del(d->loop, v->periodic_timer);
	/* A call still waiting on libvirtd uses the connection: it stays (the
	 * process is ending). */
	if (!abandoned)
		v->drv->disconnect(v->conn);
	free(v);
	d->vms = NULL;
}

void node_vms_state_changed(struct node_daemon *d)
{
	schedule_pass(d, 0);
}

/* Only VM operations change what this node must run: a pass (a libvirt
 * list) for every applied op would cost one per no-op of a cluster bench. */
static bool is_vm_op(const Vireo__Op *op)
{
	switch (op->body_case) {
	case VIREO__OP__BODY_VM_CREATE:
	case VIREO__OP__BODY_VM_DELETE:
	case VIREO__OP__BODY_VM_DESIRED:
	case VIREO__OP__BODY_VM_ASSIGN:
	case VIREO__OP__BODY_VM_REPORT:
	case VIREO__OP__BODY_VM_MIGRATE:
	case VIREO__OP__BODY_VM_MIGRATE_CANCEL:
	case VIREO__OP__BODY_VM_MIGRATE_COMMIT:
	case VIREO__OP__BODY_VM_MIGRATE_END:
	case VIREO__OP__BODY_VM_FENCE:
	case VIREO__OP__BODY_VM_FENCED:
		return true;
	default:
		return false;
	}
}

void node_vms_applied(struct node_daemon *d, const Vireo__Op *op, int rc)
{
	struct local_vm *lv;

	if (!d->vms)
		return;
	node_migrations_applied(d, op, rc);
	if (!is_vm_op(op))
		return;
	if (rc == 0)
		schedule_pass(d, 0);
	if (op->body_case != VIREO__OP__BODY_VM_REPORT ||
	    op->origin != cluster_engine_local_id(d->engine))
		return;
	lv = local_vm(d->vms, op->vm_report->name, false);
	if (lv && lv->report_request == op->request_id) {
		lv->report_request = 0;
		if (rc < 0 && rc != -EALREADY)
			qb_log(LOG_WARNING, "VM %s: the cluster refused this node's report: %s",
			       lv->name, strerror(-rc));
		schedule_pass(d, 0);
	}
}

const char *node_vms_accel(const struct node_daemon *d)
{
	return d->vms ? d->vms->accel : "";
}

const struct hv_driver *node_vms_driver(const struct node_daemon *d)
{
	return d->vms->drv;
}

struct hv_conn *node_vms_conn(const struct node_daemon *d)
{
	return d->vms->conn;
}

void node_vms_pass_soon(struct node_daemon *d, uint64_t ms)
{
	schedule_pass(d, ms);
}
