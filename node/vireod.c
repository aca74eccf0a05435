/* vireod: the vireo agent on every host. One libqb main loop drives the
 * corosync connection, the replicated cluster state, the IPC endpoint,
 * timers and signals. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <unistd.h>
#include <qb/qblog.h>
#include <qb/qbloop.h>

#include "build-config.h"
#include "node/daemon.h"
#include "node/pool_io.h"
#include "node/ipc.h"

#define BLACKBOX_BYTES (2 * 1024 * 1024)

static char blackbox_path[300];
static int32_t log_target = -1;

static void usage(FILE *out)
{
	fprintf(out,
		"usage: vireod [--config FILE] [--foreground] [--version]\n"
		"  -c, --config FILE   configuration file (default %s)\n"
		"  -f, --foreground    log to stderr as well as to the log file\n"
		"  -V, --version       print the version and exit\n",
		NODE_CONFIG_DEFAULT_PATH);
}

static int mkdir_p(const char *path, mode_t mode)
{
	char buf[300];

	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
		return -ENAMETOOLONG;
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, mode) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, mode) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static int dir_of(const char *file, char *out, size_t len)
{
	const char *slash = strrchr(file, '/');

	if (!slash || (size_t)(slash - file) >= len)
		return -EINVAL;
	memcpy(out, file, (size_t)(slash - file));
	out[slash - file] = '\0';
	return 0;
}

/* Fatal signals: keep the blackbox (the last debug messages) for qb-blackbox. */
static void crash_handler(int sig)
{
	qb_log_blackbox_write_to_file(blackbox_path);
	signal(sig, SIG_DFL);
	raise(sig);
}

static int setup_logging(const struct node_config *cfg, int foreground)
{
	char dir[256];
	int fd;

	qb_log_init("vireod", LOG_DAEMON, LOG_INFO);
	qb_log_ctl(QB_LOG_SYSLOG, QB_LOG_CONF_ENABLED, QB_FALSE);
	qb_log_format_set(QB_LOG_STDERR, "%t %p: %b");
	if (foreground) {
		qb_log_filter_ctl(QB_LOG_STDERR, QB_LOG_FILTER_ADD, QB_LOG_FILTER_FILE, "*",
				  cfg->log_level);
		qb_log_ctl(QB_LOG_STDERR, QB_LOG_CONF_ENABLED, QB_TRUE);
	}
	if (dir_of(cfg->log_file, dir, sizeof(dir)) == 0)
		mkdir_p(dir, 0755);
	fd = qb_log_file_open(cfg->log_file);
	if (fd < 0) {
		fprintf(stderr, "vireod: cannot open the log file %s: %s\n", cfg->log_file,
			strerror(-fd));
		return fd;
	}
	log_target = fd;
	qb_log_format_set(fd, "%t [%P] %p: %b");
	qb_log_filter_ctl(fd, QB_LOG_FILTER_ADD, QB_LOG_FILTER_FILE, "*", cfg->log_level);
	qb_log_ctl(fd, QB_LOG_CONF_ENABLED, QB_TRUE);
	qb_log_ctl(QB_LOG_BLACKBOX, QB_LOG_CONF_SIZE, BLACKBOX_BYTES);
	qb_log_filter_ctl(QB_LOG_BLACKBOX, QB_LOG_FILTER_ADD, QB_LOG_FILTER_FILE, "*", LOG_DEBUG);
	qb_log_ctl(QB_LOG_BLACKBOX, QB_LOG_CONF_ENABLED, QB_TRUE);
	snprintf(blackbox_path, sizeof(blackbox_path), "%s/vireod.blackbox", cfg->state_dir);
	signal(SIGSEGV, crash_handler);
	signal(SIGABRT, crash_handler);
	signal(SIGBUS, crash_handler);
	signal(SIGFPE, crash_handler);
	return 0;
}

static int32_t on_stop_signal(int32_t sig, void *data)
{
	struct node_daemon *d = data;

	qb_log(LOG_NOTICE, "signal %d: shutting down", sig);
	node_fence_shutdown(d);
	return 0;
}

/* logrotate's postrotate sends SIGHUP: reopen the log file. */
static int32_t on_reopen_signal(int32_t sig, void *data)
{
	struct node_daemon *d = data;

	qb_log_file_reopen(log_target, d->cfg.log_file);
	qb_log(LOG_NOTICE, "log file %s reopened", d->cfg.log_file);
	return 0;
}

