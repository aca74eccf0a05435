/* apply() for fencing: the VMs of a node that left the quorate membership.
 * Pure, like the rest of the state. The manager decides when (manager.c);
 * these functions only check that the step is valid in the state.
 *
 *   VmFence lost     active VM, owner offline        -> FENCING
 *   VmFence !lost    FENCING, owner online again      -> STARTING (its owner
 *                    adopts the guest, or starts it again)
 *   VmFenced         FENCING, owner offline           -> RECOVERING (HA and
 *                    should run), ERROR (relocated too often), or STOPPED
 */
#include "cluster/vm.h"
#include "cluster/vm_migrate.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static Vireo__Vm *current_vm(cluster_state *st, const char *name, uint64_t generation)
{
	Vireo__Vm *vm = cluster_vm_find(st, name);

	/* A decision about an earlier assignment is stale. */
	return vm && vm->generation == generation ? vm : NULL;
}

/* A migration whose owner is lost ends here, failed. */
static int end_migration(Vireo__Vm *vm, const char *why, int64_t time_ms)
{
	int rc;

	if (!vm->migration)
		return 0;
	if ((rc = cluster_vm_migration_record(vm, false, why, 0, 0, time_ms)) < 0)
		return rc;
	protobuf_c_message_free_unpacked(&vm->migration->base, NULL);
	vm->migration = NULL;
	return 0;
}

static int apply_lost(cluster_state *st, Vireo__Vm *vm, const Vireo__Op *op)
{
	const Vireo__NodeInfo *n = cluster_state_node(st, vm->owner);
	char msg[CLUSTER_TEXT_MAX];
	int rc;

	if (!n || n->online || !cluster_vm_state_active(vm->state) ||
	    vm->state == VIREO__VM_STATE__VM_FENCING || vm->state == VIREO__VM_STATE__VM_RECOVERING)
		return -EINVAL;
	snprintf(msg, sizeof(msg), "node %s was lost during the migration", n->name);
	if ((rc = end_migration(vm, msg, op->time_ms)) < 0)
		return rc;
	vm->lost_node = vm->owner;
	cluster_vm_set_state(vm, VIREO__VM_STATE__VM_FENCING, op->time_ms);
	snprintf(msg, sizeof(msg), "node %s was lost; waiting until it is proven stopped", n->name);
	if ((rc = cluster_vm_set_message(vm, msg)) < 0)
		return rc;
	return cluster_event_addf(st, op->time_ms, vm->owner, "VM %s: node %s was lost; fencing",
				  vm->spec->name, n->name);
}

static int apply_back(cluster_state *st, Vireo__Vm *vm, const Vireo__Op *op)
{
	const Vireo__NodeInfo *n = cluster_state_node(st, vm->owner);
	int rc;

	if (!n || !n->online || vm->state != VIREO__VM_STATE__VM_FENCING)
		return -EINVAL;
	vm->lost_node = 0;
	/* Its owner adopts the guest if it still runs, or starts it (it was
	 * never started anywhere else: the fence was not confirmed). A VM
	 * that should not run any more is stopped by the owner instead. */
	cluster_vm_set_state(vm, vm->want_running ? VIREO__VM_STATE__VM_STARTING :
			     VIREO__VM_STATE__VM_STOPPING, op->time_ms);
	if ((rc = cluster_vm_set_message(vm, "")) < 0)
		return rc;
	return cluster_event_addf(st, op->time_ms, vm->owner, "VM %s: node %s is back before it "
				  "was fenced; the VM stays there", vm->spec->name, n->name);
}

int cluster_vm_fence_apply(cluster_state *st, const Vireo__Op *op)
{
	const Vireo__VmFence *f = op->vm_fence;
	Vireo__Vm *vm = current_vm(st, f->name, f->generation);

	if (!vm)
		return -EINVAL;
	return f->lost ? apply_lost(st, vm, op) : apply_back(st, vm, op);
}

static uint32_t max_relocations(const Vireo__VmSpec *spec)
{
	return spec->max_relocations ? spec->max_relocations : CLUSTER_VM_DEFAULT_MAX_RELOCATIONS;
}

int cluster_vm_fenced_apply(cluster_state *st, const Vireo__Op *op)
{
	const Vireo__VmFenced *f = op->vm_fenced;
	Vireo__Vm *vm = current_vm(st, f->name, f->generation);
	const Vireo__NodeInfo *n;
	char msg[CLUSTER_TEXT_MAX];
	const char *lost;
	int rc;

	if (!vm || vm->state != VIREO__VM_STATE__VM_FENCING ||
	    !(n = cluster_state_node(st, vm->owner)) || n->online)
		return -EINVAL;
	lost = n->name;
	if (!vm->want_running || !vm->spec->ha) {
		vm->want_running = false;
		vm->lost_node = 0;
		cluster_vm_set_state(vm, VIREO__VM_STATE__VM_STOPPED, op->time_ms);
		if (vm->spec->ha)
			snprintf(msg, sizeof(msg), "stopped: node %s was lost, and the VM was to stop",
				 lost);
		else
			snprintf(msg, sizeof(msg), "stopped: node %s was lost and the VM is not HA "
				 "(vireo vm start %s starts it again)", lost, vm->spec->name);
		if ((rc = cluster_vm_set_message(vm, msg)) < 0)
			return rc;
		return cluster_event_addf(st, op->time_ms, vm->owner, "VM %s: fenced after %" PRIu64
					  " ms; %s", vm->spec->name, f->waited_ms, msg);
	}
	/* Relocations older than the window are forgiven. */
	if (vm->relocations && op->time_ms - vm->relocated_ms > (int64_t)f->window_ms)
		vm->relocations = 0;
	if (vm->relocations == 0)
		vm->relocated_ms = op->time_ms;
	vm->relocations++;
	if (vm->relocations > max_relocations(vm->spec)) {
		cluster_vm_set_state(vm, VIREO__VM_STATE__VM_ERROR, op->time_ms);
		snprintf(msg, sizeof(msg), "its node was lost %u times within %" PRIu64 " s (last: %s); "
			 "not restarted again (vireo vm start %s tries again)", vm->relocations,
			 f->window_ms / 1000u, lost, vm->spec->name);
	} else {
		cluster_vm_set_state(vm, VIREO__VM_STATE__VM_RECOVERING, op->time_ms);
		snprintf(msg, sizeof(msg), "node %s was lost; fenced after %" PRIu64 " ms, restarting "
			 "it elsewhere", lost, f->waited_ms);
	}
	if ((rc = cluster_vm_set_message(vm, msg)) < 0)
		return rc;
	return cluster_event_addf(st, op->time_ms, vm->owner, "VM %s: %s", vm->spec->name, msg);
}
