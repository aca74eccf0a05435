/* The libvirt connection: opening it, learning that it died (libvirt's
 * close callback, or a call that finds it dead), reconnecting with backoff,
 * and turning lifecycle events into hv events. This runs on the main
 * loop's thread, but for what any thread may call (hv_lv_ref, hv_lv_fail,
 * hv_lv_conn_lost) and the open of a reconnect, which runs in a thread of
 * its own: a daemon that is stopped accepts the connection and then never
 * answers, and its first call would hold the loop for good. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libvirt/virterror.h>
#include <qb/qblog.h>

#include "hypervisor/hv_timeouts.h"
#include "hypervisor/libvirt_events.h"
#include "hypervisor/libvirt_int.h"

#define LOG_EVERY_N_ATTEMPTS 20

/* The sentence of the last failed call, per thread: the thread that made
 * the call reads it (hv_driver.last_error). */
static __thread char last_failure[640];

static void schedule_reconnect(struct hv_conn *c);
static void on_close(virConnectPtr conn, int reason, void *opaque);

void hv_lv_emit(struct hv_conn *c, const struct hv_event *ev)
{
	if (c->cb.event)
		c->cb.event(c->cb.ctx, ev);
}

void hv_lv_last_error(int *code, int *int1, char *detail, size_t len)
{
	/* Copied at once: the next libvirt call resets the thread's error. */
	virErrorPtr e = virGetLastError();
	char *p;

	*code = e ? e->code : VIR_ERR_OK;
	*int1 = e ? e->int1 : 0;
	snprintf(detail, len, "%s", e && e->message ? e->message : "libvirt gave no reason");
	/* QEMU's stderr arrives in the message: keep the log line one line. */
	while ((p = strpbrk(detail, "\r\n")))
		*p = ' ';
	virResetLastError();
}

virConnectPtr hv_lv_ref(struct hv_conn *c)
{
	virConnectPtr conn = NULL;

	pthread_mutex_lock(&c->lock);
	if (c->conn && !c->lost_queued && virConnectRef(c->conn) == 0)
		conn = c->conn;
	pthread_mutex_unlock(&c->lock);
	return conn;
}

static bool alive_now(struct hv_conn *c)
{
	virConnectPtr conn = hv_lv_ref(c);
	bool alive = conn && virConnectIsAlive(conn) == 1;

	if (conn)
		virConnectClose(conn);
	return alive;
}

int hv_lv_fail(struct hv_conn *c, enum hv_op op, const char *subject)
{
	char detail[384], line[640];
	int code, int1;
	bool alive;
	int rc;

	hv_lv_last_error(&code, &int1, detail, sizeof(detail));
	alive = op == HV_OP_CONNECT || alive_now(c);
	rc = hv_libvirt_errno(op, code, int1, alive);
	hv_libvirt_op_message(op, rc, subject, detail, line, sizeof(line));
	qb_log(rc == -ENOENT || rc == -ESRCH || rc == -EEXIST ? LOG_NOTICE : LOG_ERR, "%s", line);
	snprintf(last_failure, sizeof(last_failure), "%s", line);
	if (rc == -ENOTCONN)
		hv_lv_conn_lost(c, detail);
	virResetLastError();
	return rc;
}

int hv_lv_lookup(struct hv_conn *c, const char *name, enum hv_op op, virDomainPtr *dom)
{
	virConnectPtr conn;
	int rc;

	*dom = NULL;
	if (!hv_name_valid(name)) {
		qb_log(LOG_ERR, "'%s' is not a valid VM name; use 1 to 64 letters, digits, '-', '_' "
		       "or '.'", name);
		return -EINVAL;
	}
	if (!(conn = hv_lv_ref(c))) {
		qb_log(LOG_WARNING, "VM %s: not connected to the libvirt daemon at %s; vireo is "
		       "reconnecting", name, c->uri);
		snprintf(last_failure, sizeof(last_failure), "vireod is not connected to the libvirt "
			 "daemon at %s; it is reconnecting", c->uri);
		return -ENOTCONN;
	}
	/* Read the failure before virConnectClose: any public call resets the
	 * thread's libvirt error. The domain holds its own reference. */
	*dom = virDomainLookupByName(conn, name);
	rc = *dom ? 0 : hv_lv_fail(c, op, name);
	virConnectClose(conn);
	return rc;
}

static int on_lifecycle(virConnectPtr conn, virDomainPtr dom, int event, int detail, void *opaque)
{
	struct hv_conn *c = opaque;
	char uuid[VIR_UUID_STRING_BUFLEN] = "";
	struct hv_event ev = { .rc = 0 };

	if (conn != c->conn || !hv_libvirt_event(event, detail, &ev.type, &ev.reason))
		return 0;
	virDomainGetUUIDString(dom, uuid);
	ev.name = virDomainGetName(dom);
	ev.uuid = uuid;
	qb_log(LOG_DEBUG, "VM %s: %s (%s)", ev.name, hv_event_name(ev.type), hv_reason_name(ev.reason));
	hv_lv_emit(c, &ev);
	return 0;
}

