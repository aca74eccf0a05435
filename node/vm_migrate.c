/* Migration on this node: the source's and the target's part of moving a
 * running guest (quick or live), driven by the cluster state like the rest
 * of the local resource manager (vm_local.c calls node_migration_step for
 * every migrating VM on each pass).
 *
 * Source (the VM's owner, migration.source == this node):
 *   1. opens a stream session (migration/stream.h) whose unix socket the
 *      source QEMU will write to, and asks libvirt to migrate the guest to
 *      the target's libvirtd through that socket, leaving it paused there;
 *      quick: libvirt pauses the guest first; live: pre-copy, then pause;
 *   2. reports progress (VmMigrateProgress) every VIREO_MIGRATION_PROGRESS_MS;
 *   3. libvirt done: success → VmMigrateCommit (ownership to the target);
 *      failure, cancel, target offline → the guest runs here again (libvirt
 *      resumes it; this makes sure) → VmMigrateEnd(ok = false).
 * Target (migration.target == this node):
 *   1. tells the stream listener to expect the session; it relays the
 *      stream into the target QEMU's socket, which its libvirtd created;
 *   2. after the commit it owns the VM: resumes the paused guest (taking its
 *      disk leases) → VmMigrateEnd(ok, downtime).
 *
 * Rules (DESIGN.md): before the commit any failure leaves the guest running
 * on the source; after it the target owns it. A vireod that restarts while
 * it is the source of a migration cannot know how far it got, so it looks:
 * its guest still here → abort (resume); gone → libvirt finished (it
 * removes the source only then) → commit, and the target resumes it or
 * reports the state lost. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <qb/qblog.h>

#include "cluster/timeouts.h"
#include "cluster/vm.h"
#include "cluster/vm_migrate.h"
#include "hypervisor/hv.h"
#include "migration/stream.h"
#include "node/daemon.h"
#include "node/hv_calls.h"

#define NS_PER_MS 1000000ull
#define FAULT_FILE "test-fault-corrupt-chunk"
#define MAX_RETRIES 10u

struct node_migration {
	struct node_migration *next;
	char name[HV_NAME_MAX + 1];
	struct mig_session_id sid;
	bool source;
	bool inherited;               /* found under way when this vireod started */
	/* source */
	struct mig_session *session;
	bool hv_started, hv_done, stream_done, aborting;
	int hv_rc;
	char hv_message[256];
	struct mig_result stream;
	char abort_reason[200];
	int64_t paused_wall_ms;
	uint64_t last_report_ms, last_report_raw;
	/* target */
	bool expected;
	bool incoming;                /* its libvirtd started the incoming guest */
	bool landed;                  /* ...and finished it: the whole state is here, paused */
	uint64_t missing_since_ms;
	int64_t resumed_wall_ms;      /* when this node resumed the guest */
	uint64_t resumed_mono_ms;
	/* both: the op in flight (commit or end), so it is proposed once */
	uint64_t request_id;
	uint64_t request_deadline_ms;
	uint64_t created_ms;
	uint32_t retries;
	/* hypervisor calls (node/hv_calls.c) and what they answered */
	bool job_checked, job_busy;   /* source: libvirt's job on the guest before it begins */
	int64_t fail_resumed_wall_ms; /* source: resumed by us after a failed migration */
	bool progress_asked;          /* source: a progress query in flight */
};

struct node_migrations {
	struct mig_key key;
	bool have_key;
	struct mig_listener *listener;
	struct node_migration *list;
	qb_loop_timer_handle progress_timer;
	bool progress_armed;
	bool first_pass_done;
};

static uint32_t my_id(const struct node_daemon *d)
{
	return cluster_engine_local_id(d->engine);
}

static const char *node_name(const struct node_daemon *d, uint32_t id)
{
	const Vireo__NodeInfo *n = cluster_state_node(cluster_engine_state(d->engine), id);

	return n ? n->name : "?";
}

static void socket_path(const struct node_daemon *d, const char *uuid, char *out, size_t len)
{
	snprintf(out, len, "%s/%s.sock", d->cfg.migration_dir, uuid);
}

static int load_key(struct node_daemon *d)
{
	struct node_migrations *m = d->migrations;
	int rc;

	if (m->have_key)
		return 0;
	if ((rc = mig_key_from_file(d->cfg.migration_key_file, &m->key)) < 0) {
		qb_log(LOG_ERR, "cannot derive the migration key from %s: %s; this node can neither "
		       "send nor receive guests", d->cfg.migration_key_file, strerror(-rc));
		return rc;
	}
	m->have_key = true;
	return 0;
}

static struct node_migration *find(struct node_migrations *m, const char *name)
{
	for (struct node_migration *r = m->list; r; r = r->next)
		if (strcmp(r->name, name) == 0)
			return r;
	return NULL;
}

static void drop(struct node_daemon *d, struct node_migration *gone)
{
	struct node_migrations *m = d->migrations;

	for (struct node_migration **pp = &m->list; *pp; pp = &(*pp)->next) {
		if (*pp != gone)
			continue;
		*pp = gone->next;
		if (gone->expected && m->listener)
			mig_listener_forget(m->listener, &gone->sid);
		mig_session_free(gone->session);
		free(gone);
		return;
	}
}

