/* The scripted events of a scenario (`at T ACTION ...`): what each does to
 * the hosts, and the user's commands, which go through a quorate node like
 * the CLI's. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/timeouts.h"
#include "cluster/vm.h"
#include "tests/sim/sim_world.h"

/* ---------------------------------------------------------------- events */

static uint32_t detection(const struct sim_world *w)
{
	return VIREO_DETECTION_MS(world_token(w));
}

/* A ring that forms with a returning node: no token has to be lost
 * first, only corosync's consensus. */
static uint32_t join_delay(const struct sim_world *w)
{
	return VIREO_CONSENSUS_MS(world_token(w));
}

static void ev_kill(struct sim_world *w, struct host *h)
{
	char list[256];

	if (h->dead) {
		world_broken(w, "SCENARIO ERROR: kill %s: it is dead already", h->name);
		return;
	}
	world_kill_guests(w, h, false, list, sizeof(list));
	world_fact(w, h, "dies%s%s", list[0] ? "; its guests die:" : "", list);
	h->dead = true;
	h->frozen = false;
	h->vireod = VIREOD_DOWN;
	h->epoch++;
	world_schedule_view(w, h, detection(w), -1);
	world_recompute(w);
}

static void ev_rejoin(struct sim_world *w, struct host *h)
{
	if (h->dead) {
		world_fact(w, h, "boots (no guests)");
		h->dead = false;
		h->vireod = VIREOD_UP;
		h->in_cpg = true;
		h->epoch++;
		world_engine_reset(h);
		world_schedule_view(w, h, join_delay(w), h->phys_group);
		return;
	}
	if (h->frozen || h->vireod == VIREOD_UP) {
		world_broken(w, "SCENARIO ERROR: rejoin %s: it is %s (rejoin is for a dead host or a stopped "
		       "or hung vireod)", h->name, h->frozen ? "frozen (resume it)" : "up");
		return;
	}
	world_fact(w, h, "vireod starts");
	h->vireod = VIREOD_UP;
	h->in_cpg = true;
	h->epoch++;
	world_engine_reset(h);
	world_recompute(w);
}

static void ev_leave(struct sim_world *w, struct host *h, uint64_t grace_ms)
{
	Vireo__Op op = VIREO__OP__INIT;
	Vireo__NodeLeaving l = VIREO__NODE_LEAVING__INIT;

	if (!world_acting(w, h)) {
		world_broken(w, "SCENARIO ERROR: leave %s: its vireod is not a quorate member", h->name);
		return;
	}
	l.node = h->id;
	l.grace_ms = grace_ms;
	op.body_case = VIREO__OP__BODY_NODE_LEAVING;
	op.node_leaving = &l;
	world_apply(w, &op, h->id);
	world_fact(w, h, "vireod stops cleanly; its guests run on for %llu ms", (unsigned long long)grace_ms);
	h->vireod = VIREOD_DOWN;
	h->in_cpg = false;
	h->epoch++;
	world_schedule(w, world_now(w) + (int64_t)grace_ms, ITEM_LEAVE_GRACE, h->id, -1, h->epoch, 0);
	world_recompute(w);
}

/* vireod dies outright: it leaves the CPG group at once, and the watchdog
 * kills its HA guests the moment vireod's socket closes. */
static void ev_kill_vireod(struct sim_world *w, struct host *h)
{
	if (!world_alive(h) || h->vireod == VIREOD_DOWN) {
		world_broken(w, "SCENARIO ERROR: kill-vireod %s: its vireod is not running", h->name);
		return;
	}
	world_fact(w, h, "vireod is killed");
	world_fence_host(w, h, "watchdog:", "vireod's socket closed");
	h->vireod = VIREOD_DOWN;
	h->in_cpg = false;
	h->epoch++;
	world_recompute(w);
}

/* A user's command, through the CLI on a quorate node. */
static void user_op(struct sim_world *w, const struct sim_event *ev, Vireo__Op *op)
{
	uint32_t via = sim_world_cli_node(w);

	if (!via) {
		world_fact(w, NULL, "%s: refused, no quorate node to take it", ev->text);
		return;
	}
	world_apply(w, op, via);
}

static void ev_mode(struct sim_world *w, const struct sim_event *ev, Vireo__NodeMode mode)
{
	Vireo__Op op = VIREO__OP__INIT;
	Vireo__NodeModeChange m = VIREO__NODE_MODE_CHANGE__INIT;

	m.node = ev->nodes[0];
	m.mode = mode;
	m.reason = "by the user";
	op.body_case = VIREO__OP__BODY_NODE_MODE;
	op.node_mode = &m;
	user_op(w, ev, &op);
}

static void ev_desired(struct sim_world *w, const struct sim_event *ev, bool running)
{
	for (size_t i = 0; i < ev->n_vms; i++) {
		Vireo__Op op = VIREO__OP__INIT;
		Vireo__VmDesired d = VIREO__VM_DESIRED__INIT;

		d.name = (char *)world_vm_name(w, ev->vms[i]);
		d.running = running;
		d.force = ev->force;
		op.body_case = VIREO__OP__BODY_VM_DESIRED;
		op.vm_desired = &d;
		user_op(w, ev, &op);
	}
}

