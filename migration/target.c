/* The target side: one TCP listener per vireod. An accept thread hands each
 * connection to a session thread of its own (a slow or hostile client
 * never holds up the next one), which checks the hello against the
 * expectations, then relays: at the first chunk it connects to the target
 * QEMU's socket and starts the back direction.
 *
 * Every connection is a session in l->sessions until the loop reaps it;
 * only the accepted ones are reported through session_done, the others
 * are logged. */
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <qb/qblog.h>

#include "migration/stream_int.h"

/* Connections at once (handshaking or streaming); more are closed at once. */
#define MAX_CONNECTIONS 64

struct mig_expect {
	struct mig_expect *next;
	struct mig_session_id id;
	char *socket_path;
	/* The session accepted for it, until the loop reaped that session: one
	 * at a time, and a new one after it (the source retries a migration
	 * that failed early with the same id). A replayed hello gets no
	 * further than its first chunk, whose MAC needs the key. */
	struct mig_session *holder;
};

struct mig_listener {
	qb_loop_t *loop;
	struct mig_key key;
	uint32_t handshake_ms, stall_ms, qemu_connect_ms;
	void (*session_done)(void *ctx, const struct mig_session_id *id, const struct mig_result *r);
	void *ctx;
	int listen_fd, cancel_fd, wake_fd;
	uint16_t port;
	pthread_t accept_thread;
	bool accept_started, polled;
	bool dispatching, stopping;     /* the loop only */

	pthread_mutex_t lock;
	struct mig_expect *expects;     /* under lock */
	struct mig_session *sessions;   /* under lock */
	unsigned nsessions;
};

static bool same_id(const struct mig_session_id *a, const struct mig_session_id *b)
{
	return a->migration_id == b->migration_id && a->generation == b->generation &&
	       strcmp(a->vm_uuid, b->vm_uuid) == 0;
}

void mig_listener_wake(struct mig_listener *l)
{
	eventfd_write(l->wake_fd, 1);
}

/* A connection that is not let in: the reason goes to the log, the rc
 * picks how loud. */
static void turn_away(struct mig_session *s, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void turn_away(struct mig_session *s, int rc, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&s->lock);
	s->result.rc = rc;
	va_start(ap, fmt);
	vsnprintf(s->result.message, sizeof(s->result.message), fmt, ap);
	va_end(ap);
	pthread_mutex_unlock(&s->lock);
}

static void refuse(struct mig_session *s, const struct mig_wait *w, const char *reason)
{
	(void)mig_welcome_send(s->tcp_fd, w, NULL, NULL, reason);
}

/* Takes the expectation for id (and a copy of its socket path): -ENOENT if
 * there is none or another session holds it. */
static int claim(struct mig_session *s, const struct mig_session_id *id)
{
	struct mig_listener *l = s->listener;
	int rc = -ENOENT;

	pthread_mutex_lock(&l->lock);
	for (struct mig_expect *e = l->expects; e; e = e->next) {
		if (!same_id(&e->id, id) || e->holder)
			continue;
		rc = -ENOMEM;
		if (!(s->socket_path = strdup(e->socket_path)))
			break;
		e->holder = s;
		s->id = *id;
		s->accepted = true;
		rc = 0;
		break;
	}
	pthread_mutex_unlock(&l->lock);
	return rc;
}

