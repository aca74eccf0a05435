/* The work queue of util/workq.h.
 *
 * One mutex guards three lists: pending (in submission order), running, and
 * finished (work done, done() not yet called). A worker takes the first
 * pending job whose key no running job holds and that no earlier pending job
 * shares, which keeps each key's jobs in order. A finished job goes on the
 * finished list and a byte goes down a pipe that the loop polls; the loop
 * calls done() for everything finished. A key is busy from submit until its
 * done() has run, so that a job and the loop's reaction to it never overlap
 * the key's next job. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <qb/qblog.h>

#include "util/clock.h"
#include "util/workq.h"

struct job {
	struct job *next;
	char key[UTIL_WORKQ_KEY_MAX];
	const char *what;
	util_work_fn work;
	util_work_done_fn done;
	void *arg;
	uint64_t started_ms;
};

struct util_workq {
	qb_loop_t *loop;
	char name[32];
	pthread_mutex_t lock;
	pthread_cond_t wake;          /* workers: a job may be takeable, or stop */
	pthread_cond_t idle;          /* free: a worker went away */
	struct job *pending, *running, *finished;
	pthread_t *threads;
	unsigned n_threads;
	unsigned alive;               /* workers not yet returned */
	bool stopping;
	int pipe[2];                  /* workers -> loop: something finished */
};

static bool same_key(const char *a, const char *b)
{
	return a[0] && strcmp(a, b) == 0;
}

static bool key_in(const struct job *list, const char *key, const struct job *until)
{
	for (const struct job *j = list; j && j != until; j = j->next)
		if (same_key(j->key, key))
			return true;
	return false;
}

/* Unlinks and returns the first takeable pending job, or NULL. Locked. */
static struct job *take(struct util_workq *q)
{
	for (struct job **pp = &q->pending; *pp; pp = &(*pp)->next) {
		struct job *j = *pp;

		if (j->key[0] && (key_in(q->running, j->key, NULL) ||
				  key_in(q->finished, j->key, NULL) ||
				  key_in(q->pending, j->key, j)))
			continue;
		*pp = j->next;
		return j;
	}
	return NULL;
}

static void unlink_job(struct job **list, struct job *j)
{
	for (struct job **pp = list; *pp; pp = &(*pp)->next) {
		if (*pp == j) {
			*pp = j->next;
			return;
		}
	}
}

static void *worker(void *data)
{
	struct util_workq *q = data;
	const char byte = 1;

	pthread_mutex_lock(&q->lock);
	for (;;) {
		struct job *j = NULL;

		while (!q->stopping && !(j = take(q)))
			pthread_cond_wait(&q->wake, &q->lock);
		if (q->stopping)
			break;
		j->started_ms = util_mono_ms();
		j->next = q->running;
		q->running = j;
		pthread_mutex_unlock(&q->lock);
		j->work(j->arg);
		pthread_mutex_lock(&q->lock);
		unlink_job(&q->running, j);
		j->next = q->finished;
		q->finished = j;
		/* A full pipe already says there is something to collect. */
		if (write(q->pipe[1], &byte, 1) < 0 && errno != EAGAIN)
			qb_log(LOG_ERR, "work queue %s: cannot wake the main loop: %s", q->name,
			       strerror(errno));
		/* Jobs of other keys may wait for a thread; this key's next one
		 * waits for done() (collect wakes the workers then). */
		pthread_cond_broadcast(&q->wake);
	}
	q->alive--;
	pthread_cond_broadcast(&q->idle);
	pthread_mutex_unlock(&q->lock);
	return NULL;
}

/* The oldest finished job (workers push at the head). Locked. */
static struct job *oldest_finished(struct util_workq *q)
{
	struct job *j = q->finished;

	while (j && j->next)
		j = j->next;
	return j;
}

/* On the loop: done() for every finished job, oldest first. Each stays on
 * the finished list while its done() runs, so that its key is busy until
 * then (a list answered in the same batch must not see the key free before
 * the key's own answer has been taken in); only the loop removes from it. */
static int32_t collect(int32_t fd, int32_t revents, void *data)
{
	struct util_workq *q = data;
	char buf[64];

	while (read(fd, buf, sizeof(buf)) > 0)
		;
	for (;;) {
		struct job *j;

		pthread_mutex_lock(&q->lock);
		j = oldest_finished(q);
		pthread_mutex_unlock(&q->lock);
		if (!j)
			break;
		j->done(j->arg, 0);
		pthread_mutex_lock(&q->lock);
		unlink_job(&q->finished, j);
		/* This key's next job may go now. */
		pthread_cond_broadcast(&q->wake);
		pthread_mutex_unlock(&q->lock);
		free(j);
	}
	return 0;
}

