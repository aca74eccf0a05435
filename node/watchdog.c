/* vireo-watchdog: kills this host's guests when vireod cannot (like
 * Proxmox's watchdog-mux). doc/failover.md, "Host side", tells the story.
 *
 * vireod connects to cfg.watchdog_socket and feeds it every
 * VIREO_WATCHDOG_FEED_MS with the guests that must die if it goes silent
 * (node/fence.c). The watchdog acts on four things:
 *   - silence: no feed for the feed's timeout_ms (VIREO_WATCHDOG_TIMEOUT_MS)
 *     means vireod hangs: the listed guests are SIGKILLed, then vireod, so
 *     the cluster sees the node leave and fails its VMs over;
 *   - the socket closing without a leaving feed: vireod crashed or was
 *     killed: the listed guests are killed at once, nothing else;
 *   - a leaving feed (a clean stop): the guests run on for its timeout_ms
 *     (VIREO_LEAVE_GRACE_MS) for the next vireod to take over, else die;
 *   - quorum, watched here too through corosync's quorum API: once this
 *     host is out of the quorate partition (or corosync is gone), vireod
 *     must confirm within VIREO_SELF_FENCE_MS, with an empty list, that it
 *     destroyed them; else they are killed here.
 * A fence here (silence, or no confirmation) also stops petting the
 * hardware watchdog when one is configured, so the machine resets.
 *
 * One poll loop, one thread; SIGTERM stops it without killing anything. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <corosync/cmap.h>
#include <corosync/quorum.h>
#include <qb/qblog.h>

#include "build-config.h"
#include "cluster/state.h"
#include "cluster/timeouts.h"
#include "node/config.h"
#include "node/watchdog.h"

#define MAX_CLIENTS 16          /* one vireod per host; more is somebody else */
#define NEVER UINT64_MAX

struct wd_guest {
	char name[CLUSTER_NAME_MAX + 1];
	char uuid[40];
	struct watchdog_qemu seen;      /* pid 0: not found running yet */
};

/* A vireod, connected or (fd -1) gone after a clean stop with guests left. */
struct wd_client {
	struct wd_client *next;
	int fd;
	int pidfd;                      /* the peer pinned at connect, -1 if it was gone */
	pid_t pid;
	struct watchdog_rx rx;
	bool fed, leaving, quorate;
	uint64_t timeout_ms;
	uint64_t deadline_ms;           /* last feed + timeout_ms; NEVER once acted on */
	struct wd_guest *guests;
	size_t n_guests;
	bool fence_logged;              /* killed for want of a confirmation, this loss */
	bool confirm_logged;            /* its self-fence confirmation, this loss */
};

struct wd {
	struct node_config cfg;
	const char *config_path;
	uint32_t token_ms;
	int listen_fd, sig_fd, log_fd;
	struct wd_client *clients;
	/* corosync */
	quorum_handle_t qh;
	int q_fd;                       /* -1: not connected */
	bool quorate;
	uint64_t lost_ms;               /* when this host was last seen leaving quorum */
	uint64_t q_retry_ms;
	uint32_t q_backoff_ms, q_failures;
	/* hardware */
	struct watchdog_hw hw;
	uint64_t pet_ms;
	struct watchdog_paths paths;
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

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

static void client_free(struct wd *wd, struct wd_client *c)
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
	uint64_t now = now_ms();

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
	client_free(wd, c);
}

static void accept_client(struct wd *wd)
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
	if (n >= MAX_CLIENTS) {
		qb_log(LOG_WARNING, "refusing a connection from pid %d: %d clients already (one "
		       "vireod per host is expected)", (int)cred.pid, MAX_CLIENTS);
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
	c->deadline_ms = NEVER;
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
	uint64_t now = now_ms();
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
		client_free(wd, o);
	}
}

