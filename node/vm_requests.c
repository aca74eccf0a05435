/* vireo vm ...: what vireod does for each VM request.
 *
 * list, show and console answer at once from this node's copy of the state
 * (and the shared pool). create and delete propose one operation and answer
 * once it is applied here. start, stop and restart answer with the outcome:
 * a waiter first waits for its own operation to be applied, then follows the
 * VM through the state until it runs, stops, fails, or waits for room.
 * Every applied operation (node_vm_requests_applied) and every tick
 * (node_vm_requests_expire) re-checks the waiters, so a state adopted from
 * a sync snapshot is noticed too.
 *
 * Nothing changes before a request is known to be valid: create checks the
 * spec, the kernel files and the images, then creates the VM's disks, then
 * proposes; when the cluster refuses, the disks it made are deleted again. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <qb/qblog.h>

#include "cluster/group.h"
#include "cluster/timeouts.h"
#include "cluster/vm.h"
#include "node/daemon.h"
#include "node/vm_requests.h"
#include "sharedstore/images.h"

/* What apply_desired() says while the manager has not decided yet. */
#define PLACING_MSG "waiting for the manager to place it"
/* x86 Linux's COMMAND_LINE_SIZE. */
#define CMDLINE_MAX 2048u
#define DISK_SUFFIX_MAX sizeof("-disk16")
#define MSG_MAX 512
/* Why an image made for a create is deleted again. */
#define REFUSED_IMAGE "made for the VM, which was not created"

enum vm_phase {
	PHASE_APPLIED,    /* our operation is proposed: wait until it is applied here */
	PHASE_STOPPED,    /* wait until the VM has stopped */
	PHASE_RUNNING,    /* wait until the VM runs, fails, or waits for room */
};

enum vm_job {
	JOB_CREATE,
	JOB_START,
	JOB_STOP,
	JOB_RESTART,
	JOB_DELETE,
	JOB_OP,           /* one op; answered once applied (migrate, cancel) */
};

struct node_vm_waiter {
	struct node_vm_waiter *next;
	struct node_ipc_call *call;
	enum vm_job job;
	enum vm_phase phase;
	enum vm_phase after;          /* the phase once our op is applied; PHASE_APPLIED: done */
	bool then_start;              /* once stopped, propose start (restart) */
	bool purge;
	bool created;                 /* create --group: the VM exists, the join follows */
	bool joining;                 /* create --group: our op is the join (GroupMembers) */
	bool start_after_join;        /* create --group --start: start once it is a member */
	char name[CLUSTER_NAME_MAX + 1];
	char group[CLUSTER_NAME_MAX + 1];   /* create --group: the group it joins */
	uint64_t request_id;
	uint64_t deadline_ms;
	uint32_t wait_s;              /* the current phase's limit, for messages */
	char **images;                /* create: made for it; delete: owned by it */
	size_t n_images;
};

/* ---------------------------------------------------------------- replies */

/* Answers with the VM as it is now (none when it does not exist) and the
 * nodes, to name its owner. */
static void reply_vm(struct node_daemon *d, struct node_ipc_call *call, Vireo__Outcome outcome,
		     const char *name, const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void reply_vm(struct node_daemon *d, struct node_ipc_call *call, Vireo__Outcome outcome,
		     const char *name, const char *fmt, ...)
{
	Vireo__Response resp = VIREO__RESPONSE__INIT;
	Vireo__VmListReply lr = VIREO__VM_LIST_REPLY__INIT;
	const cluster_state *cs = d->engine ? cluster_engine_state(d->engine) : NULL;
	Vireo__Vm *vm = cs && name ? cluster_vm_find(cs, name) : NULL;
	char msg[MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	resp.outcome = outcome;
	resp.message = msg;
	if (cs) {
		lr.vms = vm ? &vm : NULL;
		lr.n_vms = vm ? 1 : 0;
		lr.nodes = cs->nodes;
		lr.n_nodes = cs->n_nodes;
		resp.body_case = VIREO__RESPONSE__BODY_VM_LIST;
		resp.vm_list = &lr;
	}
	node_ipc_reply(call, &resp);
}

/* The states in which a guest may exist somewhere (vm.c's is_active()). */
static bool vm_active(const Vireo__Vm *vm)
{
	return vm->state != VIREO__VM_STATE__VM_STOPPED && vm->state != VIREO__VM_STATE__VM_PENDING &&
	       vm->state != VIREO__VM_STATE__VM_ERROR;
}

/* Pending with a reason from the manager, not merely not placed yet. */
static bool vm_waits_for_room(const Vireo__Vm *vm)
{
	return vm->state == VIREO__VM_STATE__VM_PENDING && vm->message[0] &&
	       strcmp(vm->message, PLACING_MSG) != 0;
}

/* ---------------------------------------------------------------- waiters */

static void waiter_free(struct node_vm_waiter *w)
{
	node_vm_free_images(w->images, w->n_images);
	free(w);
}

static struct node_vm_waiter *waiter_new(struct node_daemon *d, struct node_ipc_call *call,
					 enum vm_job job, const char *name)
{
	struct node_vm_waiter *w = calloc(1, sizeof(*w));

	if (!w) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_FAILED, "vireod is out of memory");
		return NULL;
	}
	w->call = call;
	w->job = job;
	snprintf(w->name, sizeof(w->name), "%s", name);
	w->next = d->vm_waiters;
	d->vm_waiters = w;
	return w;
}

