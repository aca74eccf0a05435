/* One direction of a session: local QEMU socket -> lz4 -> frames -> peer
 * (mig_relay_send), or peer -> frames -> verify -> lz4 -> local QEMU socket
 * (mig_relay_recv).
 *
 * One LZ4F frame per direction, flushed at every chunk (autoFlush), so each
 * DATA frame decompresses to exactly its raw_len bytes as soon as it
 * arrives; blocks are linked (better ratio: each block may refer to the
 * previous 64 KiB) and carry block and content checksums. The END frame
 * closes the LZ4F frame, so the receiver checks the whole content's
 * checksum before it calls the direction clean.
 *
 * A receiver that got END keeps reading ("lingers") until its own side's
 * other direction is done too: the peer may still fail and send ERROR after
 * its END, and that reason is worth more than a reset seen later. */
#include <errno.h>
#include <inttypes.h>
#include <lz4frame.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <nettle/memops.h>

#include "migration/stream_int.h"
#include "proto/vireo.pb-c.h"

#define KIND_DATA VIREO__MIGRATION_FRAME_KIND__MIGRATION_FRAME_DATA
#define KIND_END VIREO__MIGRATION_FRAME_KIND__MIGRATION_FRAME_END
#define KIND_ERROR VIREO__MIGRATION_FRAME_KIND__MIGRATION_FRAME_ERROR

static void lz4_prefs(LZ4F_preferences_t *p, int level)
{
	memset(p, 0, sizeof(*p));
	p->frameInfo.blockSizeID = LZ4F_max256KB;
	p->frameInfo.blockMode = LZ4F_blockLinked;
	p->frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled;
	p->frameInfo.blockChecksumFlag = LZ4F_blockChecksumEnabled;
	p->compressionLevel = level;
	p->autoFlush = 1;
}

/* The most a DATA payload may hold: a MIG_CHUNK_MAX chunk compressed in the
 * worst case, with the LZ4F header. The length is read before the MAC can
 * be checked, so it is the only bound on what a peer makes us allocate. */
static size_t payload_max(void)
{
	LZ4F_preferences_t p;

	lz4_prefs(&p, 0);
	return LZ4F_HEADER_SIZE_MAX + LZ4F_compressBound(MIG_CHUNK_MAX, &p);
}

static const char *peer_side(const struct mig_session *s)
{
	return mig_side(!s->source);
}

/* "after 12 MiB": how far the migration stream (forward) had come. */
static const char *amount(struct mig_session *s, char *buf, size_t len)
{
	mig_format_bytes(buf, len, atomic_load(&s->counters.raw_forward));
	return buf;
}

static int fail_stall(struct mig_session *s)
{
	if (s->stall_ms % 1000 == 0)
		mig_session_fail(s, -ETIMEDOUT, true, "the stream stalled: no data either way for %u s",
				 s->stall_ms / 1000);
	else
		mig_session_fail(s, -ETIMEDOUT, true, "the stream stalled: no data either way for %u ms",
				 s->stall_ms);
	return -ETIMEDOUT;
}

static const char *conn_error(int rc)
{
	switch (rc) {
	case -ENODATA:
		return "connection closed";
	case -ECONNRESET:
	case -EPIPE:
		return "connection reset";
	default:
		return strerror(-rc);
	}
}

/* Reading from the peer failed. */
static int recv_failed(struct mig_session *s, int rc)
{
	char a[32];

	switch (rc) {
	case -ECANCELED:
		return rc;
	case -ETIMEDOUT:
		return fail_stall(s);
	case -EBADMSG:
		mig_session_fail(s, rc, true, "a malformed frame came from the %s after %s",
				 peer_side(s), amount(s, a, sizeof(a)));
		return rc;
	default:
		mig_session_fail(s, rc == -ENODATA || rc == -EPIPE ? -ECONNRESET : rc, false,
				 "the stream from the %s was cut after %s (%s)", peer_side(s),
				 amount(s, a, sizeof(a)), conn_error(rc));
		return rc;
	}
}

