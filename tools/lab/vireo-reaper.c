/*
 * vireo-reaper: run one command as a child subreaper, or hold a lab host open.
 *
 *   vireo-reaper [--pidfile FILE] [--] CMD [ARG...]
 *   vireo-reaper --hold [--pidfile FILE] [--socket PATH]
 *
 * The lab runs every daemon of a simulated host under this program. PID 1 on
 * the machines we run on reaps orphans slowly (seconds), and a zombie looks
 * alive to kill(pid, 0), which confuses anything that checks whether a process
 * is gone (libvirt does, after a guest's QEMU dies). As a child subreaper we
 * adopt every orphan below us and reap it the moment it exits.
 *
 * Command mode forks CMD, writes its pid to FILE, forwards SIGTERM, SIGINT and
 * SIGHUP to it, and exits with its status (128 + signal if a signal killed it)
 * once CMD and every orphan it left behind are gone. A signal that arrives
 * after CMD has exited makes us exit at once instead, leaving the orphans to
 * the next reaper up.
 *
 * Hold mode runs nothing at first: it is the process that keeps a lab host's
 * namespaces alive. It writes its own pid to FILE once it is ready, reaps
 * until SIGTERM, SIGINT or SIGHUP, and with --socket serves spawn requests on
 * a SOCK_SEQPACKET unix socket, so that every process of the host descends
 * from it (and so is reaped by it, and inherits its namespaces and cgroup).
 * A request is one message of NUL-terminated strings, "LOGFILE\0ARG0\0ARG1\0...":
 * we start ARG0... in a new session with stdin on /dev/null and stdout and
 * stderr appended to LOGFILE, and answer "ok PID" or "error: WHY".
 *
 * Signals are taken from a signalfd, so there are no handlers and no races
 * between a child exiting and us waiting for it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define PROG "vireo-reaper"
#define MAX_REQUEST 65536	/* one spawn request: log path plus argv */
#define MAX_ARGS 256

struct reaper {
	pid_t cmd;		/* the command we run; 0 in hold mode */
	bool cmd_done;		/* the command has exited and been reaped */
	int cmd_status;		/* its wait status, valid once cmd_done */
	int sigfd;		/* signalfd for SIGCHLD, SIGTERM, SIGINT, SIGHUP */
	int lsock;		/* hold mode's spawn socket, or -1 */
	sigset_t oldmask;	/* the mask we started with, restored in children */
};

/* Write pid to path through a temporary file, so a reader never sees half a pid. */
static int write_pidfile(const char *path, pid_t pid)
{
	char *tmp = NULL;
	FILE *f = NULL;
	int rc = -ENOMEM;

	if (asprintf(&tmp, "%s.tmp", path) < 0) {
		tmp = NULL;
		goto cleanup;
	}
	if (!(f = fopen(tmp, "w"))) {
		rc = -errno;
		goto cleanup;
	}
	if (fprintf(f, "%ld\n", (long)pid) < 0) {
		rc = -EIO;
		goto cleanup;
	}
	rc = fclose(f) == 0 ? 0 : -errno;
	f = NULL;
	if (rc < 0)
		goto cleanup;
	if (rename(tmp, path) < 0)
		rc = -errno;
cleanup:
	if (f)
		fclose(f);
	if (rc < 0 && tmp)
		unlink(tmp);
	free(tmp);
	return rc;
}

/*
 * Fork and exec argv with the signal mask we started with. With outfd >= 0 the
 * child gets its own session, /dev/null as stdin and outfd as stdout and
 * stderr (spawn requests); otherwise it keeps our stdio (command mode). Every
 * descriptor of ours is close-on-exec, so the child inherits none of them.
 */
