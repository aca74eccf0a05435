/* The guests that really run (the sim's truth, which the cluster state
 * only believes) and each host's local resource manager, which turns the
 * state into guests and reports, like node/vm_local.c and
 * node/vm_migrate.c. Invariant 1 is checked here, at every change. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/timeouts.h"
#include "cluster/vm.h"
#include "tests/sim/sim_world.h"

/* ---------------------------------------------------------------- guests */

struct guest *world_guest_on(struct sim_world *w, int vm, uint32_t node)
{
	for (size_t i = 0; i < MAX_GUESTS; i++)
		if (w->guests[i].used && w->guests[i].vm == vm && w->guests[i].node == node)
			return &w->guests[i];
	return NULL;
}

bool world_holds_leases(const struct guest *g)
{
	return g->used && !g->revoked && g->kind != GUEST_INCOMING;
}

/* Invariant 1: no VM runs (or holds its disk writable) on two hosts. */
static void check_invariant(struct sim_world *w, int vm)
{
	char where[128] = "";
	int n = 0;

	for (size_t i = 0; i < MAX_GUESTS; i++) {
		const struct guest *g = &w->guests[i];
		if (g->vm != vm || !world_holds_leases(g))
			continue;
		n++;
		snprintf(where + strlen(where), sizeof(where) - strlen(where), "%s%s",
			 n > 1 ? " and " : "", w->hosts[g->node].name);
	}
	if (n > 1)
		world_broken(w, "INVARIANT VIOLATED: %s runs on %s", world_vm_name(w, vm), where);
}

struct guest *world_guest_add(struct sim_world *w, int vm, uint32_t node, enum guest_kind kind)
{
	for (size_t i = 0; i < MAX_GUESTS; i++) {
		struct guest *g = &w->guests[i];
		if (g->used)
			continue;
		*g = (struct guest){ .used = true, .vm = vm, .node = node, .kind = kind };
		check_invariant(w, vm);
		return g;
	}
	world_broken(w, "SIM ERROR: more than %d guests", MAX_GUESTS);
	w->c->stop = true;
	return NULL;
}

/* Kills h's guests (HA ones only when ha_only) and lists them in out. */
size_t world_kill_guests(struct sim_world *w, struct host *h, bool ha_only, char *out, size_t len)
{
	size_t n = 0;

	out[0] = '\0';
	for (int vm = 0; vm < (int)w->sc->n_vms; vm++) {
		struct guest *g = world_guest_on(w, vm, h->id);
		if (!g || (ha_only && !w->sc->vms[vm].ha))
			continue;
		snprintf(out + strlen(out), len - strlen(out), " %s", world_vm_name(w, vm));
		g->used = false;
		n++;
	}
	return n;
}

int sim_world_leases_free(const struct sim_world *w, const Vireo__Vm *vm)
{
	int idx = world_vm_index(w, vm->spec->name);

	if (idx < 0)
		return 1;
	if (w->lease[idx] != SIM_LEASE_AUTO)
		return w->lease[idx] == SIM_LEASE_FREE;
	for (size_t i = 0; i < MAX_GUESTS; i++)
		if (w->guests[i].vm == idx && world_holds_leases(&w->guests[i]))
			return 0;
	return 1;
}

/* ---------------------------------------------------------------- reports */

bool world_apply(struct sim_world *w, Vireo__Op *op, uint32_t origin)
{
	return sim_apply(w->c, op, origin) == 0;
}

/* What vm_local.c's report() sends: only a change. */
static bool report(struct sim_world *w, struct host *h, const Vireo__Vm *vm, Vireo__VmState s,
		   const char *message, uint32_t restarts)
{
	Vireo__Op op = VIREO__OP__INIT;
	Vireo__VmReport r = VIREO__VM_REPORT__INIT;

	if (vm->state == s && vm->restarts == restarts && strcmp(vm->message, message) == 0)
		return false;
	r.name = vm->spec->name;
	r.generation = vm->generation;
	r.state = s;
	r.message = (char *)message;
	r.restarts = restarts;
	op.body_case = VIREO__OP__BODY_VM_REPORT;
	op.vm_report = &r;
	world_apply(w, &op, h->id);
	return true;
}

