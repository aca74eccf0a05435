/* vireo-sim: replays one scenario (tests/sim/<name>/events) through the
 * manager (cluster/manager.h) with simulated time and prints the log that
 * tests/sim/<name>/expect holds. tests/sim/run-sim compares the two for
 * every scenario.
 *
 *   vireo-sim DIR           the log on stdout
 *   vireo-sim --write DIR   the log into DIR/expect (read it before you
 *                           commit it: a wrong expect is a wrong test)
 *
 * Exit 0; 1 when the run broke an invariant, looped, or a scenario step
 * could not be done; 2 when the scenario or the command line is malformed.
 *
 * The cluster state is the real one, changed only by cluster_apply(); the
 * manager is the real one, run whenever anything changed and whenever it
 * asked to wake; only the world around them is simulated (sim_world.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/group.h"
#include "cluster/manager.h"
#include "cluster/timeouts.h"
#include "cluster/vm.h"
#include "tests/sim/sim.h"

struct run {
	const struct sim_scenario *sc;
	struct sim_cluster c;
	struct sim_world *w;
	uint32_t manager;                 /* whose clock and leases the env reads */
	/* The engine holds a refused duty back until the state changes or a
	 * token's time passes (cluster/engine.c); so does the sim. */
	bool blocked;
	uint64_t blocked_version;
	int64_t blocked_ms;
};

int sim_apply(struct sim_cluster *c, Vireo__Op *op, uint32_t origin)
{
	int rc;

	op->origin = origin;
	op->time_ms = c->now_ms;
	rc = cluster_apply(c->st, op);
	sim_log_op(&c->log, c->st, op, rc);
	if (++c->ops_now > SIM_MAX_OPS_PER_INSTANT && !c->stop) {
		sim_logf(&c->log, c->now_ms, "--", "LOOP: more than %d operations at one instant",
			 SIM_MAX_OPS_PER_INSTANT);
		c->log.failed = true;
		c->stop = true;
	}
	return rc;
}

/* ---------------------------------------------------------------- setup */

/* The setup is applied without a log line: the events file says it. */
static int setup_apply(struct run *r, Vireo__Op *op, uint32_t origin, int line, const char *what)
{
	int rc;

	op->origin = origin;
	op->time_ms = 0;
	if ((rc = cluster_apply(r->c.st, op)) < 0) {
		fprintf(stderr, "%s:%d: the cluster refused %s: %s\n", r->sc->path, line, what,
			strerror(-rc));
		return -EINVAL;
	}
	return 0;
}

static int setup_nodes(struct run *r)
{
	for (uint32_t id = 1; id <= r->sc->n_nodes; id++) {
		Vireo__Op op = VIREO__OP__INIT;
		Vireo__NodeAnnounce a = VIREO__NODE_ANNOUNCE__INIT;
		char name[16], address[32];
		int rc;

		snprintf(name, sizeof(name), "n%u", id);
		snprintf(address, sizeof(address), "10.0.0.%u", id);
		a.id = id;
		a.name = name;
		a.address = address;
		a.cpus = r->sc->cpus[id];
		a.memory_mib = r->sc->memory_mib[id];
		a.version = "sim";
		a.pool_ok = true;
		a.pool_id = "pool-sim";
		a.accel = "kvm";
		op.body_case = VIREO__OP__BODY_NODE_ANNOUNCE;
		op.node_announce = &a;
		if ((rc = setup_apply(r, &op, id, 1, name)) < 0)
			return rc;
	}
	return 0;
}

static int setup_vms(struct run *r)
{
	for (size_t i = 0; i < r->sc->n_vms; i++) {
		const struct sim_vm_def *d = &r->sc->vms[i];
		Vireo__Op op = VIREO__OP__INIT;
		Vireo__VmCreate c = VIREO__VM_CREATE__INIT;
		Vireo__VmSpec s = VIREO__VM_SPEC__INIT;
		char uuid[64], what[64];
		int rc;

		snprintf(uuid, sizeof(uuid), "00000000-0000-4000-8000-%012zu", i + 1);
		snprintf(what, sizeof(what), "VM %s", d->name);
		s.name = (char *)d->name;
		s.uuid = uuid;
		s.vcpus = d->vcpus;
		s.memory_mib = d->memory_mib;
		s.kernel = "/boot/vmlinuz";
		s.ha = d->ha;
		s.priority = d->priority;
		s.pinned_node = d->pin;
		s.preferred_nodes = (uint32_t *)d->prefer;
		s.n_preferred_nodes = d->n_prefer;
		s.max_relocations = d->max_relocations;
		c.spec = &s;
		op.body_case = VIREO__OP__BODY_VM_CREATE;
		op.vm_create = &c;
		if ((rc = setup_apply(r, &op, 1, d->line, what)) < 0)
			return rc;
	}
	return 0;
}