/* Undoes what open_conn set up on conn and drops our reference; calls in
 * flight on other threads keep theirs until they return. */
static void release(virConnectPtr conn, int lifecycle_id, bool close_registered)
{
	if (lifecycle_id >= 0)
		virConnectDomainEventDeregisterAny(conn, lifecycle_id);
	if (close_registered)
		virConnectUnregisterCloseCallback(conn, on_close);
	virConnectClose(conn);
	virResetLastError();
}

static void teardown(struct hv_conn *c)
{
	virConnectPtr conn = c->conn;

	if (!conn)
		return;
	pthread_mutex_lock(&c->lock);
	c->conn = NULL;
	pthread_mutex_unlock(&c->lock);
	release(conn, c->lifecycle_id, c->close_registered);
	c->lifecycle_id = -1;
	c->close_registered = false;
}

static void lost_job(void *data)
{
	struct hv_conn *c = data;
	struct hv_event ev = { .type = HV_EVENT_CONNECTION_LOST, .message = c->lost_why };

	bool had = c->conn != NULL;

	if (had) {
		qb_log(LOG_ERR, "lost the connection to the libvirt daemon at %s (%s); reconnecting",
		       c->uri, c->lost_why);
		teardown(c);
	}
	pthread_mutex_lock(&c->lock);
	c->lost_queued = false;
	pthread_mutex_unlock(&c->lock);
	if (!had)
		return;
	hv_lv_emit(c, &ev);
	c->reconnect_ms = VIREO_HV_RECONNECT_MIN_MS(c->token_ms);
	c->reconnects = 0;
	schedule_reconnect(c);
}

/* Every hv_conn alive, so that a close reported from another thread can be
 * checked on the loop before it is acted on. Loop thread only. */
static struct hv_conn *live[16];
static bool is_live(const struct hv_conn *c);

struct lost {
	struct hv_conn *c;
	char why[160];
};

static void lost_on_loop(void *data)
{
	struct lost *l = data;

	if (is_live(l->c))
		hv_lv_conn_lost(l->c, l->why);
	free(l);
}

void hv_lv_conn_lost(struct hv_conn *c, const char *why)
{
	struct lost *l;

	if (!hv_libvirt_events_on_loop()) {
		/* A worker's call found it dead: the loop tears it down. */
		if (!(l = malloc(sizeof(*l))))
			return;     /* the close callback or the next call says it again */
		l->c = c;
		snprintf(l->why, sizeof(l->why), "%s", why);
		if (hv_libvirt_events_post(lost_on_loop, l) < 0)
			free(l);
		return;
	}
	if (!c->conn || c->lost_queued)
		return;
	snprintf(c->lost_why, sizeof(c->lost_why), "%s", why);
	/* Never from inside libvirt's close callback: closing there deadlocks. */
	if (qb_loop_job_add(c->loop, QB_LOOP_HIGH, c, lost_job) == 0) {
		pthread_mutex_lock(&c->lock);
		c->lost_queued = true;      /* hv_lv_ref hands out no more references */
		pthread_mutex_unlock(&c->lock);
	}
}

static bool is_live(const struct hv_conn *c)
{
	for (size_t i = 0; i < sizeof(live) / sizeof(live[0]); i++) {
		if (live[i] == c)
			return true;
	}
	return false;
}

static void set_live(struct hv_conn *c, bool yes)
{
	for (size_t i = 0; i < sizeof(live) / sizeof(live[0]); i++) {
		if (yes ? !live[i] : live[i] == c) {
			live[i] = yes ? c : NULL;
			return;
		}
	}
}

struct closed {
	struct hv_conn *c;
	virConnectPtr conn;
	int reason;
};

static void closed_on_loop(void *data)
{
	struct closed *cl = data;
	struct hv_conn *c = cl->c;
	const char *why;

	if (!is_live(c) || cl->conn != c->conn)
		goto cleanup;
	switch (cl->reason) {
	case VIR_CONNECT_CLOSE_REASON_EOF: why = "the daemon closed the connection"; break;
	case VIR_CONNECT_CLOSE_REASON_KEEPALIVE: why = "the daemon stopped answering keepalives"; break;
	case VIR_CONNECT_CLOSE_REASON_ERROR: why = "an I/O error on the connection"; break;
	default: why = "the connection was closed"; break;
	}
	hv_lv_conn_lost(c, why);
cleanup:
	free(cl);
}

/* libvirt calls this from whichever thread noticed: the loop's, or the
 * migration thread's when its call hit the dead socket. */