static void migrate_end(struct sim_world *w, struct host *h, const Vireo__Vm *vm, bool ok,
			const char *message)
{
	Vireo__Op op = VIREO__OP__INIT;
	Vireo__VmMigrateEnd e = VIREO__VM_MIGRATE_END__INIT;

	e.name = vm->spec->name;
	e.id = vm->migration->id;
	e.ok = ok;
	e.message = (char *)message;
	e.downtime_ms = ok ? w->sc->resume_ms : 0;
	e.resumed_ms = ok ? world_now(w) : 0;
	op.body_case = VIREO__OP__BODY_VM_MIGRATE_END;
	op.vm_migrate_end = &e;
	world_apply(w, &op, h->id);
}

/* ---------------------------------------------------------------- host passes */

static bool committed(const Vireo__Vm *vm)
{
	return vm->migration && vm->migration->phase == VIREO__MIGRATION_PHASE__MIGRATION_COMMITTED;
}

/* Whether guest g on h is one the state wants there. */
static bool belongs(const Vireo__Vm *vm, const struct host *h, const struct guest *g)
{
	if (!vm)
		return false;
	if (vm->state == VIREO__VM_STATE__VM_MIGRATING && vm->migration) {
		const Vireo__VmMigration *m = vm->migration;
		if (!committed(vm))
			return (m->source == h->id && g->kind == GUEST_RUNNING) ||
			       (m->target == h->id && g->kind == GUEST_INCOMING && g->migration == m->id);
		return m->target == h->id && vm->owner == h->id && g->kind != GUEST_INCOMING;
	}
	if (vm->owner != h->id || g->kind == GUEST_INCOMING)
		return false;
	/* Fencing: the manager gives it back to this member at once. */
	return vm->state == VIREO__VM_STATE__VM_STARTING || vm->state == VIREO__VM_STATE__VM_RUNNING ||
	       vm->state == VIREO__VM_STATE__VM_STOPPING || vm->state == VIREO__VM_STATE__VM_FENCING;
}

/* Guests this host must not run: their lease was broken while it was
 * frozen, or the cluster has the VM elsewhere (or stopped). The sim's host
 * destroys them at once; vm_local.c only logs guests of other owners. */
static bool sweep_guests(struct sim_world *w, struct host *h)
{
	bool changed = false;

	for (int idx = 0; idx < (int)w->sc->n_vms; idx++) {
		struct guest *g = world_guest_on(w, idx, h->id);
		const Vireo__Vm *vm = world_state_vm(w, idx);

		if (!g)
			continue;
		if (g->revoked)
			world_fact(w, h, "destroys %s: it lost its disk lease while this host was frozen",
			     world_vm_name(w, idx));
		else if (belongs(vm, h, g))
			continue;
		else if (g->kind == GUEST_INCOMING)
			world_fact(w, h, "discards the incoming guest of %s: its migration is over",
			     world_vm_name(w, idx));
		else if (vm && vm->owner == h->id && !vm->want_running)
			world_fact(w, h, "stops %s: it is %s in the cluster", world_vm_name(w, idx),
			     cluster_vm_state_name(vm->state));
		else
			world_fact(w, h, "destroys leftover guest %s: the cluster has it %s on %s",
			     world_vm_name(w, idx), vm ? cluster_vm_state_name(vm->state) : "deleted",
			     vm ? sim_node_name(w->c->st, vm->owner) : "none");
		g->used = false;
		changed = true;
	}
	return changed;
}

/* node/vm_migrate.c's part for one migrating VM. */
static bool pass_migration(struct sim_world *w, struct host *h, int idx, const Vireo__Vm *vm)
{
	const Vireo__VmMigration *m = vm->migration;
	const Vireo__NodeInfo *target = cluster_state_node(w->c->st, m->target);
	char why[128];

	if (!committed(vm) && m->source == h->id) {
		if (!target || !target->online) {
			snprintf(why, sizeof(why), "the target %s left the cluster",
				 sim_node_name(w->c->st, m->target));
			migrate_end(w, h, vm, false, why);
			return true;
		}
		if (m->cancel) {
			migrate_end(w, h, vm, false, "cancelled by the user");
			return true;
		}
		if (!world_busy(w, ITEM_COMMIT, h->id, idx) && w->stalled[idx] != m->id)
			world_schedule(w, world_now(w) + w->sc->migrate_ms, ITEM_COMMIT, h->id, idx, m->id, 0);
	} else if (!committed(vm) && m->target == h->id) {
		struct guest *g = world_guest_on(w, idx, h->id);

		if (!g)
			g = world_guest_add(w, idx, h->id, GUEST_INCOMING);
		if (g && g->kind == GUEST_INCOMING)
			g->migration = m->id;
	} else if (committed(vm) && m->target == h->id && vm->owner == h->id) {
		if (!world_busy(w, ITEM_RESUME, h->id, idx))
			world_schedule(w, world_now(w) + w->sc->resume_ms, ITEM_RESUME, h->id, idx, m->id, 0);
	}
	return false;
}

