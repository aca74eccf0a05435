/* Migration in the cluster state (see vm_migrate.h). Pure: no clock, no I/O. */
#include "cluster/vm_migrate.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/vm.h"

const char *cluster_migration_kind_name(Vireo__MigrationKind k)
{
	return k == VIREO__MIGRATION_KIND__MIGRATION_LIVE ? "live" : "quick";
}

const char *cluster_migration_phase_name(Vireo__MigrationPhase p)
{
	switch (p) {
	case VIREO__MIGRATION_PHASE__MIGRATION_PREPARING: return "preparing";
	case VIREO__MIGRATION_PHASE__MIGRATION_STREAMING: return "streaming";
	case VIREO__MIGRATION_PHASE__MIGRATION_COMMITTED: return "committed";
	default: return "unknown";
	}
}

static const char *node_name(const cluster_state *st, uint32_t id)
{
	const Vireo__NodeInfo *n = cluster_state_node(st, id);

	return n && n->name[0] ? n->name : "an unknown node";
}

/* Whether n could run a guest that runs on from now: online, the cluster's
 * pool, the accelerator the guest's state was made with. 0 or -errno + err. */
static int can_host(const cluster_state *st, const Vireo__NodeInfo *from, const Vireo__NodeInfo *n,
		    char *err, size_t errlen)
{
	if (!n->online) {
		snprintf(err, errlen, "node %s is offline", n->name);
		return -EHOSTDOWN;
	}
	if (n->mode != VIREO__NODE_MODE__NODE_ACTIVE) {
		snprintf(err, errlen, "node %s is in %s; it takes no VMs until it is active again "
			 "(vireo node maintenance exit %s)", n->name,
			 n->mode == VIREO__NODE_MODE__NODE_MAINTENANCE ? "maintenance" : "evacuation",
			 n->name);
		return -EMEDIUMTYPE;
	}
	if (!n->pool_ok || strcmp(n->pool_id, st->pool_id) != 0) {
		snprintf(err, errlen, "node %s cannot use the cluster's shared pool%s%s", n->name,
			 n->pool_message[0] ? ": " : "", n->pool_message);
		return -EMEDIUMTYPE;
	}
	if (n->hv_stalled) {
		snprintf(err, errlen, "the hypervisor of node %s does not answer (%s); it takes no "
			 "VMs until it does", n->name, n->hv_message);
		return -EHOSTUNREACH;
	}
	if (!n->accel[0] || strcmp(n->accel, from->accel) != 0) {
		snprintf(err, errlen, "node %s runs guests under %s and %s under %s: a running "
			 "guest cannot move between them", n->name, n->accel[0] ? n->accel : "nothing yet",
			 from->name, from->accel);
		return -EMEDIUMTYPE;
	}
	return 0;
}

static int check_target(const cluster_state *st, const Vireo__Vm *vm, const Vireo__NodeInfo *from,
			const Vireo__NodeInfo *n, char *err, size_t errlen)
{
	uint32_t count;
	uint64_t free_mib;
	int rc;

	if (n->id == vm->owner) {
		snprintf(err, errlen, "VM %s runs on %s already", vm->spec->name, n->name);
		return -EINVAL;
	}
	if ((rc = can_host(st, from, n, err, errlen)) < 0)
		return rc;
	if (!cluster_vm_fits(st, n, vm->spec, &count, &free_mib)) {
		snprintf(err, errlen, "node %s lacks room for VM %s: it needs %llu MiB and %u vCPUs, "
			 "%s has %llu MiB free", n->name, vm->spec->name,
			 (unsigned long long)vm->spec->memory_mib, vm->spec->vcpus, n->name,
			 (unsigned long long)free_mib);
		return -ENOSPC;
	}
	return 0;
}

/* The manager's choice: like placement, the node with the fewest VMs, then
 * the most free memory, then the lowest id, among those that can take it. */