static void on_close(virConnectPtr conn, int reason, void *opaque)
{
	struct closed *cl = malloc(sizeof(*cl));

	if (!cl) {
		qb_log(LOG_CRIT, "out of memory noting that the libvirt connection closed; the "
		       "next call will notice instead");
		return;
	}
	cl->c = opaque;
	cl->conn = conn;
	cl->reason = reason;
	if (hv_libvirt_events_on_loop())
		closed_on_loop(cl);
	else if (hv_libvirt_events_post(closed_on_loop, cl) < 0)
		free(cl);
}

/* One attempt to open the connection, with everything vireo sets up on it. */
struct opening {
	struct hv_conn *c;           /* only compared on the thread, used on the loop */
	char *uri;
	uint32_t token_ms;
	int level;                   /* of the log line of a failure */
	virConnectPtr conn;
	int lifecycle_id;
	bool close_registered;
	int rc;
	char line[640];
};

/* Any thread: opens o->uri, or fails with o->rc and o->line. */
static void open_conn(struct opening *o)
{
	int keepalive = VIREO_HV_KEEPALIVE_S(o->token_ms);
	char detail[384];
	int code, int1;

	o->lifecycle_id = -1;
	if (!(o->conn = virConnectOpen(o->uri))) {
		hv_lv_last_error(&code, &int1, detail, sizeof(detail));
		o->rc = hv_libvirt_errno(HV_OP_CONNECT, code, int1, true);
		hv_libvirt_op_message(HV_OP_CONNECT, o->rc, o->uri, detail, o->line, sizeof(o->line));
		return;
	}
	if (virConnectRegisterCloseCallback(o->conn, on_close, o->c, NULL) == 0)
		o->close_registered = true;
	else
		qb_log(LOG_WARNING, "libvirt at %s cannot report a closed connection; vireo notices "
		       "only when a call fails", o->uri);
	o->lifecycle_id = virConnectDomainEventRegisterAny(o->conn, NULL,
							   VIR_DOMAIN_EVENT_ID_LIFECYCLE,
							   VIR_DOMAIN_EVENT_CALLBACK(on_lifecycle),
							   o->c, NULL);
	if (o->lifecycle_id < 0) {
		hv_lv_last_error(&code, &int1, detail, sizeof(detail));
		o->rc = hv_libvirt_errno(HV_OP_CONNECT, code, int1, true);
		snprintf(o->line, sizeof(o->line), "cannot subscribe to VM events at %s (%s); giving "
			 "up this connection", o->uri, detail);
		release(o->conn, -1, o->close_registered);
		o->conn = NULL;
		return;
	}
	if (virConnectSetKeepAlive(o->conn, keepalive, VIREO_HV_KEEPALIVE_COUNT) < 0) {
		qb_log(LOG_WARNING, "cannot enable keepalive on the connection to %s; a hung daemon "
		       "goes unnoticed until a call times out", o->uri);
		virResetLastError();
	}
	o->rc = 0;
}

static void opening_free(struct opening *o)
{
	if (o->conn)
		release(o->conn, o->lifecycle_id, o->close_registered);
	free(o->uri);
	free(o);
}

/* On the loop: the attempt's result. 0, or its -errno (logged at its level). */
static int install(struct hv_conn *c, struct opening *o)
{
	int rc = o->rc;

	if (rc < 0) {
		qb_log(o->level, "%s", o->line);
		opening_free(o);
		return rc;
	}
	pthread_mutex_lock(&c->lock);
	c->conn = o->conn;
	pthread_mutex_unlock(&c->lock);
	c->lifecycle_id = o->lifecycle_id;
	c->close_registered = o->close_registered;
	o->conn = NULL;
	opening_free(o);
	return 0;
}

static void reconnected(struct hv_conn *c, struct opening *o)
{
	struct hv_event ev = { .type = HV_EVENT_CONNECTION_RESTORED };
	char msg[160];

	c->opening = false;
	if (install(c, o) < 0) {
		c->reconnect_ms *= 2;
		if (c->reconnect_ms > VIREO_HV_RECONNECT_MAX_MS(c->token_ms))
			c->reconnect_ms = VIREO_HV_RECONNECT_MAX_MS(c->token_ms);
		schedule_reconnect(c);
		return;
	}
	snprintf(msg, sizeof(msg), "connected to %s after %u attempts", c->uri, c->reconnects);
	qb_log(LOG_NOTICE, "%s", msg);
	ev.message = msg;
	c->reconnects = 0;
	hv_lv_emit(c, &ev);
}

static void opened_on_loop(void *data)
{
	struct opening *o = data;

	/* Disconnected meanwhile: nobody wants this connection. */
	if (!is_live(o->c) || !o->c->opening) {
		opening_free(o);
		return;
	}
	reconnected(o->c, o);
}

