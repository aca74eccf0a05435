/* Watches the shared pool: a check at start and every VIREO_POOL_CHECK_MS,
 * each in a child process (sharedstore/pool.h) whose answer arrives on a
 * pipe in the main loop, so a dead NFS server never blocks vireod. The
 * verdict goes into this node's announcement: the manager places VMs only
 * on nodes whose pool is usable, and vireo node list shows it.
 *
 * A pool without an id file is initialised here, once, when nothing else is
 * wrong with it and the cluster has not recorded a pool yet: the id file
 * appears atomically and only once (store_pool_init), so two nodes doing it
 * at the same time end up with the same id. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <qb/qblog.h>

#include "cluster/timeouts.h"
#include "node/daemon.h"
#include "node/pool_io.h"
#include "sharedstore/images.h"
#include "sharedstore/pool.h"

#define NS_PER_MS 1000000ull

struct node_pool_watch {
	struct store_pool_probe *probe;
	qb_loop_timer_handle next_timer;
	qb_loop_timer_handle deadline_timer;
	bool checked;
	bool ok;
	char why[STORE_REASON_LEN];
	char id[STORE_POOL_ID_LEN + 1];
	bool init_tried;
};

static void start_check(struct node_daemon *d);

static void check_timer_fired(void *data)
{
	start_check(data);
}

/* Before corosync is reached, the state loaded from disk knows the pool. */
static const char *cluster_pool_id(const struct node_daemon *d)
{
	if (d->engine)
		return cluster_engine_state(d->engine)->pool_id;
	return d->loaded_state ? d->loaded_state->pool_id : "";
}

static void schedule_check(struct node_daemon *d, uint64_t ms)
{
	struct node_pool_watch *w = d->pool;

	if (w->next_timer)
		qb_loop_timer_del(d->loop, w->next_timer);
	w->next_timer = 0;
	qb_loop_timer_add(d->loop, QB_LOOP_LOW, ms * NS_PER_MS, d, check_timer_fired,
			  &w->next_timer);
}

static void stop_probe(struct node_daemon *d)
{
	struct node_pool_watch *w = d->pool;

	if (!w->probe)
		return;
	qb_loop_poll_del(d->loop, store_pool_probe_fd(w->probe));
	if (w->deadline_timer)
		qb_loop_timer_del(d->loop, w->deadline_timer);
	w->deadline_timer = 0;
	store_pool_probe_free(w->probe);
	w->probe = NULL;
}

/* Only a missing id file is wrong, and nobody has told the cluster of a
 * pool yet: this is a new pool. */
static bool is_new_pool(const struct node_daemon *d, const struct store_pool_status *st)
{
	return !st->ok && st->n_reasons == 1 && st->error == -ENOENT && !st->id[0] &&
	       !cluster_pool_id(d)[0];
}

/* Writing the new pool's id waits on the pool: a pool worker does it. */
struct pool_init {
	char dir[sizeof(((struct node_config *)0)->pool_dir)];
	char id[STORE_POOL_ID_LEN + 1];
	char err[STORE_REASON_LEN];
	int rc;
};

static void init_work(struct store *st, void *arg)
{
	struct pool_init *pi = arg;

	(void)st;
	pi->rc = store_pool_init(pi->dir, pi->id, pi->err, sizeof(pi->err));
}

static void init_done(struct node_daemon *d, void *arg, int rc)
{
	struct pool_init *pi = arg;

	if (rc < 0)
		;                        /* vireod stops */
	else if (pi->rc == 0)
		qb_log(LOG_NOTICE, "initialised the shared pool %s: id %s", pi->dir, pi->id);
	else if (pi->rc == -EEXIST)
		qb_log(LOG_NOTICE, "another node initialised the shared pool %s first: id %s",
		       pi->dir, pi->id);
	else
		qb_log(LOG_ERR, "cannot initialise the shared pool %s: %s", pi->dir, pi->err);
	free(pi);
	if (rc == 0 && d->pool)
		schedule_check(d, 0);
}

/* 0 when the check comes again once the pool is initialised. */
static int init_pool(struct node_daemon *d)
{
	struct pool_init *pi = calloc(1, sizeof(*pi));
	int rc;

	d->pool->init_tried = true;
	if (!pi)
		return -ENOMEM;
	snprintf(pi->dir, sizeof(pi->dir), "%s", d->cfg.pool_dir);
	if ((rc = node_pool_io_submit(d, NODE_POOL_STORE, "initialising the pool", init_work,
				      init_done, pi)) < 0)
		free(pi);
	return rc;
}

