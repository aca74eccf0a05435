/* Migration, live (pre-copy) or not (the guest paused for the whole
 * transfer: vireo's quick migration). libvirt's migrate call blocks until
 * the VM is on the target (seconds to minutes), so it runs in a worker
 * thread; the thread posts its result to the main loop, which reports
 * HV_EVENT_MIGRATION_DONE.
 * The thread makes its own connection to the daemon: a migrate call in
 * flight on the loop's connection holds up every other call on it (the
 * daemon answers one connection's calls in turn, measured: vireod's loop
 * stalled 5-8 s during a bandwidth-capped migration), while a second
 * connection is answered at once. Our event loop takes libvirt's watch
 * updates from any thread (libvirt_events.c).
 *
 * hv_lv_migrate only starts the thread: looking the guest up and setting
 * its downtime are calls to the daemon too, and run in the thread. The
 * handle that progress and abort use is the main connection's (answered
 * while the thread's own connection waits in the migrate call); c->lock
 * guards the list of migrations, which other threads look in. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libvirt/virterror.h>
#include <qb/qblog.h>

#include "hypervisor/libvirt_events.h"
#include "hypervisor/libvirt_int.h"

struct hv_migration {
	struct hv_migration *next;
	struct hv_conn *c;              /* NULL once disconnect gave up on it */
	virDomainPtr dom;               /* on the main connection; set by the thread (c->lock) */
	char name[HV_NAME_MAX + 1];
	char *dest_uri;
	char *data_uri;
	char *local_uri;            /* the thread's own connection */
	char uuid[VIR_UUID_STRING_BUFLEN];
	uint32_t max_downtime_ms;
	uint64_t bandwidth_mibps;
	bool unsafe;
	bool live;
	bool leave_paused;
	pthread_t thread;
	bool joined;
	int rc;
	char message[512];
};

static void migration_free(struct hv_migration *m)
{
	virDomainFree(m->dom);
	free(m->dest_uri);
	free(m->data_uri);
	free(m->local_uri);
	free(m);
}

/* Main loop: the thread has posted this as its last act. */
static void migration_done(void *data)
{
	struct hv_migration *m = data;
	struct hv_conn *c = m->c;
	struct hv_event ev = {
		.type = HV_EVENT_MIGRATION_DONE,
		.name = m->name,
		.rc = m->rc,
		.message = m->message,
	};

	if (!m->joined)
		pthread_join(m->thread, NULL);
	if (c) {
		pthread_mutex_lock(&c->lock);
		for (struct hv_migration **pm = &c->migrations; *pm; pm = &(*pm)->next) {
			if (*pm == m) {
				*pm = m->next;
				break;
			}
		}
		pthread_mutex_unlock(&c->lock);
		qb_log(m->rc ? LOG_ERR : LOG_NOTICE, "%s", m->message);
		if (m->rc == -ENOTCONN)
			hv_lv_conn_lost(c, "the connection failed during a live migration");
		hv_lv_emit(c, &ev);
	}
	migration_free(m);
}

static const char *how(const struct hv_migration *m)
{
	return m->live ? "live-migrate" : "migrate";
}

/* In the thread: the checks and settings before the migration, on the main
 * connection, and the handle progress and abort use. 0 or -errno with
 * m->message. */
static int prepare(struct hv_migration *m)
{
	virDomainPtr dom = NULL;
	int rc;

	if ((rc = hv_lv_lookup(m->c, m->name, HV_OP_MIGRATE, &dom)) < 0)
		goto fail;
	if (virDomainIsActive(dom) != 1) {
		qb_log(LOG_NOTICE, "VM %s is not running; migration needs a running VM", m->name);
		snprintf(m->message, sizeof(m->message), "VM %s is not running; migration needs a "
			 "running VM", m->name);
		rc = -ESRCH;
		goto fail;
	}
	if ((m->live && m->max_downtime_ms &&
	     virDomainMigrateSetMaxDowntime(dom, m->max_downtime_ms, 0) < 0) ||
	    virDomainGetUUIDString(dom, m->uuid) < 0) {
		rc = hv_lv_fail(m->c, HV_OP_MIGRATE, m->name);
		goto fail;
	}
	pthread_mutex_lock(&m->c->lock);
	m->dom = dom;
	pthread_mutex_unlock(&m->c->lock);
	return 0;
fail:
	if (!m->message[0])
		snprintf(m->message, sizeof(m->message), "%s", hv_lv_last_failure(m->c));
	if (dom)
		virDomainFree(dom);
	return rc;
}

