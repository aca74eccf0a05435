/* The worker side of node/pool_io.h: a two-thread "pool" work queue. */
#include <errno.h>
#include <stdlib.h>
#include <qb/qblog.h>

#include "node/daemon.h"
#include "node/pool_io.h"
#include "util/workq.h"

#define POOL_IO_THREADS 2u
/* At stop, how long a running job is given before it is abandoned. */
#define POOL_IO_STOP_WAIT_MS 500u
/* Every store job shares this key: the handle is not thread-safe. */
#define STORE_KEY "store"

struct pool_job {
	struct node_daemon *d;
	struct store *st;
	node_pool_work_fn work;
	node_pool_done_fn done;
	void *arg;
};

static void job_work(void *arg)
{
	struct pool_job *j = arg;

	j->work(j->st, j->arg);
}

static void job_done(void *arg, int rc)
{
	struct pool_job *j = arg;

	node_busy_begin(j->d, "a shared pool job's answer");
	j->done(j->d, j->arg, rc);
	node_busy_end(j->d);
	free(j);
}

int node_pool_io_start(struct node_daemon *d)
{
	struct util_workq_params p = { .loop = d->loop, .name = "pool", .threads = POOL_IO_THREADS };

	return util_workq_new(&p, &d->pool_io);
}

bool node_pool_io_stop(struct node_daemon *d)
{
	if (d->pool_io && util_workq_free(d->pool_io, POOL_IO_STOP_WAIT_MS))
		d->pool_io_abandoned = true;
	d->pool_io = NULL;
	return d->pool_io_abandoned;
}

int node_pool_io_submit(struct node_daemon *d, enum node_pool_lane lane, const char *what,
			node_pool_work_fn work, node_pool_done_fn done, void *arg)
{
	struct pool_job *j;
	int rc;

	if (!d->pool_io)
		return -ESHUTDOWN;
	if (!(j = calloc(1, sizeof(*j))))
		return -ENOMEM;
	j->d = d;
	j->st = d->store;
	j->work = work;
	j->done = done;
	j->arg = arg;
	rc = util_workq_submit(d->pool_io, lane == NODE_POOL_STORE ? STORE_KEY : NULL, what,
			       job_work, job_done, j);
	if (rc < 0)
		free(j);
	return rc;
}
