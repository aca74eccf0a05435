/* How long the main loop is kept from its other work, and by what.
 *
 * Everything vireod does for the cluster (feeding the watchdog, answering
 * corosync, keeping its duties) waits while one handler runs, so no handler
 * may run long (STYLE.md: nothing blocks the main loop). Two measures:
 *
 *   - the handlers that do real work are bracketed with node_busy_begin()
 *     and node_busy_end(): the time between is the stall they caused, and
 *     its name is the cause;
 *   - a probe timer every VIREO_STALL_PROBE_MS: how late it fires is the
 *     stall of whatever ran, bracketed or not (libvirt's own callbacks).
 *
 * A stall of VIREO_STALL_LOG_MS or more is logged with its cause; the
 * longest since start is in vireo status --json (loop_stall_max_ms,
 * loop_stall_cause), which the chaos runs and benchmarks collect. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <qb/qblog.h>

#include "cluster/timeouts.h"
#include "node/daemon.h"

#define NS_PER_MS 1000000ull

struct node_stall {
	qb_loop_timer_handle probe;
	uint64_t probe_due_ms;
	const char *busy;             /* the outermost bracketed handler running now */
	unsigned depth;               /* brackets open */
	uint64_t busy_since_ms;
	uint64_t busy_ended_ms;       /* when the last bracketed handler ended */
	uint64_t max_ms;
	char cause[96];
};

static void record(struct node_daemon *d, uint64_t ms, const char *cause)
{
	struct node_stall *s = d->stall;

	if (ms >= VIREO_STALL_LOG_MS(d->token_ms))
		qb_log(ms >= d->token_ms ? LOG_WARNING : ms >= d->token_ms / 4u ? LOG_NOTICE : LOG_INFO,
		       "the main loop stalled %" PRIu64 " ms in %s (longest so far %" PRIu64 " ms)",
		       ms, cause, ms > s->max_ms ? ms : s->max_ms);
	if (ms <= s->max_ms)
		return;
	s->max_ms = ms;
	snprintf(s->cause, sizeof(s->cause), "%s", cause);
}

void node_busy_begin(struct node_daemon *d, const char *what)
{
	struct node_stall *s = d->stall;

	/* Nested brackets count for the outermost. */
	if (!s || s->depth++)
		return;
	s->busy = what;
	s->busy_since_ms = node_now_mono_ms();
}

void node_busy_end(struct node_daemon *d)
{
	struct node_stall *s = d->stall;

	if (!s || !s->depth || --s->depth)
		return;
	s->busy_ended_ms = node_now_mono_ms();
	record(d, s->busy_ended_ms - s->busy_since_ms, s->busy);
}

static void probe_fired(void *data);

static void arm(struct node_daemon *d)
{
	struct node_stall *s = d->stall;
	uint32_t ms = VIREO_STALL_PROBE_MS(d->token_ms);

	s->probe_due_ms = node_now_mono_ms() + ms;
	if (qb_loop_timer_add(d->loop, QB_LOOP_HIGH, ms * NS_PER_MS, d, probe_fired, &s->probe) != 0)
		s->probe = 0;
}

static void probe_fired(void *data)
{
	struct node_daemon *d = data;
	struct node_stall *s = d->stall;
	uint64_t now = node_now_mono_ms();

	s->probe = 0;
	/* Late because of a bracketed handler: recorded with its name already. */
	if (now > s->probe_due_ms && s->busy_ended_ms < s->probe_due_ms)
		record(d, now - s->probe_due_ms, "a handler without a name (libvirt's events, "
		       "libqb's IPC)");
	arm(d);
}

int node_stall_start(struct node_daemon *d)
{
	struct node_stall *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	d->stall = s;
	snprintf(s->cause, sizeof(s->cause), "nothing yet");
	arm(d);
	return 0;
}

void node_stall_stop(struct node_daemon *d)
{
	struct node_stall *s = d->stall;

	if (!s)
		return;
	qb_log(LOG_NOTICE, "the main loop's longest stall: %" PRIu64 " ms, in %s", s->max_ms, s->cause);
	if (s->probe)
		qb_loop_timer_del(d->loop, s->probe);
	free(s);
	d->stall = NULL;
}

uint64_t node_stall_max_ms(const struct node_daemon *d, const char **cause)
{
	*cause = d->stall ? d->stall->cause : "";
	return d->stall ? d->stall->max_ms : 0;
}
