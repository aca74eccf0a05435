/* vireod's I/O on the shared pool (qemu-img runs, the console logs), made
 * by worker threads so that a slow or hung pool (NFS that stopped
 * answering, a qemu-img preallocating minutes of zeros) never holds the
 * main loop. Each job's done() runs back on the loop.
 *
 * Jobs that use the store handle (sharedstore/images.h is not thread-safe
 * per handle) share one key and run one after another; a console read
 * takes the other thread, so a long qemu-img does not hold it.
 *
 * The pool's own health check (pool_watch.c) runs in a child process of
 * its own and is not among these jobs. */
#ifndef VIREO_NODE_POOL_IO_H
#define VIREO_NODE_POOL_IO_H

#include <stdbool.h>

struct node_daemon;
struct store;

/* work runs in a worker with the store handle (NULL when vireod could not
 * open the pool; a job that needs it fails then); done runs on the loop
 * with rc 0, or -ECANCELED when vireod stops before work ran. */
typedef void (*node_pool_work_fn)(struct store *st, void *arg);
typedef void (*node_pool_done_fn)(struct node_daemon *d, void *arg, int rc);

enum node_pool_lane {
	NODE_POOL_STORE,      /* uses the store handle: one at a time */
	NODE_POOL_FILES,      /* plain file reads, beside the store's jobs */
};

/* After the store is opened (pool_watch.c), before it is closed. */
int node_pool_io_start(struct node_daemon *d);
/* True when a job still ran and was abandoned: the store must not be
 * closed. Again after a first stop: nothing more, the same answer. */
bool node_pool_io_stop(struct node_daemon *d);

/* what: a literal naming the job, for logs. 0, or -ENOMEM / -ESHUTDOWN
 * (done is not called then). */
int node_pool_io_submit(struct node_daemon *d, enum node_pool_lane lane, const char *what,
			node_pool_work_fn work, node_pool_done_fn done, void *arg);

#endif
