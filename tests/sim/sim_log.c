/* The simulator's log: one line per applied operation and per fact of the
 * simulated world, "  TIME WHO what". It is what expect files hold, so it
 * says only what a reader needs to judge the run and nothing that changes
 * without a reason (no versions, no migration ids). */
#include <errno.h>
#include <stdarg.h>
#include <string.h>

#include "cluster/vm.h"
#include "cluster/vm_migrate.h"
#include "tests/sim/sim.h"

const char *sim_node_name(const cluster_state *st, uint32_t id)
{
	const Vireo__NodeInfo *n = cluster_state_node(st, id);

	return n && n->name[0] ? n->name : id ? "n?" : "none";
}

void sim_logf(struct sim_log *log, int64_t t, const char *who, const char *fmt, ...)
{
	va_list ap;

	fprintf(log->out, "%6lld %-3s ", (long long)t, who);
	va_start(ap, fmt);
	vfprintf(log->out, fmt, ap);
	va_end(ap);
	fputc('\n', log->out);
	fflush(log->out);
}

static const char *mode_name(Vireo__NodeMode m)
{
	switch (m) {
	case VIREO__NODE_MODE__NODE_MAINTENANCE: return "maintenance";
	case VIREO__NODE_MODE__NODE_EVACUATE: return "evacuate";
	default: return "active";
	}
}

/* What the op asks for, without its effect. */
static void describe(const cluster_state *st, const Vireo__Op *op, char *buf, size_t len)
{
	const char *what = cluster_op_name(op);

	switch (op->body_case) {
	case VIREO__OP__BODY_NODE_MEMBERSHIP:
		snprintf(buf, len, "%s %s %s", what, sim_node_name(st, op->node_membership->id),
			 op->node_membership->online ? "online" : "offline");
		break;
	case VIREO__OP__BODY_MANAGER_CHANGE:
		snprintf(buf, len, "%s %s", what, sim_node_name(st, op->manager_change->manager));
		break;
	case VIREO__OP__BODY_NODE_MODE:
		snprintf(buf, len, "%s %s %s%s%s%s", what, sim_node_name(st, op->node_mode->node),
			 mode_name(op->node_mode->mode), op->node_mode->reason[0] ? " (" : "",
			 op->node_mode->reason, op->node_mode->reason[0] ? ")" : "");
		break;
	case VIREO__OP__BODY_NODE_LEAVING:
		snprintf(buf, len, "%s %s grace %llu ms", what, sim_node_name(st, op->node_leaving->node),
			 (unsigned long long)op->node_leaving->grace_ms);
		break;
	case VIREO__OP__BODY_VM_DESIRED:
		snprintf(buf, len, "%s %s %s%s", what, op->vm_desired->name,
			 op->vm_desired->running ? "running" : "stopped",
			 op->vm_desired->force ? " force" : "");
		break;
	case VIREO__OP__BODY_VM_ASSIGN:
		snprintf(buf, len, "%s %s -> %s gen %llu", what, op->vm_assign->name,
			 sim_node_name(st, op->vm_assign->owner),
			 (unsigned long long)op->vm_assign->generation);
		break;
	case VIREO__OP__BODY_VM_PENDING:
		snprintf(buf, len, "%s %s: %s", what, op->vm_pending->name, op->vm_pending->reason);
		break;
	case VIREO__OP__BODY_VM_REPORT:
		snprintf(buf, len, "%s %s %s gen %llu%s%s%s", what, op->vm_report->name,
			 cluster_vm_state_name(op->vm_report->state),
			 (unsigned long long)op->vm_report->generation,
			 op->vm_report->message[0] ? " (" : "", op->vm_report->message,
			 op->vm_report->message[0] ? ")" : "");
		break;
	case VIREO__OP__BODY_VM_MIGRATE:
		snprintf(buf, len, "%s %s -> %s %s", what, op->vm_migrate->name,
			 op->vm_migrate->target ? sim_node_name(st, op->vm_migrate->target) : "any",
			 cluster_migration_kind_name(op->vm_migrate->kind));
		break;
	case VIREO__OP__BODY_VM_MIGRATE_COMMIT:
		snprintf(buf, len, "%s %s", what, op->vm_migrate_commit->name);
		break;
	case VIREO__OP__BODY_VM_MIGRATE_END:
		snprintf(buf, len, "%s %s %s%s%s", what, op->vm_migrate_end->name,
			 op->vm_migrate_end->ok ? "ok" : "failed",
			 op->vm_migrate_end->message[0] ? ": " : "", op->vm_migrate_end->message);
		break;
	case VIREO__OP__BODY_VM_FENCE:
		snprintf(buf, len, "%s %s gen %llu %s", what, op->vm_fence->name,
			 (unsigned long long)op->vm_fence->generation, op->vm_fence->lost ? "lost" : "back");
		break;
	case VIREO__OP__BODY_VM_FENCED:
		snprintf(buf, len, "%s %s gen %llu waited %llu ms", what, op->vm_fenced->name,
			 (unsigned long long)op->vm_fenced->generation,
			 (unsigned long long)op->vm_fenced->waited_ms);
		break;
	default:
		snprintf(buf, len, "%s", what);
		break;
	}
}