/* Writing to the peer failed. */
static int send_failed(struct mig_session *s, int rc)
{
	char a[32];

	if (rc == -ECANCELED)
		return rc;
	if (rc == -ETIMEDOUT)
		return fail_stall(s);
	/* A peer that gave up sent ERROR before closing: that frame sits in our
	 * receive queue ahead of the reset, and the receiving thread is about
	 * to read it. Its reason is the one to report. */
	(void)mig_session_sleep(s, MIG_EXPLAIN_WAIT_MS);
	mig_session_fail(s, rc == -EPIPE ? -ECONNRESET : rc, false,
			 "the stream to the %s was cut after %s (%s)", peer_side(s),
			 amount(s, a, sizeof(a)), conn_error(rc));
	return rc;
}

/* After our END came, reading the peer ended. */
static int linger_failed(struct mig_session *s, int rc)
{
	if (rc == -ECANCELED)
		return mig_session_failed(s) ? rc : 0;
	if (rc != -ENODATA && rc != -ECONNRESET)
		return recv_failed(s, rc);
	/* The peer closes once it has both ENDs; ours may have just left
	 * without this side having counted it yet. */
	if (mig_session_sleep(s, MIG_EXPLAIN_WAIT_MS) == -ECANCELED)
		return mig_session_failed(s) ? -ECANCELED : 0;
	return recv_failed(s, rc);
}

static int local_failed(struct mig_session *s, int rc, bool reading)
{
	char a[32];

	if (rc == -ECANCELED)
		return rc;
	if (rc == -ETIMEDOUT)
		return fail_stall(s);
	if (reading)
		mig_session_fail(s, -EPIPE, true, "the %s QEMU's connection failed after %s (%s)",
				 mig_side(s->source), amount(s, a, sizeof(a)), strerror(-rc));
	else
		mig_session_fail(s, -EPIPE, true,
				 "the %s QEMU closed its socket after %s, before the stream ended (%s)",
				 mig_side(s->source), amount(s, a, sizeof(a)), strerror(-rc));
	return -EPIPE;
}

static int codec_failed(struct mig_session *s, size_t r)
{
	mig_session_fail(s, -EIO, true, "the %s cannot compress the stream: %s", mig_side(s->source),
			 LZ4F_getErrorName(r));
	return -EIO;
}

static int send_frame(struct mig_session *s, const struct mig_wait *w, enum mig_dir dir,
		      struct mig_frame *f, uint8_t *payload, uint64_t *wire)
{
	f->seq = ++s->out_seq;
	mig_frame_mac(&s->mac, dir, f, payload, f->mac);
	/* TEST ONLY: the MAC is computed, now the bytes change, as a faulty
	 * link would change them. */
	if (dir == MIG_DIR_FORWARD && f->kind == KIND_DATA && f->seq == s->fault_corrupt_chunk &&
	    f->payload_len)
		payload[f->payload_len / 2] ^= 0x40;
	return mig_frame_send(s->tcp_fd, w, f, payload, wire, &s->out_dirty);
}

static void count_sent(struct mig_session *s, enum mig_dir dir, size_t n, uint64_t wire)
{
	if (dir == MIG_DIR_FORWARD) {
		atomic_fetch_add(&s->counters.raw_forward, n);
		atomic_fetch_add(&s->counters.wire_forward, wire);
		atomic_fetch_add(&s->counters.chunks_forward, 1);
	} else {
		atomic_fetch_add(&s->counters.raw_back, n);
	}
}

/* The first hypervisor byte: the source read it / the target wrote it. */
static void first_byte(struct mig_session *s)
{
	if (!s->first_byte_ms) {
		s->first_byte_ms = mig_now_ms();
		atomic_store(&s->counters.phase, MIG_PHASE_STREAMING);
	}
}