static void ev_migrate(struct sim_world *w, const struct sim_event *ev)
{
	Vireo__Op op = VIREO__OP__INIT;
	Vireo__VmMigrate m = VIREO__VM_MIGRATE__INIT;

	m.name = (char *)world_vm_name(w, ev->vms[0]);
	m.target = ev->nodes[0];
	m.kind = ev->live ? VIREO__MIGRATION_KIND__MIGRATION_LIVE : VIREO__MIGRATION_KIND__MIGRATION_QUICK;
	op.body_case = VIREO__OP__BODY_VM_MIGRATE;
	op.vm_migrate = &m;
	user_op(w, ev, &op);
}

static void ev_lease(struct sim_world *w, int vm, enum sim_lease lease)
{
	w->lease[vm] = lease;
	if (lease != SIM_LEASE_FREE)
		return;
	/* A lease found free while a frozen host's guest had it: it was
	 * broken (as a lease that is not renewed expires); that guest can no
	 * longer write, and its host must not let it run on. */
	for (size_t i = 0; i < MAX_GUESTS; i++) {
		struct guest *g = &w->guests[i];
		if (g->used && g->vm == vm && w->hosts[g->node].frozen && !g->revoked) {
			g->revoked = true;
			world_fact(w, &w->hosts[g->node], "the frozen guest %s loses its disk lease",
			     world_vm_name(w, vm));
		}
	}
}

static void event(struct sim_world *w, const struct sim_event *ev);

void sim_world_event(struct sim_world *w, const struct sim_event *ev)
{
	world_fact(w, NULL, ">> %s", ev->text);
	event(w, ev);
	world_log_membership(w);
}

static void event(struct sim_world *w, const struct sim_event *ev)
{
	switch (ev->action) {
	case SIM_START:
	case SIM_STOP:
		ev_desired(w, ev, ev->action == SIM_START);
		return;
	case SIM_MIGRATE:
		ev_migrate(w, ev);
		return;
	case SIM_MAINTENANCE:
		ev_mode(w, ev, VIREO__NODE_MODE__NODE_MAINTENANCE);
		return;
	case SIM_EVACUATE:
		ev_mode(w, ev, VIREO__NODE_MODE__NODE_EVACUATE);
		return;
	case SIM_ACTIVE:
		ev_mode(w, ev, VIREO__NODE_MODE__NODE_ACTIVE);
		return;
	case SIM_FAIL_MIGRATION:
		w->fail_migration[ev->vms[0]]++;
		return;
	case SIM_LEASE:
		ev_lease(w, ev->vms[0], ev->lease);
		return;
	case SIM_HEAL:
		for (size_t i = 1; i <= w->n; i++) {
			struct host *h = &w->hosts[i];
			if (h->phys_group == 0)
				continue;
			h->phys_group = 0;
			if (world_alive(h))
				world_schedule_view(w, h, join_delay(w), 0);
		}
		return;
	case SIM_PARTITION:
		w->next_group++;
		break;
	default:
		break;
	}
	for (size_t i = 0; i < ev->n_nodes && !w->c->stop; i++) {
		struct host *h = &w->hosts[ev->nodes[i]];

		switch (ev->action) {
		case SIM_KILL:
			ev_kill(w, h);
			break;
		case SIM_PARTITION:
			h->phys_group = w->next_group;
			if (world_alive(h))
				world_schedule_view(w, h, detection(w), w->next_group);
			break;
		case SIM_PAUSE:
			if (!world_alive(h)) {
				world_broken(w, "SCENARIO ERROR: pause %s: it is dead or frozen already", h->name);
				break;
			}
			world_fact(w, h, "freezes; its guests hold their leases");
			h->frozen = true;
			h->epoch++;
			world_schedule_view(w, h, detection(w), -1);
			world_recompute(w);
			break;
		case SIM_RESUME:
			if (!h->frozen) {
				world_broken(w, "SCENARIO ERROR: resume %s: it is not frozen", h->name);
				break;
			}
			world_fact(w, h, "thaws");
			h->frozen = false;
			h->epoch++;
			world_engine_reset(h);
			world_schedule_view(w, h, join_delay(w), h->phys_group);
			break;
		case SIM_REJOIN:
			ev_rejoin(w, h);
			break;
		case SIM_HANG:
			if (!world_alive(h) || h->vireod != VIREOD_UP) {
				world_broken(w, "SCENARIO ERROR: hang %s: its vireod is not running", h->name);
				break;
			}
			world_fact(w, h, "vireod hangs");
			h->vireod = VIREOD_HUNG;
			h->epoch++;
			world_schedule(w, world_now(w) + VIREO_WATCHDOG_TIMEOUT_MS(world_token(w)), ITEM_WATCHDOG_HUNG,
				 h->id, -1, h->epoch, 0);
			break;
		case SIM_KILL_VIREOD:
			ev_kill_vireod(w, h);
			break;
		case SIM_LEAVE:
			ev_leave(w, h, ev->grace_ms);
			break;
		default:
			break;
		}
	}
}

