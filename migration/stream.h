/* The migration data path between two vireods.
 *
 * libvirt migrates the guest (quick: paused; live: pre-copy) with its data
 * URI set to a unix socket on each host (unix:///run/vireo/migration/<uuid>.sock):
 * the source QEMU connects to the socket vireod's source session listens on,
 * the target QEMU listens on the same path on the target host, where the
 * target session connects. In between, this module relays QEMU's stream (both
 * ways: QEMU also talks back a little) over one TCP connection:
 *
 *   - compressed with the lz4 frame API (one LZ4F frame per direction, block
 *     and content checksums on, flushed at every chunk so the target can
 *     decompress each chunk as it arrives),
 *   - framed with protobuf-c (MigrationHello, MigrationWelcome,
 *     MigrationFrame in proto/vireo.proto), each message preceded by its
 *     4-byte big-endian length,
 *   - authenticated: HMAC-SHA256 with a per-session key derived from the
 *     cluster's key (corosync's authkey) and both sides' nonces; a session
 *     or chunk that does not verify is refused and the stream ends with an
 *     error. The exact bytes each MAC covers are written down in
 *     migration/frame.c.
 *
 * Pipelined: QEMU writes, the source compresses and sends, the target
 * verifies, decompresses and writes into QEMU, all at once, chunk by chunk.
 *
 * Each session runs in its own threads (one per direction, blocking I/O); its
 * end is reported once, from the qb main loop. Nothing here knows about the
 * cluster or libvirt: node/vm_migrate.c puts them together.
 *
 * Functions return 0 or a negative errno. */
#ifndef VIREO_MIGRATION_STREAM_H
#define VIREO_MIGRATION_STREAM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <qb/qbloop.h>

#define MIG_KEY_LEN 32
#define MIG_UUID_LEN 36
#define MIG_PROTOCOL_VERSION 1
/* Raw hypervisor bytes per chunk: large enough for lz4 to compress well and
 * for the per-chunk HMAC to cost nothing, small enough to pipeline. */
#define MIG_CHUNK_DEFAULT (512u * 1024u)
#define MIG_CHUNK_MAX (4u * 1024u * 1024u)

struct mig_key {
	uint8_t bytes[MIG_KEY_LEN];
};

/* The cluster's migration key: HKDF-SHA256 (nettle) of the file's contents
 * (corosync's authkey, the same on every host) with the info string
 * "vireo migration stream v1" and no salt (RFC 5869: zeros). -ENOENT/-EACCES
 * as open(2); -EINVAL if the file holds fewer than 16 bytes or more than
 * 64 KiB (not a key file). */
int mig_key_from_file(const char *path, struct mig_key *out);

/* Which migration a session carries: the target accepts only what it was
 * told to expect. */
struct mig_session_id {
	char vm_uuid[MIG_UUID_LEN + 1];
	uint64_t migration_id;
	uint64_t generation;
};

enum mig_phase {
	MIG_PHASE_CONNECTING = 0,   /* source: reaching the target / target: handshake */
	MIG_PHASE_WAITING,          /* authenticated, no hypervisor byte yet */
	MIG_PHASE_STREAMING,        /* bytes flow */
	MIG_PHASE_DONE,             /* both directions ended (see the result) */
};

/* Live counters, written by the session's threads and readable from the
 * loop at any time (for progress reports). */
struct mig_counters {
	_Atomic int phase;                 /* enum mig_phase */
	_Atomic uint64_t raw_forward;      /* source QEMU -> target QEMU, uncompressed */
	_Atomic uint64_t wire_forward;     /* the same on the wire (framed, compressed) */
	_Atomic uint64_t raw_back;         /* target QEMU -> source QEMU */
	_Atomic uint64_t chunks_forward;
};

/* How a session ended. Times are CLOCK_MONOTONIC milliseconds (0 = never). */
struct mig_result {
	int rc;                     /* 0: both ways ended cleanly; -ECANCELED,
				     * -ETIMEDOUT (stalled), -ECONNREFUSED /
				     * -EHOSTUNREACH / -ECONNRESET (target gone),
				     * -EACCES (not authenticated / refused),
				     * -EBADMSG (corrupt or malformed chunk),
				     * -EPIPE (a QEMU side closed early), ... */
	char message[256];          /* one sentence saying what happened ("" if ok),
				     * naming the side that failed */
	uint64_t raw_forward, wire_forward, raw_back, chunks_forward;
	uint64_t first_byte_ms;     /* first hypervisor byte read (source) / written (target) */
	uint64_t last_byte_ms;      /* the forward stream's end */
	/* Where the forward direction's time went (ms of thread time spent in
	 * each step, summed over chunks). Source: reading QEMU, compressing,
	 * sending. Target: receiving, verifying+decompressing, writing QEMU. */
	uint64_t read_ms, codec_ms, write_ms;
};

