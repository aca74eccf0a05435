/* Plugs the corosync connection and the replicated state machine into the
 * main loop: fds, reconnect with backoff, the engine's tick, coalesced
 * persistence of the state. */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <qb/qblog.h>

#include "build-config.h"
#include "cluster/persist.h"
#include "util/clock.h"
#include "util/workq.h"
#include "cluster/timeouts.h"
#include "node/daemon.h"

#define NS_PER_MS 1000000ull

/* vireod's clocks are util/clock.h's (libqb's monotonic clock). */
uint64_t node_now_mono_us(void)
{
	return util_mono_us();
}

uint64_t node_now_mono_ms(void)
{
	return util_mono_ms();
}

int64_t node_now_wall_ms(void)
{
	return util_wall_ms();
}

static void schedule_reconnect(struct node_daemon *d);
static void schedule_tick(struct node_daemon *d);

int node_persist_now(struct node_daemon *d)
{
	const cluster_state *st = d->engine ? cluster_engine_state(d->engine) : d->loaded_state;
	int rc;

	d->persist_pending = false;
	if (!st)
		return 0;
	rc = cluster_persist_save(d->cfg.state_dir, st);
	if (rc < 0)
		qb_log(LOG_ERR, "cannot save the cluster state in %s: %s; the state is kept in "
		       "memory and on the other members, free space there", d->cfg.state_dir,
		       strerror(-rc));
	return rc;
}

/* A state packed on the loop, written and fsynced by the "state" worker:
 * a slow local disk must not hold the loop. One write at a time; a change
 * during a write is written after it. */
struct persist_job {
	struct node_daemon *d;
	const char *dir;
	uint8_t *buf;
	size_t len;
	uint64_t version;
	int rc;
};

static void persist_work(void *arg)
{
	struct persist_job *j = arg;

	j->rc = cluster_persist_write(j->dir, j->buf, j->len);
}

static void persist_start(struct node_daemon *d);

static void persist_done(void *arg, int rc)
{
	struct persist_job *j = arg;
	struct node_daemon *d = j->d;

	d->persist_writing = false;
	if (rc < 0)
		d->persist_pending = true;       /* never ran: node_cluster_stop writes it */
	else if (j->rc < 0) {
		qb_log(LOG_ERR, "cannot save the cluster state (version %" PRIu64 ") in %s: %s; the "
		       "state is kept in memory and on the other members, free space there",
		       j->version, d->cfg.state_dir, strerror(-j->rc));
		d->persist_pending = true;       /* the next change, or the stop, tries again */
	}
	free(j->buf);
	free(j);
	if (rc == 0 && d->persist_again) {
		d->persist_again = false;
		persist_start(d);
	}
}

static void persist_start(struct node_daemon *d)
{
	const cluster_state *st = d->engine ? cluster_engine_state(d->engine) : d->loaded_state;
	struct persist_job *j;
	int rc = -ENOMEM;

	if (d->persist_writing) {
		d->persist_again = true;
		return;
	}
	d->persist_pending = false;
	if (!st)
		return;
	if (!(j = calloc(1, sizeof(*j))) || (rc = cluster_state_pack(st, &j->buf, &j->len)) < 0)
		goto fail;
	j->d = d;
	j->dir = d->cfg.state_dir;
	j->version = st->version;
	if ((rc = util_workq_submit(d->persist_q, NULL, "saving the cluster state", persist_work,
				    persist_done, j)) < 0)
		goto fail;
	d->persist_writing = true;
	return;
fail:
	qb_log(LOG_ERR, "cannot save the cluster state: %s", strerror(-rc));
	d->persist_pending = true;
	if (j)
		free(j->buf);
	free(j);
}

static void persist_timer_fired(void *data)
{
	((struct node_daemon *)data)->persist_timer_armed = false;
	node_busy_begin(data, "saving the cluster state");
	persist_start(data);
	node_busy_end(data);
}

static void on_state_changed(void *ctx)
{
	struct node_daemon *d = ctx;

	if (d->persist_timer_armed)
		return;
	d->persist_timer_armed = true;
	qb_loop_timer_add(d->loop, QB_LOOP_LOW, VIREO_PERSIST_DELAY_MS(d->token_ms) * NS_PER_MS,
			  d, persist_timer_fired, &d->persist_timer);
}

static void on_synced(void *ctx)
{
	node_vms_state_changed(ctx);
}

static int on_mcast(void *ctx, const uint8_t *buf, size_t len)
{
	struct node_daemon *d = ctx;

	if (!d->coro)
		return -ENOTCONN;
	return cluster_corosync_mcast(d->coro, buf, len);
}

static int64_t on_now(void *ctx)
{
	return node_now_wall_ms();
}

