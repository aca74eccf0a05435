/* The worker side of node/hv_calls.h. The driver's calls are thread-safe
 * (hypervisor/libvirt_conn.c); each failed call's sentence is per thread,
 * so the worker copies it into the call before it comes back. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <qb/qblog.h>

#include "cluster/timeouts.h"
#include "node/daemon.h"
#include "node/hv_calls.h"
#include "util/workq.h"

#define NS_PER_MS 1000000ull
/* Calls of different VMs that may wait on libvirtd side by side. */
#define HV_CALL_THREADS 4u
/* At stop, how long running calls are given before they are abandoned. */
#define HV_CALLS_STOP_WAIT_MS 500u
#define MAX_STRINGS (8 + 2 * HV_MAX_DISKS + 2 * HV_MAX_NICS)

struct hv_call_args {
	struct hv_vm_spec spec;
	struct hv_disk disks[HV_MAX_DISKS];
	struct hv_nic nics[HV_MAX_NICS];
	char *mkdir_dir;                  /* made before the start (the console directory) */
	char *strings[MAX_STRINGS];       /* every copy above, freed with the call */
	size_t n_strings;
};

struct node_hv_calls {
	const struct hv_driver *drv;
	struct hv_conn *conn;
	struct util_workq *q;
	qb_loop_timer_handle watch_timer;
	bool stopping;                    /* node_hv_calls_stop runs: answers are not acted on */
	bool stalled;                     /* as last announced */
	bool hang_logged;                 /* hv_hang_limit_ms passed, said so */
	char why[400];
	uint64_t stalled_since_ms;
};

static const char *kind_name(enum node_hv_kind k)
{
	switch (k) {
	case NODE_HV_LIST: return "listing the guests";
	case NODE_HV_START: return "starting";
	case NODE_HV_SHUTDOWN: return "shutting down";
	case NODE_HV_DESTROY: return "destroying";
	case NODE_HV_RESUME: return "resuming";
	case NODE_HV_UNDEFINE: return "undefining";
	case NODE_HV_JOB_ACTIVE: return "reading the job of";
	case NODE_HV_ABORT_JOB: return "aborting the job of";
	case NODE_HV_MIGRATE_ABORT: return "aborting the migration of";
	case NODE_HV_MIGRATE_PROGRESS: return "reading the migration progress of";
	}
	return "calling";
}

static void start_work(struct node_hv_call *call, const struct hv_driver *drv, struct hv_conn *c)
{
	struct hv_call_args *a = call->args;
	int rc;

	if (a->mkdir_dir && mkdir(a->mkdir_dir, 0750) < 0 && errno != EEXIST)
		qb_log(LOG_WARNING, "cannot create the directory %s: %s", a->mkdir_dir,
		       strerror(errno));
	rc = drv->define(c, &a->spec);
	/* A stale definition of an earlier VM of that name (another uuid). */
	if (rc == -EEXIST && drv->undefine(c, call->name) == 0)
		rc = drv->define(c, &a->spec);
	if (rc == 0)
		rc = drv->start(c, call->name, 0);
	if (rc == -EEXIST)
		rc = 0;         /* running already: adopted */
	call->rc = rc;
}

/* A resume's goal is a running guest: one that runs already (libvirt's end
 * of an incoming migration may resume it under us, or an earlier call did)
 * is a success, not "domain is already running". */
static void resume_work(struct node_hv_call *call, const struct hv_driver *drv, struct hv_conn *c)
{
	enum hv_vm_state st;

	if ((call->rc = drv->resume(c, call->name)) == 0)
		return;
	snprintf(call->error, sizeof(call->error), "%s", drv->last_error(c));
	if (drv->state(c, call->name, &st) == 0 && st == HV_STATE_RUNNING) {
		call->rc = 0;
		call->error[0] = '\0';
	}
}

static void work(void *arg)
{
	struct node_hv_call *call = arg;
	const struct hv_driver *drv = call->drv;
	struct hv_conn *c = call->conn;
	const char *n = call->name;

	switch (call->kind) {
	case NODE_HV_LIST:
		call->rc = drv->list(c, &call->vms, &call->n_vms);
		break;
	case NODE_HV_START:
		start_work(call, drv, c);
		break;
	case NODE_HV_SHUTDOWN:
		call->rc = drv->shutdown(c, n);
		break;
	case NODE_HV_DESTROY:
		call->rc = drv->destroy(c, n);
		break;
	case NODE_HV_RESUME:
		resume_work(call, drv, c);
		break;
	case NODE_HV_UNDEFINE:
		call->rc = drv->undefine(c, n);
		break;
	case NODE_HV_JOB_ACTIVE:
		call->rc = drv->job_active(c, n, &call->job_active);
		break;
	case NODE_HV_ABORT_JOB:
		if ((call->rc = drv->job_active(c, n, &call->job_active)) == 0 && call->job_active)
			call->rc = drv->migrate_abort(c, n);
		break;
	case NODE_HV_MIGRATE_ABORT:
		call->rc = drv->migrate_abort(c, n);
		break;
	case NODE_HV_MIGRATE_PROGRESS:
		call->rc = drv->migrate_progress(c, n, &call->progress);
		break;
	}
	if (call->rc < 0 && !call->error[0])
		snprintf(call->error, sizeof(call->error), "%s", drv->last_error(c));
	if (call->rc < 0 && !call->error[0])
		snprintf(call->error, sizeof(call->error), "%s", strerror(-call->rc));
}