/* node/vm_local.c's reconcile_owned() for a VM this host owns. */
static bool pass_owned(struct sim_world *w, struct host *h, int idx, const Vireo__Vm *vm)
{
	struct guest *g = world_guest_on(w, idx, h->id);
	bool up = g && world_holds_leases(g);

	switch (vm->state) {
	case VIREO__VM_STATE__VM_STARTING:
		if (up)
			return report(w, h, vm, VIREO__VM_STATE__VM_RUNNING, "", vm->restarts);
		if (!world_busy(w, ITEM_START, h->id, idx))
			world_schedule(w, world_now(w) + w->sc->start_ms, ITEM_START, h->id, idx, vm->generation, 0);
		return false;
	case VIREO__VM_STATE__VM_RUNNING:
		if (!up && vm->want_running && !world_busy(w, ITEM_REVIVE, h->id, idx))
			world_schedule(w, world_now(w) + w->sc->start_ms, ITEM_REVIVE, h->id, idx, vm->generation, 0);
		return false;
	case VIREO__VM_STATE__VM_STOPPING:
		if (!up)
			return report(w, h, vm, VIREO__VM_STATE__VM_STOPPED, "", vm->restarts);
		if (!world_busy(w, ITEM_STOP, h->id, idx))
			world_schedule(w, world_now(w) + w->sc->stop_ms, ITEM_STOP, h->id, idx, vm->generation, 0);
		return false;
	default:
		return false;
	}
}

static bool host_pass(struct sim_world *w, struct host *h)
{
	bool changed = sweep_guests(w, h);

	for (int idx = 0; idx < (int)w->sc->n_vms && !w->c->stop; idx++) {
		const Vireo__Vm *vm = world_state_vm(w, idx);

		if (!vm)
			continue;
		if (vm->state == VIREO__VM_STATE__VM_MIGRATING && vm->migration)
			changed |= pass_migration(w, h, idx, vm);
		else if (vm->owner == h->id)
			changed |= pass_owned(w, h, idx, vm);
	}
	return changed;
}

bool sim_world_pass(struct sim_world *w)
{
	bool changed = false;

	for (size_t i = 1; i <= w->n && !w->c->stop; i++)
		if (world_acting(w, &w->hosts[i]))
			changed |= host_pass(w, &w->hosts[i]);
	return changed;
}

/* ---------------------------------------------------------------- timers */

static void fire_start(struct sim_world *w, struct host *h, const struct item *it, bool revive)
{
	const Vireo__Vm *vm = world_state_vm(w, it->vm);
	char msg[96];

	if (!world_acting(w, h) || !vm || vm->owner != h->id || vm->generation != it->tag ||
	    vm->state != (revive ? VIREO__VM_STATE__VM_RUNNING : VIREO__VM_STATE__VM_STARTING) ||
	    (revive && !vm->want_running) || world_guest_on(w, it->vm, h->id))
		return;
	if (!world_guest_add(w, it->vm, h->id, GUEST_RUNNING))
		return;
	if (!revive) {
		report(w, h, vm, VIREO__VM_STATE__VM_RUNNING, "", vm->restarts);
		return;
	}
	snprintf(msg, sizeof(msg), "restarted %u time(s): it stopped", vm->restarts + 1);
	report(w, h, vm, VIREO__VM_STATE__VM_RUNNING, msg, vm->restarts + 1);
}

static void fire_stop(struct sim_world *w, struct host *h, const struct item *it)
{
	const Vireo__Vm *vm = world_state_vm(w, it->vm);
	struct guest *g = world_guest_on(w, it->vm, h->id);

	if (!world_acting(w, h) || !vm || vm->owner != h->id || vm->generation != it->tag ||
	    vm->state != VIREO__VM_STATE__VM_STOPPING)
		return;
	if (g)
		g->used = false;
	report(w, h, vm, VIREO__VM_STATE__VM_STOPPED, "", vm->restarts);
}