static int spawn(const struct reaper *r, char **argv, int outfd, pid_t *pidp)
{
	pid_t pid = fork();

	if (pid < 0)
		return -errno;
	if (pid == 0) {
		if (outfd >= 0) {
			int devnull = open("/dev/null", O_RDONLY);

			setsid();
			if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(outfd, 1) < 0 ||
			    dup2(outfd, 2) < 0)
				_exit(127);
			if (devnull > 2)
				close(devnull);
		}
		sigprocmask(SIG_SETMASK, &r->oldmask, NULL);
		execvp(argv[0], argv);
		fprintf(stderr, PROG ": cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	*pidp = pid;
	return 0;
}

/*
 * Reap every child that has exited. Sets *none_left when we have no children
 * at all any more (the command and all adopted orphans are gone).
 */
static int reap_all(struct reaper *r, bool *none_left)
{
	*none_left = false;
	for (;;) {
		int status;
		pid_t pid = waitpid(-1, &status, WNOHANG);

		if (pid > 0) {
			if (pid == r->cmd) {
				r->cmd_done = true;
				r->cmd_status = status;
			}
			continue;
		}
		if (pid == 0)
			return 0;
		if (errno == EINTR)
			continue;
		if (errno == ECHILD) {
			*none_left = true;
			return 0;
		}
		return -errno;
	}
}

/* Our exit code for the command's wait status, as a shell would report it. */
static int exit_code(const struct reaper *r)
{
	if (!r->cmd)
		return 0;
	if (WIFEXITED(r->cmd_status))
		return WEXITSTATUS(r->cmd_status);
	if (WIFSIGNALED(r->cmd_status))
		return 128 + WTERMSIG(r->cmd_status);
	return 1;
}

/* Bind and listen on a unix socket only root can reach. */
static int listen_socket(const char *path, int *fdp)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	mode_t old_umask;
	int fd = -1, rc;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	if ((fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0)) < 0)
		return -errno;
	/* A socket left by a holder that was killed would make bind() fail. */
	unlink(path);
	old_umask = umask(077);
	rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ? -errno : 0;
	umask(old_umask);
	if (rc == 0 && listen(fd, 16) < 0)
		rc = -errno;
	if (rc < 0) {
		close(fd);
		return rc;
	}
	*fdp = fd;
	return 0;
}

/*
 * Split a request into the log path and a NULL-terminated argv pointing into
 * buf. Every field must be NUL-terminated and there must be a command.
 */
static int parse_request(char *buf, size_t len, char **logp, char **argv)
{
	size_t off = 0;
	int n = 0;

	if (len == 0 || buf[len - 1] != '\0')
		return -EINVAL;
	*logp = buf;
	off = strlen(buf) + 1;
	while (off < len) {
		if (n == MAX_ARGS)
			return -E2BIG;
		argv[n++] = buf + off;
		off += strlen(buf + off) + 1;
	}
	argv[n] = NULL;
	return n > 0 && **logp && *argv[0] ? 0 : -EINVAL;
}

/* Accept one client, start what it asks for and tell it the pid. */
static int serve_one(struct reaper *r)
{
	struct timeval tv = { .tv_sec = 2 };
	char *argv[MAX_ARGS + 1];
	char reply[256];
	char *buf = NULL, *log;
	int conn = -1, outfd = -1, rc;
	ssize_t len;
	pid_t pid = 0;

	if ((conn = accept4(r->lsock, NULL, NULL, SOCK_CLOEXEC)) < 0)
		return errno == EAGAIN || errno == EINTR || errno == ECONNABORTED ? 0 : -errno;
	/* A client that connects and says nothing must not stall the reaping. */
	setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	rc = -ENOMEM;
	if (!(buf = malloc(MAX_REQUEST)))
		goto reply;
	if ((len = recv(conn, buf, MAX_REQUEST, MSG_TRUNC)) < 0) {
		rc = -errno;
		goto reply;
	}
	rc = len > MAX_REQUEST ? -E2BIG : parse_request(buf, len, &log, argv);
	if (rc < 0)
		goto reply;
	if ((outfd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644)) < 0) {
		rc = -errno;
		goto reply;
	}
	rc = spawn(r, argv, outfd, &pid);
reply:
	if (rc == 0)
		snprintf(reply, sizeof(reply), "ok %ld", (long)pid);
	else
		snprintf(reply, sizeof(reply), "error: %s", strerror(-rc));
	/* The client may be gone; the child runs regardless. */
	send(conn, reply, strlen(reply), MSG_NOSIGNAL);
	if (outfd >= 0)
		close(outfd);
	close(conn);
	free(buf);
	return 0;
}

