/* The vireods vireo-watchdog serves, their feeds, and the deadlines that
 * make it kill (node/watchdog.c says when and why). */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <unistd.h>
#include <qb/qblog.h>

#include "cluster/timeouts.h"
#include "node/watchdog_daemon.h"

/* ------------------------------------------------------------ killing */

static void kill_guests(struct wd *wd, struct wd_client *c, const char *why)
{
	for (size_t i = 0; i < c->n_guests; i++) {
		struct wd_guest *g = &c->guests[i];
		pid_t pid = 0;
		int rc = watchdog_qemu_kill(&wd->paths, g->name, g->uuid, g->seen.pid ? &g->seen : NULL,
					    &pid);

		if (rc == 0)
			qb_log(LOG_CRIT, "killed guest %s (QEMU pid %d): %s", g->name, (int)pid, why);
		else if (rc == -ENOENT)
			qb_log(LOG_NOTICE, "guest %s: no QEMU of it runs here, nothing to kill (%s)",
			       g->name, why);
		else
			qb_log(LOG_ERR, "cannot kill guest %s: %s (%s)", g->name, strerror(-rc), why);
	}
	free(c->guests);
	c->guests = NULL;
	c->n_guests = 0;
}

/* A fence: with a hardware watchdog, the machine resets too. */
static void stop_petting(struct wd *wd, const char *why)
{
	if (wd->hw.fd < 0 || wd->hw.stopped)
		return;
	wd->hw.stopped = true;
	qb_log(LOG_CRIT, "stopped petting the hardware watchdog %s (%s): the machine resets "
	       "within %u s", wd->cfg.watchdog_device, why, wd->hw.timeout_s);
}

/* ------------------------------------------------------------ clients */

