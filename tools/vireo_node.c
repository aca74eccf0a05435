/* vireo node maintenance enter NODE [--no-wait]
 * vireo node maintenance exit NODE
 * vireo node evacuate NODE [--no-wait]
 *
 * vireod records the node's mode; the cluster's manager then moves the
 * node's VMs away, one at a time (live, quick when live failed). This file
 * only follows that: it polls the VMs every 200 ms and prints one line per
 * step ("web: moving to n1 (live)", "web: on n1, 0.31 s paused", "db:
 * could not move: ..."), or with --json one JSON object per line. It ends
 * when no VM of the node is active any more, or every one left could not
 * move: exit 0 when all moved, 1 when some could not. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster/manager.h"
#include "cluster/vm_migrate.h"
#include "tools/vireo_cli.h"

#define POLL_NS 200000000L
/* Bound of the whole wait: generous, a live migration of a busy guest can
 * take a while; the manager moves one VM at a time per node. */
#define WAIT_PER_VM_MS 60000u
/* A node in maintenance whose VMs stay, with nothing migrating or
 * settling for this long: the manager found no node for them. */
#define STALL_MS 15000u

struct track {
	char name[80];
	uint64_t announced;         /* migration id whose "moving to" was printed */
	uint64_t reported;          /* last_migration id already accounted for */
	bool moved, failed;
};

struct follow {
	const struct cli *cli;
	const char *node;
	uint32_t node_id;
	const Vireo__GroupListReply *groups;   /* to say why a VM stays */
	struct track *vms;
	size_t n_vms;
	size_t moved, failed;
	uint64_t quiet_since_ms;    /* last time anything happened */
};

const char *vireo_node_mode_name(Vireo__NodeMode m)
{
	switch (m) {
	case VIREO__NODE_MODE__NODE_ACTIVE: return "active";
	case VIREO__NODE_MODE__NODE_MAINTENANCE: return "maintenance";
	case VIREO__NODE_MODE__NODE_EVACUATE: return "evacuate";
	default: return "unknown";
	}
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static const Vireo__NodeInfo *node_by_name(const Vireo__VmListReply *lr, const char *name)
{
	for (size_t i = 0; i < lr->n_nodes; i++)
		if (strcmp(lr->nodes[i]->name, name) == 0)
			return lr->nodes[i];
	return NULL;
}

static const char *node_name(const Vireo__VmListReply *lr, uint32_t id)
{
	for (size_t i = 0; i < lr->n_nodes; i++)
		if (lr->nodes[i]->id == id)
			return lr->nodes[i]->name;
	return "?";
}

/* A guest there that has to leave: what the manager moves (running), and
 * what is on its way (starting, migrating). */
static bool on_node(const Vireo__Vm *vm, uint32_t node)
{
	return vm->owner == node && (vm->state == VIREO__VM_STATE__VM_RUNNING ||
				     vm->state == VIREO__VM_STATE__VM_STARTING ||
				     vm->state == VIREO__VM_STATE__VM_MIGRATING);
}

static void emit(json_object *o)
{
	printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	fflush(stdout);
	json_object_put(o);
}

static json_object *event(const char *kind, const char *vm)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "event", json_object_new_string(kind));
	json_object_object_add(o, "name", json_object_new_string(vm));
	return o;
}

static struct track *track_of(struct follow *f, const char *name)
{
	for (size_t i = 0; i < f->n_vms; i++)
		if (strcmp(f->vms[i].name, name) == 0)
			return &f->vms[i];
	return NULL;
}

/* Remembers every VM (and its last migration) before the mode changes, so
 * only what happens from now on is reported. */
static int snapshot(struct follow *f, const Vireo__VmListReply *lr)
{
	if (!(f->vms = calloc(lr->n_vms + 1, sizeof(*f->vms))))
		return -1;
	for (size_t i = 0; i < lr->n_vms; i++) {
		struct track *t = &f->vms[f->n_vms++];

		snprintf(t->name, sizeof(t->name), "%s", lr->vms[i]->spec->name);
		t->reported = lr->vms[i]->last_migration ? lr->vms[i]->last_migration->id : 0;
		t->announced = lr->vms[i]->migration ? lr->vms[i]->migration->id : 0;
	}
	return 0;
}

