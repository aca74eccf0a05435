/* The corosync glue: CPG (agreed-order multicast and membership),
 * votequorum (may this partition act?) and cmap (token, node addresses).
 * Like corosync's own client APIs it exposes file descriptors and a
 * dispatch call, so node/ plugs it into the one libqb main loop. */
#ifndef VIREO_CLUSTER_COROSYNC_H
#define VIREO_CLUSTER_COROSYNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cluster_corosync;

struct cluster_corosync_callbacks {
	void *ctx;
	void (*deliver)(void *ctx, uint32_t nodeid, const uint8_t *buf, size_t len);
	void (*membership)(void *ctx, const uint32_t *members, size_t n);
	void (*quorum)(void *ctx, bool quorate);
};

#define CLUSTER_COROSYNC_FDS 2

/* Connects to the local corosync and joins the CPG group. Returns 0,
 * -ECONNREFUSED when corosync is not running, or another negative errno. */
int cluster_corosync_connect(const char *group, const struct cluster_corosync_callbacks *cb,
			     struct cluster_corosync **out);
void cluster_corosync_close(struct cluster_corosync *c);

/* The descriptors to poll for input (CPG, votequorum). */
void cluster_corosync_fds(const struct cluster_corosync *c, int fds[CLUSTER_COROSYNC_FDS]);
/* Dispatches what is pending on fd. 0, or -ENOTCONN when corosync is gone
 * (then close and reconnect). */
int cluster_corosync_dispatch(struct cluster_corosync *c, int fd);
/* 0, -EAGAIN under flow control, -ENOTCONN, -EMSGSIZE. */
int cluster_corosync_mcast(struct cluster_corosync *c, const uint8_t *buf, size_t len);

uint32_t cluster_corosync_local_id(const struct cluster_corosync *c);
/* The runtime token timeout in ms (corosync's own default when unknown). */
uint32_t cluster_corosync_token_ms(const struct cluster_corosync *c);
/* The ring0 address of this node from the nodelist, or "" when unknown. */
const char *cluster_corosync_local_address(const struct cluster_corosync *c);
/* totem.cluster_name, or "" when unset. */
const char *cluster_corosync_cluster_name(const struct cluster_corosync *c);

#endif