static int choose_target(const cluster_state *st, const Vireo__Vm *vm, const Vireo__NodeInfo *from,
			 uint32_t *chosen, char *err, size_t errlen)
{
	uint32_t best_count = 0;
	uint64_t best_free = 0;
	int last_rc = -EINVAL;

	*chosen = 0;
	snprintf(err, errlen, "VM %s has no other node to go to", vm->spec->name);
	for (size_t i = 0; i < st->n_nodes; i++) {
		const Vireo__NodeInfo *n = st->nodes[i];
		uint32_t count;
		uint64_t free_mib;
		char why[256];
		int rc;

		if (n->id == vm->owner)
			continue;
		if ((rc = check_target(st, vm, from, n, why, sizeof(why))) < 0) {
			/* The most telling refusal: lack of room over the rest. */
			if (last_rc != -ENOSPC) {
				last_rc = rc;
				snprintf(err, errlen, "no node can take VM %s: %s", vm->spec->name, why);
			}
			continue;
		}
		cluster_vm_fits(st, n, vm->spec, &count, &free_mib);
		if (!*chosen || count < best_count || (count == best_count && free_mib > best_free)) {
			*chosen = n->id;
			best_count = count;
			best_free = free_mib;
		}
	}
	return *chosen ? 0 : last_rc;
}

int cluster_vm_migrate_check(const cluster_state *st, const char *name, uint32_t target,
			     uint32_t *chosen, char *err, size_t errlen)
{
	const Vireo__Vm *vm = cluster_vm_find(st, name);
	const Vireo__NodeInfo *from, *n;
	int rc;

	*chosen = 0;
	if (!vm) {
		snprintf(err, errlen, "no VM named %s", name);
		return -ENOENT;
	}
	if (vm->state == VIREO__VM_STATE__VM_MIGRATING) {
		snprintf(err, errlen, "VM %s is migrating already (to %s); vireo vm migrate --cancel "
			 "%s stops that", name, node_name(st, vm->migration ? vm->migration->target : 0),
			 name);
		return -EBUSY;
	}
	if (vm->state != VIREO__VM_STATE__VM_RUNNING || !vm->want_running) {
		snprintf(err, errlen, "VM %s is %s; only a running VM can be migrated", name,
			 cluster_vm_state_name(vm->state));
		return -ESRCH;
	}
	from = cluster_state_node(st, vm->owner);
	if (!from || !from->online) {
		snprintf(err, errlen, "VM %s is on %s, which is offline", name, node_name(st, vm->owner));
		return -EHOSTDOWN;
	}
	if (!target)
		return choose_target(st, vm, from, chosen, err, errlen);
	if (!(n = cluster_state_node(st, target))) {
		snprintf(err, errlen, "node id %u is not in the cluster", target);
		return -EINVAL;
	}
	if ((rc = check_target(st, vm, from, n, err, errlen)) < 0)
		return rc;
	*chosen = target;
	return 0;
}

static Vireo__Vm *find_migrating(const cluster_state *st, const char *name, uint64_t id)
{
	Vireo__Vm *vm = cluster_vm_find(st, name);

	if (!vm || vm->state != VIREO__VM_STATE__VM_MIGRATING || !vm->migration ||
	    (id && vm->migration->id != id))
		return NULL;
	return vm;
}

static int apply_migrate(cluster_state *st, const Vireo__Op *op)
{
	const Vireo__VmMigrate *m = op->vm_migrate;
	Vireo__Vm *vm = cluster_vm_find(st, m->name);
	Vireo__VmMigration *mig;
	uint32_t target;
	char err[256], text[128];
	int rc;

	if (!vm || cluster_vm_migrate_check(st, m->name, m->target, &target, err, sizeof(err)) < 0)
		return -EINVAL;
	if (!(mig = calloc(1, sizeof(*mig))))
		return -ENOMEM;
	vireo__vm_migration__init(mig);
	mig->id = st->version + 1;      /* the version this op makes: unique */
	mig->source = vm->owner;
	mig->target = target;
	mig->kind = m->kind;
	mig->max_downtime_ms = m->max_downtime_ms;
	mig->bandwidth_mibps = m->bandwidth_mibps;
	mig->started_ms = op->time_ms;
	mig->origin = op->origin;
	snprintf(text, sizeof(text), "%s migration to %s", cluster_migration_kind_name(m->kind),
		 node_name(st, target));
	if ((rc = cluster_vm_set_message(vm, text)) < 0) {
		free(mig);
		return rc;
	}
	if (vm->migration)
		protobuf_c_message_free_unpacked(&vm->migration->base, NULL);
	vm->migration = mig;
	cluster_vm_set_state(vm, VIREO__VM_STATE__VM_MIGRATING, op->time_ms);
	return cluster_event_addf(st, op->time_ms, op->origin, "VM %s: %s from %s begins",
				  vm->spec->name, text, node_name(st, mig->source));
}

