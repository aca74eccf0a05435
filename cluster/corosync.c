#include "cluster/corosync.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <corosync/cmap.h>
#include <corosync/cpg.h>
#include <corosync/votequorum.h>
#include <qb/qblog.h>

#include "cluster/engine.h"
#include "cluster/timeouts.h"

struct cluster_corosync {
	cpg_handle_t cpg;
	votequorum_handle_t vq;
	bool cpg_open, vq_open;
	struct cpg_name group;
	struct cluster_corosync_callbacks cb;
	uint32_t local_id;
	uint32_t token_ms;
	char address[64];
	char cluster_name[CLUSTER_NAME_MAX + 1];
	int fds[CLUSTER_COROSYNC_FDS];
};

static int cs_to_errno(cs_error_t e)
{
	switch (e) {
	case CS_OK: return 0;
	case CS_ERR_TRY_AGAIN: return -EAGAIN;
	case CS_ERR_NO_MEMORY: return -ENOMEM;
	case CS_ERR_TOO_BIG: return -EMSGSIZE;
	case CS_ERR_ACCESS: return -EACCES;
	case CS_ERR_LIBRARY:
	case CS_ERR_BAD_HANDLE:
	case CS_ERR_NOT_EXIST:
	case CS_ERR_SECURITY:
		return -ENOTCONN;
	default: return -EIO;
	}
}

static void on_deliver(cpg_handle_t h, const struct cpg_name *g, uint32_t nodeid, uint32_t pid,
		       void *msg, size_t len)
{
	struct cluster_corosync *c = NULL;

	if (cpg_context_get(h, (void **)&c) == CS_OK && c)
		c->cb.deliver(c->cb.ctx, nodeid, msg, len);
}

/* CPG reports processes; vireo's members are nodes (one vireod each). */
static void on_confchg(cpg_handle_t h, const struct cpg_name *g,
		       const struct cpg_address *members, size_t n_members,
		       const struct cpg_address *left, size_t n_left,
		       const struct cpg_address *joined, size_t n_joined)
{
	struct cluster_corosync *c = NULL;
	uint32_t ids[CLUSTER_MAX_MEMBERS];
	struct votequorum_info info;
	size_t n = 0;

	if (cpg_context_get(h, (void **)&c) != CS_OK || !c)
		return;
	for (size_t i = 0; i < n_members && n < CLUSTER_MAX_MEMBERS; i++) {
		bool dup = false;
		for (size_t j = 0; j < n; j++)
			dup |= ids[j] == members[i].nodeid;
		if (!dup)
			ids[n++] = members[i].nodeid;
	}
	qb_log(LOG_INFO, "CPG membership: %zu members, %zu left, %zu joined", n, n_left, n_joined);
	/* votequorum's own notification of a ring change may come after this
	 * one: until then a node cut off would take its old quorum for the
	 * new, smaller membership and act as its manager. Ask now; corosync
	 * has settled quorum for the new ring before CPG reports it. */
	if (votequorum_getinfo(c->vq, 0, &info) == CS_OK)
		c->cb.quorum(c->cb.ctx, (info.flags & VOTEQUORUM_INFO_QUORATE) != 0);
	c->cb.membership(c->cb.ctx, ids, n);
}

static void on_quorum(votequorum_handle_t h, uint64_t context, uint32_t quorate,
		      uint32_t n_nodes, votequorum_node_t nodes[])
{
	struct cluster_corosync *c = NULL;

	if (votequorum_context_get(h, (void **)&c) == CS_OK && c)
		c->cb.quorum(c->cb.ctx, quorate != 0);
}

/* Reads the token and this node's address; failure only costs defaults. */
static void read_cmap(struct cluster_corosync *c)
{
	cmap_handle_t cmap;
	char key[128];
	char *addr = NULL;

	c->token_ms = VIREO_DEFAULT_TOKEN_MS;
	if (cmap_initialize(&cmap) != CS_OK) {
		qb_log(LOG_WARNING, "cmap unavailable; assuming token %u ms", c->token_ms);
		return;
	}
	if (cmap_get_uint32(cmap, "runtime.config.totem.token", &c->token_ms) != CS_OK)
		c->token_ms = VIREO_DEFAULT_TOKEN_MS;
	if (cmap_get_string(cmap, "totem.cluster_name", &addr) == CS_OK) {
		snprintf(c->cluster_name, sizeof(c->cluster_name), "%s", addr);
		free(addr);
		addr = NULL;
	}
	for (unsigned i = 0; i < CLUSTER_MAX_MEMBERS * 4; i++) {
		uint32_t id = 0;

		snprintf(key, sizeof(key), "nodelist.node.%u.nodeid", i);
		if (cmap_get_uint32(cmap, key, &id) != CS_OK)
			break;
		if (id != c->local_id)
			continue;
		snprintf(key, sizeof(key), "nodelist.node.%u.ring0_addr", i);
		if (cmap_get_string(cmap, key, &addr) == CS_OK) {
			snprintf(c->address, sizeof(c->address), "%s", addr);
			free(addr);
		}
		break;
	}
	cmap_finalize(cmap);
}

