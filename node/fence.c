/* vireod's side of fencing (doc/failover.md, "Host side").
 *
 * Self-fencing: once this node has been in the quorate partition and then
 * leaves it (votequorum says so, or corosync is gone), it destroys every
 * running guest of an HA VM here (and of the other VMs with
 * nonha_on_quorum_loss = stop) within VIREO_SELF_FENCE_MS: the quorate
 * side fails them over once VIREO_FENCE_DELAY_MS has passed, so they must
 * be gone by then. Guests of VMs the state does not know are left alone.
 *
 * The watchdog: vireo-watchdog kills those guests when this vireod cannot.
 * Every VIREO_WATCHDOG_FEED_MS we tell it which guests must die if we go
 * silent; after a loss, an empty list confirms the self-fence. A clean
 * stop tells the cluster (NodeLeaving) and the watchdog (a leaving feed)
 * that the guests run on for VIREO_LEAVE_GRACE_MS for the next vireod.
 *
 * No feed goes out before this vireod has been quorate once: until then it
 * has decided nothing, and what a cleanly stopped predecessor left stays
 * under the watchdog's grace. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <qb/qblog.h>

#include "cluster/timeouts.h"
#include "cluster/vm.h"
#include "hypervisor/hv.h"
#include "node/daemon.h"
#include "node/hv_calls.h"
#include "node/watchdog.h"

#define NS_PER_MS 1000000ull

struct node_fence {
	int fd;                        /* to vireo-watchdog, -1 when not connected */
	qb_loop_timer_handle feed_timer;
	qb_loop_timer_handle check_timer;
	bool check_soon;
	uint64_t retry_ms;             /* next connection attempt (monotonic) */
	uint32_t backoff_ms;
	bool warned;                   /* "no watchdog" said, for this outage */
	bool armed;                    /* quorate once since start */
	bool lost;                     /* out of the quorate partition since lost_ms */
	uint64_t lost_ms;
	const char *lost_why;
	bool fenced;                   /* this loss's guests are destroyed */
	uint64_t loss;                 /* counts losses: answers of an older one are ignored */
	bool fencing;                  /* this loss's list or destroys are in flight */
	unsigned destroying;           /* destroys not answered yet */
	bool fence_failed;             /* one of them failed: not confirmed */
	bool leaving;                  /* SIGTERM: NodeLeaving proposed, flushing */
	uint64_t leave_deadline_ms;
	qb_loop_timer_handle leave_timer;
};

static bool quorate_now(const struct node_daemon *d)
{
	return d->engine && cluster_engine_quorate(d->engine);
}

static const cluster_state *known_state(const struct node_daemon *d)
{
	return d->engine ? cluster_engine_state(d->engine) : d->loaded_state;
}

/* ------------------------------------------------------------ self-fencing */

static void fence_done(struct node_daemon *d);

/* One destroy of a self-fence answered. */
static void destroyed(struct node_daemon *d, const struct node_hv_call *call)
{
	struct node_fence *f = d->fence;
	const cluster_state *st = known_state(d);
	const Vireo__Vm *vm = st ? cluster_vm_find(st, call->name) : NULL;

	if (call->rc == -ECANCELED || !f || (uint64_t)(uintptr_t)call->ctx != f->loss)
		return;     /* vireod stops, or an older loss's */
	node_vms_answered(d, call->name);
	if (call->rc < 0 && call->rc != -ESRCH && call->rc != -ENOENT) {
		qb_log(LOG_ERR, "self-fencing: cannot destroy guest %s: %s; the watchdog kills it",
		       call->name, call->error);
		f->fence_failed = true;
	} else if (!vm || vm->spec->ha) {
		qb_log(LOG_WARNING, "self-fencing: destroyed HA guest %s (%s)", call->name, f->lost_why);
	} else {
		qb_log(LOG_WARNING, "self-fencing: destroyed guest %s (%s; nonha_on_quorum_loss = stop)",
		       call->name, f->lost_why);
	}
	if (--f->destroying == 0)
		fence_done(d);
}

