/* The replicated state machine: sync rounds, agreed-order apply, the
 * duties of a member (announce itself) and of the manager (record
 * membership). See engine.h for the protocol. */
#include "cluster/engine.h"
#include "cluster/manager.h"
#include "cluster/vm.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <qb/qblog.h>

#include "cluster/sync.h"
#include "cluster/timeouts.h"
#include "cluster/send_queue.h"

struct peer_report {
	uint32_t node;
	uint64_t version;
	struct cluster_digest digest;
};

struct cluster_engine {
	struct cluster_local_facts facts;   /* strings owned */
	struct cluster_engine_env env;
	cluster_state *state;
	struct cluster_digest digest;
	bool digest_stale;

	bool connected;
	bool quorate;
	bool authoritative;                  /* our state is the quorate partition's */
	uint32_t members[CLUSTER_MAX_MEMBERS];
	size_t n_members;

	/* the current sync round */
	bool syncing;
	uint64_t round;                      /* all rounds, for logs */
	uint32_t view_round;                 /* rounds since the last membership change */
	uint64_t round_started_ms;
	struct cluster_sync_hello hellos[CLUSTER_MAX_MEMBERS];
	bool hello_seen[CLUSTER_MAX_MEMBERS];
	bool expecting_snapshot;
	struct cluster_sync_hello winner;
	uint8_t *snapshot;
	size_t snapshot_len;
	uint32_t snapshot_next;
	Vireo__Op **held_ops;                /* delivered during the round */
	size_t n_held_ops;
	bool resync_asked;

	struct cluster_send_queue sendq;
	uint64_t next_request_id;
	uint64_t duty_request_id;            /* last duty op proposed, 0 = none in flight */
	bool duties_blocked;                 /* a duty op was rejected: wait for a change */
	uint64_t blocked_version;            /* ... of the state, or a token's time */
	uint64_t blocked_ms;

	/* For the manager's fence deadlines, on this node's monotonic clock:
	 * when each node was last seen leaving the membership, and since when
	 * this node is in the quorate partition (it cannot vouch for longer). */
	struct { uint32_t node; uint64_t left_ms; } departures[CLUSTER_MAX_MEMBERS];
	size_t n_departures;
	uint64_t quorate_since_ms;
	uint64_t last_tick_mono_ms;
	uint64_t stall_hold_until_ms;        /* after a stall: act on nothing until then */
	uint32_t token_ms;

	struct peer_report peers[CLUSTER_MAX_MEMBERS];
	size_t n_peers;
	uint64_t reported_version;
	uint64_t last_report_ms;
	uint64_t now_ms;                     /* monotonic, from the last tick */
};

static void duties(struct cluster_engine *e);

static uint64_t mono_now(struct cluster_engine *e)
{
	return e->env.mono_ms ? e->env.mono_ms(e->env.ctx) : e->now_ms;
}

static const struct cluster_digest *current_digest(struct cluster_engine *e)
{
	if (e->digest_stale && cluster_state_digest(e->state, &e->digest) == 0)
		e->digest_stale = false;
	return &e->digest;
}

static void state_touched(struct cluster_engine *e)
{
	e->digest_stale = true;
	if (e->env.state_changed)
		e->env.state_changed(e->env.ctx);
}

/* Packs and queues one cluster message; sends what flow control allows. */
static int send_message(struct cluster_engine *e, const Vireo__ClusterMessage *msg)
{
	size_t len = vireo__cluster_message__get_packed_size(msg);
	uint8_t *buf = malloc(len ? len : 1);
	int rc;

	if (!buf)
		return -ENOMEM;
	vireo__cluster_message__pack(msg, buf);
	rc = cluster_send_queue_push(&e->sendq, buf, len);
	if (rc < 0) {
		free(buf);
		return rc;
	}
	cluster_send_queue_flush(&e->sendq, e->env.mcast, e->env.ctx);
	return 0;
}

static void send_hello(struct cluster_engine *e)
{
	Vireo__ClusterMessage msg = VIREO__CLUSTER_MESSAGE__INIT;
	Vireo__SyncHello hello = VIREO__SYNC_HELLO__INIT;
	const struct cluster_digest *d = current_digest(e);

	hello.node = e->facts.id;
	hello.version = e->state->version;
	hello.digest.data = (uint8_t *)d->bytes;
	hello.digest.len = sizeof(d->bytes);
	hello.authoritative = e->authoritative;
	hello.round = e->round;
	hello.view_round = e->view_round;
	hello.members = e->members;
	hello.n_members = e->n_members;
	msg.body_case = VIREO__CLUSTER_MESSAGE__BODY_HELLO;
	msg.hello = &hello;
	if (send_message(e, &msg) < 0)
		qb_log(LOG_ERR, "cannot queue the sync hello: out of memory");
}