static struct node_migration *record(struct node_daemon *d, const Vireo__Vm *vm, bool source)
{
	struct node_migrations *m = d->migrations;
	struct node_migration *r = find(m, vm->spec->name);

	if (r && (r->sid.migration_id != vm->migration->id || r->source != source)) {
		drop(d, r);
		r = NULL;
	}
	if (r || !(r = calloc(1, sizeof(*r))))
		return r;
	snprintf(r->name, sizeof(r->name), "%s", vm->spec->name);
	snprintf(r->sid.vm_uuid, sizeof(r->sid.vm_uuid), "%s", vm->spec->uuid);
	r->sid.migration_id = vm->migration->id;
	/* The generation the guest has while it moves (the commit adds one). */
	r->sid.generation = vm->migration->phase == VIREO__MIGRATION_PHASE__MIGRATION_COMMITTED ?
			    vm->generation - 1 : vm->generation;
	r->source = source;
	r->inherited = !m->first_pass_done;
	r->created_ms = node_now_mono_ms();
	r->next = m->list;
	m->list = r;
	return r;
}

/* Proposes op for r once (again after VIREO_REQUEST_TIMEOUT_MS). */
static void propose(struct node_daemon *d, struct node_migration *r, Vireo__Op *op)
{
	uint64_t now = node_now_mono_ms();
	int rc;

	if (r->request_id && now < r->request_deadline_ms)
		return;
	if ((rc = cluster_engine_propose(d->engine, op, &r->request_id)) < 0) {
		qb_log(LOG_WARNING, "VM %s: cannot propose %s: %s; trying again", r->name,
		       cluster_op_name(op), strerror(-rc));
		r->request_id = 0;
		return;
	}
	r->request_deadline_ms = now + VIREO_REQUEST_TIMEOUT_MS(d->token_ms);
}

static void propose_end(struct node_daemon *d, struct node_migration *r, bool ok,
			const char *message, uint64_t downtime_ms, int64_t resumed_ms)
{
	Vireo__Op op = VIREO__OP__INIT;
	Vireo__VmMigrateEnd e = VIREO__VM_MIGRATE_END__INIT;

	e.name = r->name;
	e.id = r->sid.migration_id;
	e.ok = ok;
	e.message = (char *)message;
	e.downtime_ms = downtime_ms;
	e.resumed_ms = resumed_ms;
	op.body_case = VIREO__OP__BODY_VM_MIGRATE_END;
	op.vm_migrate_end = &e;
	if (!r->request_id)
		qb_log(ok ? LOG_NOTICE : LOG_WARNING, "VM %s: migration %" PRIu64 " %s%s%s", r->name,
		       r->sid.migration_id, ok ? "done" : "failed", message[0] ? ": " : "", message);
	propose(d, r, &op);
}

static int64_t mono_to_wall(uint64_t mono_ms)
{
	return mono_ms ? node_now_wall_ms() - (int64_t)(node_now_mono_ms() - mono_ms) : 0;
}

static void propose_commit(struct node_daemon *d, struct node_migration *r)
{
	Vireo__Op op = VIREO__OP__INIT;
	Vireo__VmMigrateCommit c = VIREO__VM_MIGRATE_COMMIT__INIT;
	const struct mig_counters *k = r->session ? mig_session_counters(r->session) : NULL;
	struct mig_result snap;
	const struct mig_result *s = &r->stream;

	/* The target knows its stream from the listener. */
	if (!r->source && !r->stream_done && (!d->migrations->listener ||
	    mig_listener_counters(d->migrations->listener, &r->sid, &snap) < 0))
		memset(&snap, 0, sizeof(snap));
	if (!r->source && !r->stream_done)
		s = &snap;

	c.name = r->name;
	c.id = r->sid.migration_id;
	c.bytes_raw = r->stream_done || !r->source ? s->raw_forward :
		      k ? atomic_load(&k->raw_forward) : 0;
	c.bytes_sent = r->stream_done || !r->source ? s->wire_forward :
		       k ? atomic_load(&k->wire_forward) : 0;
	/* Still flowing at the target's commit: the last byte is now. */
	if (s->first_byte_ms && !s->last_byte_ms)
		c.transfer_ms = node_now_mono_ms() - s->first_byte_ms;
	/* Quick: libvirt's pause event; it always precedes the first byte. */
	/* The source's pause event (it reported it at once); the target
	 * leaves it to that report. */
	c.paused_ms = !r->source ? 0 : r->paused_wall_ms ? r->paused_wall_ms :
		      mono_to_wall(s->first_byte_ms);
	c.transfer_ms = s->last_byte_ms > s->first_byte_ms ? s->last_byte_ms - s->first_byte_ms : 0;

	op.body_case = VIREO__OP__BODY_VM_MIGRATE_COMMIT;
	op.vm_migrate_commit = &c;
	if (!r->request_id)
		qb_log(LOG_NOTICE, "VM %s: %s holds its whole state; committing the move", r->name,
		       r->source ? "the target" : "this node");
	propose(d, r, &op);
}

