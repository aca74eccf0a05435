/* vireo group list|create|delete|add|remove: what vireod does, and the
 * waiters that answer a change once the cluster log has applied it.
 *
 * list answers at once from this node's copy of the state. A change is
 * first checked with cluster_group_check() (the same check apply() runs),
 * so the user hears exactly why not and nothing is proposed; then it needs
 * quorum, is proposed, and is answered when this node applies it. If
 * another request changed the groups in between and the cluster refuses
 * it, the check runs again on the state the refusal saw, to say why. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <qb/qblog.h>

#include "cluster/group.h"
#include "cluster/timeouts.h"
#include "node/daemon.h"
#include "node/group_requests.h"

#define MSG_MAX 512

struct node_change_waiter {
	struct node_change_waiter *next;
	struct node_ipc_call *call;
	uint64_t request_id;
	uint64_t deadline_ms;
	Vireo__Op *op;                /* a copy: what it asked, to say what happened */
};

/* ---------------------------------------------------------------- replies */

/* Answers with the groups: one (name set) or all; outcome and message. */
static void reply_groups(struct node_daemon *d, struct node_ipc_call *call, Vireo__Outcome outcome,
			 const char *name, const char *message)
{
	Vireo__Response resp = VIREO__RESPONSE__INIT;
	Vireo__GroupListReply gl = VIREO__GROUP_LIST_REPLY__INIT;
	const cluster_state *cs = cluster_engine_state(d->engine);
	Vireo__VmGroup *one = name ? (Vireo__VmGroup *)cluster_group_find(cs, name) : NULL;

	resp.outcome = outcome;
	resp.message = (char *)message;
	if (name) {
		gl.groups = one ? &one : NULL;
		gl.n_groups = one ? 1 : 0;
	} else {
		gl.groups = cs->groups;
		gl.n_groups = cs->n_groups;
	}
	resp.body_case = VIREO__RESPONSE__BODY_GROUPS;
	resp.groups = &gl;
	node_ipc_reply(call, &resp);
}

static const char *op_group_name(const Vireo__Op *op)
{
	switch (op->body_case) {
	case VIREO__OP__BODY_GROUP_CREATE: return op->group_create->name;
	case VIREO__OP__BODY_GROUP_DELETE: return op->group_delete->name;
	case VIREO__OP__BODY_GROUP_MEMBERS: return op->group_members->name;
	default: return NULL;
	}
}

static const char *mode_text(Vireo__NodeMode m)
{
	switch (m) {
	case VIREO__NODE_MODE__NODE_ACTIVE: return "active: it takes VMs again";
	case VIREO__NODE_MODE__NODE_MAINTENANCE: return "in maintenance: the manager moves its VMs "
		"away and places none there";
	case VIREO__NODE_MODE__NODE_EVACUATE: return "being evacuated: the manager moves its VMs "
		"away, then it is active again";
	default: return "in an unknown mode";
	}
}

/* The cluster applied (rc 0 or -EALREADY) or refused the waiter's op. */
static void answer(struct node_daemon *d, struct node_change_waiter *w, int rc)
{
	const cluster_state *cs = cluster_engine_state(d->engine);
	const Vireo__Op *op = w->op;
	char msg[MSG_MAX] = "";
	bool refused = rc < 0 && rc != -EALREADY;

	if (op->body_case == VIREO__OP__BODY_NODE_MODE) {
		const Vireo__NodeInfo *n = cluster_state_node(cs, op->node_mode->node);
		const char *name = n ? n->name : "?";

		if (refused)
			node_ipc_reply_outcome(w->call, VIREO__OUTCOME__OUTCOME_FAILED,
					       "the cluster refused to change the mode of node %s (%s); "
					       "see vireo node list and vireo event list", name,
					       strerror(-rc));
		else
			node_ipc_reply_outcome(w->call, VIREO__OUTCOME__OUTCOME_OK, "node %s is %s",
					       name, mode_text(op->node_mode->mode));
		return;
	}
	if (refused) {
		/* The state is still the one the refusal saw: the check says why. */
		char why[MSG_MAX - 128];

		if (cluster_group_check(cs, op, why, sizeof(why)) == 0)
			snprintf(why, sizeof(why), "%s", strerror(-rc));
		snprintf(msg, sizeof(msg), "the cluster refused the change (another request changed "
			 "the groups meanwhile): %s", why);
		reply_groups(d, w->call, VIREO__OUTCOME__OUTCOME_FAILED, op_group_name(op), msg);
		return;
	}
	if (op->body_case == VIREO__OP__BODY_GROUP_DELETE)
		snprintf(msg, sizeof(msg), "group %s is deleted", op->group_delete->name);
	reply_groups(d, w->call, VIREO__OUTCOME__OUTCOME_OK, op_group_name(op), msg);
}

/* ---------------------------------------------------------------- waiters */

static void waiter_free(struct node_change_waiter *w)
{
	if (w->op)
		vireo__op__free_unpacked(w->op, NULL);
	free(w);
}

