/* vireod's parts and how they are wired into the one libqb main loop. */
#ifndef VIREO_NODE_DAEMON_H
#define VIREO_NODE_DAEMON_H

#include <stdbool.h>
#include <stdint.h>
#include <qb/qbloop.h>

#include "cluster/corosync.h"
#include "cluster/engine.h"
#include "node/config.h"
#include "node/ipc_server.h"

struct store;
struct node_pool_watch;
struct node_vms;
struct node_vm_waiter;
struct node_change_waiter;
struct node_migrations;
struct node_leases;
struct node_fence;
struct node_stall;
struct node_hv_calls;
struct util_workq;
struct hv_driver;
struct hv_conn;
struct hv_vm_info;
struct hv_event;

/* A client waiting until the operations it proposed have been applied. */
struct node_pending {
	struct node_pending *next;
	struct node_ipc_call *call;
	Vireo__Request__BodyCase kind;
	uint64_t first_request_id;   /* the request's own ops: first..last */
	uint64_t last_request_id;    /* done when this own op is delivered */
	uint32_t count;
	uint64_t started_us;
	uint64_t first_version;
	uint64_t deadline_ms;
	int rc;                      /* first rejection, or 0 */
};

struct node_daemon {
	struct node_config cfg;
	qb_loop_t *loop;
	cluster_state *loaded_state;         /* until the engine takes it */
	struct cluster_corosync *coro;
	struct cluster_engine *engine;
	uint32_t token_ms;
	uint32_t reconnect_ms;
	uint32_t reconnects;
	qb_loop_timer_handle reconnect_timer;
	qb_loop_timer_handle tick_timer;
	qb_loop_timer_handle persist_timer;
	bool persist_timer_armed;            /* a change waits VIREO_PERSIST_DELAY_MS */
	bool persist_pending;                /* a change not written (or its write failed) */
	bool persist_writing;                /* a write runs in persist_q */
	bool persist_again;                  /* a change came during the write */
	struct util_workq *persist_q;        /* writes and fsyncs the state file */
	struct node_ipc_server *ipc;
	struct node_pending *pending;
	struct node_change_waiter *change_waiters;   /* group_requests.c: groups, node modes */
	uint32_t cpus;
	uint64_t memory_mib;
	/* VMs and storage */
	struct store *store;                 /* images in cfg.pool_dir (sharedstore/images.h) */
	struct node_pool_watch *pool;        /* pool_watch.c */
	struct util_workq *pool_io;          /* pool_io.c: the pool's I/O in worker threads */
	bool pool_io_abandoned;              /* a job still ran at stop: keep the store */
	struct node_vms *vms;                /* vm_local.c: the local resource manager */
	struct node_vm_waiter *vm_waiters;   /* vm_requests.c: clients waiting for a VM */
	struct node_migrations *migrations;  /* vm_migrate.c */
	struct node_leases *leases;          /* lease_watch.c: the manager's lease checks */
	struct node_fence *fence;            /* fence.c: self-fencing, the watchdog */
	struct node_stall *stall;            /* loop_stall.c: how long handlers hold the loop */
	struct node_hv_calls *hv;            /* hv_calls.c: hypervisor calls in worker threads */
};

/* loop_stall.c: brackets a handler that does real work, so that the time
 * it holds the main loop is measured and a long one logged with its name
 * (a string that lives as long as the daemon). Brackets nest; the
 * outermost names the stall. */
int node_stall_start(struct node_daemon *d);
void node_stall_stop(struct node_daemon *d);
void node_busy_begin(struct node_daemon *d, const char *what);
void node_busy_end(struct node_daemon *d);
/* The longest stall since start, and what caused it. */
uint64_t node_stall_max_ms(const struct node_daemon *d, const char **cause);

uint64_t node_now_mono_ms(void);
uint64_t node_now_mono_us(void);
int64_t node_now_wall_ms(void);

/* cluster_link.c: corosync connection, engine, ticks, persistence. */
int node_cluster_start(struct node_daemon *d);
void node_cluster_stop(struct node_daemon *d);
int node_persist_now(struct node_daemon *d);

/* requests.c: what each IPC request does. */
#define NODE_NOT_QUORATE_MSG "this node is not in the quorate partition; it changes nothing " \
	"until it rejoins the majority (see vireo status)"
#define NODE_NOT_CONNECTED_MSG "vireod on this node is not connected to corosync; it changes " \
	"nothing until corosync is back (see vireo status)"
#define NODE_NEVER_CONNECTED_MSG "vireod on this node has not reached corosync since it started; " \
	"check that corosync runs here (corosync-quorumtool -s) and see vireod's log"