/* The VM an op is about, to show the state it left it in. */
static const char *op_vm(const Vireo__Op *op)
{
	switch (op->body_case) {
	case VIREO__OP__BODY_VM_DESIRED: return op->vm_desired->name;
	case VIREO__OP__BODY_VM_ASSIGN: return op->vm_assign->name;
	case VIREO__OP__BODY_VM_PENDING: return op->vm_pending->name;
	case VIREO__OP__BODY_VM_REPORT: return op->vm_report->name;
	case VIREO__OP__BODY_VM_MIGRATE: return op->vm_migrate->name;
	case VIREO__OP__BODY_VM_MIGRATE_COMMIT: return op->vm_migrate_commit->name;
	case VIREO__OP__BODY_VM_MIGRATE_END: return op->vm_migrate_end->name;
	case VIREO__OP__BODY_VM_FENCE: return op->vm_fence->name;
	case VIREO__OP__BODY_VM_FENCED: return op->vm_fenced->name;
	default: return NULL;
	}
}

void sim_log_op(struct sim_log *log, const cluster_state *st, const Vireo__Op *op, int rc)
{
	char what[CLUSTER_TEXT_MAX + 256], effect[CLUSTER_TEXT_MAX + 64] = "";
	const char *name = op_vm(op);
	const Vireo__Vm *vm = name ? cluster_vm_find(st, name) : NULL;

	describe(st, op, what, sizeof(what));
	if (rc == -EALREADY)
		snprintf(effect, sizeof(effect), " (changes nothing)");
	else if (rc < 0)
		snprintf(effect, sizeof(effect), " REFUSED (%s)", strerror(-rc));
	else if (vm)
		snprintf(effect, sizeof(effect), " => %s", cluster_vm_state_name(vm->state));
	sim_logf(log, op->time_ms, sim_node_name(st, op->origin), "%s%s", what, effect);
}

void sim_log_summary(struct sim_log *log, const cluster_state *st)
{
	for (size_t i = 0; i < st->n_nodes; i++) {
		const Vireo__NodeInfo *n = st->nodes[i];
		fprintf(log->out, "node %s %s %s\n", n->name, n->online ? "online" : "offline",
			mode_name(n->mode));
	}
	for (size_t i = 0; i < st->n_vms; i++) {
		const Vireo__Vm *vm = st->vms[i];

		fprintf(log->out, "vm %s %s owner %s gen %llu%s", vm->spec->name,
			cluster_vm_state_name(vm->state), sim_node_name(st, vm->owner),
			(unsigned long long)vm->generation, vm->want_running ? "" : " (should not run)");
		if (vm->relocations)
			fprintf(log->out, " relocations %u", vm->relocations);
		if (vm->message[0])
			fprintf(log->out, ": %s", vm->message);
		fputc('\n', log->out);
	}
	fflush(log->out);
}
