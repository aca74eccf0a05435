/* The manager's decisions (manager.h): pure, one operation per call. */
#include "cluster/manager.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/timeouts.h"
#include "cluster/vm.h"
#include "cluster/vm_migrate.h"

static bool is_member(const struct cluster_manager_view *v, uint32_t id)
{
	for (size_t i = 0; i < v->n_members; i++)
		if (v->members[i] == id)
			return true;
	return false;
}

static void set_name(struct cluster_manager_op *out, const char *name)
{
	snprintf(out->name, sizeof(out->name), "%s", name);
}

size_t cluster_manager_eligible(const struct cluster_manager_view *v, uint32_t *out, size_t max)
{
	const cluster_state *st = v->st;
	size_t n = 0;

	for (size_t i = 0; i < v->n_members && n < max; i++) {
		const Vireo__NodeInfo *ni = cluster_state_node(st, v->members[i]);
		/* The pool must be the cluster's: a node that checked before it
		 * knew the cluster's pool id may have another one mounted. */
		if (ni && ni->online && ni->pool_ok && ni->accel[0] && !ni->hv_stalled &&
		    strcmp(ni->pool_id, st->pool_id) == 0 && ni->mode == VIREO__NODE_MODE__NODE_ACTIVE)
			out[n++] = ni->id;
	}
	return n;
}

/* 1. What the state says about who is online follows the membership. */
static int record_membership(const struct cluster_manager_view *v, struct cluster_manager_op *out)
{
	for (size_t i = 0; i < v->st->n_nodes; i++) {
		const Vireo__NodeInfo *n = v->st->nodes[i];
		bool online = is_member(v, n->id);

		if (n->online == online)
			continue;
		vireo__node_membership__init(&out->body.membership);
		out->body.membership.id = n->id;
		out->body.membership.online = online;
		out->op.body_case = VIREO__OP__BODY_NODE_MEMBERSHIP;
		out->op.node_membership = &out->body.membership;
		return 1;
	}
	return 0;
}

static bool owner_lost(const struct cluster_manager_view *v, const Vireo__Vm *vm)
{
	const Vireo__NodeInfo *n = cluster_state_node(v->st, vm->owner);

	return n && !n->online && !is_member(v, vm->owner);
}

static int fence_op(const Vireo__Vm *vm, bool lost, struct cluster_manager_op *out)
{
	set_name(out, vm->spec->name);
	vireo__vm_fence__init(&out->body.fence);
	out->body.fence.name = out->name;
	out->body.fence.generation = vm->generation;
	out->body.fence.lost = lost;
	out->op.body_case = VIREO__OP__BODY_VM_FENCE;
	out->op.vm_fence = &out->body.fence;
	return 1;
}

/* 2. A VM whose owner is gone may still run there until the owner is
 * proven stopped: nobody else may start it meanwhile. */
static int fence_vms(const struct cluster_manager_view *v, struct cluster_manager_op *out)
{
	for (size_t i = 0; i < v->st->n_vms; i++) {
		const Vireo__Vm *vm = v->st->vms[i];
		const Vireo__NodeInfo *n = cluster_state_node(v->st, vm->owner);

		if (vm->state == VIREO__VM_STATE__VM_FENCING) {
			if (n && n->online && is_member(v, vm->owner))
				return fence_op(vm, false, out);
			continue;
		}
		if (vm->state == VIREO__VM_STATE__VM_RECOVERING || !cluster_vm_state_active(vm->state))
			continue;
		/* A migration whose target left is the source's to roll back;
		 * one whose owner (the source before the commit, the target
		 * after it) left is fenced like any VM of a lost node. */
		if (owner_lost(v, vm))
			return fence_op(vm, true, out);
	}
	return 0;
}

static uint64_t fence_wait_ms(const struct cluster_manager_view *v, uint32_t node)
{
	const Vireo__NodeInfo *n = cluster_state_node(v->st, node);

	return VIREO_FENCE_DELAY_MS(v->token_ms) + (n ? n->leave_grace_ms : 0);
}

/* 3. Fence confirmed: the lost node's self-fence deadline (plus the grace
 * of a clean stop) has passed on our clock, and the disk leases say no
 * process anywhere holds the VM's disks (a frozen host still would). */
static int confirm_fences(const struct cluster_manager_view *v, struct cluster_manager_op *out)
{
	for (size_t i = 0; i < v->st->n_vms; i++) {
		const Vireo__Vm *vm = v->st->vms[i];
		uint64_t absent;

		if (vm->state != VIREO__VM_STATE__VM_FENCING || !owner_lost(v, vm))
			continue;
		absent = v->env->absent_ms(v->env->ctx, vm->owner);
		if (absent < fence_wait_ms(v, vm->owner) || v->env->leases_free(v->env->ctx, vm) != 1)
			continue;
		set_name(out, vm->spec->name);
		vireo__vm_fenced__init(&out->body.fenced);
		out->body.fenced.name = out->name;
		out->body.fenced.generation = vm->generation;
		out->body.fenced.waited_ms = absent;
		out->body.fenced.window_ms = VIREO_RELOCATION_WINDOW_MS(v->token_ms);
		out->op.body_case = VIREO__OP__BODY_VM_FENCED;
		out->op.vm_fenced = &out->body.fenced;
		return 1;
	}
	return 0;
}