static void could_not_move(struct follow *f, struct track *t, const char *why)
{
	t->failed = true;
	f->failed++;
	if (f->cli->json) {
		json_object *o = event("failed", t->name);

		json_object_object_add(o, "message", json_object_new_string(why));
		emit(o);
	} else {
		printf("%s: could not move: %s\n", t->name, why);
		fflush(stdout);
	}
}

/* One VM's news since the last poll. */
static void step_vm(struct follow *f, const Vireo__VmListReply *lr, const Vireo__Vm *vm,
		    struct track *t, uint64_t now)
{
	const Vireo__VmMigration *m = vm->migration;
	const Vireo__MigrationResult *r = vm->last_migration;
	const char *kind;

	if (vm->state == VIREO__VM_STATE__VM_MIGRATING && m && m->source == f->node_id &&
	    m->id != t->announced) {
		t->announced = m->id;
		f->quiet_since_ms = now;
		kind = cluster_migration_kind_name(m->kind);
		if (f->cli->json) {
			json_object *o = event("moving", t->name);

			json_object_object_add(o, "target", json_object_new_string(node_name(lr, m->target)));
			json_object_object_add(o, "kind", json_object_new_string(kind));
			emit(o);
		} else {
			printf("%s: moving to %s (%s)\n", t->name, node_name(lr, m->target), kind);
			fflush(stdout);
		}
	}
	if (!r || r->id == t->reported || r->source != f->node_id)
		return;
	t->reported = r->id;
	f->quiet_since_ms = now;
	kind = cluster_migration_kind_name(r->kind);
	if (r->ok) {
		t->moved = true;
		f->moved++;
		if (f->cli->json) {
			json_object *o = event("moved", t->name);

			json_object_object_add(o, "node", json_object_new_string(node_name(lr, r->target)));
			json_object_object_add(o, "kind", json_object_new_string(kind));
			json_object_object_add(o, "downtime_ms", json_object_new_int64((int64_t)r->downtime_ms));
			json_object_object_add(o, "total_ms", json_object_new_int64((int64_t)r->total_ms));
			emit(o);
		} else {
			printf("%s: on %s, %.2f s paused\n", t->name, node_name(lr, r->target),
			       (double)r->downtime_ms / 1000.0);
			fflush(stdout);
		}
		return;
	}
	/* A live migration that failed is tried again as a quick one; the
	 * quick one failing is the end for this VM. */
	if (r->kind == VIREO__MIGRATION_KIND__MIGRATION_QUICK) {
		could_not_move(f, t, r->message[0] ? r->message : "its quick migration failed");
	} else if (f->cli->json) {
		json_object *o = event("retry", t->name);

		json_object_object_add(o, "kind", json_object_new_string(kind));
		json_object_object_add(o, "message", json_object_new_string(r->message));
		emit(o);
	} else {
		printf("%s: live migration failed (%s); trying a quick one\n", t->name,
		       r->message[0] ? r->message : "no reason given");
		fflush(stdout);
	}
}

/* Why a VM that stays was not moved: the manager's own judgement, on a
 * state put together from what vireod answered (the cluster's pool is
 * taken to be the drained node's), else what the CLI can tell. */
static void stayed(struct follow *f, const Vireo__VmListReply *lr, const Vireo__NodeInfo *n,
		   const Vireo__Vm *vm, struct track *t, bool evacuation_ended)
{
	const Vireo__VmGroup *g = vireo_group_of(f->groups, t->name);
	Vireo__ClusterState view = VIREO__CLUSTER_STATE__INIT;
	char blocker[256], why[384];

	view.nodes = lr->nodes;
	view.n_nodes = lr->n_nodes;
	view.vms = lr->vms;
	view.n_vms = lr->n_vms;
	view.groups = f->groups ? f->groups->groups : NULL;
	view.n_groups = f->groups ? f->groups->n_groups : 0;
	view.pool_id = n->pool_id;
	/* Pinned here: the manager's sentence is written for placement. */
	if (vm->spec->pinned_node == f->node_id)
		snprintf(why, sizeof(why), "it is pinned to %s (vm create --node)", f->node);
	else if (cluster_manager_drain_blocker(&view, f->node_id, vm, blocker, sizeof(blocker)) == 1)
		snprintf(why, sizeof(why), "%s; it stays on %s", blocker, f->node);
	else if (g && g->strict)
		snprintf(why, sizeof(why), "it is in strict %s group %s and no other node can take "
			 "it by that rule; it stays on %s (see vireo group list)",
			 g->affinity ? "affinity" : "anti-affinity", g->name, f->node);
	else if (evacuation_ended)
		snprintf(why, sizeof(why), "no other node could take it; it stays on %s (see vireo "
			 "vm show %s and vireo node list)", f->node, t->name);
	else
		snprintf(why, sizeof(why), "no other node can take it now; it stays on %s until one "
			 "can (see vireo vm show %s and vireo node list)", f->node, t->name);
	could_not_move(f, t, why);
}