/* ---------------------------------------------------------------- source */

/* The record a hypervisor call's answer is for, NULL if it is gone (or
 * vireod stops). The VM's next pass must not trust an older list. */
static struct node_migration *answered(struct node_daemon *d, const struct node_hv_call *call)
{
	if (call->rc == -ECANCELED || !d->migrations)
		return NULL;
	node_vms_answered(d, call->name);
	return find(d->migrations, call->name);
}

static void fail_resumed(struct node_daemon *d, const struct node_hv_call *call)
{
	struct node_migration *r = answered(d, call);

	if (!r)
		return;
	if (call->rc < 0) {
		qb_log(LOG_WARNING, "VM %s: cannot resume it after the failed migration yet: %s; "
		       "trying again", r->name, call->error);
		node_vms_pass_soon(d, VIREO_MIGRATION_PROGRESS_MS(d->token_ms));
		return;
	}
	r->fail_resumed_wall_ms = node_now_wall_ms();
}

static void source_fail(struct node_daemon *d, struct node_migration *r, const char *why,
			const struct hv_vm_info *dom)
{
	int64_t resumed = r->fail_resumed_wall_ms;
	int rc;

	/* libvirt resumes a guest whose migration failed; make sure (the
	 * answer comes with a later pass). */
	if (dom && dom->state == HV_STATE_PAUSED && !resumed) {
		if ((rc = node_hv_submit(d, NODE_HV_RESUME, r->name, fail_resumed, NULL)) < 0) {
			qb_log(LOG_WARNING, "VM %s: cannot resume it after the failed migration yet: "
			       "%s; trying again", r->name, strerror(-rc));
			node_vms_pass_soon(d, VIREO_MIGRATION_PROGRESS_MS(d->token_ms));
		}
		return;
	}
	/* libvirt resumed it by now if we did not: paused until about now. */
	if (!resumed && r->paused_wall_ms && dom && dom->state == HV_STATE_RUNNING)
		resumed = node_now_wall_ms();
	propose_end(d, r, false, why, r->paused_wall_ms && resumed > r->paused_wall_ms ?
		    (uint64_t)(resumed - r->paused_wall_ms) : 0, resumed);
}

/* Why it failed, best cause first. */
static const char *failure_reason(struct node_migration *r, char *buf, size_t len)
{
	if (r->abort_reason[0])
		return r->abort_reason;
	if (r->stream_done && r->stream.rc < 0 && r->stream.rc != -ECANCELED && r->stream.message[0])
		return r->stream.message;
	if (r->hv_message[0]) {
		snprintf(buf, len, "%s", r->hv_message);
		return buf;
	}
	snprintf(buf, len, "the migration failed (%s)", strerror(r->hv_rc ? -r->hv_rc : EIO));
	return buf;
}

