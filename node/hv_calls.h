/* vireod's hypervisor calls, made by worker threads so that a libvirt
 * daemon that stalls (slow storage, a big domain job, SIGSTOP) never holds
 * the main loop: the watchdog is fed, the cluster answered, while the call
 * waits. Each call completes back on the loop with its result.
 *
 * Calls that name a VM run one after another, in the order submitted, and
 * the VM is busy (node_hv_busy) from submit until its done() has run: the
 * local resource manager and the migrations take no other step for a busy
 * VM. Calls of different VMs run side by side.
 *
 * A call that runs longer than VIREO_HV_STALL_MS makes the hypervisor
 * "stalled": announced to the cluster (vireo node list, an event), which
 * then places and migrates nothing to this host; its guests run on. Not
 * being connected to libvirtd counts the same.
 *
 * drv->migrate is not among them: it only starts the migration's own
 * thread (hypervisor/libvirt_migrate.c) and returns. */
#ifndef VIREO_NODE_HV_CALLS_H
#define VIREO_NODE_HV_CALLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hypervisor/hv.h"

struct node_daemon;

enum node_hv_kind {
	NODE_HV_LIST,
	NODE_HV_START,          /* define from the spec (replacing a stale one), then start */
	NODE_HV_SHUTDOWN,       /* ACPI power-off request; returns at once */
	NODE_HV_DESTROY,
	NODE_HV_RESUME,
	NODE_HV_UNDEFINE,
	NODE_HV_JOB_ACTIVE,     /* result in job_active */
	NODE_HV_ABORT_JOB,      /* job_active, then migrate_abort if one runs */
	NODE_HV_MIGRATE_ABORT,
	NODE_HV_MIGRATE_PROGRESS,
};

struct node_hv_call;
typedef void (*node_hv_done_fn)(struct node_daemon *d, const struct node_hv_call *call);

struct node_hv_call {
	enum node_hv_kind kind;
	char name[HV_NAME_MAX + 1];  /* the VM, "" for LIST */
	void *ctx;                   /* the submitter's */
	/* Results, valid in done(). rc -ECANCELED: vireod stops (the call may
	 * have run; nothing is to be done with it). */
	int rc;
	char error[640];             /* the driver's sentence when rc < 0 */
	struct hv_vm_info *vms;      /* LIST; freed after done() */
	size_t n_vms;
	bool job_active;             /* JOB_ACTIVE, ABORT_JOB */
	struct hv_migrate_progress progress;
	/* Private. */
	struct node_daemon *d;
	const struct hv_driver *drv;
	struct hv_conn *conn;
	node_hv_done_fn done;
	struct hv_call_args *args;
};

/* The calls go to drv and c, which must outlive node_hv_calls_stop. */
int node_hv_calls_start(struct node_daemon *d, const struct hv_driver *drv, struct hv_conn *c);
/* Pending calls are done with -ECANCELED; running ones are given a moment,
 * then abandoned (the process is ending): true then, and the connection
 * must not be freed, since they still use it. */
bool node_hv_calls_stop(struct node_daemon *d);

/* 0 (done() runs later, on the loop), or -ENOMEM / -ESHUTDOWN / -EINVAL
 * (done() is not called). name may be NULL for LIST. */
int node_hv_submit(struct node_daemon *d, enum node_hv_kind kind, const char *name,
		   node_hv_done_fn done, void *ctx);
/* NODE_HV_START: the spec (and every string it points to) is copied. */
int node_hv_start(struct node_daemon *d, const struct hv_vm_spec *spec, node_hv_done_fn done,
		  void *ctx);

/* Whether a call on name is queued, running, or its done() not yet run. */
bool node_hv_busy(const struct node_daemon *d, const char *name);
/* Whether the hypervisor answers (connected, no call older than
 * VIREO_HV_STALL_MS); why says what it waits on when not. */
bool node_hv_responsive(const struct node_daemon *d, const char **why);

#endif