static int setup_groups(struct run *r)
{
	for (size_t i = 0; i < r->sc->n_groups; i++) {
		const struct sim_group_def *g = &r->sc->groups[i];
		Vireo__Op op = VIREO__OP__INIT;
		Vireo__GroupCreate gc = VIREO__GROUP_CREATE__INIT;
		Vireo__GroupMembers gm = VIREO__GROUP_MEMBERS__INIT;
		char *add[SIM_MAX_VMS], what[64];
		int rc;

		snprintf(what, sizeof(what), "group %s", g->name);
		gc.name = (char *)g->name;
		gc.affinity = g->affinity;
		gc.strict = g->strict;
		op.body_case = VIREO__OP__BODY_GROUP_CREATE;
		op.group_create = &gc;
		if ((rc = setup_apply(r, &op, 1, g->line, what)) < 0)
			return rc;
		if (!g->n_vms)
			continue;
		for (size_t j = 0; j < g->n_vms; j++)
			add[j] = (char *)r->sc->vms[g->vms[j]].name;
		gm.name = (char *)g->name;
		gm.add = add;
		gm.n_add = g->n_vms;
		op.body_case = VIREO__OP__BODY_GROUP_MEMBERS;
		op.group_members = &gm;
		if ((rc = setup_apply(r, &op, 1, g->line, what)) < 0)
			return rc;
	}
	return 0;
}

/* ---------------------------------------------------------------- manager */

static uint64_t env_absent_ms(void *ctx, uint32_t node)
{
	struct run *r = ctx;

	return sim_world_absent_ms(r->w, r->manager, node);
}

static int env_leases_free(void *ctx, const Vireo__Vm *vm)
{
	struct run *r = ctx;

	return sim_world_leases_free(r->w, vm);
}

static void view_of(struct run *r, struct cluster_manager_view *v, struct cluster_manager_env *env,
		    uint32_t *members)
{
	*env = (struct cluster_manager_env){ .ctx = r, .absent_ms = env_absent_ms,
					     .leases_free = env_leases_free };
	*v = (struct cluster_manager_view){
		.st = r->c.st, .members = members, .n_members = sim_world_members(r->w, members),
		.token_ms = r->sc->token_ms, .env = env,
	};
}

/* The manager's duties until it has nothing to do; true when it applied
 * anything. Like the engine, a new manager first records itself. */
static bool manage(struct run *r)
{
	uint32_t members[SIM_MAX_NODES];
	struct cluster_manager_view v;
	struct cluster_manager_env env;
	struct cluster_manager_op out;
	bool progress = false;
	int rc;

	if (!(r->manager = sim_world_manager(r->w)))
		return false;
	if (r->c.st->manager != r->manager) {
		Vireo__Op op = VIREO__OP__INIT;
		Vireo__ManagerChange m = VIREO__MANAGER_CHANGE__INIT;

		m.manager = r->manager;
		op.body_case = VIREO__OP__BODY_MANAGER_CHANGE;
		op.manager_change = &m;
		progress = sim_apply(&r->c, &op, r->manager) == 0;
	}
	if (r->blocked && (r->c.st->version != r->blocked_version ||
			   r->c.now_ms - r->blocked_ms >= (int64_t)r->sc->token_ms))
		r->blocked = false;
	while (!r->blocked && !r->c.stop) {
		view_of(r, &v, &env, members);
		if ((rc = cluster_manager_next(&v, &out)) < 0) {
			sim_logf(&r->c.log, r->c.now_ms, "--", "the manager failed: %s", strerror(-rc));
			r->c.log.failed = true;
			r->c.stop = true;
			break;
		}
		if (rc == 0)
			break;
		if ((rc = sim_apply(&r->c, &out.op, r->manager)) < 0) {
			r->blocked = true;
			r->blocked_version = r->c.st->version;
			r->blocked_ms = r->c.now_ms;
			break;
		}
		progress = true;
	}
	return progress;
}