static bool draining(const Vireo__NodeInfo *n)
{
	return n->mode == VIREO__NODE_MODE__NODE_MAINTENANCE || n->mode == VIREO__NODE_MODE__NODE_EVACUATE;
}

/* This drain already tried both kinds for vm and both failed. */
static bool given_up(const Vireo__Vm *vm, const Vireo__NodeInfo *n)
{
	const Vireo__MigrationResult *r = vm->last_migration;

	return r && !r->ok && r->source == n->id && r->ended_ms >= n->mode_since_ms &&
	       r->kind == VIREO__MIGRATION_KIND__MIGRATION_QUICK;
}

static bool live_failed(const Vireo__Vm *vm, const Vireo__NodeInfo *n)
{
	const Vireo__MigrationResult *r = vm->last_migration;

	return r && !r->ok && r->source == n->id && r->ended_ms >= n->mode_since_ms &&
	       r->kind == VIREO__MIGRATION_KIND__MIGRATION_LIVE;
}

/* Where a VM draining off n can go: the placement rules, among the
 * eligible nodes with n's accelerator (a running guest keeps it). */
static uint32_t drain_target(const struct cluster_manager_view *v, const Vireo__NodeInfo *n,
			     const Vireo__Vm *vm)
{
	uint32_t eligible[CLUSTER_MAX_NODES_MANAGED], same[CLUSTER_MAX_NODES_MANAGED];
	size_t ne = cluster_manager_eligible(v, eligible, CLUSTER_MAX_NODES_MANAGED), ns = 0;
	uint32_t target;
	char err[CLUSTER_TEXT_MAX];

	for (size_t i = 0; i < ne; i++) {
		const Vireo__NodeInfo *t = cluster_state_node(v->st, eligible[i]);
		if (t->id != n->id && strcmp(t->accel, n->accel) == 0)
			same[ns++] = t->id;
	}
	target = cluster_vm_choose_node(v->st, same, ns, vm);
	/* The same checks apply() makes: a refused duty would be proposed
	 * again and again. */
	if (target && cluster_vm_migrate_check(v->st, vm->spec->name, target, &target, err,
					       sizeof(err)) < 0)
		return 0;
	return target;
}

/* The running VMs of n that still have to leave, highest priority first
 * (by name among equals); *movable those of them with a target now. */
static const Vireo__Vm *next_to_drain(const struct cluster_manager_view *v, const Vireo__NodeInfo *n,
				      uint32_t *target, size_t *left)
{
	const Vireo__Vm *best = NULL;

	*target = 0;
	*left = 0;
	for (size_t i = 0; i < v->st->n_vms; i++) {
		const Vireo__Vm *vm = v->st->vms[i];
		uint32_t t;

		if (vm->owner != n->id || vm->state != VIREO__VM_STATE__VM_RUNNING)
			continue;
		(*left)++;
		if (given_up(vm, n) || (best && best->spec->priority >= vm->spec->priority))
			continue;
		if ((t = drain_target(v, n, vm))) {
			best = vm;
			*target = t;
		}
	}
	return best;
}

int cluster_manager_drain_blocker(const cluster_state *st, uint32_t node, const Vireo__Vm *vm,
				  char *why, size_t whylen)
{
	uint32_t online[CLUSTER_MAX_NODES_MANAGED];
	size_t n = 0;
	const Vireo__NodeInfo *ni = cluster_state_node(st, node);
	struct cluster_manager_env env = { 0 };
	struct cluster_manager_view v = { .st = st, .members = online, .env = &env };

	for (size_t i = 0; i < st->n_nodes && n < CLUSTER_MAX_NODES_MANAGED; i++)
		if (st->nodes[i]->online)
			online[n++] = st->nodes[i]->id;
	v.n_members = n;
	if (!ni || vm->owner != node)
		return 0;
	if (given_up(vm, ni)) {
		snprintf(why, whylen, "both live and quick migration failed: %s",
			 vm->last_migration->message);
		return 1;
	}
	if (vm->state != VIREO__VM_STATE__VM_RUNNING || drain_target(&v, ni, vm))
		return 0;
	cluster_vm_why_waiting(st, vm, why, whylen);
	return 1;
}

static bool migrating_from(const cluster_state *st, uint32_t node)
{
	for (size_t i = 0; i < st->n_vms; i++) {
		const Vireo__Vm *vm = st->vms[i];
		if (vm->state == VIREO__VM_STATE__VM_MIGRATING && vm->migration &&
		    vm->migration->source == node)
			return true;
	}
	return false;
}