/* One poll. Returns 1 when the follow is over, 0 to poll again. */
static int poll_once(struct follow *f, const Vireo__VmListReply *lr, Vireo__NodeMode mode,
		     size_t *left)
{
	const Vireo__NodeInfo *n = node_by_name(lr, f->node);
	uint64_t now = now_ms();
	bool busy = false, ended;

	*left = 0;
	if (!n)
		return 1;
	for (size_t i = 0; i < lr->n_vms; i++) {
		const Vireo__Vm *vm = lr->vms[i];
		struct track *t = track_of(f, vm->spec->name);

		if (!t)
			continue;       /* created meanwhile, elsewhere */
		step_vm(f, lr, vm, t, now);
		if (!on_node(vm, f->node_id) || t->failed)
			continue;
		(*left)++;
		busy |= vm->state != VIREO__VM_STATE__VM_RUNNING;
	}
	if (busy)
		f->quiet_since_ms = now;
	if (!*left)
		return 1;
	/* An evacuation ends (the node is active again) once nothing more can
	 * move; a maintenance stays, so a long quiet spell says the same. */
	ended = mode == VIREO__NODE_MODE__NODE_EVACUATE && n->mode != VIREO__NODE_MODE__NODE_EVACUATE;
	if (!ended && now - f->quiet_since_ms < STALL_MS)
		return 0;
	for (size_t i = 0; i < lr->n_vms; i++) {
		struct track *t = track_of(f, lr->vms[i]->spec->name);

		if (t && on_node(lr->vms[i], f->node_id) && !t->failed)
			stayed(f, lr, n, lr->vms[i], t, ended);
	}
	*left = 0;
	return 1;
}

static int follow(struct follow *f, Vireo__NodeMode mode, size_t at_start)
{
	struct timespec pause = { 0, POLL_NS };
	uint64_t limit = (uint64_t)WAIT_PER_VM_MS * (at_start ? at_start : 1);
	uint64_t started = now_ms();
	size_t left = at_start;

	f->quiet_since_ms = started;
	for (;;) {
		Vireo__Response *resp;
		int rc, done;

		if ((rc = vireo_fetch_vms(f->cli, "", &resp)) != EXIT_OK)
			return rc;
		done = poll_once(f, resp->vm_list, mode, &left);
		vireo__response__free_unpacked(resp, NULL);
		if (done)
			break;
		if (now_ms() - started > limit) {
			fprintf(stderr, "vireo: gave up waiting after %" PRIu64 " s: %zu VM(s) are still "
				"on %s; the manager goes on moving them (see vireo vm list)\n",
				limit / 1000u, left, f->node);
			return EXIT_FAILED;
		}
		nanosleep(&pause, NULL);
	}
	if (f->cli->json) {
		json_object *o = json_object_new_object();

		json_object_object_add(o, "event", json_object_new_string("result"));
		json_object_object_add(o, "node", json_object_new_string(f->node));
		json_object_object_add(o, "ok", json_object_new_boolean(f->failed == 0));
		json_object_object_add(o, "moved", json_object_new_int64((int64_t)f->moved));
		json_object_object_add(o, "failed", json_object_new_int64((int64_t)f->failed));
		emit(o);
	} else if (f->failed) {
		printf("%s: %zu VM(s) moved, %zu could not move\n", f->node, f->moved, f->failed);
	} else {
		printf("%s: %s\n", f->node, f->moved ? "every VM moved away" : "no VMs to move");
	}
	return f->failed ? EXIT_FAILED : EXIT_OK;
}