static void report_digest(struct cluster_engine *e)
{
	Vireo__ClusterMessage msg = VIREO__CLUSTER_MESSAGE__INIT;
	Vireo__DigestReport rep = VIREO__DIGEST_REPORT__INIT;
	const struct cluster_digest *d = current_digest(e);

	rep.node = e->facts.id;
	rep.version = e->state->version;
	rep.digest.data = (uint8_t *)d->bytes;
	rep.digest.len = sizeof(d->bytes);
	msg.body_case = VIREO__CLUSTER_MESSAGE__BODY_DIGEST;
	msg.digest = &rep;
	if (send_message(e, &msg) == 0) {
		e->reported_version = e->state->version;
		e->last_report_ms = e->now_ms;
	}
}

static void apply_op(struct cluster_engine *e, const Vireo__Op *op)
{
	int rc = cluster_apply(e->state, op);

	if (rc == 0)
		state_touched(e);
	else if (rc != -EALREADY)
		qb_log(LOG_WARNING, "operation %s from node %u (request %" PRIu64 ") rejected: %s",
		       cluster_op_name(op), op->origin, op->request_id, strerror(-rc));
	if (op->origin == e->facts.id && e->duty_request_id && op->request_id >= e->duty_request_id) {
		e->duty_request_id = 0;
		/* Retrying a rejected duty at once would loop: wait until the
		 * state changes or a token's time passes. */
		if (rc < 0 && rc != -EALREADY) {
			e->duties_blocked = true;
			e->blocked_version = e->state->version;
			e->blocked_ms = mono_now(e);
		}
	}
	if (e->env.applied)
		e->env.applied(e->env.ctx, op, rc);
}

static void free_held_ops(struct cluster_engine *e)
{
	for (size_t i = 0; i < e->n_held_ops; i++)
		vireo__op__free_unpacked(e->held_ops[i], NULL);
	free(e->held_ops);
	e->held_ops = NULL;
	e->n_held_ops = 0;
}

/* Every member applies the held operations at the same point of the agreed
 * order, so they land on identical states. */
static void apply_held_ops(struct cluster_engine *e)
{
	Vireo__Op **ops = e->held_ops;
	size_t n = e->n_held_ops;

	e->held_ops = NULL;
	e->n_held_ops = 0;
	for (size_t i = 0; i < n; i++) {
		apply_op(e, ops[i]);
		vireo__op__free_unpacked(ops[i], NULL);
	}
	free(ops);
}

static void reset_snapshot(struct cluster_engine *e)
{
	free(e->snapshot);
	e->snapshot = NULL;
	e->snapshot_len = 0;
	e->snapshot_next = 0;
	e->expecting_snapshot = false;
}

static void start_round(struct cluster_engine *e, const char *why)
{
	if (!e->connected)
		return;
	/* A round cut short by another change: apply what it held so nothing
	 * delivered is dropped; the new round reconciles any difference. */
	if (e->syncing)
		apply_held_ops(e);
	reset_snapshot(e);
	memset(e->hello_seen, 0, sizeof(e->hello_seen));
	e->syncing = true;
	e->resync_asked = false;
	e->duties_blocked = false;
	e->round++;
	e->view_round++;
	e->round_started_ms = e->now_ms;
	qb_log(LOG_INFO, "sync round %" PRIu64 " started (%s): %zu members, version %" PRIu64
	       ", %s", e->round, why, e->n_members, e->state->version,
	       e->authoritative ? "authoritative" : "not authoritative");
	send_hello(e);
}

static void finish_round(struct cluster_engine *e, uint32_t winner)
{
	char hex[2 * CLUSTER_DIGEST_LEN + 1];

	e->syncing = false;
	reset_snapshot(e);
	apply_held_ops(e);
	e->authoritative = e->quorate;
	cluster_digest_hex(current_digest(e), hex);
	qb_log(LOG_NOTICE, "sync round %" PRIu64 " done: winner node %u, version %" PRIu64
	       ", digest %s", e->round, winner, e->state->version, hex);
	if (e->env.synced)
		e->env.synced(e->env.ctx);
	report_digest(e);
	duties(e);
}