static void on_applied(void *ctx, const Vireo__Op *op, int rc)
{
	node_requests_applied(ctx, op, rc);
	node_vm_requests_applied(ctx, op, rc);
	node_vms_applied(ctx, op, rc);
}

void node_health_changed(struct node_daemon *d)
{
	const char *why = "";
	bool ok = node_pool_ok(d, &why);

	if (d->engine && cluster_engine_set_health(d->engine, ok, why, node_pool_id(d),
						   node_vms_accel(d)) < 0)
		qb_log(LOG_ERR, "out of memory recording this node's health");
}

static void on_deliver(void *ctx, uint32_t nodeid, const uint8_t *buf, size_t len)
{
	struct node_daemon *d = ctx;

	cluster_engine_deliver(d->engine, nodeid, buf, len);
}

static void on_membership(void *ctx, const uint32_t *members, size_t n)
{
	struct node_daemon *d = ctx;

	cluster_engine_membership(d->engine, members, n);
}

static void on_quorum(void *ctx, bool quorate)
{
	struct node_daemon *d = ctx;

	cluster_engine_quorum(d->engine, quorate);
	node_fence_quorum(d, quorate);
}

static void disconnect(struct node_daemon *d)
{
	int fds[CLUSTER_COROSYNC_FDS];

	if (!d->coro)
		return;
	cluster_corosync_fds(d->coro, fds);
	for (int i = 0; i < CLUSTER_COROSYNC_FDS; i++)
		qb_loop_poll_del(d->loop, fds[i]);
	cluster_corosync_close(d->coro);
	d->coro = NULL;
	if (d->engine)
		cluster_engine_disconnected(d->engine);
	node_requests_expire(d, true, "vireod lost its connection to corosync");
	node_vm_requests_expire(d, true, "vireod lost its connection to corosync");
}

static int32_t corosync_ready(int32_t fd, int32_t revents, void *data)
{
	struct node_daemon *d = data;
	int rc;

	node_busy_begin(d, "corosync's messages (apply, sync)");
	rc = cluster_corosync_dispatch(d->coro, fd);
	node_busy_end(d);
	if (rc < 0) {
		qb_log(LOG_ERR, "corosync went away; reconnecting");
		disconnect(d);
		d->reconnect_ms = VIREO_RECONNECT_MIN_MS(d->token_ms);
		schedule_reconnect(d);
		return 0;    /* disconnect() already removed the fds */
	}
	schedule_tick(d);
	return 0;
}

static uint64_t on_mono(void *ctx)
{
	(void)ctx;
	return node_now_mono_ms();
}

static int on_leases_free(void *ctx, const Vireo__Vm *vm)
{
	return node_leases_free(ctx, vm);
}

static int create_engine(struct node_daemon *d)
{
	struct cluster_engine_env env = {
		.ctx = d,
		.mcast = on_mcast,
		.now_ms = on_now,
		.applied = on_applied,
		.state_changed = on_state_changed,
		.synced = on_synced,
		.mono_ms = on_mono,
		.leases_free = on_leases_free,
	};
	struct cluster_local_facts facts = {
		.id = cluster_corosync_local_id(d->coro),
		.name = d->cfg.node_name,
		.address = cluster_corosync_local_address(d->coro),
		.cpus = d->cpus,
		.memory_mib = d->memory_mib,
		.version = PACKAGE_VERSION,
		.cluster_name = cluster_corosync_cluster_name(d->coro),
		.accel = node_vms_accel(d),
		.pool_id = node_pool_id(d),
	};
	int rc;

	facts.pool_ok = node_pool_ok(d, &facts.pool_message);
	rc = cluster_engine_new(&facts, d->loaded_state, &env, &d->engine);

	if (rc == 0)
		d->loaded_state = NULL;
	return rc;
}

static int try_connect(struct node_daemon *d)
{
	struct cluster_corosync_callbacks cb = {
		.ctx = d,
		.deliver = on_deliver,
		.membership = on_membership,
		.quorum = on_quorum,
	};
	int fds[CLUSTER_COROSYNC_FDS];
	int rc;

	if ((rc = cluster_corosync_connect(d->cfg.cpg_group, &cb, &d->coro)) < 0)
		return rc;
	if (!d->cfg.token_ms)
		d->token_ms = cluster_corosync_token_ms(d->coro);
	if (!d->engine && (rc = create_engine(d)) < 0) {
		cluster_corosync_close(d->coro);
		d->coro = NULL;
		return rc;
	}
	cluster_corosync_fds(d->coro, fds);
	for (int i = 0; i < CLUSTER_COROSYNC_FDS; i++)
		qb_loop_poll_add(d->loop, QB_LOOP_HIGH, fds[i], POLLIN, d, corosync_ready);
	if (d->reconnects)
		qb_log(LOG_NOTICE, "reconnected to corosync after %u failed attempt(s)", d->reconnects);
	d->reconnects = 0;
	schedule_tick(d);
	return 0;
}