static int apply_progress(cluster_state *st, const Vireo__Op *op)
{
	const Vireo__VmMigrateProgress *p = op->vm_migrate_progress;
	Vireo__Vm *vm = find_migrating(st, p->name, p->id);
	Vireo__VmMigration *mig;

	if (!vm || !p->id || op->origin != vm->migration->source)
		return -EINVAL;
	mig = vm->migration;
	/* After the commit only the moment of the pause still matters (the
	 * target may have committed before the source's report of it). */
	if (mig->phase == VIREO__MIGRATION_PHASE__MIGRATION_COMMITTED) {
		if (mig->paused_ms || !p->paused_ms)
			return -EALREADY;
		mig->paused_ms = p->paused_ms;
		return 0;
	}
	if (mig->phase == VIREO__MIGRATION_PHASE__MIGRATION_STREAMING &&
	    mig->bytes_raw == p->bytes_raw && mig->bytes_sent == p->bytes_sent &&
	    mig->memory_total == p->memory_total && mig->memory_remaining == p->memory_remaining &&
	    mig->paused_ms == p->paused_ms && mig->rate_mibps == p->rate_mibps)
		return -EALREADY;
	mig->phase = VIREO__MIGRATION_PHASE__MIGRATION_STREAMING;
	mig->bytes_raw = p->bytes_raw;
	mig->bytes_sent = p->bytes_sent;
	mig->memory_total = p->memory_total;
	mig->memory_remaining = p->memory_remaining;
	mig->paused_ms = p->paused_ms;
	mig->rate_mibps = p->rate_mibps;
	return 0;
}

static int apply_cancel(cluster_state *st, const Vireo__Op *op)
{
	const Vireo__VmMigrateCancel *c = op->vm_migrate_cancel;
	Vireo__Vm *vm = find_migrating(st, c->name, c->id);

	if (!vm || vm->migration->phase == VIREO__MIGRATION_PHASE__MIGRATION_COMMITTED)
		return -EINVAL;
	if (vm->migration->cancel)
		return -EALREADY;
	vm->migration->cancel = true;
	return cluster_event_addf(st, op->time_ms, op->origin, "VM %s: migration to %s cancelled",
				  vm->spec->name, node_name(st, vm->migration->target));
}

static int apply_commit(cluster_state *st, const Vireo__Op *op)
{
	const Vireo__VmMigrateCommit *c = op->vm_migrate_commit;
	Vireo__Vm *vm = find_migrating(st, c->name, c->id);
	Vireo__VmMigration *mig;

	/* The source (libvirt's migration returned) or the target (its libvirt
	 * finished the incoming guest) knows the target holds the whole state. */
	if (!vm || !c->id ||
	    (op->origin != vm->migration->source && op->origin != vm->migration->target) ||
	    vm->migration->phase == VIREO__MIGRATION_PHASE__MIGRATION_COMMITTED)
		return -EINVAL;
	mig = vm->migration;
	mig->phase = VIREO__MIGRATION_PHASE__MIGRATION_COMMITTED;
	mig->bytes_raw = c->bytes_raw;
	mig->bytes_sent = c->bytes_sent;
	if (c->paused_ms)
		mig->paused_ms = c->paused_ms;
	mig->transfer_ms = c->transfer_ms;
	mig->committed_ms = op->time_ms;
	vm->owner = mig->target;
	vm->generation++;
	vm->restarts = 0;
	return 0;
}

static uint64_t span(int64_t from, int64_t to)
{
	return from && to > from ? (uint64_t)(to - from) : 0;
}

int cluster_vm_migration_record(Vireo__Vm *vm, bool ok, const char *message, uint64_t downtime_ms,
				int64_t resumed_ms, int64_t time_ms)
{
	const Vireo__VmMigration *mig = vm->migration;
	Vireo__MigrationResult *r = calloc(1, sizeof(*r));
	int64_t ended = ok && resumed_ms ? resumed_ms : time_ms;

	if (!r)
		return -ENOMEM;
	vireo__migration_result__init(r);
	if (!(r->message = strdup(message))) {
		free(r);
		return -ENOMEM;
	}
	r->id = mig->id;
	r->ok = ok;
	r->source = mig->source;
	r->target = mig->target;
	r->kind = mig->kind;
	r->downtime_ms = downtime_ms ? downtime_ms : ok ? span(mig->paused_ms, resumed_ms) : 0;
	r->total_ms = span(mig->started_ms, ended);
	r->bytes_raw = mig->bytes_raw;
	r->bytes_sent = mig->bytes_sent;
	r->ended_ms = ended;
	r->transfer_ms = mig->transfer_ms;
	if (mig->phase == VIREO__MIGRATION_PHASE__MIGRATION_COMMITTED) {
		uint64_t paused_to_commit = span(mig->paused_ms, mig->committed_ms);

		r->setup_ms = span(mig->started_ms, mig->paused_ms);
		r->finish_ms = paused_to_commit > mig->transfer_ms ? paused_to_commit - mig->transfer_ms : 0;
		r->handover_ms = span(mig->committed_ms, ended);
	}
	if (vm->last_migration)
		protobuf_c_message_free_unpacked(&vm->last_migration->base, NULL);
	vm->last_migration = r;
	return 0;
}

