/* The replicated state machine, independent of corosync.
 *
 * corosync.c feeds it what CPG and votequorum report (messages in agreed
 * order, membership changes, quorum); it answers with messages to multicast
 * through the transport it was given. Unit tests drive several engines over
 * an in-memory transport that delivers in one total order.
 *
 * Sync: on every membership change (and when quorum is gained, and when a
 * digest mismatch is reported) all members start a round: each multicasts a
 * SyncHello; once a hello from every member has been delivered, all of them
 * pick the same winner (cluster_sync_choose); if any digest differs, the
 * winner multicasts its state in chunks and the others adopt it. Operations
 * delivered during a round are queued and applied by everybody at the same
 * point, when the round ends, so the states stay identical. */
#ifndef VIREO_CLUSTER_ENGINE_H
#define VIREO_CLUSTER_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "cluster/state.h"

#define CLUSTER_MAX_MEMBERS 64
#define CLUSTER_SYNC_CHUNK_BYTES (256u * 1024u)

struct cluster_engine;

struct cluster_engine_env {
	void *ctx;
	/* Multicast in agreed order to the group. 0, or -EAGAIN when the
	 * transport applies flow control (the engine retries on tick). */
	int (*mcast)(void *ctx, const uint8_t *buf, size_t len);
	/* Wall clock in ms; stamped on the operations this node proposes. */
	int64_t (*now_ms)(void *ctx);
	/* An operation was applied (rc 0) or rejected (rc < 0) by apply(). */
	void (*applied)(void *ctx, const Vireo__Op *op, int rc);
	/* The state changed (applied ops or an adopted snapshot): persist it. */
	void (*state_changed)(void *ctx);
	/* A sync round ended. */
	void (*synced)(void *ctx);
	/* Monotonic clock in ms, for the manager's fence deadlines; NULL: the
	 * last tick's time. */
	uint64_t (*mono_ms)(void *ctx);
	/* Whether every disk lease of vm is free: 1, 0 (held), or -EAGAIN
	 * while the host looks (it calls cluster_engine_kick when it knows).
	 * NULL: never proven, so fences are never confirmed. */
	int (*leases_free)(void *ctx, const Vireo__Vm *vm);
	/* Snapshot chunk size; 0 for CLUSTER_SYNC_CHUNK_BYTES (tests make it small). */
	size_t chunk_bytes;
};

/* What this node is, announced to the cluster after it joins. */
struct cluster_local_facts {
	uint32_t id;
	const char *name;
	const char *address;
	uint32_t cpus;
	uint64_t memory_mib;
	const char *version;
	const char *cluster_name;   /* from corosync; the manager records it */
	/* Health that changes while vireod runs (cluster_engine_set_health):
	 * the manager places VMs only on nodes whose pool is usable and whose
	 * acceleration is known. */
	bool pool_ok;
	const char *pool_message;   /* why the pool is not usable, "" when it is */
	const char *accel;          /* "kvm", "tcg", or "" until resolved */
	const char *pool_id;        /* of the pool mounted here, "" when unknown */
	bool hv_stalled;            /* the hypervisor does not answer (cluster_engine_set_hypervisor) */
	const char *hv_message;     /* what it has not answered, "" when it answers */
};

/* Takes ownership of state. */
int cluster_engine_new(const struct cluster_local_facts *facts, cluster_state *state,
		       const struct cluster_engine_env *env, struct cluster_engine **out);
void cluster_engine_free(struct cluster_engine *e);

/* Transport events, in the order the transport delivers them. */
void cluster_engine_deliver(struct cluster_engine *e, uint32_t sender, const uint8_t *buf, size_t len);
void cluster_engine_membership(struct cluster_engine *e, const uint32_t *members, size_t n);
void cluster_engine_quorum(struct cluster_engine *e, bool quorate);
/* The transport is gone (corosync died): not a member of anything. */
void cluster_engine_disconnected(struct cluster_engine *e);

/* Periodic work: retry flow-controlled sends, report the digest, notice a
 * stuck sync round. now_ms is a monotonic clock. */
void cluster_engine_tick(struct cluster_engine *e, uint64_t now_ms, uint32_t token_ms);

/* Proposes an operation (its body set by the caller; origin, request id and
 * time are filled in here). Returns 0 and the request id, or -EPERM when
 * this node is not in the quorate partition, -ENOTCONN when it has no
 * cluster connection, -ENOMEM. The result comes through env->applied. */
int cluster_engine_propose(struct cluster_engine *e, Vireo__Op *op, uint64_t *request_id);

/* This node's pool check or acceleration changed: announce it (strings
 * are copied). 0 or -ENOMEM. */
int cluster_engine_set_health(struct cluster_engine *e, bool pool_ok, const char *pool_message,
			      const char *pool_id, const char *accel);

/* This host's hypervisor stopped answering (stalled true, message saying
 * what it waits on) or answers again: announce it. 0 or -ENOMEM. */
int cluster_engine_set_hypervisor(struct cluster_engine *e, bool stalled, const char *message);

/* Something the manager waits for changed (a lease answer): run duties. */
void cluster_engine_kick(struct cluster_engine *e);

/* How long this node must not act on the state (start guests, step
 * migrations): after it did not run for longer than a token (frozen,
 * stalled) it may hold a membership the others have long left, and corosync
 * takes up to VIREO_DETECTION_MS to tell it. 0 when it may act. */
uint64_t cluster_engine_stall_hold_ms(struct cluster_engine *e);

/* Read-only views. */
const cluster_state *cluster_engine_state(const struct cluster_engine *e);
bool cluster_engine_quorate(const struct cluster_engine *e);
bool cluster_engine_syncing(const struct cluster_engine *e);
bool cluster_engine_connected(const struct cluster_engine *e);
uint32_t cluster_engine_manager(const struct cluster_engine *e);
uint32_t cluster_engine_local_id(const struct cluster_engine *e);
size_t cluster_engine_members(const struct cluster_engine *e, const uint32_t **members);
const struct cluster_digest *cluster_engine_digest(const struct cluster_engine *e);
/* What a peer last reported; false when nothing is known. */
bool cluster_engine_peer_digest(const struct cluster_engine *e, uint32_t node, uint64_t *version,
				struct cluster_digest *digest);
size_t cluster_engine_send_backlog(const struct cluster_engine *e);

#endif
