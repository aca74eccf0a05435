/* Inside the libvirt driver: the connection and what its parts share.
 *
 *   libvirt_conn.c     connect, close callback, reconnect with backoff,
 *                      lifecycle events, error reporting
 *   libvirt_domain.c   the VM operations and the driver table
 *   libvirt_migrate.c  migration (live or paused) in a worker thread
 *   accel.c            resolve_accel: the KVM probe guest
 *
 * Threads: the VM operations may be called from any thread (vireod calls
 * them from worker threads, so that a daemon that hangs holds a worker,
 * never the main loop). They reach the daemon through hv_lv_ref(), a
 * reference to the connection taken under c->lock; the loop thread alone
 * installs and tears down c->conn, runs the reconnects (whose blocking
 * open runs in a thread of its own), emits events and keeps the lists of
 * migrations and probes, which c->lock guards too. */
#ifndef VIREO_HYPERVISOR_LIBVIRT_INT_H
#define VIREO_HYPERVISOR_LIBVIRT_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <libvirt/libvirt.h>
#include <qb/qbloop.h>

#include "hypervisor/hv.h"
#include "hypervisor/libvirt_map.h"

#define HV_DEFAULT_URI "qemu:///system"
#define NS_PER_MS 1000000ull

struct hv_probe;
struct hv_migration;

struct hv_conn {
	qb_loop_t *loop;
	char *uri;
	uint32_t token_ms;
	struct hv_callbacks cb;

	pthread_mutex_t lock;           /* conn (for other threads), migrations */
	virConnectPtr conn;             /* NULL while disconnected; written on the loop */
	bool opening;                   /* a reconnect's open runs in its thread */
	int lifecycle_id;               /* -1: not registered */
	bool close_registered;
	bool lost_queued;               /* lost_job is queued on the loop */
	char lost_why[160];

	uint32_t reconnect_ms;
	unsigned int reconnects;
	qb_loop_timer_handle reconnect_timer;
	bool reconnect_armed;

	enum hv_accel accel;            /* what HV_ACCEL_AUTO specs get */
	struct hv_probe *probe;
	struct hv_migration *migrations;
};
const char *hv_lv_last_failure(const struct hv_conn *c);

/* This thread's last libvirt error, copied (one line) and reset. */
void hv_lv_last_error(int *code, int *int1, char *detail, size_t len);
/* Reports the last libvirt error of this thread for op on subject (a VM
 * name, a path or the URI), maps it to -errno, notices a dead connection. */
int hv_lv_fail(struct hv_conn *c, enum hv_op op, const char *subject);
/* The connection is dead (seen by a call): tear it down from the loop. */
void hv_lv_conn_lost(struct hv_conn *c, const char *why);
/* A reference to the connection (virConnectClose() it when done), or NULL
 * while disconnected. Any thread. */
virConnectPtr hv_lv_ref(struct hv_conn *c);
/* 0 with *dom, or the error (logged). -ENOTCONN while disconnected. Any thread. */
int hv_lv_lookup(struct hv_conn *c, const char *name, enum hv_op op, virDomainPtr *dom);
void hv_lv_emit(struct hv_conn *c, const struct hv_event *ev);

int hv_lv_connect(const struct hv_connect_params *p, struct hv_conn **out);
void hv_lv_disconnect(struct hv_conn *c);
bool hv_lv_connected(const struct hv_conn *c);

int hv_lv_migrate(struct hv_conn *c, const char *name, const struct hv_migrate_params *p);
int hv_lv_migrate_progress(struct hv_conn *c, const char *name, struct hv_migrate_progress *out);
int hv_lv_job_active(struct hv_conn *c, const char *name, bool *active);
int hv_lv_migrate_abort(struct hv_conn *c, const char *name);
/* Aborts and joins every migration (disconnect). */
void hv_lv_migrations_stop(struct hv_conn *c);

int hv_lv_resolve_accel(struct hv_conn *c, enum hv_accel want, const struct hv_accel_probe *probe,
			hv_accel_done_fn done, void *ctx);
enum hv_accel hv_lv_accel(const struct hv_conn *c);
void hv_lv_probe_stop(struct hv_conn *c);

#endif
