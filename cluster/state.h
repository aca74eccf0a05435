/* The replicated cluster state and the one function that changes it.
 *
 * The state is the protobuf message Vireo__ClusterState itself, so a
 * snapshot, the persisted file and the digest are all its packed bytes.
 * Everything here is pure: no clock, no I/O, no randomness. */
#ifndef VIREO_CLUSTER_STATE_H
#define VIREO_CLUSTER_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "proto/vireo.pb-c.h"

#define CLUSTER_DIGEST_LEN 32   /* SHA-256 */
#define CLUSTER_EVENT_LOG_MAX 256
#define CLUSTER_NAME_MAX 64
#define CLUSTER_TEXT_MAX 512

typedef Vireo__ClusterState cluster_state;

struct cluster_digest {
	uint8_t bytes[CLUSTER_DIGEST_LEN];
};

cluster_state *cluster_state_new(const char *cluster_name);
void cluster_state_free(cluster_state *st);

/* Packs into a malloc'd buffer; returns 0 or -ENOMEM. */
int cluster_state_pack(const cluster_state *st, uint8_t **buf, size_t *len);
/* Unpacks a snapshot; returns 0, -EINVAL (malformed) or -ENOMEM. */
int cluster_state_unpack(const uint8_t *buf, size_t len, cluster_state **out);
int cluster_state_copy(const cluster_state *st, cluster_state **out);

int cluster_state_digest(const cluster_state *st, struct cluster_digest *d);
/* 64 hex characters plus NUL. */
void cluster_digest_hex(const struct cluster_digest *d, char out[2 * CLUSTER_DIGEST_LEN + 1]);

Vireo__NodeInfo *cluster_state_node(const cluster_state *st, uint32_t id);
Vireo__NodeInfo *cluster_state_node_by_name(const cluster_state *st, const char *name);

/* The one rule for names in the cluster (nodes, the cluster, VMs, images):
 * 1 to CLUSTER_NAME_MAX letters, digits, '-', '_' or '.'. */
bool cluster_name_valid(const char *s);

/* Applies one operation. Returns 0 when the state changed (version + 1),
 * -EALREADY when it asks for what already holds (state untouched), -EINVAL
 * for an operation that is malformed or not valid in this state (state
 * untouched), -ENOMEM. Deterministic: the same state and op give the
 * same result on every member. */
int cluster_apply(cluster_state *st, const Vireo__Op *op);

/* Appends a line to the bounded event log (for apply() functions). */
int cluster_event_addf(cluster_state *st, int64_t time_ms, uint32_t node, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Human name of an op's kind, for logs. */
const char *cluster_op_name(const Vireo__Op *op);

#endif