/* Manager and hosts react to each other until nothing changes. */
static void settle(struct run *r)
{
	while (!r->c.stop) {
		bool progress = manage(r);

		if (r->c.stop)
			return;
		progress |= sim_world_pass(r->w);
		if (!progress)
			return;
	}
}

/* When the manager wants to run again with nothing else happening. */
static int64_t manager_wake(struct run *r)
{
	uint32_t members[SIM_MAX_NODES];
	struct cluster_manager_view v;
	struct cluster_manager_env env;
	uint64_t ms;

	if (!(r->manager = sim_world_manager(r->w)))
		return -1;
	if (r->blocked)
		return r->blocked_ms + r->sc->token_ms;
	view_of(r, &v, &env, members);
	ms = cluster_manager_wake_ms(&v);
	return ms ? r->c.now_ms + (int64_t)ms : -1;
}

static int64_t earliest(int64_t a, int64_t b)
{
	return a < 0 ? b : b < 0 ? a : a < b ? a : b;
}

static int run_scenario(struct run *r)
{
	size_t next_event = 0;
	int rc;

	if (!(r->c.st = cluster_state_new("sim")))
		return -ENOMEM;
	if ((rc = setup_nodes(r)) < 0 || (rc = setup_vms(r)) < 0 || (rc = setup_groups(r)) < 0)
		return rc;
	if ((rc = sim_world_new(r->sc, &r->c, &r->w)) < 0)
		return rc;
	for (;;) {
		int64_t next;

		/* The world first (what was due), then the scripted events, each
		 * followed by the manager and hosts reacting. */
		sim_world_fire(r->w);
		settle(r);
		while (next_event < r->sc->n_events && r->sc->events[next_event].time_ms == r->c.now_ms &&
		       !r->c.stop)
			sim_world_event(r->w, &r->sc->events[next_event++]);
		settle(r);
		if (r->c.stop)
			break;
		next = earliest(sim_world_next_ms(r->w), manager_wake(r));
		if (next_event < r->sc->n_events)
			next = earliest(next, r->sc->events[next_event].time_ms);
		if (next < 0 || next > r->sc->run_ms)
			break;
		if (next > r->c.now_ms)
			r->c.ops_now = 0;
		r->c.now_ms = next;
	}
	if (!r->c.stop)
		r->c.now_ms = r->sc->run_ms;
	sim_logf(&r->c.log, r->c.now_ms, "--", "end");
	sim_log_summary(&r->c.log, r->c.st);
	sim_world_summary(r->w);
	return 0;
}

static int usage(void)
{
	fprintf(stderr, "usage: vireo-sim [--write] SCENARIO_DIR\n"
		"  replays SCENARIO_DIR/events and prints the log (--write: into "
		"SCENARIO_DIR/expect)\n");
	return 2;
}

int main(int argc, char **argv)
{
	static struct sim_scenario sc;
	struct run r = { .sc = &sc };
	char path[600];
	bool write = false;
	const char *dir;
	int rc;

	if (argc == 3 && strcmp(argv[1], "--write") == 0)
		write = true;
	else if (argc != 2 || argv[1][0] == '-')
		return usage();
	dir = argv[argc - 1];
	snprintf(path, sizeof(path), "%s/events", dir);
	if (sim_parse(path, &sc) < 0)
		return 2;
	r.c.log.out = stdout;
	if (write) {
		snprintf(path, sizeof(path), "%s/expect", dir);
		if (!(r.c.log.out = fopen(path, "w"))) {
			fprintf(stderr, "%s: cannot write it: %s\n", path, strerror(errno));
			return 2;
		}
	}
	rc = run_scenario(&r);
	if (write && fclose(r.c.log.out) != 0) {
		fprintf(stderr, "%s: cannot write it: %s\n", path, strerror(errno));
		rc = -EIO;
	}
	sim_world_free(r.w);
	cluster_state_free(r.c.st);
	if (rc == -EINVAL)
		return 2;
	if (rc < 0) {
		fprintf(stderr, "%s: the run failed: %s\n", dir, strerror(-rc));
		return 1;
	}
	if (r.c.log.failed)
		fprintf(stderr, "%s: the run broke an invariant or could not go on (see the log)\n", dir);
	return r.c.log.failed ? 1 : 0;
}