static void free_call(struct node_hv_call *call)
{
	if (call->args) {
		for (size_t i = 0; i < call->args->n_strings; i++)
			free(call->args->strings[i]);
		free(call->args);
	}
	free(call->vms);
	free(call);
}

static void done(void *arg, int rc)
{
	struct node_hv_call *call = arg;
	struct node_daemon *d = call->d;

	/* At stop, a call that finished is not acted on either: the cluster
	 * link is still up, and a pass would propose from it. */
	if (rc < 0 || (d->hv && d->hv->stopping)) {
		call->rc = -ECANCELED;
		snprintf(call->error, sizeof(call->error), "vireod is stopping");
	}
	node_busy_begin(d, "a hypervisor call's answer");
	call->done(d, call);
	node_busy_end(d);
	free_call(call);
}

static struct node_hv_call *new_call(struct node_daemon *d, enum node_hv_kind kind,
				     const char *name, node_hv_done_fn fn, void *ctx)
{
	struct node_hv_call *call = calloc(1, sizeof(*call));

	if (!call)
		return NULL;
	call->kind = kind;
	snprintf(call->name, sizeof(call->name), "%s", name ? name : "");
	call->d = d;
	if (d->hv) {
		call->drv = d->hv->drv;
		call->conn = d->hv->conn;
	}
	call->done = fn;
	call->ctx = ctx;
	return call;
}

static int submit(struct node_daemon *d, struct node_hv_call *call)
{
	struct node_hv_calls *h = d->hv;
	const char *key;
	int rc;

	if (!h) {
		free_call(call);
		return -ESHUTDOWN;
	}
	/* A progress query may run beside the VM's other calls, and does not
	 * make it busy: the migration's steps must not wait for it. */
	key = call->kind == NODE_HV_MIGRATE_PROGRESS ? "" : call->name;
	if ((rc = util_workq_submit(h->q, key, kind_name(call->kind), work, done, call)) < 0)
		free_call(call);
	return rc;
}

int node_hv_submit(struct node_daemon *d, enum node_hv_kind kind, const char *name,
		   node_hv_done_fn fn, void *ctx)
{
	struct node_hv_call *call;

	if (kind == NODE_HV_START || (kind != NODE_HV_LIST && !name))
		return -EINVAL;
	if (!(call = new_call(d, kind, name, fn, ctx)))
		return -ENOMEM;
	return submit(d, call);
}

/* A copy of s that lives as long as the call (NULL stays NULL). */
static int keep(struct hv_call_args *a, const char *s, const char **out)
{
	*out = NULL;
	if (!s)
		return 0;
	if (a->n_strings >= MAX_STRINGS || !(a->strings[a->n_strings] = strdup(s)))
		return -ENOMEM;
	*out = a->strings[a->n_strings++];
	return 0;
}

static int copy_spec(struct hv_call_args *a, const struct hv_vm_spec *s)
{
	int rc = 0;

	if (s->n_disks > HV_MAX_DISKS || s->n_nics > HV_MAX_NICS)
		return -EINVAL;
	a->spec = *s;
	a->spec.disks = a->disks;
	a->spec.nics = a->nics;
	for (size_t i = 0; i < s->n_disks && rc == 0; i++) {
		a->disks[i] = s->disks[i];
		rc = keep(a, s->disks[i].path, &a->disks[i].path);
	}
	for (size_t i = 0; i < s->n_nics && rc == 0; i++) {
		if ((rc = keep(a, s->nics[i].bridge, &a->nics[i].bridge)) == 0)
			rc = keep(a, s->nics[i].mac, &a->nics[i].mac);
	}
	if (rc == 0)
		rc = keep(a, s->name, &a->spec.name);
	if (rc == 0)
		rc = keep(a, s->uuid, &a->spec.uuid);
	if (rc == 0)
		rc = keep(a, s->kernel, &a->spec.kernel);
	if (rc == 0)
		rc = keep(a, s->initrd, &a->spec.initrd);
	if (rc == 0)
		rc = keep(a, s->cmdline, &a->spec.cmdline);
	if (rc == 0)
		rc = keep(a, s->serial_log, &a->spec.serial_log);
	return rc;
}

int node_hv_start(struct node_daemon *d, const struct hv_vm_spec *spec, node_hv_done_fn fn,
		  void *ctx)
{
	struct node_hv_call *call = new_call(d, NODE_HV_START, spec->name, fn, ctx);
	const char *dir;
	int rc;

	if (!call || !(call->args = calloc(1, sizeof(*call->args)))) {
		if (call)
			free_call(call);
		return -ENOMEM;
	}
	if ((rc = copy_spec(call->args, spec)) < 0 ||
	    (rc = keep(call->args, d->cfg.console_dir, &dir)) < 0) {
		free_call(call);
		return rc;
	}
	call->args->mkdir_dir = (char *)dir;
	return submit(d, call);
}