static int target_handshake(struct mig_session *s)
{
	struct mig_listener *l = s->listener;
	struct mig_wait w = { .cancel_fd = s->cancel_fd,
			      .deadline_ms = mig_now_ms() + s->handshake_ms };
	uint8_t hello_nonce[MIG_NONCE_LEN], nonce[MIG_NONCE_LEN], skey[MIG_KEY_LEN];
	struct mig_session_id id;
	uint32_t version = 0;
	int rc;

	rc = mig_hello_recv(s->tcp_fd, &w, &l->key, &id, hello_nonce, &version);
	switch (rc) {
	case 0:
		break;
	case -ECANCELED:
		return rc;
	case -EPROTONOSUPPORT:
		refuse(s, &w, "unsupported protocol version");
		turn_away(s, rc, "the migration client at %s speaks protocol version %" PRIu32
			  ", this vireod %d: refused", s->peer, version, MIG_PROTOCOL_VERSION);
		return rc;
	case -EACCES:
		refuse(s, &w, "not authenticated");
		turn_away(s, rc, "a migration hello from %s failed its authentication check (another cluster's key?): refused",
			  s->peer);
		return rc;
	case -EBADMSG:
		turn_away(s, rc, "the connection from %s to the migration port sent something that is not a migration hello: closed",
			  s->peer);
		return rc;
	case -ETIMEDOUT:
		turn_away(s, rc, "the connection from %s to the migration port said no hello within %u ms: closed",
			  s->peer, s->handshake_ms);
		return rc;
	default:
		turn_away(s, rc, "the connection from %s to the migration port ended before its hello (%s)",
			  s->peer, rc == -ENODATA ? "closed" : strerror(-rc));
		return rc;
	}
	if ((rc = claim(s, &id)) < 0) {
		refuse(s, &w, "not expected");
		turn_away(s, -ENOENT, "a migration hello from %s for migration %" PRIu64
			  " of VM %s (generation %" PRIu64 ") was not expected: refused",
			  s->peer, id.migration_id, id.vm_uuid, id.generation);
		return rc;
	}
	/* Accepted from here on: whatever happens is reported. */
	if ((rc = mig_random(nonce, sizeof(nonce))) < 0) {
		mig_session_fail(s, rc, false, "the target cannot draw a nonce: %s", strerror(-rc));
		return rc;
	}
	mig_session_key(&l->key, hello_nonce, nonce, skey);
	hmac_sha256_set_key(&s->mac, MIG_KEY_LEN, skey);
	rc = mig_welcome_send(s->tcp_fd, &w, skey, nonce, NULL);
	explicit_bzero(skey, sizeof(skey));
	if (rc < 0) {
		mig_session_fail(s, rc == -ECANCELED ? rc : -ECONNRESET, false,
				 "the source at %s went away during the handshake (%s)", s->peer,
				 strerror(-rc));
		return rc;
	}
	s->handshaken = true;
	atomic_store(&s->counters.phase, MIG_PHASE_WAITING);
	atomic_store(&s->activity_ms, mig_now_ms());
	return 0;
}

static void *target_back(void *data)
{
	(void)mig_relay_send(data, MIG_DIR_BACK);
	return NULL;
}

/* The first chunk is here: the target QEMU listens by now, or soon. */
static int connect_qemu(struct mig_session *s)
{
	uint64_t deadline = mig_now_ms() + s->qemu_connect_ms;
	struct mig_wait w = { .cancel_fd = s->cancel_fd, .deadline_ms = deadline };
	int fd = -1, rc;

	for (;;) {
		rc = mig_io_unix_connect(s->socket_path, &fd);
		if (rc == -EINPROGRESS) {
			if ((rc = mig_io_wait(fd, POLLOUT, &w)) == 0)
				rc = mig_io_connect_result(fd);
			if (rc < 0)
				close(fd);
		}
		if (rc == 0 || rc == -ECANCELED)
			break;
		if ((rc != -ENOENT && rc != -ECONNREFUSED && rc != -EAGAIN && rc != -ETIMEDOUT) ||
		    mig_now_ms() + MIG_QEMU_RETRY_MS > deadline) {
			mig_session_fail(s, rc, true,
					 "the target QEMU did not accept a connection on %s within %u ms (%s)",
					 s->socket_path, s->qemu_connect_ms, strerror(-rc));
			return rc;
		}
		if ((rc = mig_session_sleep(s, MIG_QEMU_RETRY_MS)) < 0)
			break;
	}
	if (rc < 0)
		return rc;
	if ((rc = mig_session_set_fd(s, &s->qemu_fd, fd)) < 0)
		return rc;
	return mig_session_start_helper(s, target_back);
}