static void set_deadline(struct node_daemon *d, struct node_vm_waiter *w, uint32_t ms)
{
	w->deadline_ms = node_now_mono_ms() + ms;
	w->wait_s = (ms + 999) / 1000;
}

static void enter_phase(struct node_daemon *d, struct node_vm_waiter *w, enum vm_phase phase)
{
	w->phase = phase;
	if (phase != PHASE_APPLIED)
		set_deadline(d, w, VIREO_VM_ACTION_TIMEOUT_MS(d->token_ms));
}

/* Proposes op for the waiter; it waits for it in PHASE_APPLIED and then
 * moves to after. On failure, answers and returns false (the caller
 * drops the waiter). */
static bool propose_for(struct node_daemon *d, struct node_vm_waiter *w, Vireo__Op *op,
			enum vm_phase after)
{
	int rc = cluster_engine_propose(d->engine, op, &w->request_id);

	if (rc < 0) {
		reply_vm(d, w->call, rc == -EPERM || rc == -ENOTCONN ?
			 VIREO__OUTCOME__OUTCOME_NOT_QUORATE : VIREO__OUTCOME__OUTCOME_FAILED,
			 w->name, "cannot propose the operation for VM %s: %s", w->name,
			 rc == -EPERM ? "this node is not in the quorate partition" :
			 rc == -ENOTCONN ? "vireod is not connected to corosync" : strerror(-rc));
		return false;
	}
	w->phase = PHASE_APPLIED;
	w->after = after;
	set_deadline(d, w, VIREO_REQUEST_TIMEOUT_MS(d->token_ms));
	return true;
}

static bool propose_desired(struct node_daemon *d, struct node_vm_waiter *w, bool running,
			    bool force, enum vm_phase after)
{
	Vireo__Op op = VIREO__OP__INIT;
	Vireo__VmDesired want = VIREO__VM_DESIRED__INIT;

	want.name = w->name;
	want.running = running;
	want.force = force;
	op.body_case = VIREO__OP__BODY_VM_DESIRED;
	op.vm_desired = &want;
	return propose_for(d, w, &op, after);
}

/* create --start answers that the VM exists even when it cannot start. */
static const char *created(const struct node_vm_waiter *w)
{
	return w->job == JOB_CREATE ? "was created but " : "";
}

/* Looks at the VM the waiter follows. Returns true when the waiter is
 * done: it has answered. */
