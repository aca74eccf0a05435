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
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
#include "cluster/timeouts.h"
#include "node/watchdog_daemon.h"

uint64_t watchdog_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
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
	wd->lost_ms = watchdog_now_ms();
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
	wd->q_retry_ms = watchdog_now_ms() + wd->q_backoff_ms;
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

void watchdog_quorum_dispatch(struct wd *wd)
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
	    listen(fd, WATCHDOG_MAX_CLIENTS) < 0) {
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
	uint64_t due = watchdog_next_deadline(wd);

	if (wd->q_fd < 0 && wd->q_retry_ms < due)
		due = wd->q_retry_ms;
	if (wd->hw.fd >= 0 && !wd->hw.stopped && wd->pet_ms < due)
		due = wd->pet_ms;
	if (due == WATCHDOG_NEVER)
		return -1;
	return due <= now ? 0 : due - now > INT_MAX ? INT_MAX : (int)(due - now);
}

static void run(struct wd *wd)
{
	struct pollfd pfd[3 + WATCHDOG_MAX_CLIENTS];
	struct wd_client *by_slot[3 + WATCHDOG_MAX_CLIENTS];

	for (;;) {
		uint64_t now = watchdog_now_ms();
		size_t n = 0;

		quorum_retry(wd, now);
		watchdog_deadlines_run(wd, now);
		if (wd->hw.fd >= 0 && !wd->hw.stopped && now >= wd->pet_ms) {
			int rc = watchdog_hw_pet(&wd->hw);

			if (rc < 0)
				qb_log(LOG_ERR, "cannot pet the hardware watchdog: %s", strerror(-rc));
			wd->pet_ms = now + VIREO_WATCHDOG_FEED_MS(wd->token_ms);
		}
		pfd[n++] = (struct pollfd){ .fd = wd->sig_fd, .events = POLLIN };
		pfd[n++] = (struct pollfd){ .fd = wd->listen_fd, .events = POLLIN };
		pfd[n++] = (struct pollfd){ .fd = wd->q_fd, .events = POLLIN };
		for (struct wd_client *c = wd->clients; c && n < 3 + WATCHDOG_MAX_CLIENTS; c = c->next) {
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
			watchdog_quorum_dispatch(wd);
		/* Clients before new connections: by_slot stays valid until a
		 * client is freed, and each slot is read once. */
		for (size_t i = 3; i < n; i++)
			if (pfd[i].revents)
				watchdog_client_read(wd, by_slot[i]);
		if (pfd[1].revents)
			watchdog_client_accept(wd);
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
	wd.lost_ms = watchdog_now_ms();
	if (quorum_connect(&wd) < 0) {
		qb_log(LOG_WARNING, "corosync is not reachable yet; this host counts as inquorate "
		       "until it is");
		wd.q_failures = 1;
		wd.q_backoff_ms = VIREO_RECONNECT_MIN_MS(wd.token_ms);
		wd.q_retry_ms = watchdog_now_ms() + wd.q_backoff_ms;
	}
	if (setup_hw(&wd) < 0 || listen_socket(&wd) < 0)
		goto cleanup;
	run(&wd);
	rc = 0;
cleanup:
	while (wd.clients)
		watchdog_client_free(&wd, wd.clients);
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