int cluster_corosync_connect(const char *group, const struct cluster_corosync_callbacks *cb,
			     struct cluster_corosync **out)
{
	cpg_model_v1_data_t model = {
		.model = CPG_MODEL_V1,
		.cpg_deliver_fn = on_deliver,
		.cpg_confchg_fn = on_confchg,
	};
	votequorum_callbacks_t vq_cb = { .votequorum_quorum_notify_fn = on_quorum };
	struct cluster_corosync *c = calloc(1, sizeof(*c));
	unsigned int local = 0;
	cs_error_t err;
	int rc;

	if (!c)
		return -ENOMEM;
	if (strlen(group) >= sizeof(c->group.value)) {
		rc = -ENAMETOOLONG;
		goto cleanup;
	}
	c->cb = *cb;
	c->group.length = (uint32_t)strlen(group);
	memcpy(c->group.value, group, c->group.length);

	err = cpg_model_initialize(&c->cpg, CPG_MODEL_V1, (cpg_model_data_t *)&model, c);
	if (err != CS_OK) {
		rc = err == CS_ERR_LIBRARY ? -ECONNREFUSED : cs_to_errno(err);
		goto cleanup;
	}
	c->cpg_open = true;
	if ((err = cpg_local_get(c->cpg, &local)) != CS_OK) {
		rc = cs_to_errno(err);
		goto cleanup;
	}
	c->local_id = local;
	read_cmap(c);

	if ((err = votequorum_initialize(&c->vq, &vq_cb)) != CS_OK) {
		rc = err == CS_ERR_LIBRARY ? -ECONNREFUSED : cs_to_errno(err);
		goto cleanup;
	}
	c->vq_open = true;
	votequorum_context_set(c->vq, c);
	if ((err = votequorum_trackstart(c->vq, 0, CS_TRACK_CURRENT | CS_TRACK_CHANGES)) != CS_OK ||
	    (err = cpg_join(c->cpg, &c->group)) != CS_OK ||
	    (err = cpg_fd_get(c->cpg, &c->fds[0])) != CS_OK ||
	    (err = votequorum_fd_get(c->vq, &c->fds[1])) != CS_OK) {
		rc = cs_to_errno(err);
		goto cleanup;
	}
	qb_log(LOG_NOTICE, "connected to corosync: node id %u, address %s, token %u ms, group %s",
	       c->local_id, c->address[0] ? c->address : "unknown", c->token_ms, group);
	*out = c;
	return 0;
cleanup:
	cluster_corosync_close(c);
	return rc;
}

void cluster_corosync_close(struct cluster_corosync *c)
{
	if (!c)
		return;
	if (c->vq_open)
		votequorum_finalize(c->vq);
	if (c->cpg_open) {
		/* Leaving explicitly tells the others at once; when corosync is
		 * already gone this just fails. */
		cpg_leave(c->cpg, &c->group);
		cpg_finalize(c->cpg);
	}
	free(c);
}

void cluster_corosync_fds(const struct cluster_corosync *c, int fds[CLUSTER_COROSYNC_FDS])
{
	memcpy(fds, c->fds, sizeof(c->fds));
}

int cluster_corosync_dispatch(struct cluster_corosync *c, int fd)
{
	cs_error_t err = CS_OK;

	if (fd == c->fds[0])
		err = cpg_dispatch(c->cpg, CS_DISPATCH_ALL);
	else if (fd == c->fds[1])
		err = votequorum_dispatch(c->vq, CS_DISPATCH_ALL);
	if (err == CS_OK || err == CS_ERR_TRY_AGAIN)
		return 0;
	return -ENOTCONN;
}

int cluster_corosync_mcast(struct cluster_corosync *c, const uint8_t *buf, size_t len)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };

	return cs_to_errno(cpg_mcast_joined(c->cpg, CPG_TYPE_AGREED, &iov, 1));
}

uint32_t cluster_corosync_local_id(const struct cluster_corosync *c) { return c->local_id; }
uint32_t cluster_corosync_token_ms(const struct cluster_corosync *c) { return c->token_ms; }
const char *cluster_corosync_local_address(const struct cluster_corosync *c) { return c->address; }
const char *cluster_corosync_cluster_name(const struct cluster_corosync *c) { return c->cluster_name; }