static bool settle(struct node_daemon *d, struct node_vm_waiter *w)
{
	const cluster_state *cs = cluster_engine_state(d->engine);
	const Vireo__Vm *vm = cluster_vm_find(cs, w->name);
	Vireo__VmState s;

	if (w->phase == PHASE_APPLIED)
		return false;
	if (!vm) {
		reply_vm(d, w->call, VIREO__OUTCOME__OUTCOME_FAILED, NULL,
			 "VM %s was deleted by another request meanwhile", w->name);
		return true;
	}
	s = vm->state;
	if (w->phase == PHASE_STOPPED) {
		if (vm->want_running) {
			reply_vm(d, w->call, VIREO__OUTCOME__OUTCOME_FAILED, w->name,
				 "VM %s was started by another request before it stopped", w->name);
			return true;
		}
		if (s == VIREO__VM_STATE__VM_ERROR) {
			reply_vm(d, w->call, VIREO__OUTCOME__OUTCOME_FAILED, w->name,
				 "VM %s failed to stop: %s", w->name,
				 vm->message[0] ? vm->message : "its node reported an error");
			return true;
		}
		if (s != VIREO__VM_STATE__VM_STOPPED)
			return false;
		if (!w->then_start) {
			reply_vm(d, w->call, VIREO__OUTCOME__OUTCOME_OK, w->name, "%s", "");
			return true;
		}
		w->then_start = false;
		return !propose_desired(d, w, true, false, PHASE_RUNNING);
	}
	/* PHASE_RUNNING */
	if (!vm->want_running) {
		reply_vm(d, w->call, VIREO__OUTCOME__OUTCOME_FAILED, w->name,
			 "VM %s was stopped by another request before it started", w->name);
		return true;
	}
	if (s == VIREO__VM_STATE__VM_RUNNING) {
		reply_vm(d, w->call, VIREO__OUTCOME__OUTCOME_OK, w->name, "%s", "");
		return true;
	}
	if (s == VIREO__VM_STATE__VM_ERROR) {
		reply_vm(d, w->call, VIREO__OUTCOME__OUTCOME_FAILED, w->name,
			 "VM %s %sfailed to start: %s", w->name, created(w),
			 vm->message[0] ? vm->message : "its node reported an error");
		return true;
	}
	if (vm_waits_for_room(vm)) {
		reply_vm(d, w->call, VIREO__OUTCOME__OUTCOME_FAILED, w->name,
			 "VM %s %scannot start now: %s; it stays pending and starts as soon as a "
			 "node has room (vireo vm stop %s cancels that)", w->name, created(w),
			 vm->message, w->name);
		return true;
	}
	return false;
}

/* The join of create --group: GroupMembers adding the VM to w->group. */
static void join_op(struct node_vm_waiter *w, Vireo__Op *op, Vireo__GroupMembers *m, char **vm)
{
	*vm = w->name;
	m->name = w->group;
	m->add = vm;
	m->n_add = 1;
	op->body_case = VIREO__OP__BODY_GROUP_MEMBERS;
	op->group_members = m;
}

/* create --group: the VM exists (created stopped); now it joins its group,
 * so that the manager's first placement already follows the group's rule.
 * On failure, answers and returns false. */
static bool propose_join(struct node_daemon *d, struct node_vm_waiter *w)
{
	Vireo__Op op = VIREO__OP__INIT;
	Vireo__GroupMembers m = VIREO__GROUP_MEMBERS__INIT;
	char *vm;
	int rc;

	join_op(w, &op, &m, &vm);
	if ((rc = cluster_engine_propose(d->engine, &op, &w->request_id)) < 0) {
		reply_vm(d, w->call, VIREO__OUTCOME__OUTCOME_FAILED, w->name,
			 "VM %s was created but cannot join group %s now (%s); add it with vireo "
			 "group add %s %s%s", w->name, w->group, strerror(-rc), w->group, w->name,
			 w->start_after_join ? ", then start it" : "");
		return false;
	}
	w->created = true;
	w->joining = true;
	w->phase = PHASE_APPLIED;
	set_deadline(d, w, VIREO_REQUEST_TIMEOUT_MS(d->token_ms));
	return true;
}

/* The join was applied or refused: answer, or start the VM (--start). */
static bool joined(struct node_daemon *d, struct node_vm_waiter *w, int rc)
{
	const cluster_state *cs = cluster_engine_state(d->engine);
	Vireo__Op op = VIREO__OP__INIT;
	Vireo__GroupMembers m = VIREO__GROUP_MEMBERS__INIT;
	char why[256];
	char *vm;

	w->joining = false;
	if (rc < 0 && rc != -EALREADY) {
		/* The state is the one the refusal saw: the check says why. */
		join_op(w, &op, &m, &vm);
		if (cluster_group_check(cs, &op, why, sizeof(why)) == 0)
			snprintf(why, sizeof(why), "%s", strerror(-rc));
		reply_vm(d, w->call, VIREO__OUTCOME__OUTCOME_FAILED, w->name,
			 "VM %s was created but did not join group %s: %s%s", w->name, w->group, why,
			 w->start_after_join ? "; it was not started" : "");
		return true;
	}
	if (w->start_after_join) {
		w->start_after_join = false;
		return !propose_desired(d, w, true, false, PHASE_RUNNING);
	}
	reply_vm(d, w->call, VIREO__OUTCOME__OUTCOME_OK, w->name, "member of group %s", w->group);
	return true;
}

