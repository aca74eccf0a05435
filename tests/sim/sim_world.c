/* The simulated world around the manager: hosts that die, freeze, get cut
 * off and come back; the membership and quorum corosync would report, with
 * its delays; the guests that really run (the sim's truth, which the
 * cluster state only believes); and each host's local resource manager,
 * which turns the state into guests and reports (like node/vm_local.c and
 * node/vm_migrate.c). The model and its delays: tests/sim/README.md. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/timeouts.h"
#include "cluster/vm.h"
#include "tests/sim/sim.h"

#define MAX_GUESTS (4 * SIM_MAX_VMS)
#define MAX_ITEMS 2048

enum guest_kind {
	GUEST_RUNNING,    /* runs (or sits paused by libvirt) holding its disk leases */
	GUEST_PAUSED,     /* a migration's target after the commit: holds the leases */
	GUEST_INCOMING,   /* a migration's target before the commit: no leases yet */
};

struct guest {
	bool used;
	int vm;                       /* index into the scenario's VMs */
	uint32_t node;
	enum guest_kind kind;
	uint64_t migration;           /* incoming: the migration it belongs to */
	bool revoked;                 /* its lease was broken while its host was frozen */
};

enum vireod { VIREOD_UP, VIREOD_HUNG, VIREOD_DOWN };

struct host {
	uint32_t id;
	char name[8];
	bool dead, frozen;
	enum vireod vireod;
	int phys_group;               /* its network partition (0: the main one) */
	int view_group;               /* the ring corosync reports it in; -1: none */
	bool in_cpg;                  /* its vireod is a CPG member (a hung one is) */
	int64_t view_due;             /* when its last scheduled ring change happens */
	uint64_t epoch;               /* any change of the host: older timers are void */
	/* votequorum on this host: -1 unknown (dead, frozen, out of every ring) */
	int quorate;
	uint64_t quorum_epoch;
	/* this host's engine (cluster/engine.c), for absent_ms */
	bool engine_quorate;
	int64_t quorate_since;
	int64_t left_seen[SIM_MAX_NODES + 1];
	uint32_t members;             /* bit per node id */
};

enum item_kind {
	ITEM_VIEW,           /* a ring change reaches this host's corosync and its peers */
	ITEM_START,          /* the guest of a STARTING VM is up */
	ITEM_REVIVE,         /* a guest that died while its VM runs is restarted here */
	ITEM_STOP,           /* a STOPPING VM's guest is off */
	ITEM_COMMIT,         /* the source's hypervisor finished the migration */
	ITEM_RESUME,         /* the target resumed the migrated guest */
	ITEM_SELF_FENCE,     /* vireod of a cut-off host destroys its HA guests */
	ITEM_WATCHDOG_QUORUM,/* ...or the watchdog does, if vireod did not */
	ITEM_WATCHDOG_HUNG,  /* a silent vireod: the watchdog kills its guests and it */
	ITEM_LEAVE_GRACE,    /* a cleanly stopped vireod was not replaced in time */
};

struct item {
	bool used;
	int64_t time_ms;
	uint64_t seq;                 /* equal times fire in the order they were made */
	enum item_kind kind;
	uint32_t node;
	int vm;
	uint64_t tag;                 /* generation, migration id, host or quorum epoch */
	int group;                    /* ITEM_VIEW: the new ring, -1 none */
};

struct sim_world {
	const struct sim_scenario *sc;
	struct sim_cluster *c;
	struct host hosts[SIM_MAX_NODES + 1];
	size_t n;
	struct guest guests[MAX_GUESTS];
	struct item items[MAX_ITEMS];
	uint64_t next_seq;
	int next_group;
	int quorum_group;             /* the quorate ring, -1 none */
	uint32_t logged_members;      /* the quorate membership last logged */
	bool logged_any;
	enum sim_lease lease[SIM_MAX_VMS];
	unsigned fail_migration[SIM_MAX_VMS];   /* migrations of the VM still to fail */
	/* A migration whose stream stalled: its source waits for the target
	 * to be recorded offline, then rolls back (vm_migrate.c). */
	uint64_t stalled[SIM_MAX_VMS];
	bool views_changed;           /* ring changes fired, quorum not yet recomputed */
};

static uint32_t token(const struct sim_world *w)
{
	return w->sc->token_ms;
}

static int64_t now(const struct sim_world *w)
{
	return w->c->now_ms;
}

