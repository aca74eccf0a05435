/* The simulated world around the manager: hosts that die, freeze, get cut
 * off and come back; the membership and quorum corosync would report, with
 * its delays; and time (what is due when). The guests and each host's
 * resource manager are sim_host.c's, the scripted events sim_events.c's.
 * The model and its delays: tests/sim/README.md. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/timeouts.h"
#include "cluster/vm.h"
#include "tests/sim/sim_world.h"

uint32_t world_token(const struct sim_world *w)
{
	return w->sc->token_ms;
}

int64_t world_now(const struct sim_world *w)
{
	return w->c->now_ms;
}

void world_fact(struct sim_world *w, const struct host *h, const char *fmt, ...)
{
	char text[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	sim_logf(&w->c->log, world_now(w), h ? h->name : "--", "%s", text);
}

void world_broken(struct sim_world *w, const char *fmt, ...)
{
	char text[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	sim_logf(&w->c->log, world_now(w), "--", "%s", text);
	w->c->log.failed = true;
}

int world_vm_index(const struct sim_world *w, const char *name)
{
	for (size_t i = 0; i < w->sc->n_vms; i++)
		if (strcmp(w->sc->vms[i].name, name) == 0)
			return (int)i;
	return -1;
}

const Vireo__Vm *world_state_vm(const struct sim_world *w, int vm)
{
	return cluster_vm_find(w->c->st, w->sc->vms[vm].name);
}

const char *world_vm_name(const struct sim_world *w, int vm)
{
	return w->sc->vms[vm].name;
}

/* ---------------------------------------------------------------- items */

void world_schedule(struct sim_world *w, int64_t at, enum item_kind kind, uint32_t node, int vm,
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
	world_broken(w, "SIM ERROR: more than %d things scheduled at once", MAX_ITEMS);
	w->c->stop = true;
}

bool world_busy(const struct sim_world *w, enum item_kind kind, uint32_t node, int vm)
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
void world_schedule_view(struct sim_world *w, struct host *h, uint32_t delay, int group)
{
	int64_t at = world_now(w) + delay;

	if (at < h->view_due)
		at = h->view_due;
	h->view_due = at;
	world_schedule(w, at, ITEM_VIEW, h->id, -1, 0, group);
}

/* ---------------------------------------------------------------- membership */

bool world_alive(const struct host *h)
{
	return !h->dead && !h->frozen;
}

bool world_is_member(const struct sim_world *w, const struct host *h)
{
	return w->quorum_group >= 0 && h->view_group == w->quorum_group && h->in_cpg;
}

/* A host whose vireod acts on the state: alive, quorate, not hung. */
bool world_acting(const struct sim_world *w, const struct host *h)
{
	return world_alive(h) && h->vireod == VIREOD_UP && world_is_member(w, h);
}

size_t sim_world_members(const struct sim_world *w, uint32_t *out)
{
	size_t n = 0;

	for (size_t i = 1; i <= w->n; i++)
		if (world_is_member(w, &w->hosts[i]))
			out[n++] = (uint32_t)i;
	return n;
}

uint32_t sim_world_manager(const struct sim_world *w)
{
	for (size_t i = 1; i <= w->n; i++) {
		const struct host *h = &w->hosts[i];
		/* The lowest member manages; dead, frozen or hung, it manages
		 * nothing until the others see it leave. */
		if (world_is_member(w, h))
			return world_acting(w, h) ? h->id : 0;
	}
	return 0;
}

uint32_t sim_world_cli_node(const struct sim_world *w)
{
	for (size_t i = 1; i <= w->n; i++)
		if (world_acting(w, &w->hosts[i]))
			return (uint32_t)i;
	return 0;
}

static void schedule_self_fence(struct sim_world *w, struct host *h)
{
	uint32_t t = world_token(w);
	/* It learns that it lost quorum at most the skew after its peers
	 * notice it gone; vireod then has the self-fence bound, and the
	 * watchdog's kill takes at most the kill bound: the worst case of
	 * every step, so that the manager's deadline is tested at its edge. */
	int64_t learned = world_now(w) + VIREO_FENCE_SKEW_MS(t);

	world_schedule(w, learned + VIREO_SELF_FENCE_MS(t), ITEM_SELF_FENCE, h->id, -1, h->quorum_epoch, 0);
	world_schedule(w, learned + VIREO_SELF_FENCE_MS(t) + VIREO_FENCE_KILL_MS(t), ITEM_WATCHDOG_QUORUM,
		 h->id, -1, h->quorum_epoch, 0);
}