int mig_relay_send(struct mig_session *s, enum mig_dir dir)
{
	bool fwd = dir == MIG_DIR_FORWARD;
	size_t chunk = fwd ? s->chunk_bytes : MIG_CHUNK_DEFAULT, cap, off, n, r;
	struct mig_wait w = mig_session_wait(s);
	LZ4F_preferences_t prefs;
	LZ4F_cctx *cctx = NULL;
	uint8_t *raw = NULL, *out = NULL;
	struct mig_frame f;
	uint64_t t0, t1, t2, wire;
	bool begun = false;
	int rc = -ENOMEM;

	lz4_prefs(&prefs, s->lz4_level);
	cap = LZ4F_HEADER_SIZE_MAX + LZ4F_compressBound(chunk, &prefs);
	if (!(raw = malloc(chunk)) || !(out = malloc(cap)) ||
	    LZ4F_isError(LZ4F_createCompressionContext(&cctx, LZ4F_VERSION))) {
		mig_session_fail(s, rc, true, "the %s is out of memory for the stream",
				 mig_side(s->source));
		goto cleanup;
	}
	for (;;) {
		t0 = mig_now_ns();
		if ((rc = mig_io_read_some(s->qemu_fd, raw, chunk, &w, &n)) < 0) {
			rc = local_failed(s, rc, true);
			goto cleanup;
		}
		if (n == 0)
			break;
		t1 = mig_now_ns();
		if (fwd)
			first_byte(s);
		off = 0;
		if (!begun) {
			if (LZ4F_isError(r = LZ4F_compressBegin(cctx, out, cap, &prefs))) {
				rc = codec_failed(s, r);
				goto cleanup;
			}
			off = r;
			begun = true;
		}
		if (LZ4F_isError(r = LZ4F_compressUpdate(cctx, out + off, cap - off, raw, n, NULL))) {
			rc = codec_failed(s, r);
			goto cleanup;
		}
		off += r;
		if (LZ4F_isError(r = LZ4F_flush(cctx, out + off, cap - off, NULL))) {
			rc = codec_failed(s, r);
			goto cleanup;
		}
		off += r;
		f = (struct mig_frame){ .kind = KIND_DATA, .raw_len = (uint32_t)n,
					.payload_len = (uint32_t)off };
		wire = 0;
		t2 = mig_now_ns();
		rc = send_frame(s, &w, dir, &f, out, &wire);
		if (fwd) {
			s->read_ns += t1 - t0;
			s->codec_ns += t2 - t1;
			s->write_ns += mig_now_ns() - t2;
		}
		if (rc < 0) {
			rc = send_failed(s, rc);
			goto cleanup;
		}
		count_sent(s, dir, n, wire);
	}
	/* An end of file we caused ourselves (a failure shut QEMU's socket
	 * down) is no end of the stream. */
	if (mig_session_failed(s)) {
		rc = -ECANCELED;
		goto cleanup;
	}
	off = 0;
	if (!begun) {
		if (LZ4F_isError(r = LZ4F_compressBegin(cctx, out, cap, &prefs))) {
			rc = codec_failed(s, r);
			goto cleanup;
		}
		off = r;
	}
	if (LZ4F_isError(r = LZ4F_compressEnd(cctx, out + off, cap - off, NULL))) {
		rc = codec_failed(s, r);
		goto cleanup;
	}
	f = (struct mig_frame){ .kind = KIND_END, .payload_len = (uint32_t)(off + r) };
	wire = 0;
	if ((rc = send_frame(s, &w, dir, &f, out, &wire)) < 0) {
		rc = send_failed(s, rc);
		goto cleanup;
	}
	if (fwd) {
		atomic_fetch_add(&s->counters.wire_forward, wire);
		s->last_byte_ms = mig_now_ms();
	}
	mig_session_dir_done(s);
cleanup:
	LZ4F_freeCompressionContext(cctx);
	free(raw);
	free(out);
	return rc;
}

int mig_relay_send_empty_end(struct mig_session *s, enum mig_dir dir)
{
	struct mig_wait w = mig_session_wait(s);
	LZ4F_preferences_t prefs;
	LZ4F_cctx *cctx = NULL;
	uint8_t out[LZ4F_HEADER_SIZE_MAX + 64];
	struct mig_frame f = { .kind = KIND_END };
	size_t off, r;
	int rc = -ENOMEM;

	lz4_prefs(&prefs, s->lz4_level);
	if (LZ4F_isError(LZ4F_createCompressionContext(&cctx, LZ4F_VERSION))) {
		mig_session_fail(s, rc, true, "the %s is out of memory for the stream",
				 mig_side(s->source));
		return rc;
	}
	if (LZ4F_isError(r = LZ4F_compressBegin(cctx, out, sizeof(out), &prefs))) {
		rc = codec_failed(s, r);
		goto cleanup;
	}
	off = r;
	if (LZ4F_isError(r = LZ4F_compressEnd(cctx, out + off, sizeof(out) - off, NULL))) {
		rc = codec_failed(s, r);
		goto cleanup;
	}
	f.payload_len = (uint32_t)(off + r);
	if ((rc = send_frame(s, &w, dir, &f, out, NULL)) < 0) {
		rc = send_failed(s, rc);
		goto cleanup;
	}
	mig_session_dir_done(s);
cleanup:
	LZ4F_freeCompressionContext(cctx);
	return rc;
}