bool node_hv_busy(const struct node_daemon *d, const char *name)
{
	return d->hv && util_workq_busy(d->hv->q, name);
}

bool node_hv_responsive(const struct node_daemon *d, const char **why)
{
	*why = d->hv && d->hv->stalled ? d->hv->why : "";
	return !d->hv || !d->hv->stalled;
}

/* Whether the hypervisor answers now; why says what it waits on if not. */
static bool answers(struct node_daemon *d, char *why, size_t len)
{
	struct node_hv_calls *h = d->hv;
	struct util_workq_stats st;

	util_workq_stats(h->q, &st);
	/* No running time in the sentence: it is announced to the cluster
	 * whenever it changes, and must not change every second. */
	if (st.oldest_ms > VIREO_HV_STALL_MS(d->token_ms)) {
		snprintf(why, len, "libvirt has not finished %s%s%s within %" PRIu64 " ms",
			 st.oldest_what, st.oldest_key[0] ? " VM " : "", st.oldest_key,
			 (uint64_t)VIREO_HV_STALL_MS(d->token_ms));
		return false;
	}
	if (!h->drv->connected(h->conn)) {
		snprintf(why, len, "vireod is not connected to the libvirt daemon at %s",
			 d->cfg.libvirt_uri);
		return false;
	}
	return true;
}

static void announce(struct node_daemon *d, bool stalled, const char *why)
{
	if (d->engine && cluster_engine_set_hypervisor(d->engine, stalled, why) < 0)
		qb_log(LOG_ERR, "out of memory recording this host's hypervisor health");
}

/* Every VIREO_HV_STALL_PROBE_MS: a call older than VIREO_HV_STALL_MS or no
 * connection makes the hypervisor stalled, announced once; its end too. */
static void watch_fired(void *data)
{
	struct node_daemon *d = data;
	struct node_hv_calls *h = d->hv;
	uint64_t now = node_now_mono_ms();
	char why[sizeof(h->why)];
	bool ok = answers(d, why, sizeof(why));

	if (!ok && !h->stalled) {
		h->stalled = true;
		h->hang_logged = false;
		h->stalled_since_ms = now;
		qb_log(LOG_WARNING, "this host's hypervisor does not answer: %s; its guests run on, "
		       "the cluster places nothing new here until it answers", why);
	} else if (ok && h->stalled) {
		h->stalled = false;
		qb_log(LOG_NOTICE, "this host's hypervisor answers again after %" PRIu64 " ms",
		       now - h->stalled_since_ms);
	} else if (!ok && d->cfg.hv_hang_limit_ms && !h->hang_logged &&
		   now - h->stalled_since_ms >= d->cfg.hv_hang_limit_ms) {
		h->hang_logged = true;
		qb_log(LOG_ERR, "this host's hypervisor has not answered for %" PRIu64 " s (%s): its "
		       "guests run on unmanaged; restart libvirtd, or evacuate or fence this host "
		       "(doc/failover.md, \"a hung hypervisor\")", (now - h->stalled_since_ms) / 1000u,
		       why);
	}
	if (strcmp(h->why, ok ? "" : why) != 0) {
		snprintf(h->why, sizeof(h->why), "%s", ok ? "" : why);
		announce(d, h->stalled, h->why);
	}
	qb_loop_timer_add(d->loop, QB_LOOP_HIGH, VIREO_HV_STALL_PROBE_MS(d->token_ms) * NS_PER_MS,
			  d, watch_fired, &h->watch_timer);
}

int node_hv_calls_start(struct node_daemon *d, const struct hv_driver *drv, struct hv_conn *c)
{
	struct util_workq_params p = { .loop = d->loop, .name = "libvirt", .threads = HV_CALL_THREADS };
	struct node_hv_calls *h = calloc(1, sizeof(*h));
	int rc;

	if (!h)
		return -ENOMEM;
	h->drv = drv;
	h->conn = c;
	if ((rc = util_workq_new(&p, &h->q)) < 0) {
		free(h);
		return rc;
	}
	d->hv = h;
	qb_loop_timer_add(d->loop, QB_LOOP_HIGH, VIREO_HV_STALL_PROBE_MS(d->token_ms) * NS_PER_MS,
			  d, watch_fired, &h->watch_timer);
	return 0;
}

bool node_hv_calls_stop(struct node_daemon *d)
{
	struct node_hv_calls *h = d->hv;
	bool abandoned;

	if (!h)
		return false;
	qb_loop_timer_del(d->loop, h->watch_timer);
	h->stopping = true;
	abandoned = util_workq_free(h->q, HV_CALLS_STOP_WAIT_MS);
	d->hv = NULL;
	free(h);
	return abandoned;
}
