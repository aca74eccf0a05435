/* The libvirt connection: opening it, learning that it died (libvirt's
 * close callback, or a call that finds it dead), reconnecting with backoff,
 * and turning lifecycle events into hv events. Everything here runs on the
 * main loop's thread. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libvirt/virterror.h>
#include <qb/qblog.h>

#include "hypervisor/hv_timeouts.h"
#include "hypervisor/libvirt_events.h"
#include "hypervisor/libvirt_int.h"

#define LOG_EVERY_N_ATTEMPTS 20

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

int hv_lv_fail(struct hv_conn *c, enum hv_op op, const char *subject)
{
	char detail[384], line[640];
	int code, int1;
	bool alive;
	int rc;

	hv_lv_last_error(&code, &int1, detail, sizeof(detail));
	alive = op == HV_OP_CONNECT || (c->conn && virConnectIsAlive(c->conn) == 1);
	rc = hv_libvirt_errno(op, code, int1, alive);
	hv_libvirt_op_message(op, rc, subject, detail, line, sizeof(line));
	qb_log(rc == -ENOENT || rc == -ESRCH || rc == -EEXIST ? LOG_NOTICE : LOG_ERR, "%s", line);
	snprintf(c->last_error, sizeof(c->last_error), "%s", line);
	if (rc == -ENOTCONN)
		hv_lv_conn_lost(c, detail);
	virResetLastError();
	return rc;
}

int hv_lv_lookup(struct hv_conn *c, const char *name, enum hv_op op, virDomainPtr *dom)
{
	*dom = NULL;
	if (!c->conn) {
		qb_log(LOG_WARNING, "VM %s: not connected to the libvirt daemon at %s; vireo is "
		       "reconnecting", name, c->uri);
		return -ENOTCONN;
	}
	if (!hv_name_valid(name)) {
		qb_log(LOG_ERR, "'%s' is not a valid VM name; use 1 to 64 letters, digits, '-', '_' "
		       "or '.'", name);
		return -EINVAL;
	}
	if (!(*dom = virDomainLookupByName(c->conn, name)))
		return hv_lv_fail(c, op, name);
	return 0;
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

static void teardown(struct hv_conn *c)
{
	if (!c->conn)
		return;
	if (c->lifecycle_id >= 0)
		virConnectDomainEventDeregisterAny(c->conn, c->lifecycle_id);
	if (c->close_registered)
		virConnectUnregisterCloseCallback(c->conn, on_close);
	c->lifecycle_id = -1;
	c->close_registered = false;
	virConnectClose(c->conn);
	c->conn = NULL;
	virResetLastError();
}

static void lost_job(void *data)
{
	struct hv_conn *c = data;
	struct hv_event ev = { .type = HV_EVENT_CONNECTION_LOST, .message = c->lost_why };

	c->lost_queued = false;
	if (!c->conn)
		return;
	qb_log(LOG_ERR, "lost the connection to the libvirt daemon at %s (%s); reconnecting",
	       c->uri, c->lost_why);
	teardown(c);
	hv_lv_emit(c, &ev);
	c->reconnect_ms = VIREO_HV_RECONNECT_MIN_MS(c->token_ms);
	c->reconnects = 0;
	schedule_reconnect(c);
}

void hv_lv_conn_lost(struct hv_conn *c, const char *why)
{
	if (!c->conn || c->lost_queued)
		return;
	snprintf(c->lost_why, sizeof(c->lost_why), "%s", why);
	/* Never from inside libvirt's close callback: closing there deadlocks. */
	if (qb_loop_job_add(c->loop, QB_LOOP_HIGH, c, lost_job) == 0)
		c->lost_queued = true;
}

/* Every hv_conn alive, so that a close reported from another thread can be
 * checked on the loop before it is acted on. Loop thread only. */
static struct hv_conn *live[16];

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

/* 0, or -errno with the reason logged at level. */
static int open_conn(struct hv_conn *c, int level)
{
	virConnectPtr conn = virConnectOpen(c->uri);
	int keepalive = VIREO_HV_KEEPALIVE_S(c->token_ms);

	if (!conn) {
		char detail[384], line[640];
		int code, int1, rc;

		hv_lv_last_error(&code, &int1, detail, sizeof(detail));
		rc = hv_libvirt_errno(HV_OP_CONNECT, code, int1, true);
		hv_libvirt_op_message(HV_OP_CONNECT, rc, c->uri, detail, line, sizeof(line));
		qb_log(level, "%s", line);
		return rc;
	}
	c->conn = conn;
	if (virConnectRegisterCloseCallback(conn, on_close, c, NULL) == 0)
		c->close_registered = true;
	else
		qb_log(LOG_WARNING, "libvirt at %s cannot report a closed connection; vireo notices "
		       "only when a call fails", c->uri);
	c->lifecycle_id = virConnectDomainEventRegisterAny(conn, NULL, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
							   VIR_DOMAIN_EVENT_CALLBACK(on_lifecycle),
							   c, NULL);
	if (c->lifecycle_id < 0) {
		int rc = hv_lv_fail(c, HV_OP_CONNECT, c->uri);

		qb_log(LOG_ERR, "cannot subscribe to VM events at %s; giving up this connection",
		       c->uri);
		teardown(c);
		return rc;
	}
	if (virConnectSetKeepAlive(conn, keepalive, VIREO_HV_KEEPALIVE_COUNT) < 0) {
		qb_log(LOG_WARNING, "cannot enable keepalive on the connection to %s; a hung daemon "
		       "goes unnoticed until a call times out", c->uri);
		virResetLastError();
	}
	return 0;
}

static void reconnect_fired(void *data)
{
	struct hv_conn *c = data;
	struct hv_event ev = { .type = HV_EVENT_CONNECTION_RESTORED };
	char msg[160];
	int rc;

	c->reconnect_armed = false;
	c->reconnects++;
	rc = open_conn(c, c->reconnects == 1 || c->reconnects % LOG_EVERY_N_ATTEMPTS == 0
		       ? LOG_WARNING : LOG_DEBUG);
	if (rc < 0) {
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
	rc = open_conn(c, p->wait ? LOG_WARNING : LOG_ERR);
	if (rc < 0 && !p->wait) {
		free(c->uri);
		free(c);
		return rc;
	}
	if (rc < 0) {
		c->reconnect_ms = VIREO_HV_RECONNECT_MIN_MS(c->token_ms);
		schedule_reconnect(c);
	} else {
		qb_log(LOG_NOTICE, "connected to the libvirt daemon at %s", c->uri);
	}
	set_live(c, true);
	*out = c;
	return 0;
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
	free(c->uri);
	free(c);
}

const char *hv_lv_last_failure(const struct hv_conn *c)
{
	return c->last_error;
}

bool hv_lv_connected(const struct hv_conn *c)
{
	return c->conn && !c->lost_queued;
}