static void read_client(struct wd *wd, struct wd_client *c)
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

	c->deadline_ms = NEVER;     /* acted on; a new feed re-arms it */
	if (c->fd < 0 || c->leaving) {
		snprintf(why, sizeof(why), "vireod (pid %d) stopped cleanly and no vireod took its "
			 "guests over within %" PRIu64 " ms", (int)c->pid, c->timeout_ms);
		qb_log(LOG_WARNING, "%s: killing its %zu guest(s)", why, c->n_guests);
		kill_guests(wd, c, why);
		if (c->fd < 0)
			client_free(wd, c);
		return;
	}
	if (!c->n_guests) {
		qb_log(LOG_WARNING, "vireod (pid %d) has not fed the watchdog for %" PRIu64 " ms; it "
		       "protects no guest, so nothing is done", (int)c->pid, c->timeout_ms);
		return;
	}
	snprintf(why, sizeof(why), "vireod (pid %d) has not fed the watchdog for %" PRIu64
		 " ms: it hangs", (int)c->pid, c->timeout_ms);
	qb_log(LOG_CRIT, "%s; killing its %zu guest(s), then it, so that the cluster sees this "
	       "node leave and fails them over", why, c->n_guests);
	kill_guests(wd, c, why);
	if (c->pidfd >= 0 && pidfd_send_signal(c->pidfd, SIGKILL, NULL, 0) == 0)
		qb_log(LOG_CRIT, "killed vireod (pid %d): it hangs", (int)c->pid);
	else
		qb_log(LOG_ERR, "cannot kill vireod (pid %d): %s", (int)c->pid,
		       c->pidfd < 0 ? "it was gone when it connected" : strerror(errno));
	stop_petting(wd, why);
}

static void quorum_dispatch_now(struct wd *wd);

/* This host is out of the quorate partition since wd->lost_ms, longer
 * than vireod had to destroy its guests: whatever is still listed dies. */
static void self_fence(struct wd *wd, uint64_t now)
{
	char why[160];

	/* A quorum regained a moment ago may wait unread in the socket. */
	quorum_dispatch_now(wd);
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
			client_free(wd, c);
	}
}

static uint64_t self_fence_due(const struct wd *wd)
{
	return wd->quorate ? NEVER : wd->lost_ms + VIREO_SELF_FENCE_MS(wd->token_ms);
}

static void run_deadlines(struct wd *wd, uint64_t now)
{
	for (struct wd_client *c = wd->clients, *next; c; c = next) {
		next = c->next;
		if (c->deadline_ms <= now)
			expire(wd, c);
	}
	if (now >= self_fence_due(wd))
		self_fence(wd, now);
}

/* ------------------------------------------------------------ quorum */

static void set_quorate(struct wd *wd, bool quorate, const char *why)
{
	if (quorate == wd->quorate)
		return;
	wd->quorate = quorate;
	if (quorate) {
		qb_log(LOG_NOTICE, "this host is in the quorate partition");
		for (struct wd_client *c = wd->clients; c; c = c->next)
			c->fence_logged = c->confirm_logged = false;
		return;
	}
	wd->lost_ms = now_ms();
	qb_log(LOG_WARNING, "this host is NOT in the quorate partition (%s): vireod must confirm "
	       "within %u ms that it destroyed its guests, else they are killed here", why,
	       VIREO_SELF_FENCE_MS(wd->token_ms));
}

static void on_quorum(quorum_handle_t h, uint32_t quorate, uint64_t ring_seq,
		      uint32_t n_view, uint32_t *view)
{
	struct wd *wd = NULL;

	(void)ring_seq;
	(void)n_view;
	(void)view;
	if (quorum_context_get(h, (const void **)&wd) == CS_OK && wd)
		set_quorate(wd, quorate != 0, "votequorum says so");
}

static void read_token(struct wd *wd)
{
	cmap_handle_t cmap;
	uint32_t t;

	if (wd->cfg.token_ms) {
		wd->token_ms = wd->cfg.token_ms;
		return;
	}
	if (cmap_initialize(&cmap) != CS_OK)
		return;
	if (cmap_get_uint32(cmap, "runtime.config.totem.token", &t) == CS_OK && t)
		wd->token_ms = t;
	cmap_finalize(cmap);
}