void world_engine_reset(struct host *h)
{
	h->engine_quorate = false;
	h->quorate_since = 0;
	h->members = 0;
	memset(h->left_seen, 0, sizeof(h->left_seen));
}

void world_log_membership(struct sim_world *w)
{
	uint32_t members = 0;
	char list[128] = "";

	for (size_t i = 1; i <= w->n; i++)
		if (world_is_member(w, &w->hosts[i])) {
			members |= 1u << i;
			snprintf(list + strlen(list), sizeof(list) - strlen(list), " %s", w->hosts[i].name);
		}
	if (w->logged_any && members == w->logged_members)
		return;
	w->logged_any = true;
	w->logged_members = members;
	if (members)
		world_fact(w, NULL, "quorate membership:%s", list);
	else
		world_fact(w, NULL, "no partition is quorate");
}

/* After any ring or CPG change: quorum, each engine's view of who left
 * when, and the cut-off hosts' self-fencing. */
void world_recompute(struct sim_world *w)
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
		bool in_ring = world_alive(h) && h->view_group >= 0;
		int q = in_ring ? h->view_group == w->quorum_group : -1;
		uint32_t members = 0;

		if (q != h->quorate) {
			h->quorate = q;
			h->quorum_epoch++;
			if (q == 0)
				schedule_self_fence(w, h);
		}
		if (!in_ring || h->vireod == VIREOD_DOWN) {
			world_engine_reset(h);
			continue;
		}
		for (size_t j = 1; j <= w->n; j++)
			if (w->hosts[j].view_group == h->view_group && w->hosts[j].in_cpg)
				members |= 1u << j;
		for (size_t j = 1; j <= w->n; j++)
			if ((h->members & (1u << j)) && !(members & (1u << j)))
				h->left_seen[j] = world_now(w);
		h->members = members;
		if (q == 1 && !h->engine_quorate)
			h->quorate_since = world_now(w);
		h->engine_quorate = q == 1;
	}
}

uint64_t sim_world_absent_ms(const struct sim_world *w, uint32_t mgr, uint32_t node)
{
	const struct host *h = &w->hosts[mgr];
	int64_t since = h->quorate_since;

	if (node == 0 || node > w->n || world_is_member(w, &w->hosts[node]))
		return 0;
	if (h->left_seen[node] > since)
		since = h->left_seen[node];
	return world_now(w) > since ? (uint64_t)(world_now(w) - since) : 0;
}

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
	case ITEM_STOP:
	case ITEM_COMMIT:
	case ITEM_RESUME:
		world_host_timer(w, it);
		break;
	case ITEM_SELF_FENCE:
		if (world_alive(h) && h->quorum_epoch == it->tag && h->vireod == VIREOD_UP)
			world_fence_host(w, h, "self-fence:", "quorum lost");
		break;
	case ITEM_WATCHDOG_QUORUM:
		if (world_alive(h) && h->quorum_epoch == it->tag)
			world_fence_host(w, h, "watchdog:", "quorum lost and vireod did not fence");
		break;
	case ITEM_WATCHDOG_HUNG:
		if (!world_alive(h) || h->epoch != it->tag || h->vireod != VIREOD_HUNG)
			break;
		snprintf(why, sizeof(why), "vireod silent for %u ms", VIREO_WATCHDOG_TIMEOUT_MS(world_token(w)));
		world_fence_host(w, h, "watchdog:", why);
		world_fact(w, h, "watchdog: kills the silent vireod");
		h->vireod = VIREOD_DOWN;
		h->in_cpg = false;
		world_recompute(w);
		break;
	case ITEM_LEAVE_GRACE:
		if (world_alive(h) && h->epoch == it->tag && h->vireod == VIREOD_DOWN)
			world_fence_host(w, h, "watchdog:", "no vireod took over within the leave grace");
		break;
	}
}

void sim_world_fire(struct sim_world *w)
{
	for (;;) {
		struct item *next = NULL;

		for (size_t i = 0; i < MAX_ITEMS; i++) {
			struct item *it = &w->items[i];
			if (it->used && it->time_ms <= world_now(w) &&
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
			world_recompute(w);
		}
		fire(w, &it);
	}
	if (w->views_changed) {
		w->views_changed = false;
		world_recompute(w);
	}
	world_log_membership(w);
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
	world_recompute(w);
	world_log_membership(w);
	*out = w;
	return 0;
}

void sim_world_free(struct sim_world *w)
{
	free(w);
}
