/* The source side of a migration stream: listen for QEMU on a unix socket,
 * reach the target vireod (retrying while it does not expect us yet),
 * accept QEMU's connection, relay both ways. */
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <qb/qblog.h>

#include "migration/stream_int.h"

/* One attempt (connect, hello, welcome) may take this long even when less
 * of connect_timeout_ms is left: a refused SYN is retransmitted after 1 s. */
#define ATTEMPT_MIN_MS 3000u

static int connect_one(struct mig_session *s, const struct addrinfo *ai, uint64_t deadline,
		       int *out)
{
	struct mig_wait w = { .cancel_fd = s->cancel_fd, .deadline_ms = deadline };
	int fd, rc = 0;

	if ((fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
			 ai->ai_protocol)) < 0)
		return -errno;
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		rc = -errno;
		if (rc == -EINPROGRESS && (rc = mig_io_wait(fd, POLLOUT, &w)) == 0)
			rc = mig_io_connect_result(fd);
	}
	if (rc < 0) {
		close(fd);
		return rc == -ETIMEDOUT ? -EHOSTUNREACH : rc;
	}
	mig_io_tcp_tune(fd);
	*out = fd;
	return 0;
}

static int connect_target(struct mig_session *s, uint64_t deadline, int *out)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	char port[8];
	int rc;

	snprintf(port, sizeof(port), "%u", (unsigned)s->target_port);
	if (getaddrinfo(s->target_host, port, &hints, &res) != 0)
		return -EHOSTUNREACH;
	rc = -EHOSTUNREACH;
	for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		rc = connect_one(s, ai, deadline, out);
		if (rc == 0 || rc == -ECANCELED)
			break;
	}
	freeaddrinfo(res);
	return rc;
}

/* 0: accepted, s->mac keyed. -EAGAIN: "not expected" (worth a retry).
 * -EPERM: refused for another reason (in reason). -EACCES: the welcome
 * did not verify. Anything else: the connection failed. */
static int handshake(struct mig_session *s, int fd, uint64_t deadline, char *reason, size_t len)
{
	struct mig_wait w = { .cancel_fd = s->cancel_fd, .deadline_ms = deadline };
	uint8_t nonce[MIG_NONCE_LEN], skey[MIG_KEY_LEN];
	bool accepted;
	int rc;

	if ((rc = mig_random(nonce, sizeof(nonce))) < 0 ||
	    (rc = mig_hello_send(fd, &w, &s->key, &s->id, nonce)) < 0 ||
	    (rc = mig_welcome_recv(fd, &w, &s->key, nonce, &accepted, reason, len, skey)) < 0)
		return rc;
	if (!accepted)
		return strcmp(reason, "not expected") == 0 ? -EAGAIN : -EPERM;
	hmac_sha256_set_key(&s->mac, MIG_KEY_LEN, skey);
	explicit_bzero(skey, sizeof(skey));
	return 0;
}

static int reach_target(struct mig_session *s)
{
	uint64_t deadline = mig_now_ms() + s->connect_timeout_ms, attempt;
	char reason[128] = "";
	int rc, last = -EHOSTUNREACH, fd = -1;

	for (;;) {
		attempt = mig_now_ms() + ATTEMPT_MIN_MS;
		if (attempt < deadline)
			attempt = deadline;
		if ((rc = connect_target(s, attempt, &fd)) == 0) {
			if ((rc = handshake(s, fd, attempt, reason, sizeof(reason))) == 0)
				return mig_session_set_fd(s, &s->tcp_fd, fd);
			close(fd);
		}
		switch (rc) {
		case -ECANCELED:
			return rc;
		case -EACCES:
			mig_session_fail(s, rc, false,
					 "the target's welcome failed its authentication check: the peer at %s port %u does not hold this cluster's key",
					 s->target_host, (unsigned)s->target_port);
			return rc;
		case -EPERM:
			mig_session_fail(s, -EACCES, false, "the target refused the stream: %s", reason);
			return -EACCES;
		case -EBADMSG:
			mig_session_fail(s, -EPROTO, false,
					 "the peer at %s port %u answered with something that is not a vireod migration welcome",
					 s->target_host, (unsigned)s->target_port);
			return -EPROTO;
		}
		last = rc;
		if (mig_now_ms() + MIG_RETRY_MS >= deadline)
			break;
		if (mig_session_sleep(s, MIG_RETRY_MS) < 0)
			return -ECANCELED;
	}
	if (last == -EAGAIN) {
		mig_session_fail(s, -EACCES, false,
				 "the target refused the stream: not expected (migration %" PRIu64
				 " of VM %s, still after %u ms of retries; did the target apply the migration?)",
				 s->id.migration_id, s->id.vm_uuid, s->connect_timeout_ms);
		return -EACCES;
	}
	if (last == -ENODATA || last == -EPIPE)
		last = -ECONNRESET;
	mig_session_fail(s, last, false, "cannot reach the target vireod at %s port %u within %u ms (%s)",
			 s->target_host, (unsigned)s->target_port, s->connect_timeout_ms,
			 strerror(-last));
	return last;
}