static void record(struct node_daemon *d, const struct store_pool_status *st)
{
	struct node_pool_watch *w = d->pool;
	char why[STORE_REASON_LEN];
	bool changed;

	snprintf(why, sizeof(why), "%s", st->ok ? "" : st->reasons[0]);
	changed = !w->checked || w->ok != st->ok || strcmp(w->why, why) || strcmp(w->id, st->id);
	w->checked = true;
	w->ok = st->ok;
	memcpy(w->why, why, sizeof(w->why));
	memcpy(w->id, st->id, sizeof(w->id));
	if (!changed)
		return;
	if (st->ok)
		qb_log(LOG_NOTICE, "shared pool %s is usable: id %s, %s, %llu of %llu MiB free "
		       "(checked in %u ms)", d->cfg.pool_dir, st->id, st->fstype,
		       (unsigned long long)(st->free_bytes >> 20),
		       (unsigned long long)(st->total_bytes >> 20), st->elapsed_us / 1000u);
	else
		for (unsigned i = 0; i < st->n_reasons; i++)
			qb_log(LOG_ERR, "%s", st->reasons[i]);
	node_health_changed(d);
}

static void finish_check(struct node_daemon *d)
{
	struct node_pool_watch *w = d->pool;
	struct store_pool_status st;

	if (store_pool_probe_finish(w->probe, &st) == -EAGAIN)
		return;
	stop_probe(d);
	if (is_new_pool(d, &st) && !w->init_tried) {
		if (init_pool(d) == 0)
			return;
		qb_log(LOG_ERR, "cannot initialise the shared pool %s: vireod is out of memory or "
		       "stopping", d->cfg.pool_dir);
	}
	record(d, &st);
	schedule_check(d, VIREO_POOL_CHECK_MS(d->token_ms));
}

static int32_t probe_ready(int32_t fd, int32_t revents, void *data)
{
	finish_check(data);
	return 0;
}

static void probe_deadline(void *data)
{
	struct node_daemon *d = data;

	d->pool->deadline_timer = 0;
	finish_check(d);
}

static void start_check(struct node_daemon *d)
{
	struct node_pool_watch *w = d->pool;
	struct store_pool_opts opts = {
		.path = d->cfg.pool_dir,
		.expected_id = cluster_pool_id(d),
		.mount = d->cfg.pool_any_fs ? STORE_POOL_ANY_FS : STORE_POOL_MOUNTPOINT,
		.need_lockspace = true,
	};
	int rc;

	w->next_timer = 0;
	if (w->probe)
		return;
	if ((rc = store_pool_check_start(&opts, &w->probe)) < 0) {
		qb_log(LOG_ERR, "cannot check the shared pool %s: %s; trying again later",
		       d->cfg.pool_dir, strerror(-rc));
		schedule_check(d, VIREO_POOL_CHECK_MS(d->token_ms));
		return;
	}
	qb_loop_poll_add(d->loop, QB_LOOP_LOW, store_pool_probe_fd(w->probe), POLLIN, d, probe_ready);
	qb_loop_timer_add(d->loop, QB_LOOP_LOW,
			  (uint64_t)store_pool_probe_timeout_ms(w->probe) * NS_PER_MS + NS_PER_MS, d,
			  probe_deadline, &w->deadline_timer);
}

int node_pool_watch_start(struct node_daemon *d)
{
	int rc;

	if (!(d->pool = calloc(1, sizeof(*d->pool))))
		return -ENOMEM;
	snprintf(d->pool->why, sizeof(d->pool->why), "the shared pool %s was not checked yet",
		 d->cfg.pool_dir);
	if ((rc = store_open(d->cfg.pool_dir, &d->store)) < 0) {
		qb_log(LOG_ERR, "cannot use %s as the shared pool: %s", d->cfg.pool_dir,
		       strerror(-rc));
		return rc;
	}
	if ((rc = node_pool_io_start(d)) < 0) {
		qb_log(LOG_ERR, "cannot start the shared pool's workers: %s", strerror(-rc));
		return rc;
	}
	start_check(d);
	return 0;
}

void node_pool_watch_stop(struct node_daemon *d)
{
	if (!d->pool)
		return;
	stop_probe(d);
	if (d->pool->next_timer)
		qb_loop_timer_del(d->loop, d->pool->next_timer);
	free(d->pool);
	d->pool = NULL;
	/* A job abandoned at exit still uses the store handle. */
	if (!node_pool_io_stop(d))
		store_close(d->store);
	d->store = NULL;
}

bool node_pool_ok(const struct node_daemon *d, const char **why)
{
	static const char unknown[] = "the shared pool was not checked yet";

	if (!d->pool) {
		*why = unknown;
		return false;
	}
	*why = d->pool->why;
	return d->pool->checked && d->pool->ok;
}

const char *node_pool_id(const struct node_daemon *d)
{
	return d->pool ? d->pool->id : "";
}