/* Our own operation was applied (rc 0 or -EALREADY) or refused. */
static bool own_applied(struct node_daemon *d, struct node_vm_waiter *w, int rc)
{
	const cluster_state *cs = cluster_engine_state(d->engine);
	bool refused = rc < 0 && rc != -EALREADY;

	if (w->joining)
		return joined(d, w, rc);
	if (w->job == JOB_CREATE && !w->created && !refused && w->group[0])
		return !propose_join(d, w);
	if (w->job == JOB_CREATE && !w->created && refused) {
		/* Nothing lost, nothing left: the disks were made for this VM only. */
		node_vm_delete_images(d, w->name, w->images, w->n_images, false, NULL, REFUSED_IMAGE);
		w->images = NULL;
		w->n_images = 0;
		if (cluster_vm_find(cs, w->name))
			reply_vm(d, w->call, VIREO__OUTCOME__OUTCOME_INVALID, NULL,
				 "a VM named %s exists already (another request created it "
				 "meanwhile)", w->name);
		else
			reply_vm(d, w->call, VIREO__OUTCOME__OUTCOME_FAILED, NULL,
				 "the cluster refused to create VM %s (%s); nothing was changed",
				 w->name, strerror(-rc));
		return true;
	}
	if (w->job == JOB_DELETE) {
		if (refused) {
			reply_vm(d, w->call, VIREO__OUTCOME__OUTCOME_FAILED, w->name, "%s",
				 rc == -EBUSY ? "the cluster refused to delete the VM: it was "
				 "started again meanwhile; stop it first" :
				 "the cluster refused to delete the VM; see vireo vm show");
			return true;
		}
		if (w->purge) {
			/* The pool worker answers once the images are gone. */
			node_vm_delete_images(d, w->name, w->images, w->n_images, true, w->call,
					      "of the deleted VM");
			w->images = NULL;
			w->n_images = 0;
			return true;
		}
		reply_vm(d, w->call, VIREO__OUTCOME__OUTCOME_OK, NULL,
			 w->n_images ? "VM %s is deleted; its disk images are kept (vireo vm "
			 "delete --purge deletes them)" : "VM %s is deleted", w->name);
		return true;
	}
	if (refused) {
		reply_vm(d, w->call, VIREO__OUTCOME__OUTCOME_FAILED, w->name,
			 rc == -ENOENT ? "VM %s was deleted by another request meanwhile" :
			 "the cluster refused the operation on VM %s; see vireo vm show", w->name);
		return true;
	}
	if (w->after == PHASE_APPLIED) {
		reply_vm(d, w->call, VIREO__OUTCOME__OUTCOME_OK, w->name, "%s", "");
		return true;
	}
	enter_phase(d, w, w->after);
	return settle(d, w);
}

void node_vm_requests_applied(struct node_daemon *d, const Vireo__Op *op, int rc)
{
	struct node_vm_waiter **pp = &d->vm_waiters;
	bool own = op->origin == cluster_engine_local_id(d->engine);

	while (*pp) {
		struct node_vm_waiter *w = *pp;
		bool done;

		if (w->phase == PHASE_APPLIED)
			done = own && op->request_id == w->request_id && own_applied(d, w, rc);
		else
			done = settle(d, w);
		if (!done) {
			pp = &w->next;
			continue;
		}
		*pp = w->next;
		waiter_free(w);
	}
}