static void *migration_thread(void *data)
{
	struct hv_migration *m = data;
	/* Without LIVE, libvirt pauses the guest before the transfer and
	 * resumes it here if anything fails. */
	unsigned int flags = VIR_MIGRATE_PEER2PEER | VIR_MIGRATE_PERSIST_DEST |
			     VIR_MIGRATE_UNDEFINE_SOURCE | VIR_MIGRATE_ABORT_ON_ERROR;
	virTypedParameterPtr params = NULL;
	int nparams = 0, maxparams = 0;
	virConnectPtr conn = NULL;
	virDomainPtr dom = NULL;

	if (m->live)
		flags |= VIR_MIGRATE_LIVE;
	if (m->leave_paused)
		flags |= VIR_MIGRATE_PAUSED;
	if (m->unsafe)
		flags |= VIR_MIGRATE_UNSAFE;

	if ((m->rc = prepare(m)) < 0) {
		/* m->message says why */
	} else if ((m->bandwidth_mibps &&
	     virTypedParamsAddULLong(&params, &nparams, &maxparams, VIR_MIGRATE_PARAM_BANDWIDTH,
				     m->bandwidth_mibps) < 0) ||
	    (m->data_uri &&
	     virTypedParamsAddString(&params, &nparams, &maxparams, VIR_MIGRATE_PARAM_URI,
				     m->data_uri) < 0)) {
		m->rc = -ENOMEM;
	} else if (!(conn = virConnectOpen(m->local_uri)) ||
		   !(dom = virDomainLookupByUUIDString(conn, m->uuid)) ||
		   virDomainMigrateToURI3(dom, m->dest_uri, params, (unsigned int)nparams,
					  flags) < 0) {
		char detail[384];
		int code, int1;

		hv_lv_last_error(&code, &int1, detail, sizeof(detail));
		m->rc = hv_libvirt_errno(HV_OP_MIGRATE, code, int1,
					 conn && virConnectIsAlive(conn) == 1);
		hv_libvirt_op_message(HV_OP_MIGRATE, m->rc, m->name, detail, m->message,
				      sizeof(m->message));
		virResetLastError();
	}
	if (m->rc == 0)
		snprintf(m->message, sizeof(m->message), "VM %s %s to %s%s", m->name,
			 m->live ? "live-migrated" : "migrated", m->dest_uri,
			 m->leave_paused ? " (paused there)" : "");
	else if (!m->message[0])
		snprintf(m->message, sizeof(m->message), "cannot %s VM %s (%s)", how(m), m->name,
			 strerror(-m->rc));
	virTypedParamsFree(params, nparams);
	if (dom)
		virDomainFree(dom);
	if (conn)
		virConnectClose(conn);
	/* Retried because the loop must hear of it, or disconnect would wait forever. */
	while (hv_libvirt_events_post(migration_done, m) == -ENOMEM)
		sched_yield();
	return NULL;
}

/* Locked. */
static struct hv_migration *find(struct hv_conn *c, const char *name)
{
	for (struct hv_migration *m = c->migrations; m; m = m->next) {
		if (strcmp(m->name, name) == 0)
			return m;
	}
	return NULL;
}

/* A reference to the handle of name's migration: -ESRCH without one, or
 * before its thread looked the guest up. Any thread. */