static void send_snapshot(struct cluster_engine *e)
{
	size_t chunk_bytes = e->env.chunk_bytes ? e->env.chunk_bytes : CLUSTER_SYNC_CHUNK_BYTES;
	uint8_t *buf = NULL;
	size_t len = 0;
	uint32_t count;
	const struct cluster_digest *d = current_digest(e);

	if (cluster_state_pack(e->state, &buf, &len) < 0) {
		qb_log(LOG_ERR, "cannot pack the state snapshot: out of memory");
		return;
	}
	count = (uint32_t)((len + chunk_bytes - 1) / chunk_bytes);
	if (count == 0)
		count = 1;
	qb_log(LOG_INFO, "sending state snapshot: version %" PRIu64 ", %zu bytes in %u chunks",
	       e->state->version, len, count);
	for (uint32_t i = 0; i < count; i++) {
		Vireo__ClusterMessage msg = VIREO__CLUSTER_MESSAGE__INIT;
		Vireo__SyncChunk chunk = VIREO__SYNC_CHUNK__INIT;
		size_t off = (size_t)i * chunk_bytes;
		size_t n = len - off < chunk_bytes ? len - off : chunk_bytes;

		chunk.from = e->facts.id;
		chunk.version = e->state->version;
		chunk.digest.data = (uint8_t *)d->bytes;
		chunk.digest.len = sizeof(d->bytes);
		chunk.index = i;
		chunk.count = count;
		chunk.view_round = e->view_round;
		chunk.data.data = buf + off;
		chunk.data.len = n;
		msg.body_case = VIREO__CLUSTER_MESSAGE__BODY_CHUNK;
		msg.chunk = &chunk;
		if (send_message(e, &msg) < 0)
			qb_log(LOG_ERR, "cannot queue snapshot chunk %u: out of memory", i);
	}
	free(buf);
}

static int member_index(const struct cluster_engine *e, uint32_t node)
{
	for (size_t i = 0; i < e->n_members; i++)
		if (e->members[i] == node)
			return (int)i;
	return -1;
}

static bool same_members(const struct cluster_engine *e, const uint32_t *m, size_t n)
{
	return n == e->n_members && memcmp(m, e->members, n * sizeof(*m)) == 0;
}

static void on_all_hellos(struct cluster_engine *e)
{
	size_t w = cluster_sync_choose(e->hellos, e->n_members);

	e->winner = e->hellos[w];
	if (!cluster_sync_needs_transfer(e->hellos, e->n_members, w)) {
		finish_round(e, e->winner.node);
		return;
	}
	e->expecting_snapshot = true;
	if (e->winner.node == e->facts.id)
		send_snapshot(e);
}

static void on_hello(struct cluster_engine *e, const Vireo__SyncHello *h)
{
	int idx = member_index(e, h->node);

	if (!e->syncing || idx < 0 || h->view_round != e->view_round ||
	    !same_members(e, h->members, h->n_members) || h->digest.len != CLUSTER_DIGEST_LEN)
		return;   /* from an older membership or round: stale */
	e->hellos[idx].node = h->node;
	e->hellos[idx].version = h->version;
	e->hellos[idx].authoritative = h->authoritative;
	memcpy(e->hellos[idx].digest.bytes, h->digest.data, CLUSTER_DIGEST_LEN);
	e->hello_seen[idx] = true;
	for (size_t i = 0; i < e->n_members; i++)
		if (!e->hello_seen[i])
			return;
	on_all_hellos(e);
}

static int adopt_snapshot(struct cluster_engine *e)
{
	cluster_state *fresh = NULL;
	struct cluster_digest d;

	if (cluster_state_unpack(e->snapshot, e->snapshot_len, &fresh) < 0 ||
	    cluster_state_digest(fresh, &d) < 0 ||
	    memcmp(&d, &e->winner.digest, sizeof(d)) != 0) {
		qb_log(LOG_ERR, "state snapshot from node %u is corrupt (%zu bytes); keeping ours "
		       "and asking for another round", e->winner.node, e->snapshot_len);
		cluster_state_free(fresh);
		return -EBADMSG;
	}
	qb_log(LOG_NOTICE, "adopted the state of node %u: version %" PRIu64 " (ours was %" PRIu64 ")",
	       e->winner.node, fresh->version, e->state->version);
	cluster_state_free(e->state);
	e->state = fresh;
	state_touched(e);
	return 0;
}