static void expire_one(struct node_daemon *d, struct node_vm_waiter *w, const char *why)
{
	const cluster_state *cs = d->engine ? cluster_engine_state(d->engine) : NULL;
	const Vireo__Vm *vm = cs ? cluster_vm_find(cs, w->name) : NULL;
	const char *now = vm ? cluster_vm_state_name(vm->state) : "unknown";

	if (why || w->phase == PHASE_APPLIED) {
		reply_vm(d, w->call, VIREO__OUTCOME__OUTCOME_FAILED, w->name,
			 "the outcome is unknown: %s; check vireo vm show %s%s before retrying",
			 why ? why : "the cluster did not apply the operation in time", w->name,
			 w->job == JOB_CREATE && w->n_images ? " (if the VM does not exist, its new "
			 "disk images remain in the pool)" : "");
		return;
	}
	reply_vm(d, w->call, VIREO__OUTCOME__OUTCOME_FAILED, w->name,
		 "VM %s %sdid not %s within %u s (it is %s now); the outcome is unknown, check "
		 "vireo vm show %s", w->name, created(w), w->phase == PHASE_RUNNING ? "start" : "stop",
		 w->wait_s, now, w->name);
}

void node_vm_requests_expire(struct node_daemon *d, bool all, const char *why)
{
	struct node_vm_waiter **pp = &d->vm_waiters;
	uint64_t now = node_now_mono_ms();

	while (*pp) {
		struct node_vm_waiter *w = *pp;

		if (all || now >= w->deadline_ms)
			expire_one(d, w, all ? why : NULL);
		else if (!(d->engine && settle(d, w))) {
			pp = &w->next;
			continue;
		}
		*pp = w->next;
		waiter_free(w);
	}
}

/* Drops a waiter that has answered before it was ever settled. */
static void waiter_drop(struct node_daemon *d, struct node_vm_waiter *w)
{
	struct node_vm_waiter **pp = &d->vm_waiters;

	while (*pp && *pp != w)
		pp = &(*pp)->next;
	if (*pp)
		*pp = w->next;
	waiter_free(w);
}

void node_vm_propose_and_reply(struct node_daemon *d, struct node_ipc_call *call, const char *name,
			       Vireo__Op *op)
{
	struct node_vm_waiter *w;

	if (!node_may_propose(d, call) || !(w = waiter_new(d, call, JOB_OP, name)))
		return;
	if (!propose_for(d, w, op, PHASE_APPLIED))
		waiter_drop(d, w);
}

void node_vm_reply(struct node_daemon *d, struct node_ipc_call *call, Vireo__Outcome outcome,
		   const char *name, const char *message)
{
	reply_vm(d, call, outcome, name, "%s", message);
}

/* ---------------------------------------------------------------- create */

/* The spec of a VM being created, with the storage it points into. */
struct create_parts {
	Vireo__VmSpec spec;
	Vireo__VmDisk disks[CLUSTER_VM_MAX_DISKS];
	Vireo__VmDisk *ptrs[CLUSTER_VM_MAX_DISKS];
	char names[CLUSTER_VM_MAX_DISKS][CLUSTER_NAME_MAX + DISK_SUFFIX_MAX];
	char uuid[64];
	uint32_t preferred[NODE_VM_MAX_PREFERRED];
};

/* Builds the spec from the request and checks everything that needs no
 * pool I/O, against the state as it is now: run before the disks are made
 * and again once they are. False once it has answered. */
