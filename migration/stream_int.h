/* Inside the migration data path (stream.h): what the source, the target,
 * the framing and the relay share. Not for use outside migration/.
 *
 * Threads. A session has one main thread (the source's connects, shakes
 * hands, accepts QEMU and pumps the forward direction; the target's shakes
 * hands and pumps the forward direction) and one helper for the other
 * direction, started by the main thread, which joins it before it ends. So
 * the loop joins one thread per session, and when the main thread finishes,
 * nobody else uses the session's sockets any more.
 *
 * Wakeups. Every blocking wait is a poll() over the socket and the session's
 * cancel eventfd, so a failure, a cancel or a free wakes every thread at
 * once whatever it waits for (a connect retry's sleep, an accept, a full
 * socket buffer); the local sockets are also shut down so that QEMU sees the
 * end at once.
 *
 * Failure. The first mig_session_fail wins: it records rc and the message
 * and wakes everything. The main thread, last to run, then tells the peer
 * with an ERROR frame (unless the failure came from the peer or from the
 * connection itself) and shuts the TCP connection down. */
#ifndef VIREO_MIGRATION_STREAM_INT_H
#define VIREO_MIGRATION_STREAM_INT_H

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <nettle/hmac.h>

#include "migration/stream.h"

#define MIG_MAC_LEN 32
#define MIG_NONCE_LEN 32
/* A packed Hello, Welcome or frame header is ~120 bytes at most; anything
 * much longer is not ours. */
#define MIG_HEADER_MAX 1024u
/* An ERROR frame's reason text. */
#define MIG_REASON_MAX 240u
/* How long a failing side tries to deliver its ERROR frame. */
#define MIG_ERROR_FRAME_MS 500u
/* A write to the peer failed: how long to wait for the receiving thread to
 * read why (the peer's ERROR frame sits before the reset). */
#define MIG_EXPLAIN_WAIT_MS 1000u
/* The source's pause between two attempts to reach the target. */
#define MIG_RETRY_MS 100u
/* The target's pause between two attempts to reach its QEMU's socket. */
#define MIG_QEMU_RETRY_MS 10u

enum mig_dir {
	MIG_DIR_FORWARD = 0,   /* source QEMU -> target QEMU */
	MIG_DIR_BACK = 1,      /* target QEMU -> source QEMU */
};

uint64_t mig_now_ms(void);
uint64_t mig_now_ns(void);

/* ------------------------------------------------------------ io.c */

/* What a blocking wait gives up on. */
struct mig_wait {
	int cancel_fd;                  /* readable = give up (-ECANCELED); -1: none */
	uint64_t deadline_ms;           /* CLOCK_MONOTONIC; 0: none */
	_Atomic uint64_t *activity_ms;  /* last byte moved, either way; NULL: no stall check */
	uint32_t stall_ms;              /* -ETIMEDOUT when activity is this old; 0: never */
};

/* 0 once fd is ready for events (or in error: the next call says which),
 * -ECANCELED, -ETIMEDOUT. */
int mig_io_wait(int fd, short events, const struct mig_wait *w);
/* Reads exactly len bytes: 0, -ENODATA on end of file (even part way), or -errno. */
int mig_io_read_full(int fd, void *buf, size_t len, const struct mig_wait *w);
/* Reads what is there, at least one byte, up to len: *got = 0 at end of file. */
int mig_io_read_some(int fd, void *buf, size_t len, const struct mig_wait *w, size_t *got);
/* Writes all of iov; *sent counts what went out, so a caller knows whether
 * a frame was cut part way. */
int mig_io_writev(int fd, const struct iovec *iov, int iovcnt, const struct mig_wait *w,
		  size_t *sent);
/* Unix stream socket listening at path (a stale socket file is replaced,
 * anything else there is -EEXIST), mode 0660. */