static void fact(struct sim_world *w, const struct host *h, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* A line about the world (not an operation): who is h's name, or "--". */
static void fact(struct sim_world *w, const struct host *h, const char *fmt, ...)
{
	char text[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	sim_logf(&w->c->log, now(w), h ? h->name : "--", "%s", text);
}

static void broken(struct sim_world *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The run cannot be trusted any more (a scenario that asks for the
 * impossible, a broken invariant): logged and failed. */
static void broken(struct sim_world *w, const char *fmt, ...)
{
	char text[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	sim_logf(&w->c->log, now(w), "--", "%s", text);
	w->c->log.failed = true;
}

static int vm_index(const struct sim_world *w, const char *name)
{
	for (size_t i = 0; i < w->sc->n_vms; i++)
		if (strcmp(w->sc->vms[i].name, name) == 0)
			return (int)i;
	return -1;
}

static const Vireo__Vm *state_vm(const struct sim_world *w, int vm)
{
	return cluster_vm_find(w->c->st, w->sc->vms[vm].name);
}

static const char *vm_name(const struct sim_world *w, int vm)
{
	return w->sc->vms[vm].name;
}

/* ---------------------------------------------------------------- items */

static void schedule(struct sim_world *w, int64_t at, enum item_kind kind, uint32_t node, int vm,
		     uint64_t tag, int group)
{
	for (size_t i = 0; i < MAX_ITEMS; i++) {
		struct item *it = &w->items[i];
		if (it->used)
			continue;
		*it = (struct item){ .used = true, .time_ms = at, .seq = ++w->next_seq, .kind = kind,
				     .node = node, .vm = vm, .tag = tag, .group = group };
		return;
	}
	broken(w, "SIM ERROR: more than %d things scheduled at once", MAX_ITEMS);
	w->c->stop = true;
}

static bool busy(const struct sim_world *w, enum item_kind kind, uint32_t node, int vm)
{
	for (size_t i = 0; i < MAX_ITEMS; i++) {
		const struct item *it = &w->items[i];
		if (it->used && it->kind == kind && it->node == node && it->vm == vm)
			return true;
	}
	return false;
}

int64_t sim_world_next_ms(const struct sim_world *w)
{
	int64_t next = -1;

	for (size_t i = 0; i < MAX_ITEMS; i++)
		if (w->items[i].used && (next < 0 || w->items[i].time_ms < next))
			next = w->items[i].time_ms;
	return next;
}

/* A ring change for h: after delay, but never before one already on its
 * way (corosync reports them in order). */
static void schedule_view(struct sim_world *w, struct host *h, uint32_t delay, int group)
{
	int64_t at = now(w) + delay;

	if (at < h->view_due)
		at = h->view_due;
	h->view_due = at;
	schedule(w, at, ITEM_VIEW, h->id, -1, 0, group);
}

/* ---------------------------------------------------------------- guests */

static struct guest *guest_on(struct sim_world *w, int vm, uint32_t node)
{
	for (size_t i = 0; i < MAX_GUESTS; i++)
		if (w->guests[i].used && w->guests[i].vm == vm && w->guests[i].node == node)
			return &w->guests[i];
	return NULL;
}

static bool holds_leases(const struct guest *g)
{
	return g->used && !g->revoked && g->kind != GUEST_INCOMING;
}

/* Invariant 1: no VM runs (or holds its disk writable) on two hosts. */
static void check_invariant(struct sim_world *w, int vm)
{
	char where[128] = "";
	int n = 0;

	for (size_t i = 0; i < MAX_GUESTS; i++) {
		const struct guest *g = &w->guests[i];
		if (g->vm != vm || !holds_leases(g))
			continue;
		n++;
		snprintf(where + strlen(where), sizeof(where) - strlen(where), "%s%s",
			 n > 1 ? " and " : "", w->hosts[g->node].name);
	}
	if (n > 1)
		broken(w, "INVARIANT VIOLATED: %s runs on %s", vm_name(w, vm), where);
}

static struct guest *guest_add(struct sim_world *w, int vm, uint32_t node, enum guest_kind kind)
{
	for (size_t i = 0; i < MAX_GUESTS; i++) {
		struct guest *g = &w->guests[i];
		if (g->used)
			continue;
		*g = (struct guest){ .used = true, .vm = vm, .node = node, .kind = kind };
		check_invariant(w, vm);
		return g;
	}
	broken(w, "SIM ERROR: more than %d guests", MAX_GUESTS);
	w->c->stop = true;
	return NULL;
}

/* Kills h's guests (HA ones only when ha_only) and lists them in out. */
static size_t kill_guests(struct sim_world *w, struct host *h, bool ha_only, char *out, size_t len)
{
	size_t n = 0;

	out[0] = '\0';
	for (int vm = 0; vm < (int)w->sc->n_vms; vm++) {
		struct guest *g = guest_on(w, vm, h->id);
		if (!g || (ha_only && !w->sc->vms[vm].ha))
			continue;
		snprintf(out + strlen(out), len - strlen(out), " %s", vm_name(w, vm));
		g->used = false;
		n++;
	}
	return n;
}

/* ---------------------------------------------------------------- membership */

static bool alive(const struct host *h)
{
	return !h->dead && !h->frozen;
}

static bool is_member(const struct sim_world *w, const struct host *h)
{
	return w->quorum_group >= 0 && h->view_group == w->quorum_group && h->in_cpg;
}

/* A host whose vireod acts on the state: alive, quorate, not hung. */
static bool acting(const struct sim_world *w, const struct host *h)
{
	return alive(h) && h->vireod == VIREOD_UP && is_member(w, h);
}

size_t sim_world_members(const struct sim_world *w, uint32_t *out)
{
	size_t n = 0;

	for (size_t i = 1; i <= w->n; i++)
		if (is_member(w, &w->hosts[i]))
			out[n++] = (uint32_t)i;
	return n;
}

uint32_t sim_world_manager(const struct sim_world *w)
{
	for (size_t i = 1; i <= w->n; i++) {
		const struct host *h = &w->hosts[i];
		/* The lowest member manages; dead, frozen or hung, it manages
		 * nothing until the others see it leave. */
		if (is_member(w, h))
			return acting(w, h) ? h->id : 0;
	}
	return 0;
}

uint32_t sim_world_cli_node(const struct sim_world *w)
{
	for (size_t i = 1; i <= w->n; i++)
		if (acting(w, &w->hosts[i]))
			return (uint32_t)i;
	return 0;
}

static void schedule_self_fence(struct sim_world *w, struct host *h)
{
	uint32_t t = token(w);
	/* It learns that it lost quorum at most the skew after its peers
	 * notice it gone; vireod then has the self-fence bound, and the
	 * watchdog's kill takes at most the kill bound: the worst case of
	 * every step, so that the manager's deadline is tested at its edge. */
	int64_t learned = now(w) + VIREO_FENCE_SKEW_MS(t);

	schedule(w, learned + VIREO_SELF_FENCE_MS(t), ITEM_SELF_FENCE, h->id, -1, h->quorum_epoch, 0);
	schedule(w, learned + VIREO_SELF_FENCE_MS(t) + VIREO_FENCE_KILL_MS(t), ITEM_WATCHDOG_QUORUM,
		 h->id, -1, h->quorum_epoch, 0);
}

static void engine_reset(struct host *h)
{
	h->engine_quorate = false;
	h->quorate_since = 0;
	h->members = 0;
	memset(h->left_seen, 0, sizeof(h->left_seen));
}

static void log_membership(struct sim_world *w)
{
	uint32_t members = 0;
	char list[128] = "";

	for (size_t i = 1; i <= w->n; i++)
		if (is_member(w, &w->hosts[i])) {
			members |= 1u << i;
			snprintf(list + strlen(list), sizeof(list) - strlen(list), " %s", w->hosts[i].name);
		}
	if (w->logged_any && members == w->logged_members)
		return;
	w->logged_any = true;
	w->logged_members = members;
	if (members)
		fact(w, NULL, "quorate membership:%s", list);
	else
		fact(w, NULL, "no partition is quorate");
}

/* After any ring or CPG change: quorum, each engine's view of who left
 * when, and the cut-off hosts' self-fencing. */
static void recompute(struct sim_world *w)
{
	w->quorum_group = -1;
	/* More than half of the configured nodes in one ring (votequorum,
	 * one vote each). */
	for (size_t i = 1; i <= w->n; i++) {
		size_t count = 0;

		if (w->hosts[i].view_group < 0)
			continue;
		for (size_t j = 1; j <= w->n; j++)
			count += w->hosts[j].view_group == w->hosts[i].view_group;
		if (2 * count > w->n)
			w->quorum_group = w->hosts[i].view_group;
	}
	for (size_t i = 1; i <= w->n; i++) {
		struct host *h = &w->hosts[i];
		bool in_ring = alive(h) && h->view_group >= 0;
		int q = in_ring ? h->view_group == w->quorum_group : -1;
		uint32_t members = 0;

		if (q != h->quorate) {
			h->quorate = q;
			h->quorum_epoch++;
			if (q == 0)
				schedule_self_fence(w, h);
		}
		if (!in_ring || h->vireod == VIREOD_DOWN) {
			engine_reset(h);
			continue;
		}
		for (size_t j = 1; j <= w->n; j++)
			if (w->hosts[j].view_group == h->view_group && w->hosts[j].in_cpg)
				members |= 1u << j;
		for (size_t j = 1; j <= w->n; j++)
			if ((h->members & (1u << j)) && !(members & (1u << j)))
				h->left_seen[j] = now(w);
		h->members = members;
		if (q == 1 && !h->engine_quorate)
			h->quorate_since = now(w);
		h->engine_quorate = q == 1;
	}
}

uint64_t sim_world_absent_ms(const struct sim_world *w, uint32_t mgr, uint32_t node)
{
	const struct host *h = &w->hosts[mgr];
	int64_t since = h->quorate_since;

	if (node == 0 || node > w->n || is_member(w, &w->hosts[node]))
		return 0;
	if (h->left_seen[node] > since)
		since = h->left_seen[node];
	return now(w) > since ? (uint64_t)(now(w) - since) : 0;
}

int sim_world_leases_free(const struct sim_world *w, const Vireo__Vm *vm)
{
	int idx = vm_index(w, vm->spec->name);

	if (idx < 0)
		return 1;
	if (w->lease[idx] != SIM_LEASE_AUTO)
		return w->lease[idx] == SIM_LEASE_FREE;
	for (size_t i = 0; i < MAX_GUESTS; i++)
		if (w->guests[i].vm == idx && holds_leases(&w->guests[i]))
			return 0;
	return 1;
}

/* ---------------------------------------------------------------- reports */

static bool apply_op(struct sim_world *w, Vireo__Op *op, uint32_t origin)
{
	return sim_apply(w->c, op, origin) == 0;
}

/* What vm_local.c's report() sends: only a change. */
static bool report(struct sim_world *w, struct host *h, const Vireo__Vm *vm, Vireo__VmState s,
		   const char *message, uint32_t restarts)
{
	Vireo__Op op = VIREO__OP__INIT;
	Vireo__VmReport r = VIREO__VM_REPORT__INIT;

	if (vm->state == s && vm->restarts == restarts && strcmp(vm->message, message) == 0)
		return false;
	r.name = vm->spec->name;
	r.generation = vm->generation;
	r.state = s;
	r.message = (char *)message;
	r.restarts = restarts;
	op.body_case = VIREO__OP__BODY_VM_REPORT;
	op.vm_report = &r;
	apply_op(w, &op, h->id);
	return true;
}

static void migrate_end(struct sim_world *w, struct host *h, const Vireo__Vm *vm, bool ok,
			const char *message)
{
	Vireo__Op op = VIREO__OP__INIT;
	Vireo__VmMigrateEnd e = VIREO__VM_MIGRATE_END__INIT;

	e.name = vm->spec->name;
	e.id = vm->migration->id;
	e.ok = ok;
	e.message = (char *)message;
	e.downtime_ms = ok ? w->sc->resume_ms : 0;
	e.resumed_ms = ok ? now(w) : 0;
	op.body_case = VIREO__OP__BODY_VM_MIGRATE_END;
	op.vm_migrate_end = &e;
	apply_op(w, &op, h->id);
}

/* ---------------------------------------------------------------- host passes */

static bool committed(const Vireo__Vm *vm)
{
	return vm->migration && vm->migration->phase == VIREO__MIGRATION_PHASE__MIGRATION_COMMITTED;
}

/* Whether guest g on h is one the state wants there. */
static bool belongs(const Vireo__Vm *vm, const struct host *h, const struct guest *g)
{
	if (!vm)
		return false;
	if (vm->state == VIREO__VM_STATE__VM_MIGRATING && vm->migration) {
		const Vireo__VmMigration *m = vm->migration;
		if (!committed(vm))
			return (m->source == h->id && g->kind == GUEST_RUNNING) ||
			       (m->target == h->id && g->kind == GUEST_INCOMING && g->migration == m->id);
		return m->target == h->id && vm->owner == h->id && g->kind != GUEST_INCOMING;
	}
	if (vm->owner != h->id || g->kind == GUEST_INCOMING)
		return false;
	/* Fencing: the manager gives it back to this member at once. */
	return vm->state == VIREO__VM_STATE__VM_STARTING || vm->state == VIREO__VM_STATE__VM_RUNNING ||
	       vm->state == VIREO__VM_STATE__VM_STOPPING || vm->state == VIREO__VM_STATE__VM_FENCING;
}

/* Guests this host must not run: their lease was broken while it was
 * frozen, or the cluster has the VM elsewhere (or stopped). The sim's host
 * destroys them at once; vm_local.c only logs guests of other owners. */
static bool sweep_guests(struct sim_world *w, struct host *h)
{
	bool changed = false;

	for (int idx = 0; idx < (int)w->sc->n_vms; idx++) {
		struct guest *g = guest_on(w, idx, h->id);
		const Vireo__Vm *vm = state_vm(w, idx);

		if (!g)
			continue;
		if (g->revoked)
			fact(w, h, "destroys %s: it lost its disk lease while this host was frozen",
			     vm_name(w, idx));
		else if (belongs(vm, h, g))
			continue;
		else if (g->kind == GUEST_INCOMING)
			fact(w, h, "discards the incoming guest of %s: its migration is over",
			     vm_name(w, idx));
		else if (vm && vm->owner == h->id && !vm->want_running)
			fact(w, h, "stops %s: it is %s in the cluster", vm_name(w, idx),
			     cluster_vm_state_name(vm->state));
		else
			fact(w, h, "destroys leftover guest %s: the cluster has it %s on %s",
			     vm_name(w, idx), vm ? cluster_vm_state_name(vm->state) : "deleted",
			     vm ? sim_node_name(w->c->st, vm->owner) : "none");
		g->used = false;
		changed = true;
	}
	return changed;
}

/* node/vm_migrate.c's part for one migrating VM. */
static bool pass_migration(struct sim_world *w, struct host *h, int idx, const Vireo__Vm *vm)
{
	const Vireo__VmMigration *m = vm->migration;
	const Vireo__NodeInfo *target = cluster_state_node(w->c->st, m->target);
	char why[128];

	if (!committed(vm) && m->source == h->id) {
		if (!target || !target->online) {
			snprintf(why, sizeof(why), "the target %s left the cluster",
				 sim_node_name(w->c->st, m->target));
			migrate_end(w, h, vm, false, why);
			return true;
		}
		if (m->cancel) {
			migrate_end(w, h, vm, false, "cancelled by the user");
			return true;
		}
		if (!busy(w, ITEM_COMMIT, h->id, idx) && w->stalled[idx] != m->id)
			schedule(w, now(w) + w->sc->migrate_ms, ITEM_COMMIT, h->id, idx, m->id, 0);
	} else if (!committed(vm) && m->target == h->id) {
		struct guest *g = guest_on(w, idx, h->id);

		if (!g)
			g = guest_add(w, idx, h->id, GUEST_INCOMING);
		if (g && g->kind == GUEST_INCOMING)
			g->migration = m->id;
	} else if (committed(vm) && m->target == h->id && vm->owner == h->id) {
		if (!busy(w, ITEM_RESUME, h->id, idx))
			schedule(w, now(w) + w->sc->resume_ms, ITEM_RESUME, h->id, idx, m->id, 0);
	}
	return false;
}

/* node/vm_local.c's reconcile_owned() for a VM this host owns. */
static bool pass_owned(struct sim_world *w, struct host *h, int idx, const Vireo__Vm *vm)
{
	struct guest *g = guest_on(w, idx, h->id);
	bool up = g && holds_leases(g);

	switch (vm->state) {
	case VIREO__VM_STATE__VM_STARTING:
		if (up)
			return report(w, h, vm, VIREO__VM_STATE__VM_RUNNING, "", vm->restarts);
		if (!busy(w, ITEM_START, h->id, idx))
			schedule(w, now(w) + w->sc->start_ms, ITEM_START, h->id, idx, vm->generation, 0);
		return false;
	case VIREO__VM_STATE__VM_RUNNING:
		if (!up && vm->want_running && !busy(w, ITEM_REVIVE, h->id, idx))
			schedule(w, now(w) + w->sc->start_ms, ITEM_REVIVE, h->id, idx, vm->generation, 0);
		return false;
	case VIREO__VM_STATE__VM_STOPPING:
		if (!up)
			return report(w, h, vm, VIREO__VM_STATE__VM_STOPPED, "", vm->restarts);
		if (!busy(w, ITEM_STOP, h->id, idx))
			schedule(w, now(w) + w->sc->stop_ms, ITEM_STOP, h->id, idx, vm->generation, 0);
		return false;
	default:
		return false;
	}
}

static bool host_pass(struct sim_world *w, struct host *h)
{
	bool changed = sweep_guests(w, h);

	for (int idx = 0; idx < (int)w->sc->n_vms && !w->c->stop; idx++) {
		const Vireo__Vm *vm = state_vm(w, idx);

		if (!vm)
			continue;
		if (vm->state == VIREO__VM_STATE__VM_MIGRATING && vm->migration)
			changed |= pass_migration(w, h, idx, vm);
		else if (vm->owner == h->id)
			changed |= pass_owned(w, h, idx, vm);
	}
	return changed;
}

bool sim_world_pass(struct sim_world *w)
{
	bool changed = false;

	for (size_t i = 1; i <= w->n && !w->c->stop; i++)
		if (acting(w, &w->hosts[i]))
			changed |= host_pass(w, &w->hosts[i]);
	return changed;
}

/* ---------------------------------------------------------------- timers */

static void fire_start(struct sim_world *w, struct host *h, const struct item *it, bool revive)
{
	const Vireo__Vm *vm = state_vm(w, it->vm);
	char msg[96];

	if (!acting(w, h) || !vm || vm->owner != h->id || vm->generation != it->tag ||
	    vm->state != (revive ? VIREO__VM_STATE__VM_RUNNING : VIREO__VM_STATE__VM_STARTING) ||
	    (revive && !vm->want_running) || guest_on(w, it->vm, h->id))
		return;
	if (!guest_add(w, it->vm, h->id, GUEST_RUNNING))
		return;
	if (!revive) {
		report(w, h, vm, VIREO__VM_STATE__VM_RUNNING, "", vm->restarts);
		return;
	}
	snprintf(msg, sizeof(msg), "restarted %u time(s): it stopped", vm->restarts + 1);
	report(w, h, vm, VIREO__VM_STATE__VM_RUNNING, msg, vm->restarts + 1);
}

static void fire_stop(struct sim_world *w, struct host *h, const struct item *it)
{
	const Vireo__Vm *vm = state_vm(w, it->vm);
	struct guest *g = guest_on(w, it->vm, h->id);

	if (!acting(w, h) || !vm || vm->owner != h->id || vm->generation != it->tag ||
	    vm->state != VIREO__VM_STATE__VM_STOPPING)
		return;
	if (g)
		g->used = false;
	report(w, h, vm, VIREO__VM_STATE__VM_STOPPED, "", vm->restarts);
}

/* The source's hypervisor is done: the target holds the whole state. */
static void fire_commit(struct sim_world *w, struct host *h, const struct item *it)
{
	const Vireo__Vm *vm = state_vm(w, it->vm);
	Vireo__Op op = VIREO__OP__INIT;
	Vireo__VmMigrateCommit cm = VIREO__VM_MIGRATE_COMMIT__INIT;
	struct host *t;
	struct guest *src, *dst;

	if (!acting(w, h) || !vm || vm->state != VIREO__VM_STATE__VM_MIGRATING || !vm->migration ||
	    vm->migration->id != it->tag || committed(vm) || vm->migration->source != h->id)
		return;
	t = &w->hosts[vm->migration->target];
	if (w->fail_migration[it->vm]) {
		w->fail_migration[it->vm]--;
		migrate_end(w, h, vm, false, "the hypervisor's migration failed (the scenario says so)");
		return;
	}
	/* The stream needs the target's host and vireod, across no cut. */
	if (!alive(t) || t->vireod != VIREOD_UP || t->phys_group != h->phys_group) {
		fact(w, h, "the migration stream of %s to %s stalls", vm_name(w, it->vm), t->name);
		w->stalled[it->vm] = it->tag;
		return;
	}
	if ((src = guest_on(w, it->vm, h->id)))
		src->used = false;
	if ((dst = guest_on(w, it->vm, t->id))) {
		dst->kind = GUEST_PAUSED;
		check_invariant(w, it->vm);
	} else if (!guest_add(w, it->vm, t->id, GUEST_PAUSED)) {
		return;
	}
	cm.name = vm->spec->name;
	cm.id = vm->migration->id;
	cm.bytes_raw = vm->spec->memory_mib << 20;
	cm.bytes_sent = cm.bytes_raw / 4;
	cm.paused_ms = now(w);
	cm.transfer_ms = w->sc->migrate_ms;
	op.body_case = VIREO__OP__BODY_VM_MIGRATE_COMMIT;
	op.vm_migrate_commit = &cm;
	apply_op(w, &op, h->id);
}

static void fire_resume(struct sim_world *w, struct host *h, const struct item *it)
{
	const Vireo__Vm *vm = state_vm(w, it->vm);
	struct guest *g = guest_on(w, it->vm, h->id);
	char why[128];

	if (!acting(w, h) || !vm || vm->state != VIREO__VM_STATE__VM_MIGRATING || !vm->migration ||
	    vm->migration->id != it->tag || !committed(vm) || vm->owner != h->id)
		return;
	if (!g || !holds_leases(g)) {
		snprintf(why, sizeof(why), "the guest's state did not arrive on %s", h->name);
		migrate_end(w, h, vm, false, why);
		return;
	}
	g->kind = GUEST_RUNNING;
	migrate_end(w, h, vm, true, "");
}

/* The HA guests of a host that may not run them any more. */
static void fence_host(struct sim_world *w, struct host *h, const char *who, const char *why)
{
	char list[256];

	if (kill_guests(w, h, true, list, sizeof(list)))
		fact(w, h, "%s %s; kills:%s", who, why, list);
}

/* Ring changes due at one instant reach everyone together (one
 * configuration change), so quorum is computed once for all of them. */
static void fire_view(struct sim_world *w, struct host *h, const struct item *it)
{
	h->view_group = it->group;
	if (it->group >= 0 && !h->dead)
		h->in_cpg = h->vireod != VIREOD_DOWN;
	w->views_changed = true;
}

static void fire(struct sim_world *w, const struct item *it)
{
	struct host *h = &w->hosts[it->node];
	char why[96];

	switch (it->kind) {
	case ITEM_VIEW:
		fire_view(w, h, it);
		break;
	case ITEM_START:
	case ITEM_REVIVE:
		fire_start(w, h, it, it->kind == ITEM_REVIVE);
		break;
	case ITEM_STOP:
		fire_stop(w, h, it);
		break;
	case ITEM_COMMIT:
		fire_commit(w, h, it);
		break;
	case ITEM_RESUME:
		fire_resume(w, h, it);
		break;
	case ITEM_SELF_FENCE:
		if (alive(h) && h->quorum_epoch == it->tag && h->vireod == VIREOD_UP)
			fence_host(w, h, "self-fence:", "quorum lost");
		break;
	case ITEM_WATCHDOG_QUORUM:
		if (alive(h) && h->quorum_epoch == it->tag)
			fence_host(w, h, "watchdog:", "quorum lost and vireod did not fence");
		break;
	case ITEM_WATCHDOG_HUNG:
		if (!alive(h) || h->epoch != it->tag || h->vireod != VIREOD_HUNG)
			break;
		snprintf(why, sizeof(why), "vireod silent for %u ms", VIREO_WATCHDOG_TIMEOUT_MS(token(w)));
		fence_host(w, h, "watchdog:", why);
		fact(w, h, "watchdog: kills the silent vireod");
		h->vireod = VIREOD_DOWN;
		h->in_cpg = false;
		recompute(w);
		break;
	case ITEM_LEAVE_GRACE:
		if (alive(h) && h->epoch == it->tag && h->vireod == VIREOD_DOWN)
			fence_host(w, h, "watchdog:", "no vireod took over within the leave grace");
		break;
	}
}

void sim_world_fire(struct sim_world *w)
{
	for (;;) {
		struct item *next = NULL;

		for (size_t i = 0; i < MAX_ITEMS; i++) {
			struct item *it = &w->items[i];
			if (it->used && it->time_ms <= now(w) &&
			    (!next || it->time_ms < next->time_ms ||
			     (it->time_ms == next->time_ms && it->seq < next->seq)))
				next = it;
		}
		if (!next || w->c->stop)
			break;
		struct item it = *next;
		next->used = false;
		if (it.kind != ITEM_VIEW && w->views_changed) {
			w->views_changed = false;
			recompute(w);
		}
		fire(w, &it);
	}
	if (w->views_changed) {
		w->views_changed = false;
		recompute(w);
	}
	log_membership(w);
}

/* ---------------------------------------------------------------- events */

static uint32_t detection(const struct sim_world *w)
{
	return VIREO_DETECTION_MS(token(w));
}

/* A ring that forms with a returning node: no token has to be lost
 * first, only corosync's consensus. */
static uint32_t join_delay(const struct sim_world *w)
{
	return VIREO_CONSENSUS_MS(token(w));
}

static void ev_kill(struct sim_world *w, struct host *h)
{
	char list[256];

	if (h->dead) {
		broken(w, "SCENARIO ERROR: kill %s: it is dead already", h->name);
		return;
	}
	kill_guests(w, h, false, list, sizeof(list));
	fact(w, h, "dies%s%s", list[0] ? "; its guests die:" : "", list);
	h->dead = true;
	h->frozen = false;
	h->vireod = VIREOD_DOWN;
	h->epoch++;
	schedule_view(w, h, detection(w), -1);
	recompute(w);
}

static void ev_rejoin(struct sim_world *w, struct host *h)
{
	if (h->dead) {
		fact(w, h, "boots (no guests)");
		h->dead = false;
		h->vireod = VIREOD_UP;
		h->in_cpg = true;
		h->epoch++;
		engine_reset(h);
		schedule_view(w, h, join_delay(w), h->phys_group);
		return;
	}
	if (h->frozen || h->vireod == VIREOD_UP) {
		broken(w, "SCENARIO ERROR: rejoin %s: it is %s (rejoin is for a dead host or a stopped "
		       "or hung vireod)", h->name, h->frozen ? "frozen (resume it)" : "up");
		return;
	}
	fact(w, h, "vireod starts");
	h->vireod = VIREOD_UP;
	h->in_cpg = true;
	h->epoch++;
	engine_reset(h);
	recompute(w);
}

static void ev_leave(struct sim_world *w, struct host *h, uint64_t grace_ms)
{
	Vireo__Op op = VIREO__OP__INIT;
	Vireo__NodeLeaving l = VIREO__NODE_LEAVING__INIT;

	if (!acting(w, h)) {
		broken(w, "SCENARIO ERROR: leave %s: its vireod is not a quorate member", h->name);
		return;
	}
	l.node = h->id;
	l.grace_ms = grace_ms;
	op.body_case = VIREO__OP__BODY_NODE_LEAVING;
	op.node_leaving = &l;
	apply_op(w, &op, h->id);
	fact(w, h, "vireod stops cleanly; its guests run on for %llu ms", (unsigned long long)grace_ms);
	h->vireod = VIREOD_DOWN;
	h->in_cpg = false;
	h->epoch++;
	schedule(w, now(w) + (int64_t)grace_ms, ITEM_LEAVE_GRACE, h->id, -1, h->epoch, 0);
	recompute(w);
}

/* vireod dies outright: it leaves the CPG group at once, and the watchdog
 * kills its HA guests the moment vireod's socket closes. */
static void ev_kill_vireod(struct sim_world *w, struct host *h)
{
	if (!alive(h) || h->vireod == VIREOD_DOWN) {
		broken(w, "SCENARIO ERROR: kill-vireod %s: its vireod is not running", h->name);
		return;
	}
	fact(w, h, "vireod is killed");
	fence_host(w, h, "watchdog:", "vireod's socket closed");
	h->vireod = VIREOD_DOWN;
	h->in_cpg = false;
	h->epoch++;
	recompute(w);
}

/* A user's command, through the CLI on a quorate node. */
static void user_op(struct sim_world *w, const struct sim_event *ev, Vireo__Op *op)
{
	uint32_t via = sim_world_cli_node(w);

	if (!via) {
		fact(w, NULL, "%s: refused, no quorate node to take it", ev->text);
		return;
	}
	apply_op(w, op, via);
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

		d.name = (char *)vm_name(w, ev->vms[i]);
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

	m.name = (char *)vm_name(w, ev->vms[0]);
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
			fact(w, &w->hosts[g->node], "the frozen guest %s loses its disk lease",
			     vm_name(w, vm));
		}
	}
}

static void event(struct sim_world *w, const struct sim_event *ev);

void sim_world_event(struct sim_world *w, const struct sim_event *ev)
{
	fact(w, NULL, ">> %s", ev->text);
	event(w, ev);
	log_membership(w);
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
			if (alive(h))
				schedule_view(w, h, join_delay(w), 0);
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
			if (alive(h))
				schedule_view(w, h, detection(w), w->next_group);
			break;
		case SIM_PAUSE:
			if (!alive(h)) {
				broken(w, "SCENARIO ERROR: pause %s: it is dead or frozen already", h->name);
				break;
			}
			fact(w, h, "freezes; its guests hold their leases");
			h->frozen = true;
			h->epoch++;
			schedule_view(w, h, detection(w), -1);
			recompute(w);
			break;
		case SIM_RESUME:
			if (!h->frozen) {
				broken(w, "SCENARIO ERROR: resume %s: it is not frozen", h->name);
				break;
			}
			fact(w, h, "thaws");
			h->frozen = false;
			h->epoch++;
			engine_reset(h);
			schedule_view(w, h, join_delay(w), h->phys_group);
			break;
		case SIM_REJOIN:
			ev_rejoin(w, h);
			break;
		case SIM_HANG:
			if (!alive(h) || h->vireod != VIREOD_UP) {
				broken(w, "SCENARIO ERROR: hang %s: its vireod is not running", h->name);
				break;
			}
			fact(w, h, "vireod hangs");
			h->vireod = VIREOD_HUNG;
			h->epoch++;
			schedule(w, now(w) + VIREO_WATCHDOG_TIMEOUT_MS(token(w)), ITEM_WATCHDOG_HUNG,
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

/* ---------------------------------------------------------------- life */

int sim_world_new(const struct sim_scenario *sc, struct sim_cluster *c, struct sim_world **out)
{
	struct sim_world *w = calloc(1, sizeof(*w));

	if (!w)
		return -ENOMEM;
	w->sc = sc;
	w->c = c;
	w->n = sc->n_nodes;
	for (size_t i = 1; i <= w->n; i++) {
		struct host *h = &w->hosts[i];
		h->id = (uint32_t)i;
		snprintf(h->name, sizeof(h->name), "n%zu", i);
		h->view_group = 0;
		h->in_cpg = true;
		h->quorate = -1;
	}
	recompute(w);
	log_membership(w);
	*out = w;
	return 0;
}

void sim_world_free(struct sim_world *w)
{
	free(w);
}

void sim_world_summary(const struct sim_world *w)
{
	for (int vm = 0; vm < (int)w->sc->n_vms; vm++)
		for (size_t i = 0; i < MAX_GUESTS; i++) {
			const struct guest *g = &w->guests[i];
			if (!g->used || g->vm != vm)
				continue;
			fprintf(w->c->log.out, "guest %s on %s%s%s%s\n", vm_name(w, vm),
				w->hosts[g->node].name,
				g->kind == GUEST_PAUSED ? " (paused, migrated in)" :
				g->kind == GUEST_INCOMING ? " (incoming)" : "",
				w->hosts[g->node].frozen ? " (frozen)" : "",
				g->revoked ? " (lease broken)" : "");
		}
}