static bool create_checked(struct node_daemon *d, struct node_ipc_call *call,
			   const Vireo__VmCreateRequest *r, struct create_parts *p)
{
	const cluster_state *cs;
	const Vireo__VmSpec *in = r->spec;
	Vireo__VmSpec spec;
	Vireo__VmDisk *disks = p->disks;
	Vireo__VmDisk **ptrs = p->ptrs;
	char err[256];
	size_t n = 0, owned = 0, suffix;

	if (!in) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_INVALID,
				       "the request carries no VM spec");
		return false;
	}
	if (!d->engine) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_NOT_QUORATE, NODE_NEVER_CONNECTED_MSG);
		return false;
	}
	cs = cluster_engine_state(d->engine);
	spec = *in;
	if (in->n_disks + (in->boot_disk[0] ? 1 : 0) > CLUSTER_VM_MAX_DISKS) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_INVALID,
				       "a VM has at most %u disks, its boot disk included",
				       CLUSTER_VM_MAX_DISKS);
		return false;
	}
	if (in->boot_disk[0]) {
		vireo__vm_disk__init(&disks[n]);
		disks[n].image = in->boot_disk;
		disks[n].size_mib = 1;            /* filled in from the pool below */
		disks[n].format = "qcow2";
		ptrs[n] = &disks[n];
		n++;
	}
	suffix = (size_t)snprintf(NULL, 0, "-disk%zu", in->n_disks);
	if (in->n_disks && strlen(in->name) <= CLUSTER_NAME_MAX &&
	    strlen(in->name) + suffix > CLUSTER_NAME_MAX) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_INVALID,
				       "VM name %s is too long for its disks, which are named NAME-diskN: "
				       "with %zu disk(s) a VM's name has at most %zu characters",
				       in->name, in->n_disks, CLUSTER_NAME_MAX - suffix);
		return false;
	}
	for (size_t i = 0; i < in->n_disks; i++) {
		vireo__vm_disk__init(&disks[n]);
		snprintf(p->names[n], sizeof(p->names[n]), "%s-disk%zu", in->name, ++owned);
		disks[n].image = p->names[n];
		disks[n].size_mib = in->disks[i]->size_mib;
		disks[n].format = in->disks[i]->format[0] ? in->disks[i]->format : "qcow2";
		disks[n].owned = true;
		ptrs[n] = &disks[n];
		n++;
	}
	spec.disks = ptrs;
	spec.n_disks = n;
	if (!in->uuid[0]) {
		if (node_vm_new_uuid(p->uuid, sizeof(p->uuid)) < 0) {
			node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_FAILED,
					       "cannot read a new uuid from /proc/sys/kernel/random/uuid");
			return false;
		}
		spec.uuid = p->uuid;
	}
	if (r->node[0]) {
		const Vireo__NodeInfo *pin = cluster_state_node_by_name(cs, r->node);

		spec.pinned_node = pin ? pin->id : 0;
		if (!spec.pinned_node) {
			node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_INVALID,
					       "no node named %s in this cluster; see vireo node list",
					       r->node);
			return false;
		}
	}
	if (!node_vm_fill_placement(call, cs, r, &spec, p->preferred))
		return false;
	if (cluster_vm_spec_check(cs, &spec, err, sizeof(err)) < 0) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_INVALID, "%s", err);
		return false;
	}
	if (!spec.kernel[0] && (spec.initrd[0] || spec.cmdline[0])) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_INVALID,
				       "--initrd and --cmdline go with --kernel, not with --boot-disk");
		return false;
	}
	if (strlen(spec.cmdline) > CMDLINE_MAX) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_INVALID,
				       "the kernel command line has at most %u characters", CMDLINE_MAX);
		return false;
	}
	if (spec.kernel[0] && !node_vm_boot_file_ok(d, call, "kernel", spec.kernel))
		return false;
	if (spec.initrd[0] && !node_vm_boot_file_ok(d, call, "initrd", spec.initrd))
		return false;
	if (!node_vm_disks_fit(call, cs, &spec))
		return false;
	p->spec = spec;
	return true;
}

/* Proposes the VM; images were made for it (taken). */
static void create_propose(struct node_daemon *d, struct node_ipc_call *call,
			   const Vireo__VmCreateRequest *r, struct create_parts *p, char **images,
			   size_t n_images)
{
	Vireo__VmSpec *spec = &p->spec;
	Vireo__Op op = VIREO__OP__INIT;
	Vireo__VmCreate create = VIREO__VM_CREATE__INIT;
	struct node_vm_waiter *w;

	if (!node_may_propose(d, call)) {
		node_vm_delete_images(d, spec->name, images, n_images, false, NULL, REFUSED_IMAGE);
		return;
	}
	if (!(w = waiter_new(d, call, JOB_CREATE, spec->name))) {
		node_vm_delete_images(d, spec->name, images, n_images, false, NULL, REFUSED_IMAGE);
		return;
	}
	w->images = images;
	w->n_images = n_images;
	create.spec = spec;
	create.start = r->start;
	if (r->group[0]) {
		/* Created stopped, it joins its group, then starts: its first
		 * placement already follows the group's rule. */
		snprintf(w->group, sizeof(w->group), "%s", r->group);
		w->start_after_join = r->start;
		create.start = false;
	}
	op.body_case = VIREO__OP__BODY_VM_CREATE;
	op.vm_create = &create;
	if (!propose_for(d, w, &op, create.start ? PHASE_RUNNING : PHASE_APPLIED)) {
		node_vm_delete_images(d, w->name, w->images, w->n_images, false, NULL, REFUSED_IMAGE);
		w->images = NULL;
		w->n_images = 0;
		waiter_drop(d, w);
		return;
	}
	qb_log(LOG_INFO, "proposed VM %s (%u vCPUs, %llu MiB, %zu disks made here)", spec->name,
	       spec->vcpus, (unsigned long long)spec->memory_mib, n_images);
}