/* Starting or stopping guests settle first: they are not moved mid-way. */
static bool settling_on(const cluster_state *st, uint32_t node)
{
	for (size_t i = 0; i < st->n_vms; i++) {
		const Vireo__Vm *vm = st->vms[i];
		if (vm->owner == node && (vm->state == VIREO__VM_STATE__VM_STARTING ||
					  vm->state == VIREO__VM_STATE__VM_STOPPING))
			return true;
	}
	return false;
}

/* 4 and 6. Nodes in maintenance or evacuation: move one VM at a time per
 * node (live first, quick when live failed); an evacuation with nothing
 * left that can move ends. */
static int drain_nodes(const struct cluster_manager_view *v, struct cluster_manager_op *out,
		       bool finish_only)
{
	for (size_t i = 0; i < v->st->n_nodes; i++) {
		const Vireo__NodeInfo *n = v->st->nodes[i];
		const Vireo__Vm *vm;
		uint32_t target;
		size_t left;

		if (!draining(n) || !is_member(v, n->id) || migrating_from(v->st, n->id) ||
		    settling_on(v->st, n->id))
			continue;
		vm = next_to_drain(v, n, &target, &left);
		if (finish_only) {
			if (vm || n->mode != VIREO__NODE_MODE__NODE_EVACUATE)
				continue;
			vireo__node_mode_change__init(&out->body.mode);
			out->body.mode.node = n->id;
			out->body.mode.mode = VIREO__NODE_MODE__NODE_ACTIVE;
			if (left)
				snprintf(out->text, sizeof(out->text), "evacuation ended; %zu VM(s) could "
					 "not move (see vireo vm list)", left);
			else
				snprintf(out->text, sizeof(out->text), "evacuated");
			out->body.mode.reason = out->text;
			out->op.body_case = VIREO__OP__BODY_NODE_MODE;
			out->op.node_mode = &out->body.mode;
			return 1;
		}
		if (!vm)
			continue;
		set_name(out, vm->spec->name);
		vireo__vm_migrate__init(&out->body.migrate);
		out->body.migrate.name = out->name;
		out->body.migrate.target = target;
		out->body.migrate.kind = live_failed(vm, n) ? VIREO__MIGRATION_KIND__MIGRATION_QUICK :
				         VIREO__MIGRATION_KIND__MIGRATION_LIVE;
		out->op.body_case = VIREO__OP__BODY_VM_MIGRATE;
		out->op.vm_migrate = &out->body.migrate;
		return 1;
	}
	return 0;
}

/* 5. Placement: the highest-priority VM that should run and has no node
 * gets one, or the reason it waits. */
static int place(const struct cluster_manager_view *v, struct cluster_manager_op *out)
{
	uint32_t eligible[CLUSTER_MAX_NODES_MANAGED];
	size_t n = cluster_manager_eligible(v, eligible, CLUSTER_MAX_NODES_MANAGED);
	const Vireo__Vm *vm = NULL;
	uint32_t node = 0;
	int rc;

	rc = cluster_vm_place_next(v->st, eligible, n, &vm, &node, out->text, sizeof(out->text));
	if (rc != 1)
		return rc;
	set_name(out, vm->spec->name);
	if (node) {
		vireo__vm_assign__init(&out->body.assign);
		out->body.assign.name = out->name;
		out->body.assign.owner = node;
		out->body.assign.generation = vm->generation + 1;
		out->op.body_case = VIREO__OP__BODY_VM_ASSIGN;
		out->op.vm_assign = &out->body.assign;
	} else {
		vireo__vm_pending__init(&out->body.pending);
		out->body.pending.name = out->name;
		out->body.pending.reason = out->text;
		out->op.body_case = VIREO__OP__BODY_VM_PENDING;
		out->op.vm_pending = &out->body.pending;
	}
	return 1;
}

int cluster_manager_next(const struct cluster_manager_view *v, struct cluster_manager_op *out)
{
	int rc;

	vireo__op__init(&out->op);
	out->name[0] = '\0';
	out->text[0] = '\0';
	if ((rc = record_membership(v, out)) != 0 || (rc = fence_vms(v, out)) != 0 ||
	    (rc = confirm_fences(v, out)) != 0 || (rc = drain_nodes(v, out, true)) != 0 ||
	    (rc = place(v, out)) != 0)
		return rc;
	return drain_nodes(v, out, false);
}

uint64_t cluster_manager_wake_ms(const struct cluster_manager_view *v)
{
	uint64_t soonest = 0;

	for (size_t i = 0; i < v->st->n_vms; i++) {
		const Vireo__Vm *vm = v->st->vms[i];
		uint64_t absent, wait, left;

		if (vm->state != VIREO__VM_STATE__VM_FENCING || !owner_lost(v, vm))
			continue;
		absent = v->env->absent_ms(v->env->ctx, vm->owner);
		wait = fence_wait_ms(v, vm->owner);
		/* Past the deadline but a lease still held: look again soon. */
		left = absent < wait ? wait - absent : VIREO_LEASE_RECHECK_MS(v->token_ms);
		if (!soonest || left < soonest)
			soonest = left;
	}
	return soonest;
}