static void ask_resync(struct cluster_engine *e, const char *reason);

static void on_chunk(struct cluster_engine *e, const Vireo__SyncChunk *c)
{
	uint8_t *grown;
	bool bad;

	if (!e->syncing || !e->expecting_snapshot || c->view_round != e->view_round ||
	    c->from != e->winner.node ||
	    c->version != e->winner.version || c->digest.len != CLUSTER_DIGEST_LEN ||
	    memcmp(c->digest.data, e->winner.digest.bytes, CLUSTER_DIGEST_LEN) != 0)
		return;
	if (c->index != e->snapshot_next || c->count == 0 || c->index >= c->count) {
		qb_log(LOG_ERR, "snapshot chunk %u/%u from node %u out of order (expected %u)",
		       c->index, c->count, c->from, e->snapshot_next);
		return;
	}
	grown = realloc(e->snapshot, e->snapshot_len + c->data.len + 1);
	if (!grown) {
		qb_log(LOG_ERR, "out of memory assembling the state snapshot");
		return;
	}
	e->snapshot = grown;
	memcpy(e->snapshot + e->snapshot_len, c->data.data, c->data.len);
	e->snapshot_len += c->data.len;
	e->snapshot_next++;
	if (c->index + 1 < c->count)
		return;
	bad = memcmp(current_digest(e), &e->winner.digest, sizeof(e->winner.digest)) != 0 &&
	      adopt_snapshot(e) < 0;
	finish_round(e, e->winner.node);
	/* resync_asked was cleared when the round started, so this goes out */
	if (bad)
		ask_resync(e, "corrupt snapshot");
}

static void ask_resync(struct cluster_engine *e, const char *reason)
{
	Vireo__ClusterMessage msg = VIREO__CLUSTER_MESSAGE__INIT;
	Vireo__ResyncRequest req = VIREO__RESYNC_REQUEST__INIT;

	if (e->resync_asked || !e->connected)
		return;
	req.node = e->facts.id;
	req.reason = (char *)reason;
	msg.body_case = VIREO__CLUSTER_MESSAGE__BODY_RESYNC;
	msg.resync = &req;
	if (send_message(e, &msg) == 0)
		e->resync_asked = true;
}

static struct peer_report *peer_slot(struct cluster_engine *e, uint32_t node)
{
	for (size_t i = 0; i < e->n_peers; i++)
		if (e->peers[i].node == node)
			return &e->peers[i];
	if (e->n_peers == CLUSTER_MAX_MEMBERS)
		return NULL;
	e->peers[e->n_peers].node = node;
	return &e->peers[e->n_peers++];
}

static void on_digest_report(struct cluster_engine *e, const Vireo__DigestReport *r)
{
	struct peer_report *p;

	if (r->digest.len != CLUSTER_DIGEST_LEN || !(p = peer_slot(e, r->node)))
		return;
	p->version = r->version;
	memcpy(p->digest.bytes, r->digest.data, CLUSTER_DIGEST_LEN);
	if (e->syncing || r->node == e->facts.id || r->version != e->state->version)
		return;
	if (memcmp(p->digest.bytes, current_digest(e)->bytes, CLUSTER_DIGEST_LEN) != 0) {
		qb_log(LOG_ERR, "state digest mismatch with node %u at version %" PRIu64
		       "; asking the cluster to resync", r->node, r->version);
		ask_resync(e, "digest mismatch");
	}
}