static void fence_destroy(struct node_daemon *d, struct node_fence *f, const char *name, void *ctx)
{
	if (node_hv_submit(d, NODE_HV_DESTROY, name, destroyed, ctx) == 0) {
		f->destroying++;
	} else {
		qb_log(LOG_ERR, "self-fencing: cannot destroy guest %s; the watchdog kills it", name);
		f->fence_failed = true;
	}
}

static bool listed_up(const struct node_hv_call *call, const char *name)
{
	for (size_t i = 0; i < call->n_vms; i++)
		if (strcmp(call->vms[i].name, name) == 0)
			return call->vms[i].state == HV_STATE_RUNNING ||
			       call->vms[i].state == HV_STATE_PAUSED ||
			       call->vms[i].state == HV_STATE_SHUTTING_DOWN;
	return false;
}

/* A VM of this node with a call in flight (a start submitted just before
 * quorum was lost) may run once that call ends, after the list: a destroy
 * queued behind it (one VM's calls run in order) makes sure it does not. */
static void fence_busy_vms(struct node_daemon *d, struct node_fence *f, const cluster_state *st,
			   const struct node_hv_call *call)
{
	uint32_t me = d->engine ? cluster_engine_local_id(d->engine) : 0;

	for (size_t i = 0; st && me && i < st->n_vms; i++) {
		const Vireo__Vm *vm = st->vms[i];

		if (vm->owner != me || listed_up(call, vm->spec->name) ||
		    !node_hv_busy(d, vm->spec->name) || (!vm->spec->ha && !d->cfg.nonha_stop))
			continue;
		qb_log(LOG_WARNING, "self-fencing: guest %s has a hypervisor call in flight; "
		       "destroying it after that call", vm->spec->name);
		fence_destroy(d, f, vm->spec->name, call->ctx);
	}
}

/* The list of a self-fence answered: destroys the guests that must not
 * outlive quorum here (guests of VMs the state does not know are left
 * alone). */
static void fence_listed(struct node_daemon *d, const struct node_hv_call *call)
{
	struct node_fence *f = d->fence;
	const cluster_state *st = known_state(d);
	uint64_t loss = (uint64_t)(uintptr_t)call->ctx;

	if (call->rc == -ECANCELED || !f || loss != f->loss || !f->lost)
		return;
	if (call->rc < 0) {
		qb_log(LOG_ERR, "self-fencing: cannot list the guests of this host: %s; the watchdog "
		       "kills the HA guests", call->error);
		f->fencing = false;
		return;
	}
	f->destroying = 1;      /* held until every destroy is submitted */
	f->fence_failed = false;
	for (size_t i = 0; i < call->n_vms; i++) {
		const struct hv_vm_info *dom = &call->vms[i];
		const Vireo__Vm *vm = st ? cluster_vm_find(st, dom->name) : NULL;
		bool up = dom->state == HV_STATE_RUNNING || dom->state == HV_STATE_PAUSED ||
			  dom->state == HV_STATE_SHUTTING_DOWN;

		if (!up || !vm || !(dom->vireo || strcmp(dom->uuid, vm->spec->uuid) == 0))
			continue;
		if (!vm->spec->ha && !d->cfg.nonha_stop) {
			qb_log(LOG_NOTICE, "self-fencing: keeping non-HA guest %s (nonha_on_quorum_loss "
			       "= keep)", dom->name);
			continue;
		}
		fence_destroy(d, f, dom->name, call->ctx);
	}
	fence_busy_vms(d, f, st, call);
	if (--f->destroying == 0)
		fence_done(d);
}

/* Starts destroying the guests that must not outlive quorum here, in the
 * hypervisor's workers; fence_done confirms. When libvirt does not answer
 * in time, the watchdog (not confirmed) kills them. */
static void self_fence(struct node_daemon *d)
{
	struct node_fence *f = d->fence;
	int rc;

	if (!d->vms || !node_vms_driver(d)->connected(node_vms_conn(d))) {
		qb_log(LOG_ERR, "self-fencing: libvirt is not connected; the watchdog kills the HA "
		       "guests of this host");
		return;
	}
	if ((rc = node_hv_submit(d, NODE_HV_LIST, NULL, fence_listed, (void *)(uintptr_t)f->loss)) < 0) {
		qb_log(LOG_ERR, "self-fencing: cannot list the guests of this host: %s; the watchdog "
		       "kills the HA guests", strerror(-rc));
		return;
	}
	f->fencing = true;
}