static void reconnect_fired(void *data)
{
	struct node_daemon *d = data;
	int rc = try_connect(d);

	if (rc == 0)
		return;
	if (d->reconnects++ == 0 || d->reconnects % 20 == 0)
		qb_log(LOG_WARNING, "cannot connect to corosync (%s, attempt %u); retrying with "
		       "backoff up to every %u ms", strerror(-rc), d->reconnects,
		       VIREO_RECONNECT_MAX_MS(d->token_ms));
	d->reconnect_ms *= 2;
	if (d->reconnect_ms > VIREO_RECONNECT_MAX_MS(d->token_ms))
		d->reconnect_ms = VIREO_RECONNECT_MAX_MS(d->token_ms);
	schedule_reconnect(d);
}

static void schedule_reconnect(struct node_daemon *d)
{
	qb_loop_timer_add(d->loop, QB_LOOP_MED, (uint64_t)d->reconnect_ms * NS_PER_MS, d,
			  reconnect_fired, &d->reconnect_timer);
}

static void tick_fired(void *data)
{
	struct node_daemon *d = data;

	d->tick_timer = 0;
	node_busy_begin(d, "the cluster engine's tick (duties, the manager)");
	if (d->engine)
		cluster_engine_tick(d->engine, node_now_mono_ms(), d->token_ms);
	node_requests_expire(d, false, NULL);
	node_vm_requests_expire(d, false, NULL);
	node_busy_end(d);
	schedule_tick(d);
}

/* Ticks fast while sends wait for flow control, slowly otherwise. */
static void schedule_tick(struct node_daemon *d)
{
	bool busy = d->engine && cluster_engine_send_backlog(d->engine) > 0;
	uint64_t ms = busy ? VIREO_SEND_RETRY_MS(d->token_ms) : VIREO_DIGEST_REPORT_MS(d->token_ms) / 2;

	if (d->tick_timer) {
		if (!busy)
			return;
		qb_loop_timer_del(d->loop, d->tick_timer);
	}
	qb_loop_timer_add(d->loop, QB_LOOP_MED, ms * NS_PER_MS, d, tick_fired, &d->tick_timer);
}

int node_cluster_start(struct node_daemon *d)
{
	struct util_workq_params wq = { .loop = d->loop, .name = "state", .threads = 1 };
	int rc;

	d->token_ms = d->cfg.token_ms ? d->cfg.token_ms : VIREO_DEFAULT_TOKEN_MS;
	if ((rc = util_workq_new(&wq, &d->persist_q)) < 0)
		return rc;
	rc = cluster_persist_load(d->cfg.state_dir, &d->loaded_state);
	if (rc == -ENOENT) {
		qb_log(LOG_NOTICE, "no saved cluster state in %s: starting empty", d->cfg.state_dir);
		if (!(d->loaded_state = cluster_state_new("")))
			return -ENOMEM;
	} else if (rc < 0) {
		qb_log(LOG_CRIT, "cannot load the cluster state from %s/%s: %s; move the file away "
		       "to start from the other members' copy", d->cfg.state_dir, CLUSTER_STATE_FILE,
		       rc == -EINVAL ? "the file is corrupt" : strerror(-rc));
		return rc;
	} else {
		qb_log(LOG_NOTICE, "loaded the cluster state: version %" PRIu64 ", %zu nodes",
		       d->loaded_state->version, d->loaded_state->n_nodes);
	}
	rc = try_connect(d);
	if (rc < 0) {
		qb_log(LOG_WARNING, "corosync is not reachable yet (%s); retrying", strerror(-rc));
		d->reconnect_ms = VIREO_RECONNECT_MIN_MS(d->token_ms);
		schedule_reconnect(d);
	}
	return 0;
}

void node_cluster_stop(struct node_daemon *d)
{
	disconnect(d);
	if (d->persist_timer_armed) {
		qb_loop_timer_del(d->loop, d->persist_timer);
		d->persist_timer_armed = false;
		d->persist_pending = true;
	}
	/* A write in flight finishes (or its disk hangs: it is abandoned, and
	 * so is the last write, which would hang alike); then the last state. */
	if (util_workq_free(d->persist_q, VIREO_PERSIST_STOP_WAIT_MS(d->token_ms)))
		qb_log(LOG_ERR, "the cluster state's last write has not finished; the state on "
		       "disk may be older than this node's (the other members have it)");
	else if (d->persist_pending || d->persist_again)
		node_persist_now(d);
	d->persist_q = NULL;
	cluster_engine_free(d->engine);
	d->engine = NULL;
	cluster_state_free(d->loaded_state);
	d->loaded_state = NULL;
}
