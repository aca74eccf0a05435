/* Migration in the cluster state: whether a VM may move where, and apply()
 * for the migration operations. Pure, like the rest of the state.
 *
 * The life of a migration in the log (DESIGN.md, quick migration):
 *
 *   VmMigrate          state MIGRATING, migration{id, source, target, phase
 *                      PREPARING}; the target's room is held (node usage)
 *   VmMigrateProgress  from the source: phase STREAMING, bytes so far
 *   VmMigrateCancel    from anyone: the source is asked to abort
 *   VmMigrateCommit    from the source, once the target holds the whole
 *                      state paused: owner = target, generation + 1, phase
 *                      COMMITTED. The point of no return.
 *   VmMigrateEnd       before the commit, from the source: failed, the VM is
 *                      RUNNING on the source again; after it, from the
 *                      target: RUNNING there (or ERROR when it could not
 *                      resume). last_migration records the outcome.
 */
#ifndef VIREO_CLUSTER_VM_MIGRATE_H
#define VIREO_CLUSTER_VM_MIGRATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "cluster/state.h"

/* Whether VM name may migrate to node target (0: the manager chooses, and
 * *chosen says whom). 0, or a negative errno with one sentence in err:
 *   -ENOENT  no such VM
 *   -EBUSY   it migrates already
 *   -ESRCH   it is not running
 *   -EINVAL  target unknown, the node it is on, or no other node at all
 *   -EHOSTDOWN  the target (or the VM's own node) is offline
 *   -EMEDIUMTYPE  the target cannot take it (pool, accelerator)
 *   -ENOSPC  the target lacks memory or vCPUs (or no node has room)
 * Deterministic: apply() uses it, and vireod before proposing. */
int cluster_vm_migrate_check(const cluster_state *st, const char *name, uint32_t target,
			     uint32_t *chosen, char *err, size_t errlen);

/* apply() for VmMigrate, VmMigrateProgress, VmMigrateCancel,
 * VmMigrateCommit and VmMigrateEnd; same contract as cluster_apply(). */
int cluster_vm_migrate_apply(cluster_state *st, const Vireo__Op *op);

/* Records how vm's migration (vm->migration, still set) ended in
 * vm->last_migration: downtime_ms 0 = derived from the pause and resumed_ms.
 * 0 or -ENOMEM. Also for a migration cut short by the loss of its owner. */
int cluster_vm_migration_record(Vireo__Vm *vm, bool ok, const char *message, uint64_t downtime_ms,
				int64_t resumed_ms, int64_t time_ms);

const char *cluster_migration_kind_name(Vireo__MigrationKind k);    /* "quick", "live" */
const char *cluster_migration_phase_name(Vireo__MigrationPhase p);

#endif