/* The source's hypervisor is done: the target holds the whole state. */
static void fire_commit(struct sim_world *w, struct host *h, const struct item *it)
{
	const Vireo__Vm *vm = world_state_vm(w, it->vm);
	Vireo__Op op = VIREO__OP__INIT;
	Vireo__VmMigrateCommit cm = VIREO__VM_MIGRATE_COMMIT__INIT;
	struct host *t;
	struct guest *src, *dst;

	if (!world_acting(w, h) || !vm || vm->state != VIREO__VM_STATE__VM_MIGRATING || !vm->migration ||
	    vm->migration->id != it->tag || committed(vm) || vm->migration->source != h->id)
		return;
	t = &w->hosts[vm->migration->target];
	if (w->fail_migration[it->vm]) {
		w->fail_migration[it->vm]--;
		migrate_end(w, h, vm, false, "the hypervisor's migration failed (the scenario says so)");
		return;
	}
	/* The stream needs the target's host and vireod, across no cut. */
	if (!world_alive(t) || t->vireod != VIREOD_UP || t->phys_group != h->phys_group) {
		world_fact(w, h, "the migration stream of %s to %s stalls", world_vm_name(w, it->vm), t->name);
		w->stalled[it->vm] = it->tag;
		return;
	}
	if ((src = world_guest_on(w, it->vm, h->id)))
		src->used = false;
	if ((dst = world_guest_on(w, it->vm, t->id))) {
		dst->kind = GUEST_PAUSED;
		check_invariant(w, it->vm);
	} else if (!world_guest_add(w, it->vm, t->id, GUEST_PAUSED)) {
		return;
	}
	cm.name = vm->spec->name;
	cm.id = vm->migration->id;
	cm.bytes_raw = vm->spec->memory_mib << 20;
	cm.bytes_sent = cm.bytes_raw / 4;
	cm.paused_ms = world_now(w);
	cm.transfer_ms = w->sc->migrate_ms;
	op.body_case = VIREO__OP__BODY_VM_MIGRATE_COMMIT;
	op.vm_migrate_commit = &cm;
	world_apply(w, &op, h->id);
}

static void fire_resume(struct sim_world *w, struct host *h, const struct item *it)
{
	const Vireo__Vm *vm = world_state_vm(w, it->vm);
	struct guest *g = world_guest_on(w, it->vm, h->id);
	char why[128];

	if (!world_acting(w, h) || !vm || vm->state != VIREO__VM_STATE__VM_MIGRATING || !vm->migration ||
	    vm->migration->id != it->tag || !committed(vm) || vm->owner != h->id)
		return;
	if (!g || !world_holds_leases(g)) {
		snprintf(why, sizeof(why), "the guest's state did not arrive on %s", h->name);
		migrate_end(w, h, vm, false, why);
		return;
	}
	g->kind = GUEST_RUNNING;
	migrate_end(w, h, vm, true, "");
}

/* The HA guests of a host that may not run them any more. */
void world_fence_host(struct sim_world *w, struct host *h, const char *who, const char *why)
{
	char list[256];

	if (world_kill_guests(w, h, true, list, sizeof(list)))
		world_fact(w, h, "%s %s; kills:%s", who, why, list);
}

/* Ring changes due at one instant reach everyone together (one
 * configuration change), so quorum is computed once for all of them. */
void world_host_timer(struct sim_world *w, const struct item *it)
{
	struct host *h = &w->hosts[it->node];

	switch (it->kind) {
	case ITEM_START:
	case ITEM_REVIVE:
		fire_start(w, h, it, it->kind == ITEM_REVIVE);
		break;
	case ITEM_STOP:
		fire_stop(w, h, it);
		break;
	case ITEM_COMMIT:
		fire_commit(w, h, it);
		break;
	case ITEM_RESUME:
		fire_resume(w, h, it);
		break;
	default:
		break;
	}
}

void sim_world_summary(const struct sim_world *w)
{
	for (int vm = 0; vm < (int)w->sc->n_vms; vm++)
		for (size_t i = 0; i < MAX_GUESTS; i++) {
			const struct guest *g = &w->guests[i];
			if (!g->used || g->vm != vm)
				continue;
			fprintf(w->c->log.out, "guest %s on %s%s%s%s\n", world_vm_name(w, vm),
				w->hosts[g->node].name,
				g->kind == GUEST_PAUSED ? " (paused, migrated in)" :
				g->kind == GUEST_INCOMING ? " (incoming)" : "",
				w->hosts[g->node].frozen ? " (frozen)" : "",
				g->revoked ? " (lease broken)" : "");
		}
}
