/* What a session's threads share, source or target: the first failure, the
 * wakeups, the end of each direction, and the last words to the peer. */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "migration/stream_int.h"
#include "proto/vireo.pb-c.h"

const char *mig_side(bool source)
{
	return source ? "source" : "target";
}

void mig_format_bytes(char *buf, size_t len, uint64_t bytes)
{
	if (bytes >= 10u << 20)
		snprintf(buf, len, "%" PRIu64 " MiB", bytes >> 20);
	else if (bytes >= 10u << 10)
		snprintf(buf, len, "%" PRIu64 " KiB", bytes >> 10);
	else
		snprintf(buf, len, "%" PRIu64 " bytes", bytes);
}

struct mig_session *mig_session_new(bool source)
{
	struct mig_session *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->source = source;
	s->tcp_fd = s->qemu_fd = s->listen_fd = s->wake_fd = -1;
	if ((s->cancel_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
		free(s);
		return NULL;
	}
	pthread_mutex_init(&s->lock, NULL);
	atomic_init(&s->activity_ms, mig_now_ms());
	atomic_init(&s->counters.phase, MIG_PHASE_CONNECTING);
	return s;
}

void mig_session_destroy(struct mig_session *s)
{
	int *fds[] = { &s->tcp_fd, &s->qemu_fd, &s->listen_fd, &s->cancel_fd, &s->wake_fd };

	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++) {
		if (*fds[i] >= 0)
			close(*fds[i]);
	}
	free(s->socket_path);
	free(s->target_host);
	pthread_mutex_destroy(&s->lock);
	explicit_bzero(s, sizeof(*s));   /* the keys */
	free(s);
}

void mig_session_fail(struct mig_session *s, int rc, bool tell_peer, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&s->lock);
	/* Both directions done: the session succeeded, a late cancel changes nothing. */
	if (s->failed || s->finished || s->dirs_done == 2) {
		pthread_mutex_unlock(&s->lock);
		return;
	}
	s->failed = true;
	s->tell_peer = tell_peer;
	s->result.rc = rc;
	va_start(ap, fmt);
	vsnprintf(s->result.message, sizeof(s->result.message), fmt, ap);
	va_end(ap);
	/* QEMU sees the end at once; the peer hears why from the main thread. */
	if (s->qemu_fd >= 0)
		shutdown(s->qemu_fd, SHUT_RDWR);
	if (s->listen_fd >= 0)
		shutdown(s->listen_fd, SHUT_RDWR);
	eventfd_write(s->cancel_fd, 1);
	pthread_mutex_unlock(&s->lock);
}

bool mig_session_failed(struct mig_session *s)
{
	bool failed;

	pthread_mutex_lock(&s->lock);
	failed = s->failed;
	pthread_mutex_unlock(&s->lock);
	return failed;
}

bool mig_session_dir_done(struct mig_session *s)
{
	bool both;

	pthread_mutex_lock(&s->lock);
	both = ++s->dirs_done == 2;
	/* wakes a receiver that lingers after its END (see relay.c) */
	if (both)
		eventfd_write(s->cancel_fd, 1);
	pthread_mutex_unlock(&s->lock);
	return both;
}