static void abort_migration(struct node_daemon *d, struct node_migration *r, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void abort_answered(struct node_daemon *d, const struct node_hv_call *call)
{
	if (answered(d, call) && call->rc < 0 && call->rc != -ESRCH)
		qb_log(LOG_WARNING, "VM %s: libvirt did not take the abort (%s); the stream is cut "
		       "instead", call->name, call->error);
}

static void abort_migration(struct node_daemon *d, struct node_migration *r, const char *fmt, ...)
{
	va_list ap;

	if (r->aborting)
		return;
	r->aborting = true;
	va_start(ap, fmt);
	vsnprintf(r->abort_reason, sizeof(r->abort_reason), fmt, ap);
	va_end(ap);
	qb_log(LOG_WARNING, "VM %s: aborting its migration: %s", r->name, r->abort_reason);
	if (r->hv_started && !r->hv_done &&
	    node_hv_submit(d, NODE_HV_MIGRATE_ABORT, r->name, abort_answered, NULL) < 0)
		qb_log(LOG_WARNING, "VM %s: cannot ask libvirt to abort; the stream is cut instead",
		       r->name);
	mig_session_cancel(r->session);
}

/* The migration ends before it began; the reason is kept, so later passes
 * propose the end again if this proposal is lost. */
static void begin_failed(struct node_daemon *d, struct node_migration *r,
			 const struct hv_vm_info *dom, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void begin_failed(struct node_daemon *d, struct node_migration *r,
			 const struct hv_vm_info *dom, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->abort_reason, sizeof(r->abort_reason), fmt, ap);
	va_end(ap);
	r->hv_done = true;
	r->hv_rc = -EIO;
	source_fail(d, r, r->abort_reason, dom);
}

static void stream_done(void *ctx, const struct mig_result *res)
{
	struct node_migration *r = ctx;

	r->stream_done = true;
	r->stream = *res;
	if (res->rc < 0 && res->rc != -ECANCELED)
		qb_log(LOG_WARNING, "VM %s: the migration stream failed: %s", r->name, res->message);
	else
		qb_log(LOG_INFO, "VM %s: stream done: %" PRIu64 " bytes -> %" PRIu64 " on the wire",
		       r->name, res->raw_forward, res->wire_forward);
}

static uint32_t read_fault(struct node_daemon *d)
{
	char path[300];
	unsigned int chunk = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", d->cfg.migration_dir, FAULT_FILE);
	if (!(f = fopen(path, "re")))
		return 0;
	if (fscanf(f, "%u", &chunk) != 1)
		chunk = 0;
	fclose(f);
	unlink(path);   /* one migration only */
	if (chunk)
		qb_log(LOG_WARNING, "TEST FAULT: chunk %u of the next migration stream is corrupted",
		       chunk);
	return chunk;
}

/* The target's libvirtd: the configured URI with its one %s (config.c
 * checks there is exactly one) replaced by host. */
static void peer_uri(const char *tmpl, const char *host, char *out, size_t len)
{
	const char *pct = strstr(tmpl, "%s");
	int head = pct ? (int)(pct - tmpl) : (int)strlen(tmpl);

	snprintf(out, len, "%.*s%s%s", head, tmpl, pct ? host : "", pct ? pct + 2 : "");
}

static int make_dir(const char *path)
{
	if (mkdir(path, 0711) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static void job_answered(struct node_daemon *d, const struct node_hv_call *call)
{
	struct node_migration *r = answered(d, call);

	if (!r)
		return;
	r->job_checked = true;
	r->job_busy = call->rc == 0 && call->job_active;
}

/* Starts the migration: libvirt's part runs in its own thread (drv->migrate
 * returns at once) and ends with HV_EVENT_MIGRATION_DONE. */
static void source_begin(struct node_daemon *d, struct node_migration *r, const Vireo__Vm *vm,
			 const struct hv_vm_info *dom)
{
	const Vireo__VmMigration *mig = vm->migration;
	const Vireo__NodeInfo *target = cluster_state_node(cluster_engine_state(d->engine), mig->target);
	const struct hv_driver *drv = node_vms_driver(d);
	char sock[300], data_uri[320], dest_uri[300], host[80];
	struct mig_source_params sp = {
		.loop = d->loop,
		.id = r->sid,
		.socket_path = sock,
		.target_port = d->cfg.migration_port,
		.key = &d->migrations->key,
		.connect_timeout_ms = VIREO_MIGRATION_CONNECT_MS(d->token_ms),
		.stall_timeout_ms = VIREO_MIGRATION_STALL_MS(d->token_ms),
		.done = stream_done,
		.ctx = r,
	};
	struct hv_migrate_params hp = {
		.dest_uri = dest_uri,
		.live = mig->kind == VIREO__MIGRATION_KIND__MIGRATION_LIVE,
		.data_uri = data_uri,
		.leave_paused = true,
		.max_downtime_ms = mig->max_downtime_ms ? mig->max_downtime_ms :
				   d->cfg.migration_max_downtime_ms,
		.bandwidth_mibps = mig->bandwidth_mibps ? mig->bandwidth_mibps :
				   d->cfg.migration_bandwidth_mibps,
		/* vireo's pool check proved every host mounts the same pool (its
		 * id file); libvirt only trusts file systems it knows are shared. */
		.trust_shared_disks = true,
	};
	int rc;

	/* A guest that just arrived here may still be in its incoming job for
	 * a moment (libvirt's finish): wait for it rather than fail. The job
	 * is asked in a worker; a later pass reads the answer. */
	if (dom && dom->state == HV_STATE_RUNNING &&
	    node_now_mono_ms() - r->created_ms < VIREO_MIGRATION_CONNECT_MS(d->token_ms)) {
		if (!r->job_checked) {
			if (node_hv_submit(d, NODE_HV_JOB_ACTIVE, r->name, job_answered, NULL) < 0)
				node_vms_pass_soon(d, VIREO_MIGRATION_PROGRESS_MS(d->token_ms) / 5u);
			return;
		}
		if (r->job_busy) {
			r->job_checked = false;
			node_vms_pass_soon(d, VIREO_MIGRATION_PROGRESS_MS(d->token_ms) / 5u);
			return;
		}
	}
	r->hv_started = true;   /* one attempt; a failure ends the migration */
	if (!dom || dom->state != HV_STATE_RUNNING) {
		begin_failed(d, r, dom, "the guest is not running on %s (%s)", d->cfg.node_name,
			     dom ? hv_state_name(dom->state) : "not defined");
		return;
	}
	if (!target || !target->address[0]) {
		begin_failed(d, r, dom, "the target's address is unknown");
		return;
	}
	if (load_key(d) < 0) {
		begin_failed(d, r, dom, "%s cannot read the cluster key %s", d->cfg.node_name,
			     d->cfg.migration_key_file);
		return;
	}
	/* An IPv6 literal goes in brackets inside a URI. */
	snprintf(host, sizeof(host), strchr(target->address, ':') ? "[%s]" : "%s", target->address);
	peer_uri(d->cfg.migration_peer_uri, host, dest_uri, sizeof(dest_uri));
	socket_path(d, vm->spec->uuid, sock, sizeof(sock));
	snprintf(data_uri, sizeof(data_uri), "unix://%s", sock);
	sp.target_host = target->address;
	sp.fault_corrupt_chunk = read_fault(d);
	if ((rc = make_dir(d->cfg.migration_dir)) < 0 || (rc = mig_source_start(&sp, &r->session)) < 0) {
		begin_failed(d, r, dom, "cannot open the stream socket %s: %s", sock, strerror(-rc));
		return;
	}
	if ((rc = drv->migrate(node_vms_conn(d), r->name, &hp)) < 0) {
		mig_session_free(r->session);
		r->session = NULL;
		begin_failed(d, r, dom, "libvirt would not start the migration: %s",
			     drv->last_error(node_vms_conn(d)));
		return;
	}
	qb_log(LOG_NOTICE, "VM %s: %s migration %" PRIu64 " to %s begins (%s)", r->name,
	       cluster_migration_kind_name(mig->kind), mig->id, target->name, dest_uri);
	r->last_report_ms = node_now_mono_ms();
	node_migrations_arm_progress(d);
}

/* vireod restarted while this node was the source. */
static void source_recover(struct node_daemon *d, struct node_migration *r,
			   const struct hv_vm_info *dom)
{
	char why[200];

	/* Gone from here: libvirt completed the migration (it removes the
	 * source only then), or the guest was killed with the old vireod (the
	 * watchdog does that). Nothing here tells which; the commit is right
	 * for both: the target resumes the guest it holds, or boots the VM
	 * afresh from its disks. */
	if (!dom || dom->state == HV_STATE_SHUTOFF) {
		qb_log(LOG_WARNING, "VM %s: found its migration under way after a restart and the "
		       "guest gone from here (migrated, or killed); committing: the target resumes "
		       "it or boots it afresh", r->name);
		propose_commit(d, r);
		return;
	}
	snprintf(why, sizeof(why), "vireod on %s restarted during the migration; the guest runs on "
		 "there", d->cfg.node_name);
	source_fail(d, r, why, dom);
}

/* A migration that failed before the guest paused or a byte moved (the
 * target's libvirt still finishing the previous migration of this guest,
 * say) is tried again, for a while: nothing happened to the guest. */
static bool may_retry(struct node_daemon *d, struct node_migration *r, const struct hv_vm_info *dom)
{
	return !r->aborting && !r->abort_reason[0] && !r->paused_wall_ms &&
	       (!r->stream_done || r->stream.raw_forward == 0) &&
	       dom && dom->state == HV_STATE_RUNNING && r->retries < MAX_RETRIES &&
	       node_now_mono_ms() - r->created_ms < VIREO_MIGRATION_CONNECT_MS(d->token_ms);
}

static void source_step(struct node_daemon *d, const Vireo__Vm *vm, const struct hv_vm_info *dom)
{
	struct node_migration *r = record(d, vm, true);
	const Vireo__NodeInfo *target;
	char buf[300];

	if (!r)
		return;
	if (r->inherited) {
		source_recover(d, r, dom);
		return;
	}
	if (!r->hv_started) {
		source_begin(d, r, vm, dom);
		return;
	}
	target = cluster_state_node(cluster_engine_state(d->engine), vm->migration->target);
	if (!r->hv_done) {
		if (vm->migration->cancel)
			abort_migration(d, r, "cancelled by the user");
		else if (!target || !target->online)
			abort_migration(d, r, "the target %s left the cluster",
					node_name(d, vm->migration->target));
		return;
	}
	if (r->hv_rc == 0) {
		propose_commit(d, r);
	} else if (may_retry(d, r, dom)) {
		qb_log(LOG_NOTICE, "VM %s: the migration failed before anything moved (%s); trying "
		       "again", r->name, r->hv_message);
		mig_session_free(r->session);
		r->session = NULL;
		r->hv_started = r->hv_done = r->stream_done = false;
		r->hv_rc = 0;
		r->retries++;
		node_vms_pass_soon(d, VIREO_MIGRATION_PROGRESS_MS(d->token_ms) / 2u);
	} else {
		source_fail(d, r, failure_reason(r, buf, sizeof(buf)), dom);
	}
}

/* ---------------------------------------------------------------- target */

static void target_prepare(struct node_daemon *d, const Vireo__Vm *vm, const struct hv_vm_info *dom)
{
	struct node_migrations *m = d->migrations;
	struct node_migration *r = record(d, vm, false);
	char sock[300];
	int rc;

	if (!r)
		return;
	/* libvirt finished the incoming guest (defined, paused): the source's
	 * QEMU is only being cleaned up, which takes a few hundred ms that
	 * would be downtime if the commit waited for it. */
	if (r->landed && dom && dom->state == HV_STATE_PAUSED) {
		propose_commit(d, r);
		return;
	}
	if (r->expected)
		return;
	if (!m->listener) {
		qb_log(LOG_ERR, "VM %s is to migrate here, but this node does not listen for "
		       "migration streams (see the log at start)", r->name);
		return;
	}
	socket_path(d, vm->spec->uuid, sock, sizeof(sock));
	/* The target QEMU creates the socket; a stale one would stop it. */
	if ((rc = make_dir(d->cfg.migration_dir)) < 0 || (unlink(sock) < 0 && errno != ENOENT))
		qb_log(LOG_WARNING, "VM %s: cannot prepare %s: %s", r->name, sock, strerror(errno));
	if ((rc = mig_listener_expect(m->listener, &r->sid, sock)) < 0 && rc != -EEXIST) {
		qb_log(LOG_ERR, "VM %s: cannot expect its migration stream: %s", r->name, strerror(-rc));
		return;
	}
	r->expected = true;
	qb_log(LOG_INFO, "VM %s: expecting migration %" PRIu64 " from %s", r->name,
	       vm->migration->id, node_name(d, vm->migration->source));
}

static void target_resumed(struct node_daemon *d, const struct node_hv_call *call)
{
	struct node_migration *r = answered(d, call);
	const Vireo__Vm *vm;
	int64_t resumed = node_now_wall_ms(), paused;
	char why[300];

	if (!r)
		return;
	if (call->rc < 0 && r->resumed_wall_ms) {
		/* It ran after the first resume: the next pass looks again. */
		qb_log(LOG_WARNING, "VM %s: cannot resume it again after its migration: %s",
		       r->name, call->error);
		node_vms_pass_soon(d, VIREO_MIGRATION_PROGRESS_MS(d->token_ms));
		return;
	}
	if (call->rc < 0) {
		snprintf(why, sizeof(why), "cannot resume the guest: %.250s", call->error);
		propose_end(d, r, false, why, 0, 0);
		return;
	}
	if (r->resumed_wall_ms) {
		/* Asked again from a list that showed it paused: it runs. */
		qb_log(LOG_INFO, "VM %s: runs here after its migration (resumed again)", r->name);
		return;
	}
	vm = cluster_vm_find(cluster_engine_state(d->engine), r->name);
	paused = vm && vm->migration ? vm->migration->paused_ms : 0;
	r->resumed_wall_ms = resumed;
	r->resumed_mono_ms = node_now_mono_ms();
	qb_log(LOG_NOTICE, "VM %s: resumed here after its migration (down %" PRId64 " ms)", r->name,
	       paused ? resumed - paused : -1);
}

/* Committed: this node owns the VM; its guest waits here, paused. */
static void target_resume(struct node_daemon *d, const Vireo__Vm *vm, const struct hv_vm_info *dom)
{
	struct node_migration *r = record(d, vm, false);
	uint64_t now = node_now_mono_ms();
	int64_t paused = vm->migration->paused_ms;
	char why[300];
	int rc;

	if (!r)
		return;
	if (r->expected) {
		mig_listener_forget(d->migrations->listener, &r->sid);
		r->expected = false;
	}
	if (!dom || dom->state == HV_STATE_SHUTOFF || dom->state == HV_STATE_CRASHED) {
		if (!r->missing_since_ms)
			r->missing_since_ms = now;
		if (now - r->missing_since_ms < VIREO_MIGRATION_LANDING_MS(d->token_ms)) {
			node_vms_pass_soon(d, VIREO_MIGRATION_PROGRESS_MS(d->token_ms));
			return;
		}
		snprintf(why, sizeof(why), "the guest's state did not arrive on %s (%s)",
			 d->cfg.node_name, dom ? hv_state_name(dom->state) : "no guest here");
		propose_end(d, r, false, why, 0, 0);
		return;
	}
	if (dom->state == HV_STATE_RUNNING) {
		/* Resumed here: the end waits (at most a moment) for the source's
		 * report of when it paused, so that the downtime is known. */
		if (!r->resumed_wall_ms) {
			/* By an earlier vireod here, which did not live to say so. */
			propose_end(d, r, true, "", 0, 0);
		} else if (paused || now - r->resumed_mono_ms > VIREO_MIGRATION_LANDING_MS(d->token_ms)) {
			propose_end(d, r, true, "", 0, r->resumed_wall_ms);
		} else {
			node_vms_pass_soon(d, VIREO_MIGRATION_PROGRESS_MS(d->token_ms) / 10u);
		}
		return;
	}
	if (r->request_id)
		return;
	if ((rc = node_hv_submit(d, NODE_HV_RESUME, r->name, target_resumed, NULL)) < 0) {
		snprintf(why, sizeof(why), "cannot resume the guest: %s", strerror(-rc));
		propose_end(d, r, false, why, 0, 0);
	}
}

/* ---------------------------------------------------------------- progress */

/* The migration of r as the cluster holds it, NULL once it ended there: a
 * report then would only be refused (libvirt's thread on the source goes
 * on for a moment after the target has ended the migration). */
static const Vireo__VmMigration *still_open(const struct node_daemon *d,
					     const struct node_migration *r)
{
	const Vireo__Vm *vm = cluster_vm_find(cluster_engine_state(d->engine), r->name);

	return vm && vm->state == VIREO__VM_STATE__VM_MIGRATING && vm->migration &&
	       vm->migration->id == r->sid.migration_id ? vm->migration : NULL;
}

static void progress_answered(struct node_daemon *d, const struct node_hv_call *call);

/* Asks libvirt how far the migration got (in a worker); the report goes
 * out with the answer. */
static void report_progress(struct node_daemon *d, struct node_migration *r)
{
	if (r->progress_asked)
		return;
	r->progress_asked = node_hv_submit(d, NODE_HV_MIGRATE_PROGRESS, r->name, progress_answered,
					   (void *)(uintptr_t)r->sid.migration_id) == 0;
}

static void progress_answered(struct node_daemon *d, const struct node_hv_call *call)
{
	struct node_migration *r = call->rc == -ECANCELED || !d->migrations ? NULL :
				   find(d->migrations, call->name);
	const struct hv_migrate_progress *hp = &call->progress;
	const struct mig_counters *k;
	Vireo__Op op = VIREO__OP__INIT;
	Vireo__VmMigrateProgress p = VIREO__VM_MIGRATE_PROGRESS__INIT;
	uint64_t now = node_now_mono_ms(), id;
	const Vireo__VmMigration *mig;

	if (!r || r->sid.migration_id != (uint64_t)(uintptr_t)call->ctx)
		return;
	r->progress_asked = false;
	/* Over or committed while libvirt answered: a report would be refused. */
	if (!r->session || r->hv_done || !cluster_engine_quorate(d->engine) ||
	    !(mig = still_open(d, r)) || mig->phase == VIREO__MIGRATION_PHASE__MIGRATION_COMMITTED)
		return;
	k = mig_session_counters(r->session);
	p.name = r->name;
	p.id = r->sid.migration_id;
	p.bytes_raw = atomic_load(&k->raw_forward);
	p.bytes_sent = atomic_load(&k->wire_forward);
	p.paused_ms = r->paused_wall_ms;
	if (now > r->last_report_ms)
		p.rate_mibps = (uint32_t)((p.bytes_raw - r->last_report_raw) * 1000u /
					  (now - r->last_report_ms) / (1024u * 1024u));
	if (call->rc == 0) {
		p.memory_total = hp->memory_total;
		p.memory_remaining = hp->memory_remaining;
	}
	r->last_report_ms = now;
	r->last_report_raw = p.bytes_raw;
	op.body_case = VIREO__OP__BODY_VM_MIGRATE_PROGRESS;
	op.vm_migrate_progress = &p;
	/* Best effort: a lost report is followed by the next. */
	(void)cluster_engine_propose(d->engine, &op, &id);
}

static void progress_fired(void *data)
{
	struct node_daemon *d = data;
	struct node_migrations *m = d->migrations;
	const Vireo__VmMigration *mig;
	bool any = false;

	m->progress_armed = false;
	node_busy_begin(d, "migration progress");
	for (struct node_migration *r = m->list; r; r = r->next) {
		if (!r->source || !r->session || r->hv_done)
			continue;
		any = true;
		/* After the commit only the pause's moment matters, and the pause
		 * event reports that itself. */
		if (cluster_engine_quorate(d->engine) && (mig = still_open(d, r)) &&
		    mig->phase != VIREO__MIGRATION_PHASE__MIGRATION_COMMITTED)
			report_progress(d, r);
	}
	node_busy_end(d);
	if (any)
		node_migrations_arm_progress(d);
}

void node_migrations_arm_progress(struct node_daemon *d)
{
	struct node_migrations *m = d->migrations;

	if (m->progress_armed)
		return;
	m->progress_armed = qb_loop_timer_add(d->loop, QB_LOOP_MED,
					      VIREO_MIGRATION_PROGRESS_MS(d->token_ms) * NS_PER_MS,
					      d, progress_fired, &m->progress_timer) == 0;
}

/* ---------------------------------------------------------------- wiring */

void node_migration_step(struct node_daemon *d, const Vireo__Vm *vm, const struct hv_vm_info *dom)
{
	const Vireo__VmMigration *mig = vm->migration;
	bool committed = mig->phase == VIREO__MIGRATION_PHASE__MIGRATION_COMMITTED;

	if (!d->migrations)
		return;
	if (mig->source == my_id(d) && !committed)
		source_step(d, vm, dom);
	else if (mig->target == my_id(d) && !committed)
		target_prepare(d, vm, dom);
	else if (mig->target == my_id(d) && vm->owner == my_id(d))
		target_resume(d, vm, dom);
}

void node_migrations_sweep(struct node_daemon *d, const cluster_state *st)
{
	struct node_migrations *m = d->migrations;
	struct node_migration *r, *next;

	if (!m)
		return;
	for (r = m->list; r; r = next) {
		const Vireo__Vm *vm = cluster_vm_find(st, r->name);
		bool live = vm && vm->state == VIREO__VM_STATE__VM_MIGRATING && vm->migration &&
			    vm->migration->id == r->sid.migration_id;

		next = r->next;
		/* The source keeps its record until libvirt's thread is done
		 * with the guest, whatever the state says. */
		if (!live && !(r->source && r->hv_started && !r->hv_done))
			drop(d, r);
	}
	m->first_pass_done = true;
}

bool node_migration_source_busy(const struct node_daemon *d, const char *name)
{
	const struct node_migration *r = d->migrations ? find(d->migrations, name) : NULL;

	return r && r->source && r->hv_started && !r->hv_done;
}

void node_migrations_hv_event(struct node_daemon *d, const struct hv_event *ev)
{
	struct node_migration *r;

	if (!d->migrations || !ev->name || !(r = find(d->migrations, ev->name)))
		return;
	if (!r->source) {
		/* Started for the migration, then paused by its finish (with
		 * VIR_MIGRATE_PAUSED): only that pair means the state is whole. */
		if (ev->type == HV_EVENT_STARTED && ev->reason == HV_REASON_MIGRATED)
			r->incoming = true;
		else if (ev->type == HV_EVENT_PAUSED && ev->reason == HV_REASON_USER && r->incoming)
			r->landed = true;
		else if (ev->type == HV_EVENT_STOPPED || ev->type == HV_EVENT_CRASHED)
			r->incoming = r->landed = false;
		if (r->landed)
			node_vms_pass_soon(d, 0);
		return;
	}
	if (ev->type == HV_EVENT_PAUSED && ev->reason == HV_REASON_MIGRATED && !r->paused_wall_ms) {
		r->paused_wall_ms = node_now_wall_ms();
		/* The target computes the downtime from this: tell it now. */
		if (r->session && cluster_engine_quorate(d->engine) && still_open(d, r))
			report_progress(d, r);
	}
	if (ev->type != HV_EVENT_MIGRATION_DONE)
		return;
	r->hv_done = true;
	r->hv_rc = ev->rc;
	snprintf(r->hv_message, sizeof(r->hv_message), "%s", ev->message ? ev->message : "");
	if (ev->rc < 0) {
		/* The stream is of no use now; end it so its threads go. */
		mig_session_cancel(r->session);
	}
	node_vms_pass_soon(d, 0);
}

void node_migrations_applied(struct node_daemon *d, const Vireo__Op *op, int rc)
{
	struct node_migration *r;

	if (!d->migrations || op->origin != my_id(d))
		return;
	for (r = d->migrations->list; r; r = r->next) {
		if (!r->request_id || r->request_id != op->request_id)
			continue;
		r->request_id = 0;
		if (rc < 0 && rc != -EALREADY)
			/* Source and target may both commit; the second is refused. */
			qb_log(op->body_case == VIREO__OP__BODY_VM_MIGRATE_COMMIT ? LOG_INFO :
			       LOG_WARNING, "VM %s: the cluster refused %s: %s", r->name,
			       cluster_op_name(op), strerror(-rc));
		else if (op->body_case == VIREO__OP__BODY_VM_MIGRATE_COMMIT)
			/* The target owns the guest now; the stream has done its job. */
			mig_session_cancel(r->session);
		node_vms_pass_soon(d, 0);
		return;
	}
}

static void incoming_done(void *ctx, const struct mig_session_id *id, const struct mig_result *res)
{
	struct node_daemon *d = ctx;

	/* Kept for the commit's figures (the listener forgets the session). */
	for (struct node_migration *r = d->migrations ? d->migrations->list : NULL; r; r = r->next) {
		if (!r->source && r->sid.migration_id == id->migration_id &&
		    strcmp(r->sid.vm_uuid, id->vm_uuid) == 0) {
			r->stream = *res;
			r->stream_done = true;
		}
	}
	if (res->rc < 0)
		qb_log(LOG_WARNING, "incoming migration %" PRIu64 " of VM %s failed: %s",
		       id->migration_id, id->vm_uuid, res->message);
	else
		qb_log(LOG_INFO, "incoming migration %" PRIu64 " of VM %s: %" PRIu64 " bytes of "
		       "state received (%" PRIu64 " on the wire)", id->migration_id, id->vm_uuid,
		       res->raw_forward, res->wire_forward);
}

int node_migrations_start(struct node_daemon *d)
{
	struct node_migrations *m = calloc(1, sizeof(*m));
	struct mig_listener_params lp = {
		.loop = d->loop,
		.port = d->cfg.migration_port,
		.handshake_timeout_ms = VIREO_MIGRATION_HANDSHAKE_MS(d->token_ms),
		.stall_timeout_ms = VIREO_MIGRATION_STALL_MS(d->token_ms),
		.qemu_connect_timeout_ms = VIREO_MIGRATION_QEMU_CONNECT_MS(d->token_ms),
		.session_done = incoming_done,
		.ctx = d,
	};
	int rc;

	if (!m)
		return -ENOMEM;
	d->migrations = m;
	/* Neither failure stops vireod: it runs its guests, only cannot move them. */
	if (load_key(d) < 0)
		return 0;
	lp.key = &m->key;
	if ((rc = mig_listener_start(&lp, &m->listener)) < 0)
		qb_log(LOG_ERR, "cannot listen for migration streams on port %u: %s; guests cannot "
		       "migrate to this node", d->cfg.migration_port, strerror(-rc));
	else
		qb_log(LOG_INFO, "listening for migration streams on port %u", d->cfg.migration_port);
	return 0;
}

void node_migrations_stop(struct node_daemon *d)
{
	struct node_migrations *m = d->migrations;

	if (!m)
		return;
	/* A stream cut here makes libvirt fail the migration and resume the
	 * guest on the source; the next vireod finds it there. */
	while (m->list)
		drop(d, m->list);
	if (m->progress_armed)
		qb_loop_timer_del(d->loop, m->progress_timer);
	mig_listener_stop(m->listener);
	free(m);
	d->migrations = NULL;
}