int util_workq_new(const struct util_workq_params *p, struct util_workq **out)
{
	struct util_workq *q = calloc(1, sizeof(*q));
	int rc = -ENOMEM;

	*out = NULL;
	if (!q)
		return -ENOMEM;
	q->loop = p->loop;
	snprintf(q->name, sizeof(q->name), "%s", p->name ? p->name : "work");
	q->pipe[0] = q->pipe[1] = -1;
	pthread_mutex_init(&q->lock, NULL);
	pthread_cond_init(&q->wake, NULL);
	pthread_cond_init(&q->idle, NULL);
	q->n_threads = p->threads ? p->threads : 1;
	if (!(q->threads = calloc(q->n_threads, sizeof(*q->threads))))
		goto fail;
	if (pipe2(q->pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
		rc = -errno;
		goto fail;
	}
	if ((rc = qb_loop_poll_add(q->loop, QB_LOOP_HIGH, q->pipe[0], POLLIN, q, collect)) < 0)
		goto fail;
	for (unsigned i = 0; i < q->n_threads; i++) {
		if ((rc = -pthread_create(&q->threads[i], NULL, worker, q)) < 0) {
			qb_log(LOG_ERR, "work queue %s: cannot start a thread: %s", q->name,
			       strerror(-rc));
			util_workq_free(q, 0);
			return rc;
		}
		q->alive++;
	}
	*out = q;
	return 0;
fail:
	if (q->pipe[0] >= 0)
		close(q->pipe[0]);
	if (q->pipe[1] >= 0)
		close(q->pipe[1]);
	free(q->threads);
	free(q);
	return rc;
}

bool util_workq_free(struct util_workq *q, uint32_t wait_ms)
{
	struct timespec until;
	struct job *j, *finished, *pending;
	bool abandoned;

	if (!q)
		return false;
	qb_loop_poll_del(q->loop, q->pipe[0]);
	pthread_mutex_lock(&q->lock);
	q->stopping = true;
	pthread_cond_broadcast(&q->wake);
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += wait_ms / 1000u;
	until.tv_nsec += (long)(wait_ms % 1000u) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	while (q->alive && pthread_cond_timedwait(&q->idle, &q->lock, &until) == 0)
		;
	abandoned = q->alive > 0;
	finished = q->finished;
	pending = q->pending;
	q->finished = q->pending = NULL;
	pthread_mutex_unlock(&q->lock);
	/* Unlocked: a done() may ask the queue (busy, a submit refused). The
	 * finished ones ran: their done says so; the pending ones never will. */
	while ((j = finished)) {
		finished = j->next;
		j->done(j->arg, 0);
		free(j);
	}
	while ((j = pending)) {
		pending = j->next;
		j->done(j->arg, -ECANCELED);
		free(j);
	}
	if (abandoned) {
		/* Their threads still use q: it stays, as the process ends. */
		qb_log(LOG_WARNING, "work queue %s: %u job(s) still running at exit, abandoned",
		       q->name, q->alive);
		return true;
	}
	for (unsigned i = 0; i < q->n_threads; i++)
		if (q->threads[i])
			pthread_join(q->threads[i], NULL);
	close(q->pipe[0]);
	close(q->pipe[1]);
	pthread_mutex_destroy(&q->lock);
	pthread_cond_destroy(&q->wake);
	pthread_cond_destroy(&q->idle);
	free(q->threads);
	free(q);
	return false;
}

int util_workq_submit(struct util_workq *q, const char *key, const char *what, util_work_fn work,
		      util_work_done_fn done, void *arg)
{
	struct job *j, **tail;

	if (!(j = calloc(1, sizeof(*j))))
		return -ENOMEM;
	snprintf(j->key, sizeof(j->key), "%s", key ? key : "");
	j->what = what ? what : "a job";
	j->work = work;
	j->done = done;
	j->arg = arg;
	pthread_mutex_lock(&q->lock);
	if (q->stopping) {
		pthread_mutex_unlock(&q->lock);
		free(j);
		return -ESHUTDOWN;
	}
	for (tail = &q->pending; *tail; tail = &(*tail)->next)
		;
	*tail = j;
	pthread_cond_signal(&q->wake);
	pthread_mutex_unlock(&q->lock);
	return 0;
}

void util_workq_stats(struct util_workq *q, struct util_workq_stats *out)
{
	uint64_t now = util_mono_ms();

	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&q->lock);
	for (const struct job *j = q->pending; j; j = j->next)
		out->queued++;
	for (const struct job *j = q->running; j; j = j->next) {
		out->running++;
		if (now - j->started_ms >= out->oldest_ms) {
			out->oldest_ms = now - j->started_ms;
			snprintf(out->oldest_key, sizeof(out->oldest_key), "%s", j->key);
			out->oldest_what = j->what;
		}
	}
	pthread_mutex_unlock(&q->lock);
	/* A job that started this very millisecond has still run. */
	if (out->running && !out->oldest_ms)
		out->oldest_ms = 1;
}

bool util_workq_busy(struct util_workq *q, const char *key)
{
	bool busy;

	if (!key || !key[0])
		return false;
	pthread_mutex_lock(&q->lock);
	busy = key_in(q->pending, key, NULL) || key_in(q->running, key, NULL) ||
	       key_in(q->finished, key, NULL);
	pthread_mutex_unlock(&q->lock);
	return busy;
}