int mig_session_set_fd(struct mig_session *s, int *slot, int fd)
{
	int rc = 0;

	pthread_mutex_lock(&s->lock);
	if (s->failed) {
		close(fd);
		rc = -ECANCELED;
	} else {
		*slot = fd;
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

struct mig_wait mig_session_wait(struct mig_session *s)
{
	return (struct mig_wait){
		.cancel_fd = s->cancel_fd,
		.activity_ms = &s->activity_ms,
		.stall_ms = s->stall_ms,
	};
}

int mig_session_sleep(struct mig_session *s, uint32_t ms)
{
	struct pollfd p = { .fd = s->cancel_fd, .events = POLLIN };
	uint64_t until = mig_now_ms() + ms, now;
	int n;

	while ((now = mig_now_ms()) < until) {
		n = poll(&p, 1, (int)(until - now));
		if (n > 0)
			return -ECANCELED;
		if (n < 0 && errno != EINTR)
			return -errno;
	}
	return 0;
}

int mig_session_start_helper(struct mig_session *s, void *(*fn)(void *))
{
	int rc = -pthread_create(&s->helper, NULL, fn, s);

	if (rc < 0) {
		mig_session_fail(s, rc, true, "the %s cannot start a thread for the stream: %s",
				 mig_side(s->source), strerror(-rc));
		return rc;
	}
	s->helper_started = true;
	return 0;
}

/* Best effort: the peer may have stopped reading; the connection is closed
 * right after anyway. */
static void send_error_frame(struct mig_session *s, int rc, const char *message, bool quick)
{
	struct mig_wait w = {
		.cancel_fd = -1,
		.deadline_ms = mig_now_ms() + (quick ? 0 : MIG_ERROR_FRAME_MS),
	};
	struct mig_frame f = {
		.seq = ++s->out_seq,
		.kind = VIREO__MIGRATION_FRAME_KIND__MIGRATION_FRAME_ERROR,
		.raw_len = rc < 0 && rc > -4096 ? (uint32_t)-rc : EPROTO,
		.payload_len = (uint32_t)strnlen(message, MIG_REASON_MAX),
	};
	struct hmac_sha256_ctx mac = s->mac;

	mig_frame_mac(&mac, s->source ? MIG_DIR_FORWARD : MIG_DIR_BACK, &f, (const uint8_t *)message,
		      f.mac);
	(void)mig_frame_send(s->tcp_fd, &w, &f, (const uint8_t *)message, NULL, NULL);
}

void mig_session_finish(struct mig_session *s)
{
	bool failed, tell, quick;
	int rc;

	if (s->helper_started)
		pthread_join(s->helper, NULL);
	s->helper_started = false;
	pthread_mutex_lock(&s->lock);
	failed = s->failed;
	tell = s->tell_peer;
	quick = s->freeing;
	rc = s->result.rc;
	pthread_mutex_unlock(&s->lock);
	/* Only this thread is left: the TCP socket and out_seq are its own. */
	if (failed && tell && s->handshaken && s->tcp_fd >= 0 && !s->out_dirty)
		send_error_frame(s, rc, s->result.message, quick);
	pthread_mutex_lock(&s->lock);
	if (s->tcp_fd >= 0)
		shutdown(s->tcp_fd, SHUT_RDWR);
	if (s->qemu_fd >= 0)
		shutdown(s->qemu_fd, SHUT_RDWR);
	s->finished = true;
	atomic_store(&s->counters.phase, MIG_PHASE_DONE);
	pthread_mutex_unlock(&s->lock);
	/* The loop joins this thread before it frees s: touching s up to the
	 * return is fine. */
	if (s->listener)
		mig_listener_wake(s->listener);
	else
		eventfd_write(s->wake_fd, 1);
}

void mig_session_snapshot(struct mig_session *s, struct mig_result *r)
{
	memset(r, 0, sizeof(*r));
	r->raw_forward = atomic_load(&s->counters.raw_forward);
	r->wire_forward = atomic_load(&s->counters.wire_forward);
	r->raw_back = atomic_load(&s->counters.raw_back);
	r->chunks_forward = atomic_load(&s->counters.chunks_forward);
}

void mig_session_result(struct mig_session *s, struct mig_result *r)
{
	mig_session_snapshot(s, r);
	pthread_mutex_lock(&s->lock);
	r->rc = s->failed ? s->result.rc : 0;
	if (s->failed)
		memcpy(r->message, s->result.message, sizeof(r->message));
	pthread_mutex_unlock(&s->lock);
	r->first_byte_ms = s->first_byte_ms;
	r->last_byte_ms = s->last_byte_ms;
	r->read_ms = s->read_ns / 1000000u;
	r->codec_ms = s->codec_ns / 1000000u;
	r->write_ms = s->write_ns / 1000000u;
}