/* All of src into dst (cap bytes): -EBADMSG if it does not decode or does
 * not fit. *more is LZ4F's hint: 0 once the LZ4F frame ended (and its
 * content checksum matched). */
static int decompress(LZ4F_dctx *d, const uint8_t *src, size_t len, uint8_t *dst, size_t cap,
		      size_t *produced, size_t *more)
{
	size_t in_done = 0, out_done = 0, in, out, r = 1;

	for (;;) {
		in = len - in_done;
		out = cap - out_done;
		r = LZ4F_decompress(d, dst + out_done, &out, src + in_done, &in, NULL);
		if (LZ4F_isError(r))
			return -EBADMSG;
		in_done += in;
		out_done += out;
		/* r == 0: the LZ4F frame ended; another call would start a new one */
		if (r == 0 || out_done == cap || (out == 0 && (in == 0 || in_done == len)))
			break;
	}
	if (in_done != len)
		return -EBADMSG;
	*produced = out_done;
	*more = r;
	return 0;
}

static int grow(uint8_t **buf, size_t *cap, size_t want)
{
	uint8_t *p;

	if (want <= *cap)
		return 0;
	if (!(p = realloc(*buf, want)))
		return -ENOMEM;
	*buf = p;
	*cap = want;
	return 0;
}

/* The peer's ERROR frame: its errno and reason become ours. */
static int peer_error(struct mig_session *s, const struct mig_frame *f, const uint8_t *payload)
{
	char reason[MIG_REASON_MAX + 1];
	int rc = f->raw_len > 0 && f->raw_len < 4096 ? -(int)f->raw_len : -EPROTO;

	mig_sanitize(reason, sizeof(reason), (const char *)payload, f->payload_len);
	mig_session_fail(s, rc, false, "the %s ended the stream: %s", peer_side(s), reason);
	return rc;
}

/* END: the LZ4F frame must close here, its content checksum matching. */
static int end_of(struct mig_session *s, LZ4F_dctx *d, const struct mig_frame *f,
		  const uint8_t *payload)
{
	uint8_t spare[64];
	size_t produced, more;

	if (decompress(d, payload, f->payload_len, spare, sizeof(spare), &produced, &more) < 0 ||
	    produced || more) {
		mig_session_fail(s, -EBADMSG, true,
				 "the stream from the %s failed its end-to-end checksum at its end",
				 peer_side(s));
		return -EBADMSG;
	}
	if (s->qemu_fd >= 0)
		shutdown(s->qemu_fd, SHUT_WR);
	return 0;
}

