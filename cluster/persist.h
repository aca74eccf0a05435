/* The state on disk: one file, replaced atomically, so a whole-cluster
 * stop and start loses nothing. */
#ifndef VIREO_CLUSTER_PERSIST_H
#define VIREO_CLUSTER_PERSIST_H

#include "cluster/state.h"

#define CLUSTER_STATE_FILE "cluster-state.pb"

/* Writes dir/cluster-state.pb through a temporary file, fsync and rename.
 * Returns 0 or a negative errno (-ENOSPC on a full disk; the old file is
 * then left intact). */
int cluster_persist_save(const char *dir, const cluster_state *st);
/* The same with the state packed already (cluster_state_pack): the part
 * that waits on the disk, which vireod runs in a worker. */
int cluster_persist_write(const char *dir, const uint8_t *buf, size_t len);

/* Loads it: 0, -ENOENT (no state yet), -EINVAL (the file is not a state
 * snapshot), or another negative errno. */
int cluster_persist_load(const char *dir, cluster_state **out);

#endif