static void *target_main(void *data)
{
	struct mig_session *s = data;

	if (target_handshake(s) == 0)
		(void)mig_relay_recv(s, MIG_DIR_FORWARD, connect_qemu);
	mig_session_finish(s);
	return NULL;
}

static void add_connection(struct mig_listener *l, int fd, const struct sockaddr *sa,
			   socklen_t len)
{
	char host[48] = "?", port[8] = "?";
	struct mig_session *s;

	if (!(s = mig_session_new(false))) {
		close(fd);
		return;
	}
	s->listener = l;
	s->loop = l->loop;
	s->key = l->key;
	s->handshake_ms = l->handshake_ms;
	s->stall_ms = l->stall_ms;
	s->qemu_connect_ms = l->qemu_connect_ms;
	s->chunk_bytes = MIG_CHUNK_DEFAULT;
	s->tcp_fd = fd;
	(void)getnameinfo(sa, len, host, sizeof(host), port, sizeof(port),
			  NI_NUMERICHOST | NI_NUMERICSERV);
	snprintf(s->peer, sizeof(s->peer), "%s port %s", host, port);
	mig_io_tcp_tune(fd);
	pthread_mutex_lock(&l->lock);
	if (l->nsessions >= MAX_CONNECTIONS || pthread_create(&s->thread, NULL, target_main, s)) {
		pthread_mutex_unlock(&l->lock);
		mig_session_destroy(s);
		return;
	}
	s->thread_started = true;
	s->next = l->sessions;
	l->sessions = s;
	l->nsessions++;
	pthread_mutex_unlock(&l->lock);
}

static void *accept_main(void *data)
{
	struct mig_listener *l = data;
	struct mig_wait w = { .cancel_fd = l->cancel_fd };
	struct pollfd pause = { .fd = l->cancel_fd, .events = POLLIN };
	struct sockaddr_storage sa;
	socklen_t len;
	int fd;

	for (;;) {
		if (mig_io_wait(l->listen_fd, POLLIN, &w) < 0)
			break;
		len = sizeof(sa);
		fd = accept4(l->listen_fd, (struct sockaddr *)&sa, &len, SOCK_CLOEXEC);
		if (fd >= 0) {
			add_connection(l, fd, (struct sockaddr *)&sa, len);
			continue;
		}
		/* Out of descriptors or memory: the connection waits in the
		 * backlog; try again a little later instead of spinning. */
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
			if (poll(&pause, 1, 100) > 0)
				break;
		}
	}
	return NULL;
}

static void log_end(const struct mig_session *s, const struct mig_result *r)
{
	char raw[32], wire[32];

	if (r->rc) {
		qb_log(LOG_WARNING, "migration %" PRIu64 " of VM %s: %s", s->id.migration_id,
		       s->id.vm_uuid, r->message);
		return;
	}
	mig_format_bytes(raw, sizeof(raw), r->raw_forward);
	mig_format_bytes(wire, sizeof(wire), r->wire_forward);
	qb_log(LOG_INFO, "migration %" PRIu64 " of VM %s: received %s as %s from the source",
	       s->id.migration_id, s->id.vm_uuid, raw, wire);
}

/* A finished session, out of the list, its expectation free again. */
static struct mig_session *take_finished(struct mig_listener *l)
{
	struct mig_session *found = NULL;

	pthread_mutex_lock(&l->lock);
	for (struct mig_session **ps = &l->sessions; *ps; ps = &(*ps)->next) {
		bool finished;

		pthread_mutex_lock(&(*ps)->lock);
		finished = (*ps)->finished;
		pthread_mutex_unlock(&(*ps)->lock);
		if (finished) {
			found = *ps;
			*ps = found->next;
			l->nsessions--;
			break;
		}
	}
	for (struct mig_expect *e = l->expects; found && e; e = e->next) {
		if (e->holder == found)
			e->holder = NULL;
	}
	pthread_mutex_unlock(&l->lock);
	return found;
}