/* ------------------------------------------------------------ the watchdog */

static void disconnect(struct node_fence *f)
{
	if (f->fd >= 0)
		close(f->fd);
	f->fd = -1;
}

static void try_connect(struct node_daemon *d, uint64_t now)
{
	struct node_fence *f = d->fence;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	const char *path = d->cfg.watchdog_socket;
	int fd, rc;

	if (f->fd >= 0 || now < f->retry_ms)
		return;
	if (!path[0]) {
		if (!f->warned)
			qb_log(LOG_WARNING, "no watchdog: a hung vireod cannot be fenced "
			       "(watchdog_socket = none)");
		f->warned = true;
		f->retry_ms = UINT64_MAX;
		return;
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		f->fd = fd;
		f->warned = false;
		f->backoff_ms = 0;
		qb_log(LOG_NOTICE, "connected to vireo-watchdog at %s", path);
		return;
	}
	rc = errno;
	if (fd >= 0)
		close(fd);
	if (!f->warned)
		qb_log(LOG_WARNING, "no watchdog: a hung vireod cannot be fenced (cannot reach "
		       "vireo-watchdog at %s: %s); going on, and trying again", path, strerror(rc));
	f->warned = true;
	f->backoff_ms = f->backoff_ms ? f->backoff_ms * 2 : VIREO_RECONNECT_MIN_MS(d->token_ms);
	if (f->backoff_ms > VIREO_RECONNECT_MAX_MS(d->token_ms))
		f->backoff_ms = VIREO_RECONNECT_MAX_MS(d->token_ms);
	f->retry_ms = now + f->backoff_ms;
}

/* The guests that must die if this vireod goes silent: those of HA VMs
 * (all VMs with nonha_on_quorum_loss = stop) that may run here. None once
 * a loss's self-fence is done. The entries point into the state. */
static size_t guest_list(struct node_daemon *d, Vireo__WatchdogGuest *gs, size_t max)
{
	const cluster_state *st = known_state(d);
	uint32_t me = d->engine ? cluster_engine_local_id(d->engine) : 0;
	size_t n = 0;

	if (!st || !me || (d->fence->lost && d->fence->fenced))
		return 0;
	for (size_t i = 0; i < st->n_vms && n < max; i++) {
		const Vireo__Vm *vm = st->vms[i];
		const Vireo__VmMigration *m = vm->migration;
		bool here = vm->owner == me || (m && (m->source == me || m->target == me));

		if (!here || (!vm->spec->ha && !d->cfg.nonha_stop) ||
		    vm->state == VIREO__VM_STATE__VM_STOPPED || vm->state == VIREO__VM_STATE__VM_PENDING)
			continue;
		vireo__watchdog_guest__init(&gs[n]);
		gs[n].name = vm->spec->name;
		gs[n].uuid = vm->spec->uuid;
		n++;
	}
	return n;
}

