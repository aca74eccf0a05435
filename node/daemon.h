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
	bool persist_pending;
	struct node_ipc_server *ipc;
	struct node_pending *pending;
	uint32_t cpus;
	uint64_t memory_mib;
};

uint64_t node_now_mono_ms(void);
uint64_t node_now_mono_us(void);
int64_t node_now_wall_ms(void);

/* cluster_link.c: corosync connection, engine, ticks, persistence. */
int node_cluster_start(struct node_daemon *d);
void node_cluster_stop(struct node_daemon *d);
int node_persist_now(struct node_daemon *d);

/* requests.c: what each IPC request does. */
void node_handle_request(void *ctx, struct node_ipc_call *call, const Vireo__Request *req);
void node_requests_applied(struct node_daemon *d, const Vireo__Op *op, int rc);
void node_requests_expire(struct node_daemon *d, bool all, const char *why);

#endif