/* Loop: reaps every finished connection, reports the accepted ones. */
static int32_t listener_wake(int32_t fd, int32_t revents, void *data)
{
	struct mig_listener *l = data;
	struct mig_session *s;
	struct mig_result r;
	eventfd_t v;

	(void)revents;
	(void)eventfd_read(fd, &v);
	l->dispatching = true;
	while (!l->stopping && (s = take_finished(l))) {
		pthread_join(s->thread, NULL);
		if (s->accepted) {
			mig_session_result(s, &r);
			log_end(s, &r);
			/* may stop the listener: then l lives until the loop below ends */
			l->session_done(l->ctx, &s->id, &r);
		} else if (s->result.message[0]) {
			qb_log(s->result.rc == -ENOENT ? LOG_INFO : LOG_WARNING, "%s",
			       s->result.message);
		}
		mig_session_destroy(s);
	}
	l->dispatching = false;
	if (l->stopping) {
		pthread_mutex_destroy(&l->lock);
		free(l);
		return -1;
	}
	return 0;
}

static int bind_one(const char *host, uint16_t port, int *out)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	char service[8];
	int fd = -1, rc = -EADDRNOTAVAIL, one = 1, zero = 0;

	snprintf(service, sizeof(service), "%u", (unsigned)port);
	if (getaddrinfo(host, service, &hints, &res) != 0)
		return -EADDRNOTAVAIL;
	for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		if ((fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0) {
			rc = -errno;
			continue;
		}
		(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		/* "::" for every address takes IPv4 too */
		if (ai->ai_family == AF_INET6)
			(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 16) == 0) {
			rc = 0;
			break;
		}
		rc = -errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	*out = fd;
	return rc;
}

static int bind_listen(struct mig_listener *l, const char *host, uint16_t port)
{
	struct sockaddr_storage sa;
	socklen_t len = sizeof(sa);
	int rc;

	if (host && host[0])
		rc = bind_one(host, port, &l->listen_fd);
	else if ((rc = bind_one("::", port, &l->listen_fd)) < 0)
		rc = bind_one("0.0.0.0", port, &l->listen_fd);   /* no IPv6 here */
	if (rc < 0)
		return rc;
	if (getsockname(l->listen_fd, (struct sockaddr *)&sa, &len) < 0)
		return -errno;
	l->port = ntohs(sa.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&sa)->sin6_port
						 : ((struct sockaddr_in *)&sa)->sin_port);
	return 0;
}