void watchdog_client_free(struct wd *wd, struct wd_client *c)
{
	for (struct wd_client **pp = &wd->clients; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	if (c->fd >= 0)
		close(c->fd);
	if (c->pidfd >= 0)
		close(c->pidfd);
	watchdog_rx_free(&c->rx);
	free(c->guests);
	free(c);
}

/* The connection is over: EOF, an error, or a malformed feed. */
static void client_gone(struct wd *wd, struct wd_client *c)
{
	uint64_t now = watchdog_now_ms();

	if (c->fed && c->leaving && c->n_guests) {
		qb_log(LOG_NOTICE, "vireod (pid %d) stopped cleanly: its %zu guest(s) may run for "
		       "%" PRIu64 " ms more, for the next vireod to take them over", (int)c->pid,
		       c->n_guests, c->deadline_ms > now ? c->deadline_ms - now : 0);
		close(c->fd);
		c->fd = -1;
		if (c->pidfd >= 0)
			close(c->pidfd);
		c->pidfd = -1;
		watchdog_rx_free(&c->rx);
		return;
	}
	if (c->n_guests) {
		qb_log(LOG_ERR, "vireod (pid %d) is gone without stopping cleanly (it crashed or was "
		       "killed): killing its %zu guest(s) now", (int)c->pid, c->n_guests);
		kill_guests(wd, c, "vireod died");
	} else {
		qb_log(LOG_NOTICE, "vireod (pid %d) disconnected; it protected no guest", (int)c->pid);
	}
	watchdog_client_free(wd, c);
}

void watchdog_client_accept(struct wd *wd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	struct wd_client *c;
	size_t n = 0;
	int fd = accept4(wd->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

	if (fd < 0) {
		if (errno != EAGAIN && errno != EINTR)
			qb_log(LOG_WARNING, "cannot accept a connection: %s", strerror(errno));
		return;
	}
	for (c = wd->clients; c; c = c->next)
		n++;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
		qb_log(LOG_WARNING, "cannot tell who connected (%s); closing", strerror(errno));
		goto refuse;
	}
	/* A feed makes us kill guests when its sender goes: root only. */
	if (cred.uid != 0 && cred.uid != geteuid()) {
		qb_log(LOG_WARNING, "refusing a connection from pid %d, uid %u: only root feeds the "
		       "watchdog", (int)cred.pid, (unsigned)cred.uid);
		goto refuse;
	}
	if (n >= WATCHDOG_MAX_CLIENTS) {
		qb_log(LOG_WARNING, "refusing a connection from pid %d: %d clients already (one "
		       "vireod per host is expected)", (int)cred.pid, WATCHDOG_MAX_CLIENTS);
		goto refuse;
	}
	if (!(c = calloc(1, sizeof(*c)))) {
		qb_log(LOG_ERR, "out of memory accepting pid %d", (int)cred.pid);
		goto refuse;
	}
	c->fd = fd;
	c->pid = cred.pid;
	/* Pinned now, so the SIGKILL of a hung vireod never hits a reused pid. */
	c->pidfd = pidfd_open(cred.pid, 0);
	c->deadline_ms = WATCHDOG_NEVER;
	watchdog_rx_init(&c->rx);
	c->next = wd->clients;
	wd->clients = c;
	qb_log(LOG_INFO, "vireod (pid %d) connected", (int)cred.pid);
	return;
refuse:
	close(fd);
}

/* The guest list of feed f, keeping what was seen of guests listed before. */
static int take_guests(struct wd *wd, struct wd_client *c, const Vireo__WatchdogFeed *f,
		       bool *changed)
{
	struct wd_guest *gs = f->n_guests ? calloc(f->n_guests, sizeof(*gs)) : NULL;

	if (f->n_guests && !gs)
		return -ENOMEM;
	*changed = f->n_guests != c->n_guests;
	for (size_t i = 0; i < f->n_guests; i++) {
		struct wd_guest *g = &gs[i];
		bool known = false;

		snprintf(g->name, sizeof(g->name), "%s", f->guests[i]->name);
		snprintf(g->uuid, sizeof(g->uuid), "%s", f->guests[i]->uuid);
		for (size_t j = 0; j < c->n_guests && !known; j++) {
			if (strcmp(c->guests[j].name, g->name) || strcmp(c->guests[j].uuid, g->uuid))
				continue;
			g->seen = c->guests[j].seen;
			known = true;
		}
		*changed |= !known;
		/* First seen now, or once it runs: its start time is what a
		 * kill checks against. */
		if (!g->seen.pid && watchdog_qemu_find(&wd->paths, g->name, g->uuid, &g->seen) < 0)
			g->seen.pid = 0;
	}
	free(c->guests);
	c->guests = gs;
	c->n_guests = f->n_guests;
	return 0;
}

static void log_guests(const struct wd_client *c)
{
	char list[400] = "";
	size_t off = 0;

	for (size_t i = 0; i < c->n_guests && off < sizeof(list); i++)
		off += (size_t)snprintf(list + off, sizeof(list) - off, "%s%s", i ? ", " : "",
					c->guests[i].name);
	qb_log(LOG_INFO, "vireod (pid %d) protects %zu guest(s)%s%s", (int)c->pid, c->n_guests,
	       c->n_guests ? ": " : "", list);
}

static void on_feed(struct wd *wd, struct wd_client *c, const Vireo__WatchdogFeed *f)
{
	uint64_t now = watchdog_now_ms();
	bool changed = false;
	int rc;

	if (!c->fed)
		qb_log(LOG_NOTICE, "vireod (pid %d) feeds the watchdog (timeout %" PRIu64 " ms)",
		       (int)c->pid, f->timeout_ms);
	if ((rc = take_guests(wd, c, f, &changed)) < 0) {
		qb_log(LOG_ERR, "out of memory taking the feed of vireod (pid %d); keeping its "
		       "last list", (int)c->pid);
		return;
	}
	if (changed || !c->fed)
		log_guests(c);
	if (f->leaving && !c->leaving)
		qb_log(LOG_NOTICE, "vireod (pid %d) is stopping cleanly: its guests may run %" PRIu64
		       " ms for the next vireod", (int)c->pid, f->timeout_ms);
	c->fed = true;
	c->leaving = f->leaving;
	c->quorate = f->quorate;
	c->timeout_ms = f->timeout_ms;
	c->deadline_ms = now + f->timeout_ms;
	if (!wd->quorate && !f->quorate && !c->n_guests && !c->confirm_logged) {
		c->confirm_logged = true;
		qb_log(LOG_NOTICE, "vireod (pid %d) confirmed its self-fence: no guest left to protect",
		       (int)c->pid);
	}
	if (f->leaving)
		return;
	/* A vireod that feeds has taken over what a cleanly stopped one left. */
	for (struct wd_client *o = wd->clients, *next; o; o = next) {
		next = o->next;
		if (o->fd >= 0 || o == c)
			continue;
		qb_log(LOG_NOTICE, "vireod (pid %d) took over the %zu guest(s) vireod (pid %d) left",
		       (int)c->pid, o->n_guests, (int)o->pid);
		watchdog_client_free(wd, o);
	}
}

void watchdog_client_read(struct wd *wd, struct wd_client *c)
{
	Vireo__WatchdogFeed *f;
	char why[256];
	ssize_t n = watchdog_rx_read(&c->rx, c->fd);
	int rc;

	if (n == -EAGAIN)
		return;
	while (n > 0 && (rc = watchdog_rx_next(&c->rx, &f, why, sizeof(why))) != 0) {
		if (rc < 0) {
			qb_log(LOG_ERR, "vireod (pid %d) sent a malformed feed: %s; treating it as gone",
			       (int)c->pid, why);
			client_gone(wd, c);
			return;
		}
		on_feed(wd, c, f);
		vireo__watchdog_feed__free_unpacked(f, NULL);
	}
	if (n > 0)
		return;
	if (n == 0 && watchdog_rx_pending(&c->rx))
		qb_log(LOG_ERR, "vireod (pid %d) closed the connection in the middle of a feed "
		       "(%zu bytes of it)", (int)c->pid, watchdog_rx_pending(&c->rx));
	else if (n < 0)
		qb_log(LOG_ERR, "reading from vireod (pid %d): %s", (int)c->pid, strerror((int)-n));
	client_gone(wd, c);
}

/* ------------------------------------------------------------ deadlines */

static void expire(struct wd *wd, struct wd_client *c)
{
	char why[160];

	c->deadline_ms = WATCHDOG_NEVER;     /* acted on; a new feed re-arms it */
	if (c->fd < 0 || c->leaving) {
		snprintf(why, sizeof(why), "vireod (pid %d) stopped cleanly and no vireod took its "
			 "guests over within %" PRIu64 " ms", (int)c->pid, c->timeout_ms);
		qb_log(LOG_WARNING, "%s: killing its %zu guest(s)", why, c->n_guests);
		kill_guests(wd, c, why);
		if (c->fd < 0)
			watchdog_client_free(wd, c);
		return;
	}
	snprintf(why, sizeof(why), "vireod (pid %d) has not fed the watchdog for %" PRIu64
		 " ms: it hangs", (int)c->pid, c->timeout_ms);
	/* Even with no guest to protect, a hung vireod must go: it is still a
	 * member of the cluster's group, whose sync rounds wait for its answer,
	 * and it may be the manager. Killed, it leaves, and the others go on. */
	if (c->n_guests)
		qb_log(LOG_CRIT, "%s; killing its %zu guest(s), then it, so that the cluster sees "
		       "this node leave and fails them over", why, c->n_guests);
	else
		qb_log(LOG_CRIT, "%s; it protects no guest, but holds up the cluster: killing it, "
		       "so that the cluster sees it leave", why);
	kill_guests(wd, c, why);
	if (c->pidfd >= 0 && pidfd_send_signal(c->pidfd, SIGKILL, NULL, 0) == 0)
		qb_log(LOG_CRIT, "killed vireod (pid %d): it hangs", (int)c->pid);
	else
		qb_log(LOG_ERR, "cannot kill vireod (pid %d): %s", (int)c->pid,
		       c->pidfd < 0 ? "it was gone when it connected" : strerror(errno));
	/* No guest of this host runs unprotected: no reason to reset it. */
	if (c->n_guests)
		stop_petting(wd, why);
}

/* This host is out of the quorate partition since wd->lost_ms, longer
 * than vireod had to destroy its guests: whatever is still listed dies. */
static void self_fence(struct wd *wd, uint64_t now)
{
	char why[160];

	/* A quorum regained a moment ago may wait unread in the socket. */
	watchdog_quorum_dispatch(wd);
	if (wd->quorate)
		return;
	for (struct wd_client *c = wd->clients, *next; c; c = next) {
		next = c->next;
		if (!c->n_guests)
			continue;
		snprintf(why, sizeof(why), "this host lost quorum %" PRIu64 " ms ago and vireod "
			 "(pid %d) did not confirm that its guests are destroyed", now - wd->lost_ms,
			 (int)c->pid);
		if (!c->fence_logged)
			qb_log(LOG_CRIT, "%s: killing its %zu guest(s) here", why, c->n_guests);
		c->fence_logged = true;
		kill_guests(wd, c, why);
		stop_petting(wd, why);
		if (c->fd < 0)
			watchdog_client_free(wd, c);
	}
}

/* Due while some client still lists guests it has not been fenced for
 * since this loss: once they are confirmed gone or killed, nothing is due
 * (a due time left in the past would make poll() spin). */
static uint64_t self_fence_due(const struct wd *wd)
{
	if (wd->quorate)
		return WATCHDOG_NEVER;
	for (const struct wd_client *c = wd->clients; c; c = c->next)
		if (c->n_guests && !c->fence_logged)
			return wd->lost_ms + VIREO_SELF_FENCE_MS(wd->token_ms);
	return WATCHDOG_NEVER;
}

void watchdog_deadlines_run(struct wd *wd, uint64_t now)
{
	for (struct wd_client *c = wd->clients, *next; c; c = next) {
		next = c->next;
		if (c->deadline_ms <= now)
			expire(wd, c);
	}
	if (now >= self_fence_due(wd))
		self_fence(wd, now);
}

uint64_t watchdog_next_deadline(const struct wd *wd)
{
	uint64_t due = self_fence_due(wd);

	for (const struct wd_client *c = wd->clients; c; c = c->next)
		if (c->deadline_ms < due)
			due = c->deadline_ms;
	return due;
}