static void *open_thread(void *data)
{
	struct opening *o = data;

	open_conn(o);
	/* Retried: the loop must hear of it, or it never reconnects. */
	while (hv_libvirt_events_post(opened_on_loop, o) == -ENOMEM)
		sched_yield();
	return NULL;
}

static struct opening *opening_new(struct hv_conn *c, int level)
{
	struct opening *o = calloc(1, sizeof(*o));

	if (!o || !(o->uri = strdup(c->uri))) {
		free(o);
		return NULL;
	}
	o->c = c;
	o->token_ms = c->token_ms;
	o->level = level;
	return o;
}

static void reconnect_fired(void *data)
{
	struct hv_conn *c = data;
	struct opening *o;
	pthread_t t;
	int level;

	c->reconnect_armed = false;
	c->reconnects++;
	level = c->reconnects == 1 || c->reconnects % LOG_EVERY_N_ATTEMPTS == 0 ? LOG_WARNING :
		LOG_DEBUG;
	if (!(o = opening_new(c, level))) {
		schedule_reconnect(c);
		return;
	}
	c->opening = true;
	if (pthread_create(&t, NULL, open_thread, o) != 0) {
		c->opening = false;
		opening_free(o);
		schedule_reconnect(c);
		return;
	}
	pthread_detach(t);
}

static void schedule_reconnect(struct hv_conn *c)
{
	if (qb_loop_timer_add(c->loop, QB_LOOP_MED, (uint64_t)c->reconnect_ms * NS_PER_MS, c,
			      reconnect_fired, &c->reconnect_timer) == 0)
		c->reconnect_armed = true;
	else
		qb_log(LOG_CRIT, "cannot arm the libvirt reconnect timer; vireo stays disconnected "
		       "from %s until restarted", c->uri);
}

static void quiet_errors(void *opaque, virErrorPtr err)
{
	/* Every failure is logged by hv_lv_fail, in a sentence, via qb_log. */
}

int hv_lv_connect(const struct hv_connect_params *p, struct hv_conn **out)
{
	struct hv_conn *c;
	struct opening *o;
	int rc;

	*out = NULL;
	if (!p->loop)
		return -EINVAL;
	if (virInitialize() < 0)
		return -EIO;
	virSetErrorFunc(NULL, quiet_errors);
	if ((rc = hv_libvirt_events_init(p->loop)) < 0) {
		qb_log(LOG_ERR, "cannot run libvirt's events in the main loop: %s", strerror(-rc));
		return rc;
	}
	if (!is_live(NULL)) {           /* no free slot */
		qb_log(LOG_ERR, "too many libvirt connections in one process; disconnect one first");
		return -EMFILE;
	}
	if (!(c = calloc(1, sizeof(*c))))
		return -ENOMEM;
	c->loop = p->loop;
	c->token_ms = VIREO_HV_TOKEN_MS(p->token_ms);
	c->cb = p->cb;
	c->lifecycle_id = -1;
	c->accel = HV_ACCEL_TCG;        /* until resolve_accel says otherwise */
	if (!(c->uri = strdup(p->uri ? p->uri : HV_DEFAULT_URI))) {
		free(c);
		return -ENOMEM;
	}
	pthread_mutex_init(&c->lock, NULL);
	set_live(c, true);
	if (p->wait) {
		/* Never on the loop: the first attempt runs in its thread too,
		 * at once, and says CONNECTION_RESTORED when it succeeds. */
		c->reconnect_ms = VIREO_HV_RECONNECT_MIN_MS(c->token_ms);
		reconnect_fired(c);
		*out = c;
		return 0;
	}
	if (!(o = opening_new(c, LOG_ERR))) {
		rc = -ENOMEM;
		goto fail;
	}
	open_conn(o);
	if ((rc = install(c, o)) < 0)
		goto fail;
	qb_log(LOG_NOTICE, "connected to the libvirt daemon at %s", c->uri);
	*out = c;
	return 0;
fail:
	set_live(c, false);
	pthread_mutex_destroy(&c->lock);
	free(c->uri);
	free(c);
	return rc;
}

void hv_lv_disconnect(struct hv_conn *c)
{
	if (!c)
		return;
	set_live(c, false);
	hv_lv_probe_stop(c);
	hv_lv_migrations_stop(c);
	if (c->reconnect_armed)
		qb_loop_timer_del(c->loop, c->reconnect_timer);
	if (c->lost_queued)
		qb_loop_job_del(c->loop, QB_LOOP_HIGH, c, lost_job);
	teardown(c);
	pthread_mutex_destroy(&c->lock);
	free(c->uri);
	free(c);
}

const char *hv_lv_last_failure(const struct hv_conn *c)
{
	(void)c;
	return last_failure;
}

bool hv_lv_connected(const struct hv_conn *c)
{
	return c->conn && !c->lost_queued;
}
