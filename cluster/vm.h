/* Virtual machines in the cluster state: spec validation, the operations
 * that change VMs, and placement. Pure, like the rest of the state. */
#ifndef VIREO_CLUSTER_VM_H
#define VIREO_CLUSTER_VM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "cluster/state.h"

#define CLUSTER_VM_MIN_MEMORY_MIB 16u
#define CLUSTER_VM_MAX_DISKS 16u
#define CLUSTER_VM_MAX_NICS 8u
/* HA failovers to another node within VIREO_RELOCATION_WINDOW_MS before a
 * VM is 'error', when its spec says 0. */
#define CLUSTER_VM_DEFAULT_MAX_RELOCATIONS 3u
/* vCPUs a node may carry per physical CPU: guests rarely keep every vCPU busy. */
#define CLUSTER_VCPU_OVERCOMMIT 4u

Vireo__Vm *cluster_vm_find(const cluster_state *st, const char *name);

/* Checks a spec against the state (unique name and uuid, sizes within what
 * the cluster's nodes have, known pinned node). 0, or -EINVAL / -EEXIST with
 * one sentence in err. Deterministic: used by apply() on every member and by
 * vireod before proposing, to answer the user precisely. */
int cluster_vm_spec_check(const cluster_state *st, const Vireo__VmSpec *spec, char *err, size_t errlen);

/* apply() for the VM operations; same contract as cluster_apply(). */
int cluster_vm_apply(cluster_state *st, const Vireo__Op *op);
/* vm_fence.c: apply() for VmFence and VmFenced. */
int cluster_vm_fence_apply(cluster_state *st, const Vireo__Op *op);
int cluster_vm_fenced_apply(cluster_state *st, const Vireo__Op *op);

const char *cluster_vm_state_name(Vireo__VmState s);

/* Memory and vCPUs that VMs owned by node hold (or are about to). */
void cluster_vm_node_usage(const cluster_state *st, uint32_t node, uint64_t *memory_mib,
			   uint32_t *vcpus, uint32_t *count);

/* The manager's next placement decision: the highest-priority VM that
 * should run and has no node. Returns 1 with *vm and either *node (place it
 * there) or *node == 0 and reason (it must wait: record the reason), 0 when
 * nothing is to do (a VM that waits and already says why is skipped), or
 * -ENOMEM. online lists the nodes that may take VMs. */
int cluster_vm_place_next(const cluster_state *st, const uint32_t *online, size_t n_online,
			  const Vireo__Vm **vm, uint32_t *node, char *reason, size_t reasonlen);

/* The node placement would choose for vm among online now (the same rules
 * as cluster_vm_place_next), 0 when none may take it. */
uint32_t cluster_vm_choose_node(const cluster_state *st, const uint32_t *online, size_t n_online,
				const Vireo__Vm *vm);

/* One sentence: why no node may take vm now (pinning, room, its group). */
void cluster_vm_why_waiting(const cluster_state *st, const Vireo__Vm *vm, char *reason,
			    size_t reasonlen);

/* Shared with vm_migrate.c. */
int cluster_vm_set_message(Vireo__Vm *vm, const char *text);
void cluster_vm_set_state(Vireo__Vm *vm, Vireo__VmState s, int64_t time_ms);
/* A guest holds (or is about to hold) its node's resources in this state. */
bool cluster_vm_state_active(Vireo__VmState s);
/* Whether spec fits on n beside what n carries; *count VMs there, *free_mib left. */
bool cluster_vm_fits(const cluster_state *st, const Vireo__NodeInfo *n, const Vireo__VmSpec *spec,
		     uint32_t *count, uint64_t *free_mib);

#endif