static int apply_end(cluster_state *st, const Vireo__Op *op)
{
	const Vireo__VmMigrateEnd *e = op->vm_migrate_end;
	Vireo__Vm *vm = find_migrating(st, e->name, e->id);
	Vireo__VmMigration *mig;
	bool committed;
	Vireo__VmState next;
	char text[CLUSTER_TEXT_MAX];
	int rc;

	if (!vm || !e->id || strlen(e->message) > CLUSTER_TEXT_MAX)
		return -EINVAL;
	mig = vm->migration;
	committed = mig->phase == VIREO__MIGRATION_PHASE__MIGRATION_COMMITTED;
	/* Before the commit the source speaks (and cannot claim success);
	 * after it the target, which now owns the VM. */
	if (op->origin != (committed ? mig->target : mig->source) || (e->ok && !committed))
		return -EINVAL;
	if (e->ok)
		snprintf(text, sizeof(text), "%s", vm->want_running ? "" : "stopping after its migration");
	else if (committed)
		snprintf(text, sizeof(text), "migrated to %s but did not resume there (%s); it "
			 "starts there again from its disks", node_name(st, mig->target), e->message);
	else
		snprintf(text, sizeof(text), "migration to %s failed, it runs on %s: %s",
			 node_name(st, mig->target), node_name(st, mig->source), e->message);
	if ((rc = cluster_vm_migration_record(vm, e->ok, e->message, e->downtime_ms, e->resumed_ms,
					      op->time_ms)) < 0 ||
	    (rc = cluster_vm_set_message(vm, text)) < 0)
		return rc;
	/* Committed but not resumed: the guest's memory is lost (its QEMU
	 * died on either side after libvirt's hand-over, or the source's
	 * vireod restarted, found the guest gone and committed a migration
	 * whose guest had been killed). The target owns the VM now and
	 * treats it like a guest it was told to start: it adopts the guest
	 * if it runs after all, resumes it if paused, boots it afresh if not.
	 * The source never runs it again. */
	if (committed && !e->ok && vm->want_running)
		next = VIREO__VM_STATE__VM_STARTING;
	else
		next = vm->want_running ? VIREO__VM_STATE__VM_RUNNING : VIREO__VM_STATE__VM_STOPPING;
	cluster_vm_set_state(vm, next, op->time_ms);
	if (e->ok)
		rc = cluster_event_addf(st, op->time_ms, op->origin, "VM %s: migrated from %s to %s "
					"(%s, downtime %llu ms, total %llu ms)", vm->spec->name,
					node_name(st, mig->source), node_name(st, mig->target),
					cluster_migration_kind_name(mig->kind),
					(unsigned long long)vm->last_migration->downtime_ms,
					(unsigned long long)vm->last_migration->total_ms);
	else
		rc = cluster_event_addf(st, op->time_ms, op->origin, "VM %s: %s", vm->spec->name, text);
	protobuf_c_message_free_unpacked(&mig->base, NULL);
	vm->migration = NULL;
	return rc;
}

int cluster_vm_migrate_apply(cluster_state *st, const Vireo__Op *op)
{
	switch (op->body_case) {
	case VIREO__OP__BODY_VM_MIGRATE: return apply_migrate(st, op);
	case VIREO__OP__BODY_VM_MIGRATE_PROGRESS: return apply_progress(st, op);
	case VIREO__OP__BODY_VM_MIGRATE_CANCEL: return apply_cancel(st, op);
	case VIREO__OP__BODY_VM_MIGRATE_COMMIT: return apply_commit(st, op);
	case VIREO__OP__BODY_VM_MIGRATE_END: return apply_end(st, op);
	default: return -EINVAL;
	}
}