/* The disks are made (in a pool worker): check again, since the state may
 * have changed meanwhile, then propose. */
static void create_disks_ready(struct node_daemon *d, struct node_ipc_call *call,
			       const Vireo__VmCreateRequest *r, struct node_vm_disks *dk)
{
	struct create_parts p;

	if (!create_checked(d, call, r, &p)) {
		node_vm_delete_images(d, r->spec->name, dk->images, dk->n_images, false, NULL,
				      REFUSED_IMAGE);
		return;
	}
	if (p.spec.boot_disk[0]) {
		p.disks[0].size_mib = dk->boot_mib;
		p.disks[0].format = (char *)dk->boot_format;
	}
	create_propose(d, call, r, &p, dk->images, dk->n_images);
}

static void handle_create(struct node_daemon *d, struct node_ipc_call *call,
			  const Vireo__VmCreateRequest *r)
{
	struct create_parts p;

	if (!create_checked(d, call, r, &p))
		return;
	if (!p.spec.n_disks) {
		create_propose(d, call, r, &p, NULL, 0);
		return;
	}
	if (!node_vm_store_ready(d, call) || !node_may_propose(d, call))
		return;
	node_vm_prepare_disks(d, call, r, &p.spec, create_disks_ready);
}

/* ---------------------------------------------------------------- actions */

static void handle_start(struct node_daemon *d, struct node_ipc_call *call, const Vireo__Vm *vm,
			 enum vm_job job, bool force)
{
	const char *name = vm->spec->name;
	struct node_vm_waiter *w;
	bool ok;

	if (vm->want_running && vm->state == VIREO__VM_STATE__VM_RUNNING && job == JOB_START) {
		reply_vm(d, call, VIREO__OUTCOME__OUTCOME_OK, name, "already running");
		return;
	}
	if (!node_may_propose(d, call) || !(w = waiter_new(d, call, job, name)))
		return;
	if (!vm->want_running && vm->state == VIREO__VM_STATE__VM_STOPPING) {
		/* Stopping already: let it finish, then start it again. */
		w->then_start = true;
		enter_phase(d, w, PHASE_STOPPED);
		ok = !settle(d, w);
	} else if (!vm->want_running) {
		ok = propose_desired(d, w, true, false, PHASE_RUNNING);
	} else if (job == JOB_RESTART || vm->state == VIREO__VM_STATE__VM_ERROR) {
		/* A VM in error wants to run but cannot: start means try again. */
		w->then_start = true;
		ok = propose_desired(d, w, false, force, PHASE_STOPPED);
	} else {
		/* Wanted running already (pending, starting, ...): wait for it. */
		enter_phase(d, w, PHASE_RUNNING);
		ok = !settle(d, w);
	}
	if (!ok)
		waiter_drop(d, w);
}

static void handle_stop(struct node_daemon *d, struct node_ipc_call *call, const Vireo__Vm *vm,
			bool force)
{
	const char *name = vm->spec->name;
	struct node_vm_waiter *w;
	bool ok;

	if (!vm->want_running && vm->state == VIREO__VM_STATE__VM_STOPPED) {
		reply_vm(d, call, VIREO__OUTCOME__OUTCOME_OK, name, "already stopped");
		return;
	}
	if (!vm->want_running && vm->state == VIREO__VM_STATE__VM_ERROR) {
		reply_vm(d, call, VIREO__OUTCOME__OUTCOME_FAILED, name, "VM %s is in error: %s",
			 name, vm->message[0] ? vm->message : "its node reported an error");
		return;
	}
	if (!node_may_propose(d, call) || !(w = waiter_new(d, call, JOB_STOP, name)))
		return;
	/* A forced stop of a VM that is stopping gracefully: say force again. */
	if (vm->want_running || (force && !vm->force_stop)) {
		ok = propose_desired(d, w, false, force, PHASE_STOPPED);
	} else {
		enter_phase(d, w, PHASE_STOPPED);
		ok = !settle(d, w);
	}
	if (!ok)
		waiter_drop(d, w);
}