static int quorum_connect(struct wd *wd)
{
	quorum_callbacks_t cb = { .quorum_notify_fn = on_quorum };
	uint32_t type = 0;
	int quorate = 0;
	cs_error_t err;

	if ((err = quorum_initialize(&wd->qh, &cb, &type)) != CS_OK)
		return err == CS_ERR_LIBRARY ? -ECONNREFUSED : -ENOTCONN;
	quorum_context_set(wd->qh, wd);
	if ((err = quorum_trackstart(wd->qh, CS_TRACK_CHANGES)) != CS_OK ||
	    (err = quorum_getquorate(wd->qh, &quorate)) != CS_OK ||
	    (err = quorum_fd_get(wd->qh, &wd->q_fd)) != CS_OK) {
		quorum_finalize(wd->qh);
		wd->q_fd = -1;
		return -ENOTCONN;
	}
	read_token(wd);
	qb_log(LOG_NOTICE, "watching quorum through corosync (token %u ms%s)", wd->token_ms,
	       type == QUORUM_FREE ? "; corosync has no quorum provider: always quorate" : "");
	if (wd->q_failures)
		qb_log(LOG_NOTICE, "reconnected to corosync after %u failed attempt(s)", wd->q_failures);
	wd->q_failures = 0;
	set_quorate(wd, quorate != 0, "at connect");
	return 0;
}

static void quorum_disconnect(struct wd *wd)
{
	if (wd->q_fd < 0)
		return;
	quorum_finalize(wd->qh);
	wd->q_fd = -1;
	qb_log(LOG_ERR, "corosync went away; reconnecting");
	set_quorate(wd, false, "lost corosync");
	wd->q_backoff_ms = VIREO_RECONNECT_MIN_MS(wd->token_ms);
	wd->q_retry_ms = now_ms() + wd->q_backoff_ms;
}

static void quorum_retry(struct wd *wd, uint64_t now)
{
	int rc;

	if (wd->q_fd >= 0 || now < wd->q_retry_ms)
		return;
	if ((rc = quorum_connect(wd)) == 0)
		return;
	if (wd->q_failures++ == 0 || wd->q_failures % 20 == 0)
		qb_log(LOG_WARNING, "cannot connect to corosync (%s, attempt %u): this host counts as "
		       "inquorate; retrying with backoff up to every %u ms", strerror(-rc),
		       wd->q_failures, VIREO_RECONNECT_MAX_MS(wd->token_ms));
	wd->q_backoff_ms = wd->q_backoff_ms ? wd->q_backoff_ms * 2 : VIREO_RECONNECT_MIN_MS(wd->token_ms);
	if (wd->q_backoff_ms > VIREO_RECONNECT_MAX_MS(wd->token_ms))
		wd->q_backoff_ms = VIREO_RECONNECT_MAX_MS(wd->token_ms);
	wd->q_retry_ms = now + wd->q_backoff_ms;
}

static void quorum_dispatch_now(struct wd *wd)
{
	if (wd->q_fd >= 0 && quorum_dispatch(wd->qh, CS_DISPATCH_ALL) != CS_OK)
		quorum_disconnect(wd);
}

/* ------------------------------------------------------------ setup */

static int mkdir_parent(const char *file)
{
	char buf[256];
	char *slash;

	if (snprintf(buf, sizeof(buf), "%s", file) >= (int)sizeof(buf))
		return -ENAMETOOLONG;
	if (!(slash = strrchr(buf, '/')) || slash == buf)
		return 0;
	*slash = '\0';
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, 0755) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static int listen_socket(struct wd *wd)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	const char *path = wd->cfg.watchdog_socket;
	int fd = -1, rc;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if ((rc = mkdir_parent(path)) < 0) {
		qb_log(LOG_CRIT, "cannot create the directory of %s: %s", path, strerror(-rc));
		return rc;
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0)
		return -errno;
	/* A socket that answers is another watchdog's; one that does not is stale. */
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
		qb_log(LOG_CRIT, "another vireo-watchdog already listens on %s; stop it first", path);
		rc = -EADDRINUSE;
		goto fail;
	}
	close(fd);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0)
		return -errno;
	unlink(path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(path, 0600) < 0 ||
	    listen(fd, MAX_CLIENTS) < 0) {
		rc = -errno;
		qb_log(LOG_CRIT, "cannot listen on %s: %s", path, strerror(-rc));
		goto fail;
	}
	wd->listen_fd = fd;
	return 0;
fail:
	close(fd);
	return rc;
}