int mig_io_unix_listen(const char *path, int *out);
/* One non-blocking connect attempt to a unix socket: 0, -EINPROGRESS
 * (poll for POLLOUT, then mig_io_connect_result), or -errno. */
int mig_io_unix_connect(const char *path, int *out);
/* After POLLOUT on a connecting socket: 0 or the connect's -errno. */
int mig_io_connect_result(int fd);
void mig_io_tcp_tune(int fd);

/* ------------------------------------------------------------ key.c */

/* HMAC-SHA256(cluster key, "session" | hello nonce | welcome nonce) */
void mig_session_key(const struct mig_key *cluster, const uint8_t hello_nonce[MIG_NONCE_LEN],
		     const uint8_t welcome_nonce[MIG_NONCE_LEN], uint8_t out[MIG_KEY_LEN]);
int mig_random(void *buf, size_t len);

/* ------------------------------------------------------------ frame.c */

struct mig_frame {
	uint64_t seq;
	int kind;                  /* Vireo__MigrationFrameKind */
	uint32_t raw_len;          /* DATA: raw bytes; ERROR: the sender's errno (positive) */
	uint32_t payload_len;
	uint8_t mac[MIG_MAC_LEN];
};

int mig_hello_send(int fd, const struct mig_wait *w, const struct mig_key *key,
		   const struct mig_session_id *id, const uint8_t nonce[MIG_NONCE_LEN]);
/* -EBADMSG: not a hello; -EACCES: its MAC does not verify under key;
 * -EPROTONOSUPPORT: another protocol version (*version says which). */
int mig_hello_recv(int fd, const struct mig_wait *w, const struct mig_key *key,
		   struct mig_session_id *id, uint8_t nonce[MIG_NONCE_LEN], uint32_t *version);
/* skey NULL: a refusal (reason), sent without nonce or MAC. */
int mig_welcome_send(int fd, const struct mig_wait *w, const uint8_t *skey,
		     const uint8_t nonce[MIG_NONCE_LEN], const char *reason);
/* *accepted false: reason holds the target's (sanitised) words. Accepted:
 * skey is derived and the MAC checked (-EACCES if it fails). */
int mig_welcome_recv(int fd, const struct mig_wait *w, const struct mig_key *key,
		     const uint8_t hello_nonce[MIG_NONCE_LEN], bool *accepted, char *reason,
		     size_t reason_len, uint8_t skey[MIG_KEY_LEN]);

void mig_frame_mac(const struct hmac_sha256_ctx *keyed, enum mig_dir dir, const struct mig_frame *f,
		   const uint8_t *payload, uint8_t out[MIG_MAC_LEN]);
/* *wire += bytes sent; *dirty set if the frame was only partly written. */
int mig_frame_send(int fd, const struct mig_wait *w, const struct mig_frame *f,
		   const uint8_t *payload, uint64_t *wire, bool *dirty);
/* The header only; the caller reads payload_len bytes next. -EBADMSG if
 * it is not a frame header, -ENODATA at end of file. */
int mig_frame_recv(int fd, const struct mig_wait *w, struct mig_frame *f, uint64_t *wire);
/* Printable ASCII only, at most len - 1 bytes: the peer's words end up in logs. */
void mig_sanitize(char *dst, size_t len, const char *src, size_t src_len);

/* ------------------------------------------------------------ session.c */

struct mig_session {
	bool source;
	struct mig_session_id id;
	qb_loop_t *loop;
	struct mig_key key;             /* the cluster's */
	struct hmac_sha256_ctx mac;     /* keyed with the session key once shaken hands */
	bool handshaken;                /* set by the main thread before the helper starts */
	uint32_t chunk_bytes;
	int lz4_level;
	uint32_t stall_ms;
	uint32_t fault_corrupt_chunk;
	char *socket_path;              /* source: ours; target: the target QEMU's */

