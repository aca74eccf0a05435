/* Graceful shutdown with a deadline, for any driver: ask (ACPI), look at
 * the state on a loop timer, destroy when the grace is over. Polling rather
 * than waiting for the STOPPED event keeps it right across a reconnect,
 * when events may have been missed. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <qb/qblog.h>

#include "hypervisor/hv.h"
#include "hypervisor/hv_timeouts.h"

#define NS_PER_MS 1000000ull

struct hv_shutdown {
	const struct hv_driver *drv;
	struct hv_conn *c;
	qb_loop_t *loop;
	char name[HV_NAME_MAX + 1];
	uint64_t deadline_ms;
	uint32_t poll_ms;
	hv_shutdown_done_fn done;
	void *ctx;
	qb_loop_timer_handle timer;
	bool armed;
	bool paused;            /* cannot hear the request */
};

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / NS_PER_MS;
}

static void complete(struct hv_shutdown *s, int rc, bool forced)
{
	hv_shutdown_done_fn done = s->done;
	void *ctx = s->ctx;
	char name[sizeof(s->name)];

	memcpy(name, s->name, sizeof(name));
	free(s);
	done(ctx, name, rc, forced);
}

static void tick(void *data)
{
	struct hv_shutdown *s = data;
	enum hv_vm_state st = HV_STATE_UNKNOWN;
	int rc;

	s->armed = false;
	rc = s->drv->state(s->c, s->name, &st);
	if (rc == -ENOENT || (rc == 0 && (st == HV_STATE_SHUTOFF || st == HV_STATE_CRASHED))) {
		qb_log(LOG_INFO, "VM %s powered off", s->name);
		complete(s, 0, false);
		return;
	}
	if (mono_ms() >= s->deadline_ms) {
		if (s->paused)
			qb_log(LOG_NOTICE, "VM %s is paused and cannot power off by itself; "
			       "destroying it", s->name);
		else
			qb_log(LOG_WARNING, "VM %s did not power off in time; destroying it", s->name);
		rc = s->drv->destroy(s->c, s->name);
		/* Gone by itself between the two calls: that is what we wanted. */
		if (rc == -ESRCH || rc == -ENOENT)
			complete(s, 0, false);
		else
			complete(s, rc, rc == 0);
		return;
	}
	rc = qb_loop_timer_add(s->loop, QB_LOOP_MED, (uint64_t)s->poll_ms * NS_PER_MS, s, tick,
			       &s->timer);
	if (rc < 0) {
		qb_log(LOG_ERR, "cannot arm a timer to watch VM %s power off; destroying it now",
		       s->name);
		rc = s->drv->destroy(s->c, s->name);
		complete(s, rc == -ESRCH || rc == -ENOENT ? 0 : rc, rc == 0);
		return;
	}
	s->armed = true;
}

int hv_shutdown_graceful(const struct hv_driver *drv, struct hv_conn *c, qb_loop_t *loop,
			 const char *name, uint32_t timeout_ms, uint32_t token_ms,
			 hv_shutdown_done_fn done, void *ctx, struct hv_shutdown **out)
{
	struct hv_shutdown *s;
	uint32_t t = VIREO_HV_TOKEN_MS(token_ms);
	enum hv_vm_state st = HV_STATE_UNKNOWN;
	int rc;

	if (out)
		*out = NULL;
	if (!hv_name_valid(name))
		return -EINVAL;
	if (!(s = calloc(1, sizeof(*s))))
		return -ENOMEM;
	s->drv = drv;
	s->c = c;
	s->loop = loop;
	snprintf(s->name, sizeof(s->name), "%s", name);
	s->deadline_ms = mono_ms() + (timeout_ms ? timeout_ms : VIREO_HV_SHUTDOWN_MS(t));
	s->poll_ms = VIREO_HV_STATE_POLL_MS(t);
	s->done = done;
	s->ctx = ctx;
	rc = drv->state(c, name, &st);
	if (rc == -ENOENT || rc == -EINVAL)
		goto cleanup;
	if (rc == 0 && (st == HV_STATE_SHUTOFF || st == HV_STATE_CRASHED)) {
		rc = -ESRCH;
		goto cleanup;
	}
	/* A paused guest cannot see the power button: no grace. */
	s->paused = rc == 0 && st == HV_STATE_PAUSED;
	rc = s->paused ? -EAGAIN : drv->shutdown(c, name);
	if (rc == -ENOENT || rc == -EINVAL)
		goto cleanup;
	/* A guest that cannot be asked is destroyed at the first look;
	 * -ENOTCONN keeps the grace: libvirt may be back for the destroy. */
	if (rc < 0 && rc != -ENOTCONN)
		s->deadline_ms = mono_ms();
	if ((rc = qb_loop_timer_add(loop, QB_LOOP_MED, (uint64_t)s->poll_ms * NS_PER_MS, s, tick,
				    &s->timer)) < 0)
		goto cleanup;
	s->armed = true;
	if (out)
		*out = s;
	return 0;
cleanup:
	free(s);
	return rc;
}

void hv_shutdown_cancel(struct hv_shutdown *s)
{
	if (!s)
		return;
	if (s->armed)
		qb_loop_timer_del(s->loop, s->timer);
	free(s);
}