static int setup_logging(struct wd *wd, bool foreground)
{
	int rc;

	qb_log_init("vireo-watchdog", LOG_DAEMON, LOG_INFO);
	qb_log_ctl(QB_LOG_SYSLOG, QB_LOG_CONF_ENABLED, QB_FALSE);
	qb_log_format_set(QB_LOG_STDERR, "%t %p: %b");
	if (foreground) {
		qb_log_filter_ctl(QB_LOG_STDERR, QB_LOG_FILTER_ADD, QB_LOG_FILTER_FILE, "*",
				  wd->cfg.log_level);
		qb_log_ctl(QB_LOG_STDERR, QB_LOG_CONF_ENABLED, QB_TRUE);
	}
	mkdir_parent(wd->cfg.watchdog_log_file);
	if ((rc = qb_log_file_open(wd->cfg.watchdog_log_file)) < 0) {
		fprintf(stderr, "vireo-watchdog: cannot open the log file %s: %s\n",
			wd->cfg.watchdog_log_file, strerror(-rc));
		return rc;
	}
	wd->log_fd = rc;
	qb_log_format_set(rc, "%t [%P] %p: %b");
	qb_log_filter_ctl(rc, QB_LOG_FILTER_ADD, QB_LOG_FILTER_FILE, "*", wd->cfg.log_level);
	qb_log_ctl(rc, QB_LOG_CONF_ENABLED, QB_TRUE);
	return 0;
}

static int setup_signals(struct wd *wd)
{
	sigset_t set;

	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0 ||
	    (wd->sig_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK)) < 0)
		return -errno;
	return 0;
}

static int setup_hw(struct wd *wd)
{
	char why[320];
	unsigned int t = watchdog_hw_timeout_s(wd->token_ms);
	int rc;

	if (!wd->cfg.watchdog_device[0]) {
		qb_log(LOG_INFO, "no hardware watchdog configured (watchdog_device)");
		return 0;
	}
	if ((rc = watchdog_hw_open(&wd->hw, wd->cfg.watchdog_device, t, why, sizeof(why))) < 0) {
		qb_log(LOG_CRIT, "%s", why);
		return rc;
	}
	qb_log(LOG_NOTICE, "armed the hardware watchdog %s: %u s (asked for %u s), petted every "
	       "%u ms while this host is fine", wd->cfg.watchdog_device, wd->hw.timeout_s, t,
	       VIREO_WATCHDOG_FEED_MS(wd->token_ms));
	return 0;
}

/* ------------------------------------------------------------ the loop */

/* SIGTERM or SIGINT: true, stop. */
static bool on_signals(struct wd *wd)
{
	struct signalfd_siginfo si;
	bool stop = false;

	while (read(wd->sig_fd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGHUP) {
			qb_log_file_reopen(wd->log_fd, wd->cfg.watchdog_log_file);
			qb_log(LOG_NOTICE, "log file %s reopened", wd->cfg.watchdog_log_file);
			continue;
		}
		qb_log(LOG_NOTICE, "signal %u: stopping; every guest is left alone", si.ssi_signo);
		stop = true;
	}
	return stop;
}

static int poll_timeout(const struct wd *wd, uint64_t now)
{
	uint64_t due = self_fence_due(wd);

	for (const struct wd_client *c = wd->clients; c; c = c->next)
		if (c->deadline_ms < due)
			due = c->deadline_ms;
	if (wd->q_fd < 0 && wd->q_retry_ms < due)
		due = wd->q_retry_ms;
	if (wd->hw.fd >= 0 && !wd->hw.stopped && wd->pet_ms < due)
		due = wd->pet_ms;
	if (due == NEVER)
		return -1;
	return due <= now ? 0 : due - now > 60000 ? 60000 : (int)(due - now);
}

