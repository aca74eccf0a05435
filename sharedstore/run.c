#include "sharedstore/run.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define STUCK_MAX 16
#define STUCK_TAG_LEN 256
/* How long a SIGKILLed child gets to die before it is parked. */
#define KILL_GRACE_MS 50

static struct {
	pid_t pid;
	uint64_t started_ms;
	char tag[STUCK_TAG_LEN];
} stuck[STUCK_MAX];

uint64_t store_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t store_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000u, .tv_nsec = (long)(ms % 1000u) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* 1: reaped (or not ours any more), 0: still running. */
static int reap(pid_t pid, int *status)
{
	int st = 0;
	pid_t r;

	do
		r = waitpid(pid, &st, WNOHANG);
	while (r < 0 && errno == EINTR);
	if (r == 0)
		return 0;
	if (status)
		*status = r == pid ? st : -1;
	return 1;
}

void store_child_kill(pid_t pid, const char *tag, uint64_t started_ms)
{
	uint64_t until = store_now_ms() + KILL_GRACE_MS;
	size_t i;

	kill(pid, SIGKILL);
	for (;;) {
		if (reap(pid, NULL))
			return;
		if (store_now_ms() >= until)
			break;
		sleep_ms(1);
	}
	for (i = 0; i < STUCK_MAX; i++) {
		if (stuck[i].pid == 0) {
			stuck[i].pid = pid;
			stuck[i].started_ms = started_ms;
			snprintf(stuck[i].tag, sizeof(stuck[i].tag), "%s", tag ? tag : "");
			return;
		}
	}
	/* The table is full: the child stays a zombie until vireod exits. That
	 * takes 16 checks hung at once; the callers refuse to start a new one
	 * while an older one for the same pool is stuck, so it does not happen. */
}

uint64_t store_child_stuck(const char *tag)
{
	uint64_t oldest = 0;
	size_t i;

	for (i = 0; i < STUCK_MAX; i++) {
		if (stuck[i].pid == 0)
			continue;
		if (reap(stuck[i].pid, NULL)) {
			stuck[i].pid = 0;
			continue;
		}
		if (tag && strcmp(stuck[i].tag, tag) == 0 &&
		    (oldest == 0 || stuck[i].started_ms < oldest))
			oldest = stuck[i].started_ms;
	}
	return oldest;
}

/* environ without the locale variables, plus LC_ALL=C; the strings are shared. */
static char **c_locale_env(void)
{
	size_t n = 0, k = 0;
	char **env;

	while (environ && environ[n])
		n++;
	if (!(env = calloc(n + 2, sizeof(*env))))
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (strncmp(environ[i], "LC_", 3) == 0 || strncmp(environ[i], "LANG=", 5) == 0 ||
		    strncmp(environ[i], "LANGUAGE=", 9) == 0)
			continue;
		env[k++] = environ[i];
	}
	env[k] = (char *)"LC_ALL=C";
	return env;
}

struct sink {
	int fd;
	char *buf;
	size_t len, cap;
};

/* Reads what is there; 1 at EOF, 0 otherwise, -errno on error. */
static int drain(struct sink *s)
{
	char chunk[4096];
	ssize_t n = read(s->fd, chunk, sizeof(chunk));

	if (n < 0)
		return errno == EINTR || errno == EAGAIN ? 0 : -errno;
	if (n == 0)
		return 1;
	if (s->len + (size_t)n + 1 > s->cap && s->len < STORE_RUN_MAX_OUTPUT) {
		size_t cap = s->cap ? s->cap * 2 : 8192;
		char *b;

		while (cap < s->len + (size_t)n + 1)
			cap *= 2;
		if (cap > STORE_RUN_MAX_OUTPUT + 1)
			cap = STORE_RUN_MAX_OUTPUT + 1;
		if (!(b = realloc(s->buf, cap)))
			return -ENOMEM;
		s->buf = b;
		s->cap = cap;
	}
	if (s->len < STORE_RUN_MAX_OUTPUT) {
		size_t keep = (size_t)n;

		if (keep > STORE_RUN_MAX_OUTPUT - s->len)
			keep = STORE_RUN_MAX_OUTPUT - s->len;
		memcpy(s->buf + s->len, chunk, keep);
		s->len += keep;
		s->buf[s->len] = '\0';
	}
	return 0;
}

static int finish_sink(struct sink *s, char **out, size_t *len)
{
	if (!s->buf && !(s->buf = calloc(1, 1)))
		return -ENOMEM;
	*out = s->buf;
	*len = s->len;
	s->buf = NULL;
	return 0;
}

void store_run_result_free(struct store_run_result *r)
{
	free(r->out);
	free(r->err);
	r->out = r->err = NULL;
}

