/* The manager's decisions: failover, placement, maintenance.
 *
 * A pure function of (cluster state, quorate membership, what the
 * manager's host observed: how long each node has been gone, whether a
 * VM's disk leases are free) to the next operation to propose. No clock,
 * no I/O: the engine calls it with the real environment, and tests/sim
 * replays scenarios through it with simulated time (doc/failover.md).
 *
 * The order of duties, one operation per call:
 *   1. record membership (NodeMembership) for nodes that came or went
 *   2. VMs whose owner left: 'fencing' (VmFence lost); back to their
 *      owner if it returns before the fence is confirmed (VmFence !lost)
 *   3. fence confirmed (VmFenced): the owner has been gone for
 *      VIREO_FENCE_DELAY_MS plus its leave grace, and the leases are free
 *   4. an evacuated node with nothing left to move is active again
 *   5. placement of pending and recovering VMs, highest priority first
 *      (VmAssign, or VmPending with the reason)
 *   6. moving VMs off nodes in maintenance or evacuation (VmMigrate: live
 *      first, quick when live failed), one at a time per node
 */
#ifndef VIREO_CLUSTER_MANAGER_H
#define VIREO_CLUSTER_MANAGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "cluster/state.h"

/* Nodes the manager considers at once (as many as CPG members). */
#define CLUSTER_MAX_NODES_MANAGED 64

/* What the manager's host observed; the simulator scripts it. */
struct cluster_manager_env {
	void *ctx;
	/* How long (ms, monotonic) this host has seen node outside the
	 * quorate membership; never more than this host itself has been in
	 * it. 0 for a member. */
	uint64_t (*absent_ms)(void *ctx, uint32_t node);
	/* Whether the disk leases of every disk of vm are free: 1 free, 0
	 * held, -EAGAIN not known yet (the host checks and runs the manager
	 * again when it knows). */
	int (*leases_free)(void *ctx, const Vireo__Vm *vm);
};

struct cluster_manager_view {
	const cluster_state *st;
	const uint32_t *members;          /* the quorate membership, sorted */
	size_t n_members;
	uint32_t token_ms;                /* every delay derives from it (timeouts.h) */
	const struct cluster_manager_env *env;
};

/* One decision: op points into this struct's own storage. */
struct cluster_manager_op {
	Vireo__Op op;
	union {
		Vireo__NodeMembership membership;
		Vireo__VmFence fence;
		Vireo__VmFenced fenced;
		Vireo__VmAssign assign;
		Vireo__VmPending pending;
		Vireo__VmMigrate migrate;
		Vireo__NodeModeChange mode;
	} body;
	char name[CLUSTER_NAME_MAX + 1];
	char text[CLUSTER_TEXT_MAX];
};

/* 1 with *out set (propose out->op), 0 when there is nothing to do now, or
 * -ENOMEM. Call again after the op is applied (or rejected) and whenever
 * the membership, the state, time or a lease answer changes. */
int cluster_manager_next(const struct cluster_manager_view *v, struct cluster_manager_op *out);

/* When the manager will want to run again with nothing else happening (a
 * fence deadline ahead): ms from now, or 0 for no deadline ahead. */
uint64_t cluster_manager_wake_ms(const struct cluster_manager_view *v);

/* Nodes that may take VMs: members, pool usable and the cluster's,
 * acceleration known, not in maintenance or evacuation. */
size_t cluster_manager_eligible(const struct cluster_manager_view *v, uint32_t *out, size_t max);

/* For the CLI following a drain: 1 with one sentence in why when vm (owned
 * by node, in maintenance or evacuation) cannot move away now (pinned, no
 * node with room or allowed by its group, or both kinds of migration
 * failed), else 0. Judges by the state's online flags. */
int cluster_manager_drain_blocker(const cluster_state *st, uint32_t node, const Vireo__Vm *vm,
				  char *why, size_t whylen);

#endif