/* Handle one signal; sets *done with our exit code when it is time to go. */
static int on_signal(struct reaper *r, int sig, bool *done, int *code)
{
	bool none_left;
	int rc;

	if (sig != SIGCHLD) {
		if (r->cmd && !r->cmd_done) {
			kill(r->cmd, sig);
			return 0;
		}
		*done = true;
		*code = exit_code(r);
		return 0;
	}
	if ((rc = reap_all(r, &none_left)) < 0)
		return rc;
	if (r->cmd && r->cmd_done && none_left) {
		*done = true;
		*code = exit_code(r);
	}
	return 0;
}

/* Wait for signals and spawn requests until it is time to go; returns our exit code. */
static int run_loop(struct reaper *r)
{
	struct pollfd pfd[2] = {
		{ .fd = r->sigfd, .events = POLLIN },
		{ .fd = r->lsock, .events = POLLIN },
	};
	bool done = false;
	int code = 0, rc;

	while (!done) {
		struct signalfd_siginfo si;

		if (poll(pfd, r->lsock >= 0 ? 2 : 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, PROG ": poll failed: %s\n", strerror(errno));
			return 1;
		}
		if (pfd[0].revents & POLLIN) {
			if (read(r->sigfd, &si, sizeof(si)) != sizeof(si))
				continue;
			if ((rc = on_signal(r, si.ssi_signo, &done, &code)) < 0) {
				fprintf(stderr, PROG ": waitpid failed: %s\n", strerror(-rc));
				return 1;
			}
		}
		if (!done && r->lsock >= 0 && (pfd[1].revents & POLLIN) &&
		    (rc = serve_one(r)) < 0) {
			fprintf(stderr, PROG ": accept failed: %s\n", strerror(-rc));
			return 1;
		}
	}
	return code;
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: " PROG " [--pidfile FILE] [--] CMD [ARG...]\n"
		"       " PROG " --hold [--pidfile FILE] [--socket PATH]\n"
		"Runs CMD as a child subreaper that reaps every orphan at once and exits\n"
		"with CMD's status; --hold runs nothing, reaps until SIGTERM and serves\n"
		"spawn requests on PATH.\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "pidfile", required_argument, NULL, 'p' },
		{ "hold", no_argument, NULL, 'H' },
		{ "socket", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct reaper r = { .sigfd = -1, .lsock = -1 };
	const char *pidfile = NULL, *sockpath = NULL;
	bool hold = false;
	sigset_t set;
	int opt, rc;

	while ((opt = getopt_long(argc, argv, "+p:Hs:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'p':
			pidfile = optarg;
			break;
		case 'H':
			hold = true;
			break;
		case 's':
			sockpath = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (hold == (optind < argc) || (sockpath && !hold)) {
		fprintf(stderr, PROG ": give either a command or --hold (with --socket), not both\n");
		usage(stderr);
		return 2;
	}

	if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0) {
		fprintf(stderr, PROG ": cannot become a child subreaper: %s\n", strerror(errno));
		return 1;
	}

	/* Block before forking, so no SIGCHLD or SIGTERM can slip past the signalfd. */
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &set, &r.oldmask) < 0 ||
	    (r.sigfd = signalfd(-1, &set, SFD_CLOEXEC)) < 0) {
		fprintf(stderr, PROG ": cannot set up signals: %s\n", strerror(errno));
		return 1;
	}

	if (sockpath && (rc = listen_socket(sockpath, &r.lsock)) < 0) {
		fprintf(stderr, PROG ": cannot listen on %s: %s\n", sockpath, strerror(-rc));
		return 1;
	}
	if (!hold && (rc = spawn(&r, argv + optind, -1, &r.cmd)) < 0) {
		fprintf(stderr, PROG ": cannot fork: %s\n", strerror(-rc));
		return 1;
	}
	if (pidfile && (rc = write_pidfile(pidfile, hold ? getpid() : r.cmd)) < 0) {
		fprintf(stderr, PROG ": cannot write pid file %s: %s; check that its directory exists\n",
			pidfile, strerror(-rc));
		if (!r.cmd)
			return 1;
		/* The caller waits for the pid file in vain; do not leave CMD behind. */
		kill(r.cmd, SIGTERM);
	}
	return run_loop(&r);
}
