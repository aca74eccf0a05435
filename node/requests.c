/* What each IPC request does. Read-only requests answer at once; requests
 * that change the cluster propose operations and answer once the cluster
 * log has applied them here (or refused them). */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <qb/qblog.h>

#include "cluster/timeouts.h"
#include "cluster/vm.h"
#include "node/daemon.h"
#include "node/group_requests.h"

#define BENCH_MAX_OPS 1000000u
#define BENCH_MAX_PAYLOAD 4096u

static void fill_node_status(const struct node_daemon *d, const Vireo__NodeInfo *n,
			     Vireo__NodeStatus *ns, char *hex)
{
	struct cluster_digest dg;
	uint64_t version = 0;
	uint32_t vcpus;

	vireo__node_status__init(ns);
	ns->id = n->id;
	ns->name = n->name;
	ns->address = n->address;
	ns->online = n->online;
	ns->cpus = n->cpus;
	ns->memory_mib = n->memory_mib;
	ns->vireod_version = n->version;
	ns->joined_at_ms = n->joined_at_ms;
	ns->pool_ok = n->pool_ok;
	ns->pool_message = n->pool_message;
	ns->accel = n->accel;
	ns->mode = n->mode;
	ns->hv_stalled = n->hv_stalled;
	ns->hv_message = n->hv_message;
	cluster_vm_node_usage(cluster_engine_state(d->engine), n->id, &ns->vm_memory_mib, &vcpus,
			      &ns->vms);
	hex[0] = '\0';
	if (n->online && cluster_engine_peer_digest(d->engine, n->id, &version, &dg))
		cluster_digest_hex(&dg, hex);
	ns->version = version;
	ns->digest = hex;
}

static void handle_status(struct node_daemon *d, struct node_ipc_call *call)
{
	Vireo__Response resp = VIREO__RESPONSE__INIT;
	Vireo__StatusReply st = VIREO__STATUS_REPLY__INIT;
	const cluster_state *cs;
	Vireo__NodeStatus *nodes = NULL;
	Vireo__NodeStatus **ptrs = NULL;
	char (*hex)[2 * CLUSTER_DIGEST_LEN + 1] = NULL;
	char mine[2 * CLUSTER_DIGEST_LEN + 1];
	const char *cause;

	if (!d->engine) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_NOT_QUORATE, NODE_NEVER_CONNECTED_MSG);
		return;
	}
	cs = cluster_engine_state(d->engine);
	nodes = calloc(cs->n_nodes + 1, sizeof(*nodes));
	ptrs = calloc(cs->n_nodes + 1, sizeof(*ptrs));
	hex = calloc(cs->n_nodes + 1, sizeof(*hex));
	if (!nodes || !ptrs || !hex) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_FAILED, "vireod is out of memory");
		goto cleanup;
	}
	for (size_t i = 0; i < cs->n_nodes; i++) {
		fill_node_status(d, cs->nodes[i], &nodes[i], hex[i]);
		ptrs[i] = &nodes[i];
	}
	cluster_digest_hex(cluster_engine_digest(d->engine), mine);
	st.cluster = cs->cluster_name;
	st.quorate = cluster_engine_quorate(d->engine);
	st.manager = cluster_engine_manager(d->engine);
	st.local_node = cluster_engine_local_id(d->engine);
	st.nodes = ptrs;
	st.n_nodes = cs->n_nodes;
	st.version = cs->version;
	st.digest = mine;
	st.corosync_connected = cluster_engine_connected(d->engine);
	st.synced = st.corosync_connected && !cluster_engine_syncing(d->engine);
	st.config_version = cs->config_version;
	st.loop_stall_max_ms = node_stall_max_ms(d, &cause);
	st.loop_stall_cause = (char *)cause;
	resp.body_case = VIREO__RESPONSE__BODY_STATUS;
	resp.status = &st;
	node_ipc_reply(call, &resp);
cleanup:
	free(nodes);
	free(ptrs);
	free(hex);
}