static void run(struct wd *wd)
{
	struct pollfd pfd[3 + MAX_CLIENTS];
	struct wd_client *by_slot[3 + MAX_CLIENTS];

	for (;;) {
		uint64_t now = now_ms();
		size_t n = 0;

		quorum_retry(wd, now);
		run_deadlines(wd, now);
		if (wd->hw.fd >= 0 && !wd->hw.stopped && now >= wd->pet_ms) {
			if (watchdog_hw_pet(&wd->hw) < 0)
				qb_log(LOG_ERR, "cannot pet the hardware watchdog: %s", strerror(errno));
			wd->pet_ms = now + VIREO_WATCHDOG_FEED_MS(wd->token_ms);
		}
		pfd[n++] = (struct pollfd){ .fd = wd->sig_fd, .events = POLLIN };
		pfd[n++] = (struct pollfd){ .fd = wd->listen_fd, .events = POLLIN };
		pfd[n++] = (struct pollfd){ .fd = wd->q_fd, .events = POLLIN };
		for (struct wd_client *c = wd->clients; c && n < 3 + MAX_CLIENTS; c = c->next) {
			if (c->fd < 0)
				continue;
			by_slot[n] = c;
			pfd[n++] = (struct pollfd){ .fd = c->fd, .events = POLLIN };
		}
		if (poll(pfd, n, poll_timeout(wd, now)) < 0) {
			if (errno == EINTR)
				continue;
			qb_log(LOG_CRIT, "poll: %s", strerror(errno));
			return;
		}
		if (pfd[0].revents && on_signals(wd))
			return;
		if (pfd[2].revents)
			quorum_dispatch_now(wd);
		/* Clients before new connections: by_slot stays valid until a
		 * client is freed, and each slot is read once. */
		for (size_t i = 3; i < n; i++)
			if (pfd[i].revents)
				read_client(wd, by_slot[i]);
		if (pfd[1].revents)
			accept_client(wd);
	}
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: vireo-watchdog [--config FILE] [--foreground] [--version]\n"
		"  -c, --config FILE   configuration file (default %s)\n"
		"  -f, --foreground    log to stderr as well as to the log file\n"
		"  -V, --version       print the version and exit\n",
		NODE_CONFIG_DEFAULT_PATH);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct wd wd = { .listen_fd = -1, .sig_fd = -1, .log_fd = -1, .q_fd = -1,
			 .hw = { .fd = -1 }, .paths = watchdog_default_paths };
	const char *config_path = NODE_CONFIG_DEFAULT_PATH;
	char err[512];
	bool foreground = false;
	int opt, rc = 1;

	while ((opt = getopt_long(argc, argv, "c:fVh", opts, NULL)) != -1) {
		switch (opt) {
		case 'c': config_path = optarg; break;
		case 'f': foreground = true; break;
		case 'V': printf("vireo-watchdog %s\n", PACKAGE_VERSION); return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "vireo-watchdog: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	node_config_defaults(&wd.cfg);
	if (node_config_load(config_path, &wd.cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "vireo-watchdog: %s\n", err);
		return 1;
	}
	if (!wd.cfg.watchdog_socket[0]) {
		fprintf(stderr, "vireo-watchdog: watchdog_socket is none in %s: nothing to serve\n",
			config_path);
		return 1;
	}
	if (setup_logging(&wd, foreground) < 0)
		return 1;
	wd.token_ms = wd.cfg.token_ms ? wd.cfg.token_ms : VIREO_DEFAULT_TOKEN_MS;
	qb_log(LOG_NOTICE, "vireo-watchdog %s starting on %s", PACKAGE_VERSION,
	       wd.cfg.watchdog_socket);
	if (setup_signals(&wd) < 0) {
		qb_log(LOG_CRIT, "cannot set up signal handling: %s", strerror(errno));
		goto cleanup;
	}
	/* Until corosync says otherwise this host counts as inquorate: no
	 * vireod lists guests before it is quorate anyway. */
	wd.lost_ms = now_ms();
	if (quorum_connect(&wd) < 0) {
		qb_log(LOG_WARNING, "corosync is not reachable yet; this host counts as inquorate "
		       "until it is");
		wd.q_backoff_ms = VIREO_RECONNECT_MIN_MS(wd.token_ms);
		wd.q_retry_ms = now_ms() + wd.q_backoff_ms;
	}
	if (setup_hw(&wd) < 0 || listen_socket(&wd) < 0)
		goto cleanup;
	run(&wd);
	rc = 0;
cleanup:
	while (wd.clients)
		client_free(&wd, wd.clients);
	watchdog_hw_close(&wd.hw);
	if (wd.listen_fd >= 0) {
		close(wd.listen_fd);
		unlink(wd.cfg.watchdog_socket);
	}
	if (wd.q_fd >= 0)
		quorum_finalize(wd.qh);
	if (wd.sig_fd >= 0)
		close(wd.sig_fd);
	qb_log(LOG_NOTICE, "vireo-watchdog stopped");
	qb_log_fini();
	return rc;
}
