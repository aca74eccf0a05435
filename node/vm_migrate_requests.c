/* vireo vm migrate: checks the request against the cluster state (so the
 * user hears exactly why not, and nothing changes), then proposes VmMigrate
 * (or VmMigrateCancel) and answers once it is applied here, with the VM:
 * its migration id tells the CLI which migration to follow. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cluster/vm.h"
#include "cluster/vm_migrate.h"
#include "node/daemon.h"
#include "node/vm_requests.h"

/* Live migration's downtime is what QEMU aims for; above a minute it is no
 * longer a live migration. */
#define MAX_DOWNTIME_LIMIT_MS 60000u

static void handle_cancel(struct node_daemon *d, struct node_ipc_call *call, const Vireo__Vm *vm)
{
	const cluster_state *cs = cluster_engine_state(d->engine);
	const char *name = vm->spec->name;
	Vireo__Op op = VIREO__OP__INIT;
	Vireo__VmMigrateCancel c = VIREO__VM_MIGRATE_CANCEL__INIT;
	char msg[256];

	if (vm->state != VIREO__VM_STATE__VM_MIGRATING || !vm->migration) {
		snprintf(msg, sizeof(msg), "VM %s is not migrating (it is %s)", name,
			 cluster_vm_state_name(vm->state));
		node_vm_reply(d, call, VIREO__OUTCOME__OUTCOME_INVALID, name, msg);
		return;
	}
	if (vm->migration->phase == VIREO__MIGRATION_PHASE__MIGRATION_COMMITTED) {
		const Vireo__NodeInfo *t = cluster_state_node(cs, vm->migration->target);

		snprintf(msg, sizeof(msg), "too late to cancel: VM %s belongs to %s already and "
			 "resumes there", name, t ? t->name : "its target");
		node_vm_reply(d, call, VIREO__OUTCOME__OUTCOME_FAILED, name, msg);
		return;
	}
	c.name = (char *)name;
	c.id = vm->migration->id;
	op.body_case = VIREO__OP__BODY_VM_MIGRATE_CANCEL;
	op.vm_migrate_cancel = &c;
	node_vm_propose_and_reply(d, call, name, &op);
}

void node_vm_handle_migrate(struct node_daemon *d, struct node_ipc_call *call,
			    const Vireo__VmMigrateRequest *r)
{
	const cluster_state *cs;
	const Vireo__Vm *vm;
	const Vireo__NodeInfo *target = NULL;
	Vireo__Op op = VIREO__OP__INIT;
	Vireo__VmMigrate m = VIREO__VM_MIGRATE__INIT;
	uint32_t chosen;
	char msg[384];
	int rc;

	if (!d->engine) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_NOT_QUORATE, NODE_NEVER_CONNECTED_MSG);
		return;
	}
	/* A node outside the quorate partition has a stale view: say that,
	 * not what the stale view would refuse. */
	if (!node_may_propose(d, call))
		return;
	cs = cluster_engine_state(d->engine);
	if (!(vm = cluster_vm_find(cs, r->name))) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_INVALID,
				       "no VM named %s; see vireo vm list", r->name);
		return;
	}
	if (r->cancel) {
		handle_cancel(d, call, vm);
		return;
	}
	if (r->target[0] && !(target = cluster_state_node_by_name(cs, r->target))) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_INVALID,
				       "no node named %s in the cluster; see vireo node list", r->target);
		return;
	}
	if (r->max_downtime_ms && !r->live) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_INVALID,
				       "--max-downtime is for live migration (--live): a quick "
				       "migration pauses the guest for the whole transfer");
		return;
	}
	if (r->max_downtime_ms > MAX_DOWNTIME_LIMIT_MS) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_INVALID,
				       "--max-downtime must be at most %u ms", MAX_DOWNTIME_LIMIT_MS);
		return;
	}
	if ((rc = cluster_vm_migrate_check(cs, r->name, target ? target->id : 0, &chosen, msg,
					   sizeof(msg))) < 0) {
		node_vm_reply(d, call, VIREO__OUTCOME__OUTCOME_INVALID, r->name, msg);
		return;
	}
	m.name = r->name;
	m.target = chosen;
	m.kind = r->live ? VIREO__MIGRATION_KIND__MIGRATION_LIVE : VIREO__MIGRATION_KIND__MIGRATION_QUICK;
	m.max_downtime_ms = r->max_downtime_ms;
	m.bandwidth_mibps = r->bandwidth_mibps;
	op.body_case = VIREO__OP__BODY_VM_MIGRATE;
	op.vm_migrate = &m;
	node_vm_propose_and_reply(d, call, r->name, &op);
}