	/* source */
	char *target_host;
	uint16_t target_port;
	uint32_t connect_timeout_ms;
	mig_done_fn done;
	void *ctx;
	int wake_fd;                    /* eventfd in the loop: the main thread ended */
	bool polled;
	bool socket_made;               /* socket_path is ours (this device and inode) */
	dev_t socket_dev;
	ino_t socket_ino;

	/* target */
	struct mig_listener *listener;
	struct mig_session *next;       /* in the listener's list */
	bool accepted;                  /* under the listener's lock */
	char peer[64];                  /* the connection's address, for logs */
	uint32_t handshake_ms;
	uint32_t qemu_connect_ms;

	int cancel_fd;
	_Atomic uint64_t activity_ms;
	struct mig_counters counters;
	pthread_t thread, helper;
	bool thread_started, helper_started, joined;

	pthread_mutex_t lock;
	/* under lock */
	int tcp_fd, qemu_fd, listen_fd;
	bool failed, finished, freeing;
	int dirs_done;                  /* directions that ended cleanly (END sent or received) */
	bool tell_peer;                 /* send an ERROR frame before closing */
	struct mig_result result;       /* rc and message; the rest at the end */

	/* the thread that writes to the peer owns these (the main thread once
	 * the helper is joined) */
	uint64_t out_seq;
	bool out_dirty;                 /* a frame went out only in part */
	/* the forward direction's thread owns these */
	uint64_t first_byte_ms, last_byte_ms;
	uint64_t read_ns, codec_ns, write_ns;
};

struct mig_session *mig_session_new(bool source);
/* Frees what new and the threads allocated: fds closed, socket file left. */
void mig_session_destroy(struct mig_session *s);

/* Records the first failure and wakes every thread. tell_peer: a local
 * cause, so the peer is told with an ERROR frame. */
void mig_session_fail(struct mig_session *s, int rc, bool tell_peer, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
bool mig_session_failed(struct mig_session *s);
/* A direction ended cleanly: true when it was the second. */
bool mig_session_dir_done(struct mig_session *s);
/* Stores fd as the session's tcp/qemu/listen fd unless it failed meanwhile
 * (then fd is closed and -ECANCELED returned). */
int mig_session_set_fd(struct mig_session *s, int *slot, int fd);
/* The wait every streaming read and write uses. */
struct mig_wait mig_session_wait(struct mig_session *s);
/* Sleeps ms unless cancelled: 0 or -ECANCELED. */
int mig_session_sleep(struct mig_session *s, uint32_t ms);
/* Starts the helper thread on fn. */
int mig_session_start_helper(struct mig_session *s, void *(*fn)(void *));
/* The main thread's last act: joins the helper, tells the peer if needed,
 * shuts the sockets down, marks the session finished. */
void mig_session_finish(struct mig_session *s);
/* The result as the loop reports it (after the main thread was joined). */
void mig_session_result(struct mig_session *s, struct mig_result *r);
void mig_session_snapshot(struct mig_session *s, struct mig_result *r);
const char *mig_side(bool source);
void mig_format_bytes(char *buf, size_t len, uint64_t bytes);

/* ------------------------------------------------------------ relay.c */

/* Reads the local socket, compresses, sends frames of direction dir, ends
 * with END at the local end of file. 0 or -errno (already recorded with
 * mig_session_fail). */
int mig_relay_send(struct mig_session *s, enum mig_dir dir);
/* Receives frames of direction dir, verifies, decompresses and writes them
 * to the local socket; shuts its write side at END. before_first, if set,
 * runs on the first DATA frame (the target connects its QEMU then). */
int mig_relay_recv(struct mig_session *s, enum mig_dir dir,
		   int (*before_first)(struct mig_session *s));
/* An END with an empty lz4 frame: the direction had nothing to say. */
int mig_relay_send_empty_end(struct mig_session *s, enum mig_dir dir);

/* ------------------------------------------------------------ target.c */

/* The target's main thread has finished: the listener's loop reaps it. */
void mig_listener_wake(struct mig_listener *l);

#endif
