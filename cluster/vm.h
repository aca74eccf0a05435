/* Virtual machines in the cluster state: spec validation, the operations
 * that change VMs, and placement. Pure, like the rest of the state. */
#ifndef VIREO_CLUSTER_VM_H
#define VIREO_CLUSTER_VM_H

#include <stddef.h>
#include <stdint.h>
#include "cluster/state.h"

#define CLUSTER_VM_MIN_MEMORY_MIB 16u
#define CLUSTER_VM_MAX_DISKS 16u
#define CLUSTER_VM_MAX_NICS 8u
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

#endif