static void handle_events(struct node_daemon *d, struct node_ipc_call *call, uint32_t limit)
{
	Vireo__Response resp = VIREO__RESPONSE__INIT;
	Vireo__EventsReply ev = VIREO__EVENTS_REPLY__INIT;
	const cluster_state *cs;
	size_t n;

	if (!d->engine) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_NOT_QUORATE, NODE_NEVER_CONNECTED_MSG);
		return;
	}
	cs = cluster_engine_state(d->engine);
	n = limit && limit < cs->n_events ? limit : cs->n_events;
	ev.events = cs->events + (cs->n_events - n);
	ev.n_events = n;
	resp.body_case = VIREO__RESPONSE__BODY_EVENTS;
	resp.events = &ev;
	node_ipc_reply(call, &resp);
}

bool node_may_propose(struct node_daemon *d, struct node_ipc_call *call)
{
	if (!d->engine) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_NOT_QUORATE, NODE_NEVER_CONNECTED_MSG);
		return false;
	}
	if (!cluster_engine_connected(d->engine)) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_NOT_QUORATE, NODE_NOT_CONNECTED_MSG);
		return false;
	}
	if (!cluster_engine_quorate(d->engine)) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_NOT_QUORATE, NODE_NOT_QUORATE_MSG);
		return false;
	}
	return true;
}

static void wait_for(struct node_daemon *d, struct node_ipc_call *call,
		     Vireo__Request__BodyCase kind, uint64_t first_id, uint64_t last_id, uint32_t count,
		     uint64_t started_us, uint64_t first_version)
{
	struct node_pending *p = calloc(1, sizeof(*p));

	if (!p) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_FAILED, "vireod is out of memory");
		return;
	}
	p->call = call;
	p->kind = kind;
	p->first_request_id = first_id;
	p->last_request_id = last_id;
	p->count = count;
	p->started_us = started_us;
	p->first_version = first_version;
	/* A long batch (bench) gets one more token-thousandth per operation. */
	p->deadline_ms = node_now_mono_ms() + VIREO_REQUEST_TIMEOUT_MS(d->token_ms) +
			 (uint64_t)count * (d->token_ms / 1000u);
	p->next = d->pending;
	d->pending = p;
}

static void handle_note(struct node_daemon *d, struct node_ipc_call *call, const char *text)
{
	Vireo__Op op = VIREO__OP__INIT;
	Vireo__EventNote note = VIREO__EVENT_NOTE__INIT;
	uint64_t id;
	int rc;

	if (!text[0] || strlen(text) > CLUSTER_TEXT_MAX) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_INVALID,
				       "an event text must have 1 to %d characters", CLUSTER_TEXT_MAX);
		return;
	}
	if (!node_may_propose(d, call))
		return;
	note.text = (char *)text;
	op.body_case = VIREO__OP__BODY_EVENT_NOTE;
	op.event_note = &note;
	if ((rc = cluster_engine_propose(d->engine, &op, &id)) < 0) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_FAILED,
				       "cannot propose the operation: %s", strerror(-rc));
		return;
	}
	wait_for(d, call, VIREO__REQUEST__BODY_NOTE, id, id, 1, node_now_mono_us(),
		 cluster_engine_state(d->engine)->version);
}

static void handle_bench(struct node_daemon *d, struct node_ipc_call *call,
			 const Vireo__BenchRequest *b)
{
	Vireo__Op op = VIREO__OP__INIT;
	Vireo__Noop noop = VIREO__NOOP__INIT;
	uint8_t payload[BENCH_MAX_PAYLOAD];
	uint64_t started_us = node_now_mono_us();
	uint64_t first_version;
	uint64_t first_id = 0, id = 0;
	int rc = 0;

	if (b->count == 0 || b->count > BENCH_MAX_OPS || b->payload_bytes > BENCH_MAX_PAYLOAD) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_INVALID,
				       "bench takes 1 to %u operations of at most %u bytes each",
				       BENCH_MAX_OPS, BENCH_MAX_PAYLOAD);
		return;
	}
	if (!node_may_propose(d, call))
		return;
	first_version = cluster_engine_state(d->engine)->version;
	memset(payload, 0xa5, b->payload_bytes);
	noop.payload.data = payload;
	noop.payload.len = b->payload_bytes;
	op.body_case = VIREO__OP__BODY_NOOP;
	op.noop = &noop;
	for (uint32_t i = 0; i < b->count && rc == 0; i++) {
		rc = cluster_engine_propose(d->engine, &op, &id);
		if (i == 0)
			first_id = id;
	}
	if (rc < 0 && id == 0) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_FAILED,
				       "cannot propose the operations: %s", strerror(-rc));
		return;
	}
	wait_for(d, call, VIREO__REQUEST__BODY_BENCH, first_id, id, b->count, started_us,
		 first_version);
}