static int set_mode(const struct cli *cli, const char *node, Vireo__NodeMode mode, bool wait)
{
	Vireo__Request req = VIREO__REQUEST__INIT;
	Vireo__NodeModeRequest mr = VIREO__NODE_MODE_REQUEST__INIT;
	Vireo__Response *before = NULL, *groups = NULL, *resp = NULL;
	struct follow f = { .cli = cli, .node = node };
	const Vireo__NodeInfo *n;
	size_t at_start = 0;
	int rc;

	/* What was there before: results from earlier are not this one's. */
	if (wait && ((rc = vireo_fetch_vms(cli, "", &before)) != EXIT_OK ||
		     (rc = vireo_fetch_groups(cli, &groups)) != EXIT_OK))
		goto cleanup;
	f.groups = groups ? groups->groups : NULL;
	if (before && !(n = node_by_name(before->vm_list, node))) {
		fprintf(stderr, "vireo: no node named %s in this cluster; see vireo node list\n", node);
		rc = EXIT_USAGE;
		goto cleanup;
	}
	if (before) {
		f.node_id = n->id;
		if (snapshot(&f, before->vm_list) < 0) {
			fprintf(stderr, "vireo: out of memory\n");
			rc = EXIT_FAILED;
			goto cleanup;
		}
	}
	mr.node = (char *)node;
	mr.mode = mode;
	req.body_case = VIREO__REQUEST__BODY_NODE_MODE;
	req.node_mode = &mr;
	if ((rc = vireo_call(cli, &req, &resp, false)) != EXIT_OK)
		goto cleanup;
	if (cli->json) {
		json_object *o = json_object_new_object();

		json_object_object_add(o, "event", json_object_new_string("mode"));
		json_object_object_add(o, "node", json_object_new_string(node));
		json_object_object_add(o, "mode", json_object_new_string(vireo_node_mode_name(mode)));
		json_object_object_add(o, "message", json_object_new_string(resp->message));
		emit(o);
	} else {
		printf("%s\n", resp->message[0] ? resp->message : "done");
		fflush(stdout);
	}
	if (!wait)
		goto cleanup;
	for (size_t i = 0; i < before->vm_list->n_vms; i++)
		at_start += on_node(before->vm_list->vms[i], f.node_id);
	rc = follow(&f, mode, at_start);
cleanup:
	free(f.vms);
	if (before)
		vireo__response__free_unpacked(before, NULL);
	if (groups)
		vireo__response__free_unpacked(groups, NULL);
	if (resp)
		vireo__response__free_unpacked(resp, NULL);
	return rc;
}

/* NODE and the flags after it; wait_allowed says whether --no-wait fits. */
static int parse(int argc, char **argv, int first, const char *what, bool wait_allowed,
		 const char **node, bool *wait)
{
	*node = NULL;
	*wait = wait_allowed;
	for (int i = first; i < argc; i++) {
		if (strcmp(argv[i], "--no-wait") == 0 && wait_allowed)
			*wait = false;
		else if (argv[i][0] != '-' && !*node)
			*node = argv[i];
		else
			return vireo_usage_error("'%s' does not take '%s'", what, argv[i]);
	}
	if (!*node)
		return vireo_usage_error("'%s' takes the NODE's name", what);
	return EXIT_OK;
}

int vireo_node_main(const struct cli *cli, int argc, char **argv)
{
	const char *sub = argc > 1 ? argv[1] : NULL;
	const char *node;
	bool wait;
	int rc;

	if (sub && strcmp(sub, "evacuate") == 0) {
		if ((rc = parse(argc, argv, 2, "node evacuate", true, &node, &wait)) != EXIT_OK)
			return rc;
		return set_mode(cli, node, VIREO__NODE_MODE__NODE_EVACUATE, wait);
	}
	if (sub && strcmp(sub, "maintenance") == 0) {
		const char *how = argc > 2 ? argv[2] : "";

		if (strcmp(how, "enter") == 0) {
			if ((rc = parse(argc, argv, 3, "node maintenance enter", true, &node, &wait)))
				return rc;
			return set_mode(cli, node, VIREO__NODE_MODE__NODE_MAINTENANCE, wait);
		}
		if (strcmp(how, "exit") == 0) {
			if ((rc = parse(argc, argv, 3, "node maintenance exit", false, &node, &wait)))
				return rc;
			return set_mode(cli, node, VIREO__NODE_MODE__NODE_ACTIVE, false);
		}
		return vireo_usage_error("'node maintenance' takes enter or exit, then the NODE");
	}
	return vireo_usage_error("'node' takes list, maintenance enter|exit NODE or evacuate NODE");
}