int store_run(const char *const argv[], unsigned timeout_ms, struct store_run_result *r)
{
	struct sink out = { .fd = -1 }, err = { .fd = -1 };
	int opipe[2] = { -1, -1 }, epipe[2] = { -1, -1 }, xpipe[2] = { -1, -1 };
	uint64_t start = store_now_ms(), deadline = start + timeout_ms;
	char **env = NULL;
	int devnull = -1, status = 0, exec_errno = 0;
	pid_t pid = -1;
	int rc;

	memset(r, 0, sizeof(*r));
	r->exit_code = -1;
	if (!(env = c_locale_env()))
		return -ENOMEM;
	if (pipe2(opipe, O_CLOEXEC) < 0 || pipe2(epipe, O_CLOEXEC) < 0 ||
	    pipe2(xpipe, O_CLOEXEC) < 0 ||
	    (devnull = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) {
		rc = -errno;
		goto cleanup;
	}
	pid = fork();
	if (pid < 0) {
		rc = -errno;
		goto cleanup;
	}
	if (pid == 0) {
		sigset_t none;
		int e;

		if (dup2(devnull, 0) < 0 || dup2(opipe[1], 1) < 0 || dup2(epipe[1], 2) < 0)
			_exit(127);
		/* Keep the exec-error pipe (close-on-exec) above the three. */
		if (xpipe[1] < 3 && (xpipe[1] = fcntl(xpipe[1], F_DUPFD_CLOEXEC, 3)) < 0)
			_exit(127);
		close_range(3, (unsigned)xpipe[1] - 1, 0);
		close_range((unsigned)xpipe[1] + 1, ~0u, 0);
		/* vireod's main loop blocks and ignores signals; qemu-img must not inherit that. */
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGPIPE, SIG_DFL);
		execvpe(argv[0], (char *const *)argv, env);
		e = errno;
		if (write(xpipe[1], &e, sizeof(e)) < 0)
			_exit(127);
		_exit(127);
	}
	close(opipe[1]);
	close(epipe[1]);
	close(xpipe[1]);
	opipe[1] = epipe[1] = xpipe[1] = -1;
	out.fd = opipe[0];
	err.fd = epipe[0];
	opipe[0] = epipe[0] = -1;

	/* EOF on the exec-error pipe: exec succeeded (or the child died). */
	{
		ssize_t n;

		do
			n = read(xpipe[0], &exec_errno, sizeof(exec_errno));
		while (n < 0 && errno == EINTR);
		if (n == (ssize_t)sizeof(exec_errno)) {
			while (!reap(pid, NULL))
				sleep_ms(1);
			pid = -1;
			rc = -exec_errno;
			goto cleanup;
		}
	}

	while (out.fd >= 0 || err.fd >= 0) {
		struct pollfd pfd[2];
		uint64_t now = store_now_ms();
		int nfds = 0, pr;

		if (now >= deadline) {
			r->timed_out = true;
			break;
		}
		if (out.fd >= 0)
			pfd[nfds++] = (struct pollfd){ .fd = out.fd, .events = POLLIN };
		if (err.fd >= 0)
			pfd[nfds++] = (struct pollfd){ .fd = err.fd, .events = POLLIN };
		pr = poll(pfd, (nfds_t)nfds, (int)(deadline - now));
		if (pr < 0 && errno != EINTR) {
			rc = -errno;
			goto cleanup;
		}
		for (int i = 0; pr > 0 && i < nfds; i++) {
			struct sink *s = pfd[i].fd == out.fd ? &out : &err;

			if (!pfd[i].revents)
				continue;
			if ((rc = drain(s)) < 0)
				goto cleanup;
			if (rc == 1) {
				close(s->fd);
				s->fd = -1;
			}
		}
	}
	/* Both pipes closed: the child is exiting; wait for it within the deadline. */
	while (!r->timed_out) {
		if (reap(pid, &status)) {
			pid = -1;
			break;
		}
		if (store_now_ms() >= deadline)
			r->timed_out = true;
		else
			sleep_ms(1);
	}
	if (r->timed_out) {
		store_child_kill(pid, argv[0], start);
		pid = -1;
	} else if (WIFEXITED(status)) {
		r->exit_code = WEXITSTATUS(status);
	} else if (WIFSIGNALED(status)) {
		r->term_signal = WTERMSIG(status);
	}
	if ((rc = finish_sink(&out, &r->out, &r->out_len)) < 0 ||
	    (rc = finish_sink(&err, &r->err, &r->err_len)) < 0)
		goto cleanup;
	rc = 0;
cleanup:
	if (pid > 0)
		store_child_kill(pid, argv[0], start);
	for (int i = 0; i < 2; i++) {
		if (opipe[i] >= 0)
			close(opipe[i]);
		if (epipe[i] >= 0)
			close(epipe[i]);
		if (xpipe[i] >= 0)
			close(xpipe[i]);
	}
	if (out.fd >= 0)
		close(out.fd);
	if (err.fd >= 0)
		close(err.fd);
	if (devnull >= 0)
		close(devnull);
	free(out.buf);
	free(err.buf);
	free(env);
	if (rc < 0)
		store_run_result_free(r);
	return rc;
}