static int migration_dom(struct hv_conn *c, const char *name, virDomainPtr *out)
{
	struct hv_migration *m;
	int rc = -ESRCH;

	*out = NULL;
	pthread_mutex_lock(&c->lock);
	if ((m = find(c, name)) && m->dom && virDomainRef(m->dom) == 0) {
		*out = m->dom;
		rc = 0;
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}

int hv_lv_migrate(struct hv_conn *c, const char *name, const struct hv_migrate_params *p)
{
	struct hv_migration *m = NULL;
	bool busy;
	int rc;

	if (!p || !p->dest_uri || !p->dest_uri[0]) {
		qb_log(LOG_ERR, "cannot migrate VM %s: no target URI given", name);
		return -EINVAL;
	}
	if (!hv_name_valid(name))
		return -EINVAL;
	pthread_mutex_lock(&c->lock);
	busy = find(c, name) != NULL;
	pthread_mutex_unlock(&c->lock);
	if (busy) {
		qb_log(LOG_ERR, "VM %s is already being migrated; abort that first", name);
		return -EBUSY;
	}
	rc = -ENOMEM;
	if (!(m = calloc(1, sizeof(*m))) || !(m->dest_uri = strdup(p->dest_uri)) ||
	    !(m->local_uri = strdup(c->uri)) ||
	    (p->data_uri && !(m->data_uri = strdup(p->data_uri))))
		goto cleanup;
	m->c = c;
	snprintf(m->name, sizeof(m->name), "%s", name);
	m->max_downtime_ms = p->max_downtime_ms;
	m->bandwidth_mibps = p->bandwidth_mibps;
	m->unsafe = p->trust_shared_disks;
	m->live = p->live;
	m->leave_paused = p->leave_paused;
	/* Listed before the thread runs: it looks for itself in the list. */
	pthread_mutex_lock(&c->lock);
	m->next = c->migrations;
	c->migrations = m;
	if ((rc = -pthread_create(&m->thread, NULL, migration_thread, m)) < 0)
		c->migrations = m->next;
	pthread_mutex_unlock(&c->lock);
	if (rc < 0) {
		qb_log(LOG_ERR, "cannot start a thread to migrate VM %s: %s", name, strerror(-rc));
		goto cleanup;
	}
	qb_log(LOG_NOTICE, "%s VM %s to %s%s%s", p->live ? "live-migrating" : "migrating", name,
	       p->dest_uri, p->data_uri ? " through " : "", p->data_uri ? p->data_uri : "");
	return 0;
cleanup:
	if (m) {
		free(m->dest_uri);
		free(m->data_uri);
		free(m->local_uri);
	}
	free(m);
	return rc;
}

int hv_lv_migrate_abort(struct hv_conn *c, const char *name)
{
	virDomainPtr dom;
	int rc;

	if (migration_dom(c, name, &dom) < 0) {
		qb_log(LOG_NOTICE, "VM %s is not being migrated; nothing to abort", name);
		return -ESRCH;
	}
	if (virDomainAbortJob(dom) < 0) {
		rc = hv_lv_fail(c, HV_OP_MIGRATE, name);
	} else {
		qb_log(LOG_NOTICE, "aborting the migration of VM %s", name);
		rc = 0;
	}
	virDomainFree(dom);
	return rc;
}

static uint64_t job_value(virTypedParameterPtr params, int n, const char *field)
{
	unsigned long long v = 0;

	return virTypedParamsGetULLong(params, n, field, &v) == 1 ? v : 0;
}

int hv_lv_migrate_progress(struct hv_conn *c, const char *name, struct hv_migrate_progress *out)
{
	virTypedParameterPtr params = NULL;
	int type = VIR_DOMAIN_JOB_NONE, n = 0;
	virDomainPtr dom;
	int rc;

	memset(out, 0, sizeof(*out));
	if (migration_dom(c, name, &dom) < 0)
		return -ESRCH;
	/* The failure is read before virDomainFree resets it. */
	rc = virDomainGetJobStats(dom, &type, &params, &n, 0);
	if (rc < 0)
		rc = hv_lv_fail(c, HV_OP_MIGRATE, name);
	virDomainFree(dom);
	if (rc < 0)
		return rc;
	out->active = type == VIR_DOMAIN_JOB_BOUNDED || type == VIR_DOMAIN_JOB_UNBOUNDED;
	out->elapsed_ms = job_value(params, n, VIR_DOMAIN_JOB_TIME_ELAPSED);
	out->data_total = job_value(params, n, VIR_DOMAIN_JOB_DATA_TOTAL);
	out->data_processed = job_value(params, n, VIR_DOMAIN_JOB_DATA_PROCESSED);
	out->data_remaining = job_value(params, n, VIR_DOMAIN_JOB_DATA_REMAINING);
	out->memory_total = job_value(params, n, VIR_DOMAIN_JOB_MEMORY_TOTAL);
	out->memory_remaining = job_value(params, n, VIR_DOMAIN_JOB_MEMORY_REMAINING);
	out->memory_iteration = job_value(params, n, VIR_DOMAIN_JOB_MEMORY_ITERATION);
	virTypedParamsFree(params, n);
	return 0;
}

void hv_lv_migrations_stop(struct hv_conn *c)
{
	pthread_mutex_lock(&c->lock);
	while (c->migrations) {
		struct hv_migration *m = c->migrations;

		c->migrations = m->next;
		/* Its thread ends once libvirt gives up (vireod cuts the streams
		 * before it disconnects); its posted result then only frees m.
		 * Not waited for: a daemon that hangs would hold the exit. */
		pthread_detach(m->thread);
		m->joined = true;
		m->c = NULL;
	}
	pthread_mutex_unlock(&c->lock);
}

int hv_lv_job_active(struct hv_conn *c, const char *name, bool *active)
{
	virDomainPtr dom = NULL;
	virDomainJobInfo info;
	int rc;

	*active = false;
	if ((rc = hv_lv_lookup(c, name, HV_OP_STATE, &dom)) < 0)
		return rc;
	if (virDomainGetJobInfo(dom, &info) < 0)
		rc = hv_lv_fail(c, HV_OP_STATE, name);
	else
		*active = info.type != VIR_DOMAIN_JOB_NONE;
	virDomainFree(dom);
	return rc;
}