typedef void (*mig_done_fn)(void *ctx, const struct mig_result *r);

struct mig_session;

struct mig_source_params {
	qb_loop_t *loop;
	struct mig_session_id id;
	const char *socket_path;       /* created here (an existing socket file is
					* replaced), mode 0660; QEMU connects to it */
	const char *target_host;       /* the target vireod: IPv4/IPv6 literal or name */
	uint16_t target_port;
	const struct mig_key *key;
	uint32_t connect_timeout_ms;   /* keep retrying a refused/unexpected session this
					* long (the target may not have applied the op yet),
					* every 100 ms; then -EACCES if the target still said
					* "not expected", else the connect's error */
	uint32_t stall_timeout_ms;     /* streaming with no byte either way this long:
					* -ETIMEDOUT. It also bounds the wait for QEMU's
					* connection once the target accepted. 0: never */
	uint32_t chunk_bytes;          /* 0: MIG_CHUNK_DEFAULT; at most MIG_CHUNK_MAX */
	int lz4_level;                 /* LZ4F compressionLevel; 0 = fast default */
	uint32_t fault_corrupt_chunk;  /* TEST ONLY: flip one payload byte of this
					* forward DATA chunk (1-based) after its MAC
					* was computed; 0 = none */
	mig_done_fn done;              /* called once, from the loop, unless start fails */
	void *ctx;
};

/* Creates and listens on the unix socket before returning (so libvirt's
 * migration may begin at once), then a thread connects to the target,
 * authenticates, accepts QEMU's connection and relays both ways until both
 * sides ended. The session stays allocated until mig_session_free. */
int mig_source_start(const struct mig_source_params *p, struct mig_session **out);

/* Ends the session now (cancel, or the migration finished elsewhere): the
 * sockets are shut down, the threads end, done follows from the loop with
 * rc -ECANCELED unless the session had already ended. */
void mig_session_cancel(struct mig_session *s);

const struct mig_counters *mig_session_counters(const struct mig_session *s);

/* Cancels if still running, waits for the threads, removes the socket file
 * (if it is still the one this session made), frees. done is not called
 * from here on; calling this from inside done is fine. NULL is fine. Only
 * for sessions of mig_source_start: the listener owns the target's. */
void mig_session_free(struct mig_session *s);

/* The target side: one listener per vireod. */
struct mig_listener;

struct mig_listener_params {
	qb_loop_t *loop;
	const char *bind_host;         /* NULL or "": every address */
	uint16_t port;                 /* 0: an ephemeral port (tests); see mig_listener_port */
	const struct mig_key *key;
	uint32_t handshake_timeout_ms; /* a connection that has not said hello by then is dropped */
	uint32_t stall_timeout_ms;     /* as for the source; it also bounds the wait
					* for the first chunk after the handshake */
	uint32_t qemu_connect_timeout_ms;  /* first chunk in -> the target QEMU's socket
					    * must accept within this */
	/* From the loop, once per accepted session, when it ended. */
	void (*session_done)(void *ctx, const struct mig_session_id *id,
			     const struct mig_result *r);
	void *ctx;
};

int mig_listener_start(const struct mig_listener_params *p, struct mig_listener **out);
uint16_t mig_listener_port(const struct mig_listener *l);
/* Stops listening, cancels every session, waits for their threads.
 * session_done is not called for the sessions it cancels. May be called
 * from inside session_done. NULL is fine. */
void mig_listener_stop(struct mig_listener *l);

/* Accepts sessions for id: their stream goes to the unix socket socket_path
 * (the target QEMU's incoming socket, connected when the first chunk
 * arrives). A hello for anything not expected is answered "not expected"
 * (the source retries until its connect timeout). One session at a time:
 * while one runs (until its session_done), another hello for id is "not
 * expected" too; after it, a new session for id is accepted (the source's
 * retry of a migration that failed early), until mig_listener_forget.
 * -EEXIST if expected already. */
int mig_listener_expect(struct mig_listener *l, const struct mig_session_id *id,
			const char *socket_path);
/* No longer expected; a session of it that runs is cancelled (its
 * session_done still follows). */
void mig_listener_forget(struct mig_listener *l, const struct mig_session_id *id);
/* Counters of id's session, if one runs (the counters only: no rc, message
 * or times): 0, or -ENOENT. */
int mig_listener_counters(struct mig_listener *l, const struct mig_session_id *id,
			  struct mig_result *snapshot);

#endif
