/* VM groups in the cluster state: sets of VMs that run together (affinity)
 * or on distinct nodes (anti-affinity), strictly or by preference. The
 * manager reads them when it places and moves VMs; this file only keeps
 * them. Pure, like the rest of the state: no clock, no I/O. */
#ifndef VIREO_CLUSTER_GROUP_H
#define VIREO_CLUSTER_GROUP_H

#include <stddef.h>
#include "cluster/state.h"

const Vireo__VmGroup *cluster_group_find(const cluster_state *st, const char *name);
/* The group vm_name is a member of, or NULL: a VM is in at most one. */
const Vireo__VmGroup *cluster_group_of(const cluster_state *st, const char *vm_name);

/* Checks a group operation (GroupCreate, group_delete, GroupMembers)
 * against the state: 0 when it would change the state, or what apply()
 * would return (-EINVAL, -EEXIST, -ENOENT, -EBUSY, -EALREADY) with one
 * sentence in err. Deterministic: apply() runs it on every member, and
 * vireod runs it before proposing, to answer the user precisely. */
int cluster_group_check(const cluster_state *st, const Vireo__Op *op, char *err, size_t errlen);

/* apply() for the group operations; same contract as cluster_apply(). */
int cluster_group_apply(cluster_state *st, const Vireo__Op *op);

/* A VM that is deleted leaves its group (the group stays, maybe empty).
 * Call it from the VM's delete before its name is freed. Returns 0,
 * whether or not the VM was in a group: it only frees, never allocates. */
int cluster_group_forget_vm(cluster_state *st, const char *vm);

#endif