static void send_feed(struct node_daemon *d, bool leaving)
{
	struct node_fence *f = d->fence;
	const cluster_state *st = known_state(d);
	size_t max = st ? st->n_vms : 0;
	Vireo__WatchdogFeed feed = VIREO__WATCHDOG_FEED__INIT;
	Vireo__WatchdogGuest *gs = max ? calloc(max, sizeof(*gs)) : NULL;
	Vireo__WatchdogGuest **ptrs = max ? calloc(max, sizeof(*ptrs)) : NULL;
	uint8_t *buf = NULL;
	size_t len;
	ssize_t sent;
	int rc;

	if (f->fd < 0)
		goto cleanup;
	if (max && (!gs || !ptrs)) {
		qb_log(LOG_ERR, "out of memory feeding the watchdog");
		goto cleanup;
	}
	feed.n_guests = guest_list(d, gs, max);
	for (size_t i = 0; i < feed.n_guests; i++)
		ptrs[i] = &gs[i];
	feed.guests = ptrs;
	feed.quorate = quorate_now(d);
	feed.leaving = leaving;
	feed.timeout_ms = leaving ? VIREO_LEAVE_GRACE_MS(d->token_ms) :
				    VIREO_WATCHDOG_TIMEOUT_MS(d->token_ms);
	if ((rc = watchdog_frame_pack(&feed, &buf, &len)) < 0) {
		qb_log(LOG_ERR, "cannot pack the watchdog feed: %s", strerror(-rc));
		goto cleanup;
	}
	/* A whole frame or nothing: a watchdog this far behind hangs. */
	sent = send(f->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (sent != (ssize_t)len) {
		qb_log(LOG_WARNING, "lost vireo-watchdog (%s); reconnecting",
		       sent < 0 ? strerror(errno) : "it does not keep up");
		disconnect(f);
		f->retry_ms = 0;
	}
cleanup:
	free(buf);
	free(ptrs);
	free(gs);
}

/* ------------------------------------------------------------ quorum */

static void check(struct node_daemon *d)
{
	struct node_fence *f = d->fence;
	uint64_t now = node_now_mono_ms();

	if (quorate_now(d)) {
		if (f->lost)
			qb_log(LOG_NOTICE, "back in the quorate partition after %" PRIu64 " ms",
			       now - f->lost_ms);
		f->lost = false;
		f->fenced = false;
		/* The first feed at once, not at the next tick: the watchdog times
		 * this vireod from its first feed on, and a pass that hangs in
		 * libvirt before that tick would never be caught. */
		if (!f->armed) {
			f->armed = true;
			send_feed(d, false);
		}
		return;
	}
	if (!f->armed || f->leaving)
		return;     /* nothing decided here yet, or a stop is under way */
	if (!f->lost) {
		f->lost = true;
		f->lost_ms = now;
		f->fenced = false;
		f->fencing = false;
		f->loss++;
		f->lost_why = d->engine && cluster_engine_connected(d->engine) ? "lost quorum" :
			      "lost the connection to corosync";
		qb_log(LOG_WARNING, "self-fencing: this node %s; destroying its HA guests within "
		       "%u ms", f->lost_why, VIREO_SELF_FENCE_MS(d->token_ms));
	}
	if (!f->fenced && !f->fencing)
		self_fence(d);
}

/* Every destroy of this loss answered. */
static void fence_done(struct node_daemon *d)
{
	struct node_fence *f = d->fence;
	uint64_t now = node_now_mono_ms();

	f->fencing = false;
	if (f->fence_failed || !f->lost)
		return;     /* the watchdog kills what is left; a later check tries again */
	f->fenced = true;
	if (now - f->lost_ms > VIREO_SELF_FENCE_MS(d->token_ms))
		qb_log(LOG_WARNING, "self-fencing took %" PRIu64 " ms, more than the %u ms the "
		       "watchdog waits", now - f->lost_ms, VIREO_SELF_FENCE_MS(d->token_ms));
	/* The confirmation now, not at the next feed. */
	send_feed(d, false);
}

static void check_fired(void *data)
{
	struct node_daemon *d = data;

	d->fence->check_soon = false;
	node_busy_begin(d, "self-fencing");
	check(d);
	node_busy_end(d);
}

void node_fence_quorum(struct node_daemon *d, bool quorate)
{
	struct node_fence *f = d->fence;

	(void)quorate;      /* the engine's view, which check() reads, includes the connection */
	if (!f || f->check_soon)
		return;
	/* Not from inside corosync's dispatch: destroying guests takes a while. */
	f->check_soon = true;
	qb_loop_timer_add(d->loop, QB_LOOP_HIGH, 0, d, check_fired, &f->check_timer);
}

static void feed_fired(void *data)
{
	struct node_daemon *d = data;
	struct node_fence *f = d->fence;

	f->feed_timer = 0;
	node_busy_begin(d, "self-fencing and the watchdog's feed");
	check(d);
	try_connect(d, node_now_mono_ms());
	if (f->armed)
		send_feed(d, false);
	node_busy_end(d);
	qb_loop_timer_add(d->loop, QB_LOOP_HIGH, VIREO_WATCHDOG_FEED_MS(d->token_ms) * NS_PER_MS,
			  d, feed_fired, &f->feed_timer);
}

/* ------------------------------------------------------------ start, stop */

int node_fence_start(struct node_daemon *d)
{
	struct node_fence *f = calloc(1, sizeof(*f));

	if (!f)
		return -ENOMEM;
	f->fd = -1;
	d->fence = f;
	try_connect(d, node_now_mono_ms());
	qb_loop_timer_add(d->loop, QB_LOOP_HIGH, VIREO_WATCHDOG_FEED_MS(d->token_ms) * NS_PER_MS,
			  d, feed_fired, &f->feed_timer);
	return 0;
}

/* Whether the cluster log has our NodeLeaving (the state shows the grace). */
static bool leave_recorded(const struct node_daemon *d)
{
	const cluster_state *st = known_state(d);
	uint32_t me = d->engine ? cluster_engine_local_id(d->engine) : 0;

	for (size_t i = 0; st && i < st->n_nodes; i++)
		if (st->nodes[i]->id == me)
			return st->nodes[i]->leave_grace_ms != 0;
	return false;
}

static void leave_poll(void *data)
{
	struct node_daemon *d = data;
	struct node_fence *f = d->fence;
	bool sent = d->engine && cluster_engine_send_backlog(d->engine) == 0;

	f->leave_timer = 0;
	if (leave_recorded(d) || node_now_mono_ms() >= f->leave_deadline_ms) {
		if (leave_recorded(d))
			qb_log(LOG_NOTICE, "the cluster knows this node stops cleanly");
		else
			qb_log(sent ? LOG_INFO : LOG_WARNING, "NodeLeaving %s; stopping anyway",
			       sent ? "sent, not applied yet" : "not sent in time");
		qb_loop_stop(d->loop);
		return;
	}
	qb_loop_timer_add(d->loop, QB_LOOP_HIGH, VIREO_SEND_RETRY_MS(d->token_ms) * NS_PER_MS, d,
			  leave_poll, &f->leave_timer);
}

void node_fence_shutdown(struct node_daemon *d)
{
	struct node_fence *f = d->fence;
	Vireo__Op op = VIREO__OP__INIT;
	Vireo__NodeLeaving nl = VIREO__NODE_LEAVING__INIT;
	uint64_t id;
	int rc;

	/* A second signal, or nobody to tell: stop now. */
	if (!f || f->leaving || !quorate_now(d)) {
		qb_loop_stop(d->loop);
		return;
	}
	nl.node = cluster_engine_local_id(d->engine);
	nl.grace_ms = VIREO_LEAVE_GRACE_MS(d->token_ms);
	op.body_case = VIREO__OP__BODY_NODE_LEAVING;
	op.node_leaving = &nl;
	if ((rc = cluster_engine_propose(d->engine, &op, &id)) < 0) {
		qb_log(LOG_WARNING, "cannot tell the cluster this node stops cleanly: %s",
		       strerror(-rc));
		qb_loop_stop(d->loop);
		return;
	}
	qb_log(LOG_NOTICE, "telling the cluster this node stops cleanly: its guests run on for "
	       "%" PRIu64 " ms for the next vireod", nl.grace_ms);
	/* A short flush: the op only has to reach corosync, which delivers
	 * it in order before our leaving the group. */
	f->leaving = true;
	f->leave_deadline_ms = node_now_mono_ms() + VIREO_WATCHDOG_FEED_MS(d->token_ms);
	leave_poll(d);
}

void node_fence_stop(struct node_daemon *d)
{
	struct node_fence *f = d->fence;

	if (!f)
		return;
	if (f->fd >= 0 && f->armed) {
		send_feed(d, true);
		if (f->fd >= 0)
			qb_log(LOG_NOTICE, "told vireo-watchdog this is a clean stop: the guests it "
			       "protects run on for %u ms for the next vireod",
			       VIREO_LEAVE_GRACE_MS(d->token_ms));
	}
	disconnect(f);
	if (f->feed_timer)
		qb_loop_timer_del(d->loop, f->feed_timer);
	if (f->check_soon)
		qb_loop_timer_del(d->loop, f->check_timer);
	if (f->leave_timer)
		qb_loop_timer_del(d->loop, f->leave_timer);
	free(f);
	d->fence = NULL;
}