int mig_relay_recv(struct mig_session *s, enum mig_dir dir,
		   int (*before_first)(struct mig_session *s))
{
	bool fwd = dir == MIG_DIR_FORWARD, started = false, ended = false;
	size_t max = payload_max(), payload_cap = 0, raw_cap = 0, produced, more;
	struct mig_wait w = mig_session_wait(s);
	uint8_t *payload = NULL, *raw = NULL, mac[MIG_MAC_LEN];
	LZ4F_dctx *dctx = NULL;
	uint64_t expect = 0, wire, t0, t1, t2;
	struct mig_frame f;
	int rc = -ENOMEM;

	if (LZ4F_isError(LZ4F_createDecompressionContext(&dctx, LZ4F_VERSION))) {
		mig_session_fail(s, rc, true, "the %s is out of memory for the stream",
				 mig_side(s->source));
		return rc;
	}
	for (;;) {
		t0 = mig_now_ns();
		wire = 0;
		rc = mig_frame_recv(s->tcp_fd, &w, &f, &wire);
		if (rc == 0 && f.payload_len > max) {
			mig_session_fail(s, -EBADMSG, true,
					 "the %s announced a frame of %" PRIu32
					 " bytes, larger than any chunk can be",
					 peer_side(s), f.payload_len);
			rc = -EBADMSG;
			break;
		}
		if (rc == 0 && (rc = grow(&payload, &payload_cap, f.payload_len)) < 0) {
			mig_session_fail(s, rc, true, "the %s is out of memory for the stream",
					 mig_side(s->source));
			break;
		}
		if (rc == 0 && (rc = mig_io_read_full(s->tcp_fd, payload, f.payload_len, &w)) == 0)
			wire += f.payload_len;
		if (rc < 0) {
			rc = ended ? linger_failed(s, rc) : recv_failed(s, rc);
			break;
		}
		t1 = mig_now_ns();
		if (fwd)
			atomic_fetch_add(&s->counters.wire_forward, wire);
		if (f.seq != ++expect) {
			mig_session_fail(s, -EBADMSG, true,
					 "chunk %" PRIu64 " from the %s came out of order (expected %" PRIu64 ")",
					 f.seq, peer_side(s), expect);
			rc = -EBADMSG;
			break;
		}
		/* Nothing of a frame is used before its MAC is checked. */
		mig_frame_mac(&s->mac, dir, &f, payload, mac);
		if (!memeql_sec(mac, f.mac, MIG_MAC_LEN)) {
			mig_session_fail(s, -EBADMSG, true,
					 "chunk %" PRIu64 " from the %s failed its integrity check", f.seq,
					 peer_side(s));
			rc = -EBADMSG;
			break;
		}
		if (f.kind == KIND_ERROR) {
			rc = peer_error(s, &f, payload);
			break;
		}
		if (ended || (f.kind != KIND_DATA && f.kind != KIND_END) ||
		    (f.kind == KIND_DATA && f.raw_len > MIG_CHUNK_MAX)) {
			mig_session_fail(s, -EBADMSG, true,
					 "chunk %" PRIu64 " from the %s is of a kind or size not expected here",
					 f.seq, peer_side(s));
			rc = -EBADMSG;
			break;
		}
		if (f.kind == KIND_END) {
			if ((rc = end_of(s, dctx, &f, payload)) < 0)
				break;
			if (fwd)
				s->last_byte_ms = mig_now_ms();
			ended = true;
			/* Never connected to QEMU (an empty stream): the other
			 * direction has nothing to say. */
			if (s->qemu_fd < 0 &&
			    (rc = mig_relay_send_empty_end(s, fwd ? MIG_DIR_BACK : MIG_DIR_FORWARD)) < 0)
				break;
			if (mig_session_dir_done(s))
				break;
			continue;
		}
		if (!started && before_first && (rc = before_first(s)) < 0)
			break;
		started = true;
		/* one spare byte: a chunk that decodes to more than it says fills it */
		if ((rc = grow(&raw, &raw_cap, (size_t)f.raw_len + 1)) < 0) {
			mig_session_fail(s, rc, true, "the %s is out of memory for the stream",
					 mig_side(s->source));
			break;
		}
		if (decompress(dctx, payload, f.payload_len, raw, (size_t)f.raw_len + 1, &produced,
			       &more) < 0 ||
		    produced != f.raw_len || !more) {
			mig_session_fail(s, -EBADMSG, true,
					 "chunk %" PRIu64 " from the %s does not decompress to its %" PRIu32
					 " bytes",
					 f.seq, peer_side(s), f.raw_len);
			rc = -EBADMSG;
			break;
		}
		t2 = mig_now_ns();
		rc = mig_io_writev(s->qemu_fd, &(struct iovec){ .iov_base = raw, .iov_len = produced }, 1,
				   &w, &(size_t){ 0 });
		if (rc < 0) {
			rc = local_failed(s, rc, false);
			break;
		}
		if (fwd) {
			first_byte(s);
			atomic_fetch_add(&s->counters.raw_forward, produced);
			atomic_fetch_add(&s->counters.chunks_forward, 1);
			s->read_ns += t1 - t0;
			s->codec_ns += t2 - t1;
			s->write_ns += mig_now_ns() - t2;
		} else {
			atomic_fetch_add(&s->counters.raw_back, produced);
		}
	}
	LZ4F_freeDecompressionContext(dctx);
	free(payload);
	free(raw);
	return rc;
}