/* Whether this node may propose now; if not, answers the call (NOT_QUORATE). */
bool node_may_propose(struct node_daemon *d, struct node_ipc_call *call);
void node_handle_request(void *ctx, struct node_ipc_call *call, const Vireo__Request *req);
void node_requests_applied(struct node_daemon *d, const Vireo__Op *op, int rc);
void node_requests_expire(struct node_daemon *d, bool all, const char *why);

/* pool_watch.c: checks the shared pool at start and every
 * VIREO_POOL_CHECK_MS without blocking the loop. */
int node_pool_watch_start(struct node_daemon *d);
void node_pool_watch_stop(struct node_daemon *d);
/* The last check's verdict; why is "" when ok (and before the first check:
 * "not checked yet", not ok). */
bool node_pool_ok(const struct node_daemon *d, const char **why);
/* The id of the pool mounted here, "" before a check read it. */
const char *node_pool_id(const struct node_daemon *d);

/* vm_local.c: the local resource manager. Runs the VMs the cluster state
 * gives this node through the hypervisor driver and reports what happened. */
int node_vms_start(struct node_daemon *d);
void node_vms_stop(struct node_daemon *d);
/* A sync round ended (a snapshot may have been adopted): reconcile soon. */
void node_vms_state_changed(struct node_daemon *d);
/* Every applied (or rejected) op: a VM op means reconcile soon; this
 * node's reports in flight complete. */
void node_vms_applied(struct node_daemon *d, const Vireo__Op *op, int rc);
/* "kvm" or "tcg" once resolved, "" before. */
const char *node_vms_accel(const struct node_daemon *d);
/* The hypervisor the local resource manager uses (vm_migrate.c shares it). */
const struct hv_driver *node_vms_driver(const struct node_daemon *d);
struct hv_conn *node_vms_conn(const struct node_daemon *d);
/* A pass within ms (sooner if one is due). */
void node_vms_pass_soon(struct node_daemon *d, uint64_t ms);
/* A hypervisor call on name answered (vm_migrate.c's too): a list taken
 * before is not trusted for name, and a pass comes soon. */
void node_vms_answered(struct node_daemon *d, const char *name);

/* vm_migrate.c: this node's part in migrations (source or target). */
int node_migrations_start(struct node_daemon *d);
void node_migrations_stop(struct node_daemon *d);
/* From a pass: one VM in state migrating, with its guest here (or NULL). */
void node_migration_step(struct node_daemon *d, const Vireo__Vm *vm, const struct hv_vm_info *dom);
/* After a pass: forgets migrations that are over. */
void node_migrations_sweep(struct node_daemon *d, const cluster_state *st);
void node_migrations_hv_event(struct node_daemon *d, const struct hv_event *ev);
/* libvirt still works on name as the source of a migration from here: its
 * guest here is libvirt's to remove, even once the cluster moved the VM. */
bool node_migration_source_busy(const struct node_daemon *d, const char *name);
void node_migrations_applied(struct node_daemon *d, const Vireo__Op *op, int rc);
void node_migrations_arm_progress(struct node_daemon *d);

/* lease_watch.c: whether the disk leases of every disk of vm are free (1),
 * held (0), or not known yet (-EAGAIN: a check starts, and the engine is
 * kicked when it answers). */
int node_leases_start(struct node_daemon *d);
void node_leases_stop(struct node_daemon *d);
int node_leases_free(struct node_daemon *d, const Vireo__Vm *vm);

/* cluster_link.c: the pool check or the acceleration changed; announce. */
void node_health_changed(struct node_daemon *d);

/* fence.c: self-fencing and feeding vireo-watchdog (doc/failover.md).
 * Start after node_vms_start; stop before node_vms_stop and
 * node_cluster_stop (the last feed reads the state). */
int node_fence_start(struct node_daemon *d);
void node_fence_stop(struct node_daemon *d);
/* votequorum changed this node's quorum (cluster_link.c). */
void node_fence_quorum(struct node_daemon *d, bool quorate);
/* SIGTERM: tells the cluster this node stops cleanly (NodeLeaving), then
 * stops the main loop after a short flush; at once when not quorate. */
void node_fence_shutdown(struct node_daemon *d);

/* vm_requests.c: vireo vm ... requests. */
void node_vm_request(struct node_daemon *d, struct node_ipc_call *call, const Vireo__Request *req);
/* Every applied (or rejected) op, whoever proposed it: completes waiters. */
void node_vm_requests_applied(struct node_daemon *d, const Vireo__Op *op, int rc);
void node_vm_requests_expire(struct node_daemon *d, bool all, const char *why);

#endif
