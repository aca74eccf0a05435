/* Worker threads for the calls that can wait (libvirt, qemu-img, the shared
 * pool, fsync), with their completions delivered on the one libqb main loop,
 * so that nothing the loop runs ever waits on them.
 *
 * A job is work(arg), run in a worker thread, then done(arg, rc) on the loop
 * thread: rc 0 when work ran, -ECANCELED when it never will (the queue is
 * being freed). Jobs that share a key run one after another, in the order
 * they were submitted (one VM's calls); others run side by side on up to
 * `threads` workers. A job that hangs holds its thread and its key, nothing
 * else: util_workq_stats says how long the oldest running job has run, so
 * that its owner can call what it waits on unresponsive.
 *
 * Everything but work() runs on the loop thread. */
#ifndef VIREO_UTIL_WORKQ_H
#define VIREO_UTIL_WORKQ_H

#include <stdbool.h>
#include <stdint.h>
#include <qb/qbloop.h>

#define UTIL_WORKQ_KEY_MAX 72

typedef void (*util_work_fn)(void *arg);
typedef void (*util_work_done_fn)(void *arg, int rc);

struct util_workq_params {
	qb_loop_t *loop;
	const char *name;       /* for log lines: "libvirt", "pool" */
	unsigned threads;       /* at least 1 */
};

struct util_workq_stats {
	unsigned queued;        /* waiting for a thread or for their key */
	unsigned running;
	uint64_t oldest_ms;     /* how long the oldest running job has run; 0: none */
	char oldest_key[UTIL_WORKQ_KEY_MAX];
	const char *oldest_what;
};

struct util_workq;

int util_workq_new(const struct util_workq_params *p, struct util_workq **out);
/* Jobs not started are done with -ECANCELED; running ones are waited for up
 * to wait_ms, then abandoned (their done is never called: the process is
 * stopping). True when some were: what they use must not be freed. */
bool util_workq_free(struct util_workq *q, uint32_t wait_ms);
/* key NULL or "": no ordering. what: a literal naming the job (stats, logs).
 * 0, or -ENOMEM / -ESHUTDOWN (done is not called then). */
int util_workq_submit(struct util_workq *q, const char *key, const char *what, util_work_fn work,
		      util_work_done_fn done, void *arg);
void util_workq_stats(struct util_workq *q, struct util_workq_stats *out);
/* Whether a job with this key is queued or running. */
bool util_workq_busy(struct util_workq *q, const char *key);

#endif
