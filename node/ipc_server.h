/* vireod's IPC endpoint: admits root and members of group "vireo" by their
 * socket credentials, decodes Requests and sends Responses, possibly later
 * (a request that waits for the cluster to apply an operation). */
#ifndef VIREO_NODE_IPC_SERVER_H
#define VIREO_NODE_IPC_SERVER_H

#include <sys/types.h>
#include <qb/qbloop.h>
#include "proto/vireo.pb-c.h"

struct node_ipc_server;
struct node_ipc_call;

/* Called for every well-formed request; the handler must eventually pass
 * the call to node_ipc_reply exactly once. */
typedef void (*node_ipc_handler)(void *ctx, struct node_ipc_call *call, const Vireo__Request *req);

int node_ipc_server_start(qb_loop_t *loop, const char *name, node_ipc_handler handler, void *ctx,
			  struct node_ipc_server **out);
void node_ipc_server_stop(struct node_ipc_server *srv);

/* Sends the response (if the client is still there) and frees the call. */
void node_ipc_reply(struct node_ipc_call *call, const Vireo__Response *resp);
/* Shortcut for a response without a body. */
void node_ipc_reply_outcome(struct node_ipc_call *call, Vireo__Outcome outcome, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Whether a uid/gid may use vireod: root, or the group "vireo" as primary or
 * supplementary group. Exposed for the unit test. */
int node_ipc_admitted(uid_t uid, gid_t gid, gid_t admin_gid);

#endif
