/* Child processes of sharedstore/: running qemu-img without a shell, and
 * children that hang on dead storage.
 *
 * A process blocked in I/O on a hard-mounted NFS that lost its server can sit
 * in uninterruptible sleep for as long as the server is gone, even after
 * SIGKILL. So nothing here ever waits for a child without a deadline: a child
 * that outlives its deadline is killed, given a moment to die, and otherwise
 * parked in a small table that later calls reap (waitpid(WNOHANG)). Callers
 * use the table to avoid piling up new children behind one that is stuck.
 *
 * Not thread-safe: vireod calls this from its one main loop. */
#ifndef VIREO_SHAREDSTORE_RUN_H
#define VIREO_SHAREDSTORE_RUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* How much of a command's stdout and stderr is kept (the rest is read and dropped). */
#define STORE_RUN_MAX_OUTPUT (1u << 20)

struct store_run_result {
	int exit_code;        /* 0..255, or -1 when killed by a signal or timed out */
	int term_signal;      /* the signal that ended it, or 0 */
	bool timed_out;
	char *out;            /* stdout, NUL-terminated (never NULL after success) */
	size_t out_len;
	char *err;            /* stderr, NUL-terminated (never NULL after success) */
	size_t err_len;
};

/* Runs argv[0] (looked up in PATH) with argv, stdin from /dev/null, no shell,
 * LC_ALL=C (so its messages can be matched), capturing stdout and stderr.
 * Returns 0 when the command ran (whatever its exit code: see r), or -errno
 * when it could not be started or watched. After timeout_ms the command is
 * killed and r->timed_out is set. Free r with store_run_result_free(). */
int store_run(const char *const argv[], unsigned timeout_ms, struct store_run_result *r);
void store_run_result_free(struct store_run_result *r);

/* The monotonic clock in milliseconds and in microseconds. */
uint64_t store_now_ms(void);
uint64_t store_now_us(void);

/* SIGKILLs a child of ours (started at started_ms) and reaps it if it dies
 * within a few ms; if not (uninterruptible sleep), parks it under tag (e.g.
 * the pool path) so that store_child_stuck() reports it and a later call
 * reaps it. */
void store_child_kill(pid_t pid, const char *tag, uint64_t started_ms);

/* Reaps parked children that have died. Returns the monotonic time (ms) at
 * which the oldest child still parked under tag was started, or 0 if none. */
uint64_t store_child_stuck(const char *tag);

#endif
