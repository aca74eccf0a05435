/* Sync decisions after a membership change: pure functions over the
 * (version, digest, authoritative) every member announced. */
#ifndef VIREO_CLUSTER_SYNC_H
#define VIREO_CLUSTER_SYNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "cluster/state.h"

struct cluster_sync_hello {
	uint32_t node;
	uint64_t version;
	struct cluster_digest digest;
	bool authoritative;
};

/* The member whose state everybody adopts: a member that held the quorate
 * partition's state beats one that did not (a minority's state never
 * overwrites the majority's); then the highest version; then the digest most
 * members hold (one diverged copy does not overwrite the others); then the
 * lowest node id, so every member picks the same one. Returns its index; n
 * must be > 0. */
size_t cluster_sync_choose(const struct cluster_sync_hello *hellos, size_t n);

/* True when some member's digest differs from the winner's. */
bool cluster_sync_needs_transfer(const struct cluster_sync_hello *hellos, size_t n, size_t winner);

/* The manager: lowest node id among the members, or 0 when there are none. */
uint32_t cluster_manager_elect(const uint32_t *members, size_t n);

#endif