void cluster_engine_deliver(struct cluster_engine *e, uint32_t sender, const uint8_t *buf, size_t len)
{
	Vireo__ClusterMessage *msg = vireo__cluster_message__unpack(NULL, len, buf);

	if (!msg) {
		qb_log(LOG_WARNING, "dropped a malformed cluster message (%zu bytes) from node %u",
		       len, sender);
		return;
	}
	switch (msg->body_case) {
	case VIREO__CLUSTER_MESSAGE__BODY_OP:
		/* The sender's identity comes from corosync, not from the message. */
		msg->op->origin = sender;
		if (e->syncing) {
			Vireo__Op **held = realloc(e->held_ops, (e->n_held_ops + 1) * sizeof(*held));
			if (!held) {
				qb_log(LOG_ERR, "out of memory holding an operation during sync");
				break;
			}
			e->held_ops = held;
			held[e->n_held_ops++] = msg->op;
			msg->op = NULL;
			msg->body_case = VIREO__CLUSTER_MESSAGE__BODY__NOT_SET;
		} else {
			apply_op(e, msg->op);
			duties(e);
		}
		break;
	case VIREO__CLUSTER_MESSAGE__BODY_HELLO:
		if (msg->hello->node == sender)
			on_hello(e, msg->hello);
		break;
	case VIREO__CLUSTER_MESSAGE__BODY_CHUNK:
		if (msg->chunk->from == sender)
			on_chunk(e, msg->chunk);
		break;
	case VIREO__CLUSTER_MESSAGE__BODY_DIGEST:
		if (msg->digest->node == sender)
			on_digest_report(e, msg->digest);
		break;
	case VIREO__CLUSTER_MESSAGE__BODY_RESYNC:
		qb_log(LOG_NOTICE, "node %u asked for a resync: %s", sender, msg->resync->reason);
		start_round(e, "resync requested");
		break;
	default:
		qb_log(LOG_WARNING, "dropped a cluster message of unknown kind from node %u", sender);
		break;
	}
	vireo__cluster_message__free_unpacked(msg, NULL);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static void note_departure(struct cluster_engine *e, uint32_t node, uint64_t now)
{
	size_t i;

	for (i = 0; i < e->n_departures && e->departures[i].node != node; i++)
		;
	if (i == e->n_departures) {
		if (i == CLUSTER_MAX_MEMBERS)
			return;   /* unknown: absent_ms counts from quorate_since_ms */
		e->n_departures++;
	}
	e->departures[i].node = node;
	e->departures[i].left_ms = now;
}

static bool in_list(const uint32_t *list, size_t n, uint32_t node)
{
	for (size_t i = 0; i < n; i++)
		if (list[i] == node)
			return true;
	return false;
}

/* Members that are not in the new membership left now. */
static void record_departures(struct cluster_engine *e, const uint32_t *members, size_t n)
{
	uint64_t now = mono_now(e);

	for (size_t i = 0; i < e->n_members; i++)
		if (!in_list(members, n, e->members[i]))
			note_departure(e, e->members[i], now);
}

static uint64_t absent_ms(void *ctx, uint32_t node)
{
	struct cluster_engine *e = ctx;
	uint64_t now = mono_now(e), since = e->quorate_since_ms;

	if (member_index(e, node) >= 0)
		return 0;
	for (size_t i = 0; i < e->n_departures; i++)
		if (e->departures[i].node == node && e->departures[i].left_ms > since)
			since = e->departures[i].left_ms;
	return now > since ? now - since : 0;
}

static int leases_free(void *ctx, const Vireo__Vm *vm)
{
	struct cluster_engine *e = ctx;

	/* Without a way to look, nothing is proven. */
	return e->env.leases_free ? e->env.leases_free(e->env.ctx, vm) : -EAGAIN;
}

void cluster_engine_membership(struct cluster_engine *e, const uint32_t *members, size_t n)
{
	if (n > CLUSTER_MAX_MEMBERS) {
		qb_log(LOG_CRIT, "membership of %zu exceeds the supported %d members", n,
		       CLUSTER_MAX_MEMBERS);
		n = CLUSTER_MAX_MEMBERS;
	}
	record_departures(e, members, n);
	memcpy(e->members, members, n * sizeof(*members));
	qsort(e->members, n, sizeof(*members), cmp_u32);
	e->n_members = n;
	e->connected = true;
	e->view_round = 0;
	start_round(e, "membership changed");
}

void cluster_engine_quorum(struct cluster_engine *e, bool quorate)
{
	if (quorate == e->quorate)
		return;
	e->quorate = quorate;
	if (quorate)
		e->quorate_since_ms = mono_now(e);
	qb_log(quorate ? LOG_NOTICE : LOG_WARNING, "this node is %s",
	       quorate ? "in the quorate partition" : "NOT in the quorate partition");
	if (!quorate) {
		e->authoritative = false;
		return;
	}
	/* Gained quorum: a round decides whose state the quorate partition
	 * holds before anybody here acts on it. */
	if (e->connected)
		ask_resync(e, "quorum gained");
}

void cluster_engine_disconnected(struct cluster_engine *e)
{
	if (!e->connected)
		return;
	qb_log(LOG_WARNING, "lost the cluster connection: not a member of anything until it is back");
	e->connected = false;
	e->quorate = false;
	e->authoritative = false;
	e->n_members = 0;
	if (e->syncing)
		apply_held_ops(e);
	e->syncing = false;
	reset_snapshot(e);
	cluster_send_queue_clear(&e->sendq);
	e->duty_request_id = 0;
	e->resync_asked = false;
}

/* Ticks come every few hundred ms: a gap longer than the token means this
 * host was frozen or stalled, and it cannot vouch for what it did not see
 * (a node may have come and gone meanwhile). */
static bool stalled_since_last_tick(const struct cluster_engine *e, uint64_t mono, uint32_t token_ms)
{
	return e->last_tick_mono_ms && token_ms && e->quorate &&
	       mono - e->last_tick_mono_ms > token_ms;
}

void cluster_engine_tick(struct cluster_engine *e, uint64_t now_ms, uint32_t token_ms)
{
	uint64_t mono = mono_now(e);

	/* Fence deadlines this host measures count again from now. */
	if (stalled_since_last_tick(e, mono, token_ms)) {
		qb_log(LOG_WARNING, "this host did not run for %" PRIu64 " ms; fence deadlines it "
		       "measures start again, and its guests wait %u ms for the membership it "
		       "missed", mono - e->last_tick_mono_ms, VIREO_DETECTION_MS(token_ms));
		e->quorate_since_ms = mono;
		e->stall_hold_until_ms = mono + VIREO_DETECTION_MS(token_ms);
	}
	e->last_tick_mono_ms = mono;
	e->now_ms = now_ms;
	if (!e->connected)
		return;
	cluster_send_queue_flush(&e->sendq, e->env.mcast, e->env.ctx);
	if (e->syncing && now_ms - e->round_started_ms > VIREO_SYNC_STUCK_MS(token_ms)) {
		qb_log(LOG_WARNING, "sync round %" PRIu64 " is stuck (a member did not answer); "
		       "starting another", e->round);
		ask_resync(e, "sync round stuck");
		e->round_started_ms = now_ms;
	}
	if (!e->syncing && e->state->version != e->reported_version &&
	    now_ms - e->last_report_ms >= VIREO_DIGEST_REPORT_MS(token_ms))
		report_digest(e);
	e->token_ms = token_ms;
	/* Time alone moves the manager on (fence deadlines). */
	duties(e);
}

static int propose(struct cluster_engine *e, Vireo__Op *op, uint64_t *request_id)
{
	Vireo__ClusterMessage msg = VIREO__CLUSTER_MESSAGE__INIT;
	int rc;

	op->origin = e->facts.id;
	op->request_id = e->next_request_id++;
	op->time_ms = e->env.now_ms(e->env.ctx);
	msg.body_case = VIREO__CLUSTER_MESSAGE__BODY_OP;
	msg.op = op;
	if ((rc = send_message(e, &msg)) < 0)
		return rc;
	if (request_id)
		*request_id = op->request_id;
	return 0;
}

int cluster_engine_propose(struct cluster_engine *e, Vireo__Op *op, uint64_t *request_id)
{
	if (!e->connected)
		return -ENOTCONN;
	if (!e->quorate)
		return -EPERM;
	return propose(e, op, request_id);
}

static bool facts_differ(const struct cluster_engine *e, const Vireo__NodeInfo *n)
{
	return !n || strcmp(n->name, e->facts.name) || strcmp(n->address, e->facts.address) ||
	       strcmp(n->version, e->facts.version) || n->cpus != e->facts.cpus ||
	       n->memory_mib != e->facts.memory_mib || n->pool_ok != e->facts.pool_ok ||
	       strcmp(n->pool_message, e->facts.pool_message) || strcmp(n->accel, e->facts.accel) ||
	       strcmp(n->pool_id, e->facts.pool_id) || n->hv_stalled != e->facts.hv_stalled ||
	       strcmp(n->hv_message, e->facts.hv_message);
}

static void propose_duty(struct cluster_engine *e, Vireo__Op *op)
{
	uint64_t id;

	if (propose(e, op, &id) == 0)
		e->duty_request_id = id;
}

/* The manager's decisions (manager.c), pure: this engine supplies the
 * membership, how long lost nodes have been gone on its own clock, and the
 * host's word on disk leases. */
static void manage(struct cluster_engine *e)
{
	struct cluster_manager_env env = { .ctx = e, .absent_ms = absent_ms, .leases_free = leases_free };
	struct cluster_manager_view v = {
		.st = e->state, .members = e->members, .n_members = e->n_members,
		.token_ms = e->token_ms ? e->token_ms : VIREO_DEFAULT_TOKEN_MS, .env = &env,
	};
	struct cluster_manager_op *out = malloc(sizeof(*out));

	if (!out)
		return;
	if (cluster_manager_next(&v, out) == 1) {
		if (out->op.body_case != VIREO__OP__BODY_VM_PENDING)
			qb_log(LOG_INFO, "manager: proposing %s %s", cluster_op_name(&out->op), out->name);
		propose_duty(e, &out->op);
	}
	free(out);
}

/* What a member does on its own once synced and quorate: announce itself;
 * and, when it is the manager, record who is online and that it manages.
 * One duty op is in flight at a time; the next runs when it is applied. */
static void duties(struct cluster_engine *e)
{
	const cluster_state *st = e->state;
	Vireo__Op op = VIREO__OP__INIT;

	if (e->duties_blocked && (e->state->version != e->blocked_version ||
				  mono_now(e) - e->blocked_ms >= (e->token_ms ? e->token_ms : VIREO_DEFAULT_TOKEN_MS)))
		e->duties_blocked = false;
	if (!e->connected || !e->quorate || e->syncing || e->duty_request_id || e->duties_blocked)
		return;
	if (facts_differ(e, cluster_state_node(st, e->facts.id))) {
		Vireo__NodeAnnounce a = VIREO__NODE_ANNOUNCE__INIT;

		a.id = e->facts.id;
		a.name = (char *)e->facts.name;
		a.address = (char *)e->facts.address;
		a.cpus = e->facts.cpus;
		a.memory_mib = e->facts.memory_mib;
		a.version = (char *)e->facts.version;
		a.pool_ok = e->facts.pool_ok;
		a.pool_message = (char *)e->facts.pool_message;
		a.accel = (char *)e->facts.accel;
		a.pool_id = (char *)e->facts.pool_id;
		a.hv_stalled = e->facts.hv_stalled;
		a.hv_message = (char *)e->facts.hv_message;
		op.body_case = VIREO__OP__BODY_NODE_ANNOUNCE;
		op.node_announce = &a;
		propose_duty(e, &op);
		return;
	}
	if (cluster_manager_elect(e->members, e->n_members) != e->facts.id)
		return;
	if (st->manager != e->facts.id) {
		Vireo__ManagerChange m = VIREO__MANAGER_CHANGE__INIT;

		m.manager = e->facts.id;
		op.body_case = VIREO__OP__BODY_MANAGER_CHANGE;
		op.manager_change = &m;
		propose_duty(e, &op);
		return;
	}
	if (e->facts.cluster_name[0] && strcmp(st->cluster_name, e->facts.cluster_name) != 0) {
		Vireo__ClusterConfig cc = VIREO__CLUSTER_CONFIG__INIT;

		cc.cluster_name = (char *)e->facts.cluster_name;
		op.body_case = VIREO__OP__BODY_CLUSTER_CONFIG;
		op.cluster_config = &cc;
		propose_duty(e, &op);
		return;
	}
	manage(e);
}

static void free_facts(struct cluster_local_facts *f)
{
	free((char *)f->name);
	free((char *)f->address);
	free((char *)f->version);
	free((char *)f->cluster_name);
	free((char *)f->pool_message);
	free((char *)f->accel);
	free((char *)f->pool_id);
	free((char *)f->hv_message);
}

int cluster_engine_set_health(struct cluster_engine *e, bool pool_ok, const char *pool_message,
			      const char *pool_id, const char *accel)
{
	char *msg = strdup(pool_message ? pool_message : "");
	char *acc = strdup(accel ? accel : "");
	char *pid = strdup(pool_id ? pool_id : "");

	if (!msg || !acc || !pid) {
		free(msg);
		free(acc);
		free(pid);
		return -ENOMEM;
	}
	free((char *)e->facts.pool_message);
	free((char *)e->facts.accel);
	free((char *)e->facts.pool_id);
	e->facts.pool_ok = pool_ok;
	e->facts.pool_message = msg;
	e->facts.accel = acc;
	e->facts.pool_id = pid;
	duties(e);
	return 0;
}

int cluster_engine_set_hypervisor(struct cluster_engine *e, bool stalled, const char *message)
{
	char *msg = strdup(message ? message : "");

	if (!msg)
		return -ENOMEM;
	free((char *)e->facts.hv_message);
	e->facts.hv_stalled = stalled;
	e->facts.hv_message = msg;
	duties(e);
	return 0;
}

int cluster_engine_new(const struct cluster_local_facts *facts, cluster_state *state,
		       const struct cluster_engine_env *env, struct cluster_engine **out)
{
	struct cluster_engine *e = calloc(1, sizeof(*e));

	if (!e)
		return -ENOMEM;
	e->facts = *facts;
	e->facts.name = strdup(facts->name ? facts->name : "");
	e->facts.address = strdup(facts->address ? facts->address : "");
	e->facts.version = strdup(facts->version ? facts->version : "");
	e->facts.cluster_name = strdup(facts->cluster_name ? facts->cluster_name : "");
	e->facts.pool_message = strdup(facts->pool_message ? facts->pool_message : "");
	e->facts.accel = strdup(facts->accel ? facts->accel : "");
	e->facts.pool_id = strdup(facts->pool_id ? facts->pool_id : "");
	e->facts.hv_message = strdup(facts->hv_message ? facts->hv_message : "");
	if (!e->facts.name || !e->facts.address || !e->facts.version || !e->facts.cluster_name ||
	    !e->facts.pool_message || !e->facts.accel || !e->facts.pool_id || !e->facts.hv_message) {
		free_facts(&e->facts);
		free(e);
		return -ENOMEM;
	}
	e->env = *env;
	e->state = state;
	e->digest_stale = true;
	/* Request ids only need to be unique per origin; starting from the
	 * clock keeps them unique across restarts of vireod too. */
	e->next_request_id = (uint64_t)env->now_ms(env->ctx) * 1000u + 1;
	cluster_send_queue_init(&e->sendq);
	*out = e;
	return 0;
}

void cluster_engine_free(struct cluster_engine *e)
{
	if (!e)
		return;
	free_held_ops(e);
	reset_snapshot(e);
	cluster_send_queue_clear(&e->sendq);
	cluster_state_free(e->state);
	free_facts(&e->facts);
	free(e);
}

const cluster_state *cluster_engine_state(const struct cluster_engine *e) { return e->state; }

uint64_t cluster_engine_stall_hold_ms(struct cluster_engine *e)
{
	uint64_t mono = mono_now(e);

	/* Frozen until a moment ago, and the tick that would notice has not
	 * run yet: the state may be stale by a whole membership. */
	if (stalled_since_last_tick(e, mono, e->token_ms))
		return VIREO_DETECTION_MS(e->token_ms);
	return e->stall_hold_until_ms > mono ? e->stall_hold_until_ms - mono : 0;
}

bool cluster_engine_quorate(const struct cluster_engine *e) { return e->connected && e->quorate; }
bool cluster_engine_syncing(const struct cluster_engine *e) { return e->syncing; }
bool cluster_engine_connected(const struct cluster_engine *e) { return e->connected; }
uint32_t cluster_engine_local_id(const struct cluster_engine *e) { return e->facts.id; }
size_t cluster_engine_send_backlog(const struct cluster_engine *e) { return e->sendq.count; }

uint32_t cluster_engine_manager(const struct cluster_engine *e)
{
	if (!e->connected || !e->quorate)
		return 0;
	return cluster_manager_elect(e->members, e->n_members);
}

size_t cluster_engine_members(const struct cluster_engine *e, const uint32_t **members)
{
	*members = e->members;
	return e->n_members;
}

const struct cluster_digest *cluster_engine_digest(const struct cluster_engine *e)
{
	/* The cache is an implementation detail; callers see a const engine. */
	return current_digest((struct cluster_engine *)e);
}

bool cluster_engine_peer_digest(const struct cluster_engine *e, uint32_t node, uint64_t *version,
				struct cluster_digest *digest)
{
	if (node == e->facts.id) {
		*version = e->state->version;
		*digest = *cluster_engine_digest(e);
		return true;
	}
	for (size_t i = 0; i < e->n_peers; i++) {
		if (e->peers[i].node == node) {
			*version = e->peers[i].version;
			*digest = e->peers[i].digest;
			return true;
		}
	}
	return false;
}

void cluster_engine_kick(struct cluster_engine *e)
{
	duties(e);
}
