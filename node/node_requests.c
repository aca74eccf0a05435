/* vireo node maintenance enter|exit NODE, vireo node evacuate NODE: vireod
 * records the node's mode (NodeModeChange) and answers once it is applied.
 * The moves themselves are the manager's (cluster/manager.h); the CLI
 * follows them through vm list. */
#include <stdio.h>
#include <string.h>

#include "node/daemon.h"
#include "node/group_requests.h"

static bool known_mode(Vireo__NodeMode m)
{
	return m == VIREO__NODE_MODE__NODE_ACTIVE || m == VIREO__NODE_MODE__NODE_MAINTENANCE ||
	       m == VIREO__NODE_MODE__NODE_EVACUATE;
}

static const char *already_text(Vireo__NodeMode m)
{
	switch (m) {
	case VIREO__NODE_MODE__NODE_MAINTENANCE: return "in maintenance already";
	case VIREO__NODE_MODE__NODE_EVACUATE: return "being evacuated already";
	default: return "active already";
	}
}

void node_mode_request(struct node_daemon *d, struct node_ipc_call *call,
		       const Vireo__NodeModeRequest *r)
{
	const Vireo__NodeInfo *n;
	Vireo__Op op = VIREO__OP__INIT;
	Vireo__NodeModeChange mc = VIREO__NODE_MODE_CHANGE__INIT;

	if (!d->engine) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_NOT_QUORATE, NODE_NEVER_CONNECTED_MSG);
		return;
	}
	if (!(n = cluster_state_node_by_name(cluster_engine_state(d->engine), r->node))) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_INVALID,
				       "no node named %s in this cluster; see vireo node list", r->node);
		return;
	}
	if (!known_mode(r->mode)) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_INVALID,
				       "this vireod does not know node mode %d", (int)r->mode);
		return;
	}
	if (!node_may_propose(d, call))
		return;
	if (n->mode == r->mode) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_OK, "node %s is %s", n->name,
				       already_text(r->mode));
		return;
	}
	mc.node = n->id;
	mc.mode = r->mode;
	mc.reason = "by the user";
	op.body_case = VIREO__OP__BODY_NODE_MODE;
	op.node_mode = &mc;
	node_change_propose(d, call, &op);
}
