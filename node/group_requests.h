/* vireo group ... (group_requests.c) and vireo node maintenance|evacuate
 * (node_requests.c): checked against this node's state, proposed, and
 * answered once the cluster log has applied the change here. */
#ifndef VIREO_NODE_GROUP_REQUESTS_H
#define VIREO_NODE_GROUP_REQUESTS_H

#include <stdbool.h>
#include "node/daemon.h"

void node_group_request(struct node_daemon *d, struct node_ipc_call *call,
			const Vireo__GroupRequest *r);
void node_mode_request(struct node_daemon *d, struct node_ipc_call *call,
		       const Vireo__NodeModeRequest *r);

/* Proposes op (a group op or NodeModeChange) and answers the call once it
 * is applied here or refused. The caller has checked quorum (node_may_propose). */
void node_change_propose(struct node_daemon *d, struct node_ipc_call *call, Vireo__Op *op);

/* From node_requests_applied / node_requests_expire: every applied (or
 * refused) op, and every tick. */
void node_change_requests_applied(struct node_daemon *d, const Vireo__Op *op, int rc);
void node_change_requests_expire(struct node_daemon *d, bool all, const char *why);

#endif