/* A deep copy through the packed form: the caller's op lives on its stack. */
static Vireo__Op *copy_op(const Vireo__Op *op)
{
	size_t len = vireo__op__get_packed_size(op);
	uint8_t *buf = malloc(len ? len : 1);
	Vireo__Op *copy;

	if (!buf)
		return NULL;
	vireo__op__pack(op, buf);
	copy = vireo__op__unpack(NULL, len, buf);
	free(buf);
	return copy;
}

void node_change_propose(struct node_daemon *d, struct node_ipc_call *call, Vireo__Op *op)
{
	struct node_change_waiter *w = calloc(1, sizeof(*w));
	int rc = -ENOMEM;

	if (!w || !(w->op = copy_op(op)))
		goto cleanup;
	if ((rc = cluster_engine_propose(d->engine, op, &w->request_id)) < 0)
		goto cleanup;
	w->call = call;
	w->deadline_ms = node_now_mono_ms() + VIREO_REQUEST_TIMEOUT_MS(d->token_ms);
	w->next = d->change_waiters;
	d->change_waiters = w;
	w = NULL;
cleanup:
	if (rc == -EPERM || rc == -ENOTCONN)
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_NOT_QUORATE, "%s",
				       rc == -EPERM ? NODE_NOT_QUORATE_MSG : NODE_NOT_CONNECTED_MSG);
	else if (rc < 0)
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_FAILED,
				       "cannot propose the change: %s", strerror(-rc));
	if (w)
		waiter_free(w);
}

void node_change_requests_applied(struct node_daemon *d, const Vireo__Op *op, int rc)
{
	struct node_change_waiter **pp = &d->change_waiters;

	if (op->origin != cluster_engine_local_id(d->engine))
		return;
	while (*pp) {
		struct node_change_waiter *w = *pp;

		if (op->request_id != w->request_id) {
			pp = &w->next;
			continue;
		}
		*pp = w->next;
		answer(d, w, rc);
		waiter_free(w);
	}
}

void node_change_requests_expire(struct node_daemon *d, bool all, const char *why)
{
	struct node_change_waiter **pp = &d->change_waiters;
	uint64_t now = node_now_mono_ms();

	while (*pp) {
		struct node_change_waiter *w = *pp;

		if (!all && now < w->deadline_ms) {
			pp = &w->next;
			continue;
		}
		*pp = w->next;
		node_ipc_reply_outcome(w->call, VIREO__OUTCOME__OUTCOME_FAILED,
				       "the outcome is unknown: %s; check vireo %s before retrying",
				       why ? why : "the cluster did not apply the change in time",
				       w->op->body_case == VIREO__OP__BODY_NODE_MODE ? "node list" :
				       "group list");
		waiter_free(w);
	}
}

/* ---------------------------------------------------------------- requests */

static void handle_change(struct node_daemon *d, struct node_ipc_call *call,
			  const Vireo__GroupRequest *r)
{
	const cluster_state *cs = cluster_engine_state(d->engine);
	Vireo__Op op = VIREO__OP__INIT;
	Vireo__GroupCreate create = VIREO__GROUP_CREATE__INIT;
	Vireo__VmName del = VIREO__VM_NAME__INIT;
	Vireo__GroupMembers members = VIREO__GROUP_MEMBERS__INIT;
	char err[MSG_MAX];
	int rc;

	switch (r->action) {
	case VIREO__GROUP_REQUEST__ACTION__CREATE:
		create.name = r->name;
		create.affinity = r->affinity;
		create.strict = r->strict;
		op.body_case = VIREO__OP__BODY_GROUP_CREATE;
		op.group_create = &create;
		break;
	case VIREO__GROUP_REQUEST__ACTION__DELETE:
		del.name = r->name;
		op.body_case = VIREO__OP__BODY_GROUP_DELETE;
		op.group_delete = &del;
		break;
	case VIREO__GROUP_REQUEST__ACTION__ADD:
	case VIREO__GROUP_REQUEST__ACTION__REMOVE:
		members.name = r->name;
		if (r->action == VIREO__GROUP_REQUEST__ACTION__ADD) {
			members.add = r->vms;
			members.n_add = r->n_vms;
		} else {
			members.remove = r->vms;
			members.n_remove = r->n_vms;
		}
		op.body_case = VIREO__OP__BODY_GROUP_MEMBERS;
		op.group_members = &members;
		break;
	default:
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_INVALID,
				       "this vireod does not know that group action");
		return;
	}
	rc = cluster_group_check(cs, &op, err, sizeof(err));
	if (rc == -EALREADY) {
		/* Already so: a quorate node says it without proposing anything. */
		if (node_may_propose(d, call))
			reply_groups(d, call, VIREO__OUTCOME__OUTCOME_OK, r->name, err);
		return;
	}
	if (rc < 0) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_INVALID, "%s", err);
		return;
	}
	if (!node_may_propose(d, call))
		return;
	node_change_propose(d, call, &op);
}

void node_group_request(struct node_daemon *d, struct node_ipc_call *call,
			const Vireo__GroupRequest *r)
{
	if (!d->engine) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_NOT_QUORATE, NODE_NEVER_CONNECTED_MSG);
		return;
	}
	if (r->action == VIREO__GROUP_REQUEST__ACTION__LIST)
		reply_groups(d, call, VIREO__OUTCOME__OUTCOME_OK, NULL, "");
	else
		handle_change(d, call, r);
}