static int accept_qemu(struct mig_session *s)
{
	struct mig_wait w = mig_session_wait(s);
	int fd, rc;

	atomic_store(&s->activity_ms, mig_now_ms());
	for (;;) {
		if ((rc = mig_io_wait(s->listen_fd, POLLIN, &w)) == -ETIMEDOUT) {
			mig_session_fail(s, rc, true, "the source QEMU did not connect to %s within %u ms",
					 s->socket_path, s->stall_ms);
			return rc;
		}
		if (rc < 0)
			return rc;
		if ((fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC)) >= 0)
			break;
		if (errno == EINTR || errno == EAGAIN || errno == ECONNABORTED)
			continue;
		rc = -errno;
		mig_session_fail(s, rc, true, "the source cannot accept QEMU's connection on %s: %s",
				 s->socket_path, strerror(-rc));
		return rc;
	}
	if ((rc = mig_session_set_fd(s, &s->qemu_fd, fd)) < 0)
		return rc;
	/* One QEMU per session: a second connect is refused from now on. */
	pthread_mutex_lock(&s->lock);
	close(s->listen_fd);
	s->listen_fd = -1;
	pthread_mutex_unlock(&s->lock);
	atomic_store(&s->activity_ms, mig_now_ms());
	return 0;
}

static void *source_back(void *data)
{
	(void)mig_relay_recv(data, MIG_DIR_BACK, NULL);
	return NULL;
}

static void *source_main(void *data)
{
	struct mig_session *s = data;

	if (reach_target(s) == 0) {
		s->handshaken = true;
		atomic_store(&s->counters.phase, MIG_PHASE_WAITING);
		if (accept_qemu(s) == 0 && mig_session_start_helper(s, source_back) == 0)
			(void)mig_relay_send(s, MIG_DIR_FORWARD);
	}
	mig_session_finish(s);
	return NULL;
}

/* The main thread ended: join it and report, once. */
static int32_t source_wake(int32_t fd, int32_t revents, void *data)
{
	struct mig_session *s = data;
	struct mig_result r;
	eventfd_t v;
	char raw[32], wire[32];

	(void)revents;
	(void)eventfd_read(fd, &v);
	pthread_join(s->thread, NULL);
	s->joined = true;
	qb_loop_poll_del(s->loop, s->wake_fd);
	s->polled = false;
	mig_session_result(s, &r);
	if (r.rc) {
		qb_log(LOG_WARNING, "migration %" PRIu64 " of VM %s: %s", s->id.migration_id,
		       s->id.vm_uuid, r.message);
	} else {
		mig_format_bytes(raw, sizeof(raw), r.raw_forward);
		mig_format_bytes(wire, sizeof(wire), r.wire_forward);
		qb_log(LOG_INFO, "migration %" PRIu64 " of VM %s: streamed %s as %s to the target",
		       s->id.migration_id, s->id.vm_uuid, raw, wire);
	}
	/* Last: done may free s. */
	s->done(s->ctx, &r);
	/* Deleted already; a negative return keeps libqb from reviving the entry. */
	return -1;
}

int mig_source_start(const struct mig_source_params *p, struct mig_session **out)
{
	struct mig_session *s = NULL;
	struct stat st;
	int rc = -EINVAL;

	*out = NULL;
	if (!p->loop || !p->key || !p->done || !p->socket_path || !p->target_host ||
	    !p->target_host[0] || !p->id.vm_uuid[0] || p->chunk_bytes > MIG_CHUNK_MAX)
		return rc;
	rc = -ENOMEM;
	if (!(s = mig_session_new(true)) || !(s->socket_path = strdup(p->socket_path)) ||
	    !(s->target_host = strdup(p->target_host)))
		goto cleanup;
	s->loop = p->loop;
	s->id = p->id;
	s->key = *p->key;
	s->target_port = p->target_port;
	s->connect_timeout_ms = p->connect_timeout_ms;
	s->stall_ms = p->stall_timeout_ms;
	s->chunk_bytes = p->chunk_bytes ? p->chunk_bytes : MIG_CHUNK_DEFAULT;
	s->lz4_level = p->lz4_level;
	s->fault_corrupt_chunk = p->fault_corrupt_chunk;
	s->done = p->done;
	s->ctx = p->ctx;
	if ((s->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
		rc = -errno;
		goto cleanup;
	}
	if ((rc = mig_io_unix_listen(s->socket_path, &s->listen_fd)) < 0) {
		qb_log(LOG_ERR, "cannot listen for the source QEMU on %s: %s", s->socket_path,
		       strerror(-rc));
		goto cleanup;
	}
	if (stat(s->socket_path, &st) == 0) {
		s->socket_made = true;
		s->socket_dev = st.st_dev;
		s->socket_ino = st.st_ino;
	}
	if ((rc = qb_loop_poll_add(s->loop, QB_LOOP_MED, s->wake_fd, POLLIN, s, source_wake)) < 0)
		goto cleanup;
	s->polled = true;
	if ((rc = -pthread_create(&s->thread, NULL, source_main, s)) < 0)
		goto cleanup;
	s->thread_started = true;
	*out = s;
	return 0;
cleanup:
	mig_session_free(s);
	return rc;
}

void mig_session_cancel(struct mig_session *s)
{
	if (s)
		mig_session_fail(s, -ECANCELED, true, "the migration stream was cancelled on the %s",
				 mig_side(s->source));
}

const struct mig_counters *mig_session_counters(const struct mig_session *s)
{
	return &s->counters;
}

void mig_session_free(struct mig_session *s)
{
	struct stat st;

	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	s->freeing = true;
	pthread_mutex_unlock(&s->lock);
	mig_session_cancel(s);
	if (s->thread_started && !s->joined)
		pthread_join(s->thread, NULL);
	if (s->polled)
		qb_loop_poll_del(s->loop, s->wake_fd);
	/* Another session may have replaced the file since (a retried
	 * migration of the same VM): only ours goes. */
	if (s->socket_made && lstat(s->socket_path, &st) == 0 && st.st_dev == s->socket_dev &&
	    st.st_ino == s->socket_ino)
		unlink(s->socket_path);
	mig_session_destroy(s);
}