static void handle_request(struct node_daemon *d, struct node_ipc_call *call,
			   const Vireo__Request *req)
{
	switch (req->body_case) {
	case VIREO__REQUEST__BODY_STATUS:
		handle_status(d, call);
		break;
	case VIREO__REQUEST__BODY_EVENTS:
		handle_events(d, call, req->events->limit);
		break;
	case VIREO__REQUEST__BODY_NOTE:
		handle_note(d, call, req->note->text);
		break;
	case VIREO__REQUEST__BODY_BENCH:
		handle_bench(d, call, req->bench);
		break;
	case VIREO__REQUEST__BODY_VM_CREATE:
	case VIREO__REQUEST__BODY_VM_ACTION:
	case VIREO__REQUEST__BODY_VM_LIST:
	case VIREO__REQUEST__BODY_VM_CONSOLE:
	case VIREO__REQUEST__BODY_VM_MIGRATE:
		node_vm_request(d, call, req);
		break;
	case VIREO__REQUEST__BODY_GROUP:
		node_group_request(d, call, req->group);
		break;
	case VIREO__REQUEST__BODY_NODE_MODE:
		node_mode_request(d, call, req->node_mode);
		break;
	default:
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_INVALID,
				       "this vireod does not know that command");
		break;
	}
}

void node_handle_request(void *ctx, struct node_ipc_call *call, const Vireo__Request *req)
{
	struct node_daemon *d = ctx;

	node_busy_begin(d, "a client request");
	handle_request(d, call, req);
	node_busy_end(d);
}

static void complete(struct node_daemon *d, struct node_pending *p)
{
	Vireo__Response resp = VIREO__RESPONSE__INIT;
	Vireo__BenchReply br = VIREO__BENCH_REPLY__INIT;

	if (p->rc < 0) {
		node_ipc_reply_outcome(p->call, VIREO__OUTCOME__OUTCOME_FAILED,
				       "the cluster refused the operation: %s", strerror(-p->rc));
		return;
	}
	if (p->kind == VIREO__REQUEST__BODY_BENCH) {
		br.count = p->count;
		br.elapsed_us = node_now_mono_us() - p->started_us;
		br.first_version = p->first_version;
		br.last_version = cluster_engine_state(d->engine)->version;
		resp.body_case = VIREO__RESPONSE__BODY_BENCH;
		resp.bench = &br;
	}
	node_ipc_reply(p->call, &resp);
}

void node_requests_applied(struct node_daemon *d, const Vireo__Op *op, int rc)
{
	struct node_pending **pp = &d->pending;

	node_change_requests_applied(d, op, rc);
	if (op->origin != cluster_engine_local_id(d->engine))
		return;
	while (*pp) {
		struct node_pending *p = *pp;

		if (rc < 0 && rc != -EALREADY && p->rc == 0 &&
		    op->request_id >= p->first_request_id && op->request_id <= p->last_request_id)
			p->rc = rc;
		if (op->request_id != p->last_request_id) {
			pp = &p->next;
			continue;
		}
		*pp = p->next;
		complete(d, p);
		free(p);
	}
}

void node_requests_expire(struct node_daemon *d, bool all, const char *why)
{
	struct node_pending **pp = &d->pending;
	uint64_t now = node_now_mono_ms();

	node_change_requests_expire(d, all, why);
	while (*pp) {
		struct node_pending *p = *pp;

		if (!all && now < p->deadline_ms) {
			pp = &p->next;
			continue;
		}
		*pp = p->next;
		node_ipc_reply_outcome(p->call, VIREO__OUTCOME__OUTCOME_FAILED,
				       "the outcome is unknown: %s; check vireo status and the "
				       "event log before retrying",
				       why ? why : "the cluster did not apply the operation in time");
		free(p);
	}
}