int mig_listener_start(const struct mig_listener_params *p, struct mig_listener **out)
{
	struct mig_listener *l;
	int rc;

	*out = NULL;
	if (!p->loop || !p->key || !p->session_done)
		return -EINVAL;
	if (!(l = calloc(1, sizeof(*l))))
		return -ENOMEM;
	l->loop = p->loop;
	l->key = *p->key;
	l->handshake_ms = p->handshake_timeout_ms;
	l->stall_ms = p->stall_timeout_ms;
	l->qemu_connect_ms = p->qemu_connect_timeout_ms;
	l->session_done = p->session_done;
	l->ctx = p->ctx;
	l->listen_fd = l->cancel_fd = l->wake_fd = -1;
	pthread_mutex_init(&l->lock, NULL);
	if ((l->cancel_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0 ||
	    (l->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
		rc = -errno;
		goto cleanup;
	}
	if ((rc = bind_listen(l, p->bind_host, p->port)) < 0) {
		qb_log(LOG_ERR, "cannot listen for migrations on %s port %u: %s",
		       p->bind_host && p->bind_host[0] ? p->bind_host : "every address",
		       (unsigned)p->port, strerror(-rc));
		goto cleanup;
	}
	if ((rc = qb_loop_poll_add(l->loop, QB_LOOP_MED, l->wake_fd, POLLIN, l, listener_wake)) < 0)
		goto cleanup;
	l->polled = true;
	if ((rc = -pthread_create(&l->accept_thread, NULL, accept_main, l)) < 0)
		goto cleanup;
	l->accept_started = true;
	*out = l;
	return 0;
cleanup:
	mig_listener_stop(l);
	return rc;
}

uint16_t mig_listener_port(const struct mig_listener *l)
{
	return l->port;
}

void mig_listener_stop(struct mig_listener *l)
{
	struct mig_session *list, *s;

	if (!l)
		return;
	if (l->cancel_fd >= 0)
		eventfd_write(l->cancel_fd, 1);
	if (l->accept_started)
		pthread_join(l->accept_thread, NULL);
	l->accept_started = false;
	pthread_mutex_lock(&l->lock);
	list = l->sessions;
	l->sessions = NULL;
	l->nsessions = 0;
	for (s = list; s; s = s->next)
		mig_session_fail(s, -ECANCELED, true, "the target vireod stopped taking migrations");
	pthread_mutex_unlock(&l->lock);
	while ((s = list)) {
		list = s->next;
		pthread_join(s->thread, NULL);
		mig_session_destroy(s);
	}
	if (l->polled)
		qb_loop_poll_del(l->loop, l->wake_fd);
	l->polled = false;
	for (struct mig_expect *e = l->expects, *next; e; e = next) {
		next = e->next;
		free(e->socket_path);
		free(e);
	}
	l->expects = NULL;
	if (l->listen_fd >= 0)
		close(l->listen_fd);
	if (l->cancel_fd >= 0)
		close(l->cancel_fd);
	if (l->wake_fd >= 0)
		close(l->wake_fd);
	l->listen_fd = l->cancel_fd = l->wake_fd = -1;
	explicit_bzero(&l->key, sizeof(l->key));
	if (l->dispatching) {
		/* called from session_done: listener_wake frees l on its way out */
		l->stopping = true;
		return;
	}
	pthread_mutex_destroy(&l->lock);
	free(l);
}

int mig_listener_expect(struct mig_listener *l, const struct mig_session_id *id,
			const char *socket_path)
{
	struct mig_expect *e;
	int rc = 0;

	if (!socket_path || !socket_path[0] || !id->vm_uuid[0] ||
	    strlen(socket_path) >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return -EINVAL;
	pthread_mutex_lock(&l->lock);
	for (e = l->expects; e; e = e->next) {
		if (same_id(&e->id, id)) {
			rc = -EEXIST;
			goto cleanup;
		}
	}
	rc = -ENOMEM;
	if (!(e = calloc(1, sizeof(*e))) || !(e->socket_path = strdup(socket_path))) {
		free(e);
		goto cleanup;
	}
	e->id = *id;
	e->next = l->expects;
	l->expects = e;
	rc = 0;
cleanup:
	pthread_mutex_unlock(&l->lock);
	return rc;
}

void mig_listener_forget(struct mig_listener *l, const struct mig_session_id *id)
{
	pthread_mutex_lock(&l->lock);
	for (struct mig_expect **pe = &l->expects; *pe;) {
		struct mig_expect *e = *pe;

		if (!same_id(&e->id, id)) {
			pe = &e->next;
			continue;
		}
		*pe = e->next;
		free(e->socket_path);
		free(e);
	}
	for (struct mig_session *s = l->sessions; s; s = s->next) {
		if (s->accepted && same_id(&s->id, id))
			mig_session_fail(s, -ECANCELED, true,
					 "the migration stream was cancelled on the target");
	}
	pthread_mutex_unlock(&l->lock);
}

int mig_listener_counters(struct mig_listener *l, const struct mig_session_id *id,
			  struct mig_result *snapshot)
{
	int rc = -ENOENT;

	pthread_mutex_lock(&l->lock);
	for (struct mig_session *s = l->sessions; s; s = s->next) {
		if (s->accepted && same_id(&s->id, id)) {
			mig_session_snapshot(s, snapshot);
			rc = 0;
			break;
		}
	}
	pthread_mutex_unlock(&l->lock);
	return rc;
}