static void handle_delete(struct node_daemon *d, struct node_ipc_call *call, const Vireo__Vm *vm,
			  bool purge)
{
	const char *name = vm->spec->name;
	Vireo__Op op = VIREO__OP__INIT;
	Vireo__VmName del = VIREO__VM_NAME__INIT;
	struct node_vm_waiter *w;

	if (!vm->want_running && vm->state == VIREO__VM_STATE__VM_STOPPING) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_INVALID,
				       "VM %s is stopping; wait until it has stopped (vireo vm show %s), "
				       "then delete it", name, name);
		return;
	}
	if (vm->want_running || vm_active(vm)) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_INVALID,
				       "VM %s is %s; stop it first (vireo vm stop %s)", name,
				       cluster_vm_state_name(vm->state), name);
		return;
	}
	if (purge) {
		for (size_t i = 0; i < vm->spec->n_disks; i++)
			if (vm->spec->disks[i]->owned && !d->store) {
				node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_FAILED,
						       "vireod could not open the shared pool at %s on "
						       "this node, so it cannot delete the VM's disks; "
						       "delete it from another node, or without --purge",
						       d->cfg.pool_dir);
				return;
			}
	}
	if (!node_may_propose(d, call) || !(w = waiter_new(d, call, JOB_DELETE, name)))
		return;
	w->purge = purge;
	if (!(w->images = calloc(vm->spec->n_disks + 1, sizeof(*w->images)))) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_FAILED, "vireod is out of memory");
		waiter_drop(d, w);
		return;
	}
	for (size_t i = 0; i < vm->spec->n_disks; i++) {
		if (!vm->spec->disks[i]->owned)
			continue;
		if (!(w->images[w->n_images] = strdup(vm->spec->disks[i]->image))) {
			node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_FAILED,
					       "vireod is out of memory");
			waiter_drop(d, w);
			return;
		}
		w->n_images++;
	}
	del.name = w->name;
	op.body_case = VIREO__OP__BODY_VM_DELETE;
	op.vm_delete = &del;
	if (!propose_for(d, w, &op, PHASE_APPLIED))
		waiter_drop(d, w);
}

static void handle_action(struct node_daemon *d, struct node_ipc_call *call,
			  const Vireo__VmActionRequest *a)
{
	const Vireo__Vm *vm;

	if (!d->engine) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_NOT_QUORATE, NODE_NEVER_CONNECTED_MSG);
		return;
	}
	if (!(vm = cluster_vm_find(cluster_engine_state(d->engine), a->name))) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_INVALID,
				       "no VM named %s; see vireo vm list", a->name);
		return;
	}
	switch (a->action) {
	case VIREO__VM_ACTION__VM_ACTION_START:
		handle_start(d, call, vm, JOB_START, false);
		break;
	case VIREO__VM_ACTION__VM_ACTION_RESTART:
		handle_start(d, call, vm, JOB_RESTART, a->force);
		break;
	case VIREO__VM_ACTION__VM_ACTION_STOP:
		handle_stop(d, call, vm, a->force);
		break;
	case VIREO__VM_ACTION__VM_ACTION_DELETE:
		handle_delete(d, call, vm, a->purge);
		break;
	default:
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_INVALID,
				       "this vireod does not know that VM action");
		break;
	}
}

void node_vm_request(struct node_daemon *d, struct node_ipc_call *call, const Vireo__Request *req)
{
	switch (req->body_case) {
	case VIREO__REQUEST__BODY_VM_CREATE:
		handle_create(d, call, req->vm_create);
		break;
	case VIREO__REQUEST__BODY_VM_ACTION:
		handle_action(d, call, req->vm_action);
		break;
	case VIREO__REQUEST__BODY_VM_LIST:
		node_vm_handle_list(d, call, req->vm_list->name);
		break;
	case VIREO__REQUEST__BODY_VM_CONSOLE:
		node_vm_handle_console(d, call, req->vm_console);
		break;
	case VIREO__REQUEST__BODY_VM_MIGRATE:
		node_vm_handle_migrate(d, call, req->vm_migrate);
		break;
	default:
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_INVALID,
				       "this vireod does not know that command");
		break;
	}
}