static int32_t on_dump_signal(int32_t sig, void *data)
{
	qb_log_blackbox_write_to_file(blackbox_path);
	qb_log(LOG_NOTICE, "blackbox written to %s (read it with qb-blackbox)", blackbox_path);
	return 0;
}

static void read_host_facts(struct node_daemon *d)
{
	struct sysinfo si;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	d->cpus = cpus > 0 ? (uint32_t)cpus : 1;
	if (sysinfo(&si) == 0)
		d->memory_mib = (uint64_t)si.totalram * si.mem_unit / (1024 * 1024);
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
	struct node_daemon d;
	const char *config_path = NODE_CONFIG_DEFAULT_PATH;
	qb_loop_signal_handle sigs[4];
	char err[512];
	int foreground = 0;
	int opt, rc;

	memset(&d, 0, sizeof(d));
	while ((opt = getopt_long(argc, argv, "c:fVh", opts, NULL)) != -1) {
		switch (opt) {
		case 'c': config_path = optarg; break;
		case 'f': foreground = 1; break;
		case 'V': printf("vireod %s\n", PACKAGE_VERSION); return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "vireod: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	node_config_defaults(&d.cfg);
	if (node_config_load(config_path, &d.cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "vireod: %s\n", err);
		return 1;
	}
	if ((rc = mkdir_p(d.cfg.state_dir, 0700)) < 0) {
		fprintf(stderr, "vireod: cannot create the state directory %s: %s\n",
			d.cfg.state_dir, strerror(-rc));
		return 1;
	}
	if (setup_logging(&d.cfg, foreground) < 0)
		return 1;
	signal(SIGPIPE, SIG_IGN);
	read_host_facts(&d);
	qb_log(LOG_NOTICE, "vireod %s starting as node %s (%u cpus, %llu MiB)", PACKAGE_VERSION,
	       d.cfg.node_name, d.cpus, (unsigned long long)d.memory_mib);

	d.loop = qb_loop_create();
	if (!d.loop) {
		qb_log(LOG_CRIT, "cannot create the main loop");
		return 1;
	}
	qb_loop_signal_add(d.loop, QB_LOOP_HIGH, SIGTERM, &d, on_stop_signal, &sigs[0]);
	qb_loop_signal_add(d.loop, QB_LOOP_HIGH, SIGINT, &d, on_stop_signal, &sigs[1]);
	qb_loop_signal_add(d.loop, QB_LOOP_LOW, SIGUSR2, &d, on_dump_signal, &sigs[2]);
	qb_loop_signal_add(d.loop, QB_LOOP_LOW, SIGHUP, &d, on_reopen_signal, &sigs[3]);

	if ((rc = node_stall_start(&d)) < 0)
		goto cleanup;
	if ((rc = node_cluster_start(&d)) < 0)
		goto cleanup;
	if ((rc = node_pool_watch_start(&d)) < 0)
		goto cleanup;
	if ((rc = node_vms_start(&d)) < 0)
		goto cleanup;
	if ((rc = node_migrations_start(&d)) < 0)
		goto cleanup;
	if ((rc = node_leases_start(&d)) < 0)
		goto cleanup;
	if ((rc = node_fence_start(&d)) < 0)
		goto cleanup;
	if ((rc = node_ipc_server_start(d.loop, d.cfg.ipc_name, node_handle_request, &d, &d.ipc)) < 0)
		goto cleanup;
	qb_log(LOG_NOTICE, "serving IPC as '%s'", d.cfg.ipc_name);
	qb_loop_run(d.loop);
	rc = 0;
cleanup:
	/* First: what the pool's workers finished may still propose, and the
	 * waiters it makes are answered just below. */
	node_pool_io_stop(&d);
	node_requests_expire(&d, true, "vireod is shutting down");
	node_vm_requests_expire(&d, true, "vireod is shutting down");
	node_ipc_server_stop(d.ipc);
	node_fence_stop(&d);
	node_migrations_stop(&d);
	node_leases_stop(&d);
	node_vms_stop(&d);
	node_pool_watch_stop(&d);
	node_cluster_stop(&d);
	node_stall_stop(&d);
	qb_loop_destroy(d.loop);
	qb_log(LOG_NOTICE, "vireod stopped");
	qb_log_fini();
	return rc < 0 ? 1 : 0;
}
