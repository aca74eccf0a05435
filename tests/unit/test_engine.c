/* The replicated state machine, several engines over a simulated CPG: one
 * FIFO carries messages and membership changes, delivered to every member
 * of the sender's partition in the same order, as CPG's agreed order does. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cluster/engine.h"
#include "cluster/timeouts.h"
#include "cluster/vm.h"
#include "unit.h"

#define SIM_MAX 5

enum sim_kind { SIM_MSG, SIM_CONFCHG };

struct sim_item {
	struct sim_item *next;
	enum sim_kind kind;
	int group;
	uint32_t sender;
	uint8_t *buf;
	size_t len;
};

struct sim_node {
	struct sim *sim;
	uint32_t id;
	bool blocked;          /* mcast answers -EAGAIN */
	int applied_ok;
	int applied_rejected;
};

struct sim {
	int n;
	struct cluster_engine *eng[SIM_MAX + 1];
	struct sim_node node[SIM_MAX + 1];
	int group[SIM_MAX + 1];   /* partition of each node; 0 = disconnected */
	struct sim_item *head, *tail;
	int64_t clock_ms;
	uint64_t mono_ms;
	int leases;            /* what leases_free answers */
	bool ha;               /* propose_vm makes HA VMs */
};

static void push(struct sim *s, struct sim_item *it)
{
	it->next = NULL;
	if (s->tail)
		s->tail->next = it;
	else
		s->head = it;
	s->tail = it;
}

static int sim_mcast(void *ctx, const uint8_t *buf, size_t len)
{
	struct sim_node *sn = ctx;
	struct sim *s = sn->sim;
	struct sim_item *it;

	if (sn->blocked)
		return -EAGAIN;
	if (s->group[sn->id] == 0)
		return -ENOTCONN;
	it = calloc(1, sizeof(*it));
	it->kind = SIM_MSG;
	it->group = s->group[sn->id];
	it->sender = sn->id;
	it->buf = malloc(len ? len : 1);
	memcpy(it->buf, buf, len);
	it->len = len;
	push(s, it);
	return 0;
}

static int64_t sim_now(void *ctx)
{
	struct sim_node *sn = ctx;

	return ++sn->sim->clock_ms;
}

static uint64_t sim_mono(void *ctx)
{
	struct sim_node *sn = ctx;

	return sn->sim->mono_ms;
}

static int sim_leases(void *ctx, const Vireo__Vm *vm)
{
	struct sim_node *sn = ctx;

	(void)vm;
	return sn->sim->leases;
}

static void sim_applied(void *ctx, const Vireo__Op *op, int rc)
{
	struct sim_node *sn = ctx;

	if (rc == 0)
		sn->applied_ok++;
	else
		sn->applied_rejected++;
}

static size_t group_members(struct sim *s, int g, uint32_t *out)
{
	size_t n = 0;

	for (int i = 1; i <= s->n; i++)
		if (s->group[i] == g)
			out[n++] = (uint32_t)i;
	return n;
}

/* Delivers everything queued, including what deliveries queue in turn. */
static void sim_run(struct sim *s)
{
	while (s->head) {
		struct sim_item *it = s->head;
		uint32_t members[SIM_MAX];
		size_t n = group_members(s, it->group, members);

		s->head = it->next;
		if (!s->head)
			s->tail = NULL;
		for (size_t i = 0; i < n; i++) {
			struct cluster_engine *e = s->eng[members[i]];
			if (it->kind == SIM_MSG)
				cluster_engine_deliver(e, it->sender, it->buf, it->len);
			else
				cluster_engine_membership(e, members, n);
		}
		if (it->kind == SIM_CONFCHG)
			for (size_t i = 0; i < n; i++)
				cluster_engine_quorum(s->eng[members[i]], n * 2 > (size_t)s->n);
		free(it->buf);
		free(it);
	}
}

static void sim_tick(struct sim *s, int rounds)
{
	for (int r = 0; r < rounds; r++) {
		s->mono_ms += 300;
		for (int i = 1; i <= s->n; i++)
			cluster_engine_tick(s->eng[i], s->mono_ms, 1000);
		sim_run(s);
	}
}

/* groups[i] is the partition of node i+1 (0 = disconnected). */
static void sim_partition(struct sim *s, const int *groups)
{
	bool seen[SIM_MAX + 1] = { false };

	sim_run(s);
	for (int i = 1; i <= s->n; i++) {
		if (s->group[i] && !groups[i - 1])
			cluster_engine_disconnected(s->eng[i]);
		s->group[i] = groups[i - 1];
	}
	for (int i = 1; i <= s->n; i++) {
		int g = s->group[i];
		struct sim_item *it;

		if (!g || seen[g])
			continue;
		seen[g] = true;
		it = calloc(1, sizeof(*it));
		it->kind = SIM_CONFCHG;
		it->group = g;
		push(s, it);
	}
	sim_run(s);
	sim_tick(s, 3);
}

static void sim_init(struct sim *s, int n, cluster_state **states, size_t chunk_bytes)
{
	memset(s, 0, sizeof(*s));
	s->n = n;
	s->clock_ms = 1700000000000;
	for (int i = 1; i <= n; i++) {
		char name[8], addr[16];
		struct cluster_local_facts f = { .id = (uint32_t)i, .name = name, .address = addr,
						 .cpus = 2, .memory_mib = 4096, .version = "test",
						 .cluster_name = "sim" };
		struct cluster_engine_env env = {
			.ctx = &s->node[i], .mcast = sim_mcast, .now_ms = sim_now,
			.applied = sim_applied, .chunk_bytes = chunk_bytes,
			.mono_ms = sim_mono, .leases_free = sim_leases,
		};
		cluster_state *st = states && states[i - 1] ? states[i - 1] : cluster_state_new("sim");

		snprintf(name, sizeof(name), "n%d", i);
		snprintf(addr, sizeof(addr), "10.0.0.%d", i);
		s->node[i].sim = s;
		s->node[i].id = (uint32_t)i;
		ck_assert_int_eq(cluster_engine_new(&f, st, &env, &s->eng[i]), 0);
	}
}

static void sim_free(struct sim *s)
{
	sim_run(s);
	for (int i = 1; i <= s->n; i++)
		cluster_engine_free(s->eng[i]);
}

static void assert_converged(struct sim *s, const int *which, int count)
{
	const struct cluster_digest *d0 = cluster_engine_digest(s->eng[which[0]]);

	for (int k = 1; k < count; k++) {
		const struct cluster_digest *dk = cluster_engine_digest(s->eng[which[k]]);
		ck_assert_msg(memcmp(d0, dk, sizeof(*d0)) == 0, "node %d and node %d differ",
			      which[0], which[k]);
		ck_assert_uint_eq(cluster_engine_state(s->eng[which[0]])->version,
				  cluster_engine_state(s->eng[which[k]])->version);
	}
}

static int propose_note(struct sim *s, int node, const char *text)
{
	Vireo__Op op = VIREO__OP__INIT;
	Vireo__EventNote n = VIREO__EVENT_NOTE__INIT;

	n.text = (char *)text;
	op.body_case = VIREO__OP__BODY_EVENT_NOTE;
	op.event_note = &n;
	return cluster_engine_propose(s->eng[node], &op, NULL);
}

static bool has_event(struct sim *s, int node, const char *text)
{
	const cluster_state *st = cluster_engine_state(s->eng[node]);

	for (size_t i = 0; i < st->n_events; i++)
		if (strcmp(st->events[i]->text, text) == 0)
			return true;
	return false;
}

static const int ALL3[] = { 1, 2, 3 };
static const int ONE_GROUP[] = { 1, 1, 1, 1, 1 };

START_TEST(three_nodes_form_a_cluster)
{
	struct sim s;
	const cluster_state *st;

	sim_init(&s, 3, NULL, 0);
	sim_partition(&s, ONE_GROUP);
	assert_converged(&s, ALL3, 3);
	st = cluster_engine_state(s.eng[2]);
	ck_assert_uint_eq(st->n_nodes, 3);
	for (size_t i = 0; i < 3; i++) {
		ck_assert_msg(st->nodes[i]->online, "node %u offline", st->nodes[i]->id);
		ck_assert_str_eq(st->nodes[i]->address, i == 0 ? "10.0.0.1" : i == 1 ? "10.0.0.2" : "10.0.0.3");
	}
	ck_assert_uint_eq(st->manager, 1);
	for (int i = 1; i <= 3; i++) {
		ck_assert(cluster_engine_quorate(s.eng[i]));
		ck_assert_uint_eq(cluster_engine_manager(s.eng[i]), 1);
	}
	sim_free(&s);
}
END_TEST

START_TEST(minority_changes_nothing_and_catches_up)
{
	static const int split[] = { 1, 1, 2 };
	struct sim s;
	uint64_t minority_version;

	sim_init(&s, 3, NULL, 0);
	sim_partition(&s, ONE_GROUP);
	sim_partition(&s, split);
	ck_assert(!cluster_engine_quorate(s.eng[3]));
	ck_assert_int_eq(propose_note(&s, 3, "from the minority"), -EPERM);
	ck_assert_int_eq(propose_note(&s, 1, "from the majority"), 0);
	minority_version = cluster_engine_state(s.eng[3])->version;
	sim_tick(&s, 3);
	ck_assert_uint_eq(cluster_engine_state(s.eng[3])->version, minority_version);
	ck_assert(!cluster_state_node(cluster_engine_state(s.eng[1]), 3)->online);
	ck_assert(has_event(&s, 2, "from the majority"));

	sim_partition(&s, ONE_GROUP);
	assert_converged(&s, ALL3, 3);
	ck_assert(has_event(&s, 3, "from the majority"));
	ck_assert(!has_event(&s, 3, "from the minority"));
	ck_assert(cluster_state_node(cluster_engine_state(s.eng[3]), 3)->online);
	sim_free(&s);
}
END_TEST

/* After a whole-cluster restart nobody is authoritative: the newest state wins. */
START_TEST(cold_start_takes_the_newest_state)
{
	cluster_state *states[3] = { cluster_state_new("sim"), cluster_state_new("sim"), cluster_state_new("sim") };
	Vireo__Op op = VIREO__OP__INIT;
	Vireo__EventNote n = VIREO__EVENT_NOTE__INIT;
	struct sim s;

	n.text = "only on node 2";
	op.body_case = VIREO__OP__BODY_EVENT_NOTE;
	op.event_note = &n;
	ck_assert_int_eq(cluster_apply(states[1], &op), 0);
	sim_init(&s, 3, states, 0);
	sim_partition(&s, ONE_GROUP);
	assert_converged(&s, ALL3, 3);
	ck_assert(has_event(&s, 1, "only on node 2"));
	ck_assert(has_event(&s, 3, "only on node 2"));
	sim_free(&s);
}
END_TEST

/* An operation delivered in the middle of a sync round that transfers a
 * snapshot is applied by every member at the same point, after the round. */
START_TEST(ops_during_sync_are_held_then_applied_everywhere)
{
	static const int split[] = { 1, 1, 2 };
	struct sim s;
	struct sim_item *it;

	sim_init(&s, 3, NULL, 0);
	sim_partition(&s, ONE_GROUP);
	sim_partition(&s, split);
	ck_assert_int_eq(propose_note(&s, 1, "before heal"), 0);
	sim_run(&s);
	/* heal by hand: the confchg is queued, then an op before any hello */
	for (int i = 1; i <= 3; i++)
		s.group[i] = 1;
	it = calloc(1, sizeof(*it));
	it->kind = SIM_CONFCHG;
	it->group = 1;
	push(&s, it);
	ck_assert_int_eq(propose_note(&s, 2, "during sync"), 0);
	sim_run(&s);
	sim_tick(&s, 2);
	assert_converged(&s, ALL3, 3);
	for (int i = 1; i <= 3; i++) {
		ck_assert(has_event(&s, i, "before heal"));
		ck_assert(has_event(&s, i, "during sync"));
	}
	sim_free(&s);
}
END_TEST

/* A snapshot larger than one chunk arrives in pieces and is verified. */
START_TEST(snapshot_in_many_chunks)
{
	static const int split[] = { 1, 1, 2 };
	struct sim s;
	char text[64];

	sim_init(&s, 3, NULL, 64);
	sim_partition(&s, ONE_GROUP);
	sim_partition(&s, split);
	for (int i = 0; i < 40; i++) {
		snprintf(text, sizeof(text), "note %d while node 3 was away", i);
		ck_assert_int_eq(propose_note(&s, 2, text), 0);
	}
	sim_run(&s);
	sim_partition(&s, ONE_GROUP);
	assert_converged(&s, ALL3, 3);
	ck_assert(has_event(&s, 3, "note 39 while node 3 was away"));
	sim_free(&s);
}
END_TEST

/* A member whose state silently diverged is detected by the digest reports
 * and repaired by a resync. */
START_TEST(digest_mismatch_is_repaired)
{
	struct sim s;
	cluster_state *st3;

	sim_init(&s, 3, NULL, 0);
	sim_partition(&s, ONE_GROUP);
	/* the diverged one is the manager, whose id would win a plain tie */
	st3 = (cluster_state *)cluster_engine_state(s.eng[1]);
	free(st3->events[0]->text);
	st3->events[0]->text = strdup("diverged");
	ck_assert_int_eq(propose_note(&s, 2, "advance"), 0);
	sim_run(&s);
	sim_tick(&s, 4);
	assert_converged(&s, ALL3, 3);
	ck_assert_str_ne(cluster_engine_state(s.eng[1])->events[0]->text, "diverged");
	sim_free(&s);
}
END_TEST

START_TEST(malformed_messages_are_dropped)
{
	struct sim s;
	uint8_t junk[] = { 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01 };
	uint64_t v;

	sim_init(&s, 3, NULL, 0);
	sim_partition(&s, ONE_GROUP);
	v = cluster_engine_state(s.eng[1])->version;
	cluster_engine_deliver(s.eng[1], 2, junk, sizeof(junk));
	cluster_engine_deliver(s.eng[1], 2, junk, 0);
	ck_assert_uint_eq(cluster_engine_state(s.eng[1])->version, v);
	ck_assert_int_eq(propose_note(&s, 1, "still works"), 0);
	sim_run(&s);
	assert_converged(&s, ALL3, 3);
	sim_free(&s);
}
END_TEST

/* Under flow control sends wait in order and go out on the next tick. */
START_TEST(flow_control_keeps_order)
{
	struct sim s;
	char text[32];
	const cluster_state *st;

	sim_init(&s, 3, NULL, 0);
	sim_partition(&s, ONE_GROUP);
	s.node[1].blocked = true;
	for (int i = 0; i < 100; i++) {
		snprintf(text, sizeof(text), "op %d", i);
		ck_assert_int_eq(propose_note(&s, 1, text), 0);
	}
	ck_assert_uint_eq(cluster_engine_send_backlog(s.eng[1]), 100);
	s.node[1].blocked = false;
	sim_tick(&s, 1);
	ck_assert_uint_eq(cluster_engine_send_backlog(s.eng[1]), 0);
	assert_converged(&s, ALL3, 3);
	st = cluster_engine_state(s.eng[3]);
	ck_assert_str_eq(st->events[st->n_events - 1]->text, "op 99");
	ck_assert_str_eq(st->events[st->n_events - 100]->text, "op 0");
	sim_free(&s);
}
END_TEST

START_TEST(disconnected_node_refuses_and_rejoins)
{
	static const int without3[] = { 1, 1, 0 };
	struct sim s;

	sim_init(&s, 3, NULL, 0);
	sim_partition(&s, ONE_GROUP);
	sim_partition(&s, without3);
	ck_assert(!cluster_engine_connected(s.eng[3]));
	ck_assert_int_eq(propose_note(&s, 3, "x"), -ENOTCONN);
	ck_assert_int_eq(propose_note(&s, 2, "while 3 was gone"), 0);
	sim_run(&s);
	sim_partition(&s, ONE_GROUP);
	assert_converged(&s, ALL3, 3);
	ck_assert(has_event(&s, 3, "while 3 was gone"));
	sim_free(&s);
}
END_TEST

/* The manager's host leaves: the next lowest id takes over and records it. */
START_TEST(manager_moves_when_it_leaves)
{
	static const int without1[] = { 0, 1, 1, 1, 1 };
	struct sim s;
	static const int rest[] = { 2, 3, 4, 5 };

	sim_init(&s, 5, NULL, 0);
	sim_partition(&s, ONE_GROUP);
	ck_assert_uint_eq(cluster_engine_state(s.eng[4])->manager, 1);
	sim_partition(&s, without1);
	assert_converged(&s, rest, 4);
	ck_assert_uint_eq(cluster_engine_state(s.eng[4])->manager, 2);
	ck_assert(!cluster_state_node(cluster_engine_state(s.eng[4]), 1)->online);
	sim_free(&s);
}
END_TEST

static int propose_vm(struct sim *s, int node, const char *name, const char *uuid, uint64_t mib)
{
	Vireo__Op op = VIREO__OP__INIT;
	Vireo__VmCreate c = VIREO__VM_CREATE__INIT;
	Vireo__VmSpec spec = VIREO__VM_SPEC__INIT;

	spec.name = (char *)name;
	spec.uuid = (char *)uuid;
	spec.vcpus = 1;
	spec.memory_mib = mib;
	spec.kernel = "/boot/vmlinux";
	spec.ha = s->ha;
	c.spec = &spec;
	c.start = true;
	op.body_case = VIREO__OP__BODY_VM_CREATE;
	op.vm_create = &c;
	return cluster_engine_propose(s->eng[node], &op, NULL);
}

/* The manager places VMs that should run only on nodes that announced a
 * usable pool and a known acceleration, spread over them; without such a
 * node the VM waits, saying why. */
START_TEST(manager_places_vms_on_healthy_nodes)
{
	struct sim s;
	const cluster_state *st;
	const Vireo__Vm *a, *b;

	sim_init(&s, 3, NULL, 0);
	sim_partition(&s, ONE_GROUP);
	ck_assert_int_eq(propose_vm(&s, 2, "a", "00000000-0000-0000-0000-00000000000a", 512), 0);
	sim_run(&s);
	st = cluster_engine_state(s.eng[3]);
	a = cluster_vm_find(st, "a");
	ck_assert_ptr_nonnull(a);
	ck_assert_int_eq(a->state, VIREO__VM_STATE__VM_PENDING);
	ck_assert_uint_eq(a->owner, 0);
	ck_assert_msg(strstr(a->message, "no available node"), "reason: %s", a->message);

	ck_assert_int_eq(cluster_engine_set_health(s.eng[2], true, "", "pool-1", "tcg"), 0);
	ck_assert_int_eq(cluster_engine_set_health(s.eng[3], true, "", "pool-1", "tcg"), 0);
	sim_run(&s);
	ck_assert_int_eq(propose_vm(&s, 1, "b", "00000000-0000-0000-0000-00000000000b", 512), 0);
	sim_run(&s);
	assert_converged(&s, ALL3, 3);
	st = cluster_engine_state(s.eng[1]);
	ck_assert_str_eq(st->pool_id, "pool-1");
	a = cluster_vm_find(st, "a");
	b = cluster_vm_find(st, "b");
	ck_assert_int_eq(a->state, VIREO__VM_STATE__VM_STARTING);
	ck_assert_int_eq(b->state, VIREO__VM_STATE__VM_STARTING);
	ck_assert_uint_eq(a->generation, 1);
	ck_assert_msg(a->owner != 1 && b->owner != 1, "node 1 has no pool: %u %u", a->owner,
		      b->owner);
	ck_assert_msg(a->owner != b->owner, "not spread: both on %u", a->owner);
	sim_free(&s);
}
END_TEST

static const Vireo__Vm *vm_on(struct sim *s, int node, const char *name)
{
	return cluster_vm_find(cluster_engine_state(s->eng[node]), name);
}

/* The engine's side of failover: the manager's clock for the fence
 * deadline starts when it sees the owner leave, and a held lease keeps the
 * fence from being confirmed however long it takes. */
START_TEST(manager_fails_over_after_the_deadline_and_free_leases)
{
	static const int WITHOUT_OWNER[3][5] = { { 2, 1, 1 }, { 1, 2, 1 }, { 1, 1, 2 } };
	struct sim s;
	const Vireo__Vm *h;
	uint32_t owner;
	int survivor;

	sim_init(&s, 3, NULL, 0);
	s.ha = true;
	s.leases = 0;
	sim_partition(&s, ONE_GROUP);
	for (int i = 1; i <= 3; i++)
		ck_assert_int_eq(cluster_engine_set_health(s.eng[i], true, "", "pool-1", "tcg"), 0);
	sim_run(&s);
	ck_assert_int_eq(propose_vm(&s, 1, "h", "00000000-0000-0000-0000-0000000000aa", 512), 0);
	sim_run(&s);
	owner = vm_on(&s, 1, "h")->owner;
	ck_assert_uint_ne(owner, 0);
	survivor = owner == 1 ? 2 : 1;

	/* sim_partition ticks 900 ms: less than the fence delay (1000). */
	sim_partition(&s, WITHOUT_OWNER[owner - 1]);
	h = vm_on(&s, survivor, "h");
	ck_assert_int_eq(h->state, VIREO__VM_STATE__VM_FENCING);
	ck_assert_uint_eq(h->owner, owner);
	/* Long past the deadline, but the lease is held: still fencing. */
	sim_tick(&s, 20);
	ck_assert_int_eq(vm_on(&s, survivor, "h")->state, VIREO__VM_STATE__VM_FENCING);
	s.leases = 1;
	sim_tick(&s, 1);
	h = vm_on(&s, survivor, "h");
	ck_assert_int_eq(h->state, VIREO__VM_STATE__VM_STARTING);
	ck_assert_uint_ne(h->owner, owner);
	ck_assert_uint_eq(h->generation, 2);
	ck_assert_uint_eq(h->relocations, 1);
	sim_free(&s);
}
END_TEST

/* An owner back before its fence is confirmed keeps its VM. */
START_TEST(owner_back_before_the_fence_keeps_its_vm)
{
	static const int WITHOUT_3[] = { 1, 1, 2 };
	struct sim s;
	const Vireo__Vm *h;

	sim_init(&s, 3, NULL, 0);
	s.ha = true;
	s.leases = 1;
	sim_partition(&s, ONE_GROUP);
	ck_assert_int_eq(cluster_engine_set_health(s.eng[3], true, "", "pool-1", "tcg"), 0);
	sim_run(&s);
	ck_assert_int_eq(propose_vm(&s, 1, "h", "00000000-0000-0000-0000-0000000000ab", 512), 0);
	sim_run(&s);
	ck_assert_uint_eq(vm_on(&s, 1, "h")->owner, 3);
	/* Partitioned and healed within the fence delay: sim_partition
	 * ticks 900 ms each time. */
	sim_partition(&s, WITHOUT_3);
	ck_assert_int_eq(vm_on(&s, 1, "h")->state, VIREO__VM_STATE__VM_FENCING);
	sim_partition(&s, ONE_GROUP);
	h = vm_on(&s, 1, "h");
	ck_assert_int_eq(h->state, VIREO__VM_STATE__VM_STARTING);
	ck_assert_uint_eq(h->owner, 3);
	ck_assert_uint_eq(h->generation, 1);
	assert_converged(&s, ALL3, 3);
	sim_free(&s);
}
END_TEST

/* A node that did not run for longer than a token (frozen) acts on nothing
 * for a detection time: corosync has yet to tell it the membership it
 * missed. Before its first tick after the thaw it knows from the clock. */
START_TEST(a_stalled_node_holds_its_hand)
{
	struct sim s;

	sim_init(&s, 3, NULL, 0);
	sim_partition(&s, ONE_GROUP);
	assert_converged(&s, ALL3, 3);
	sim_tick(&s, 2);                   /* ticks closer than a token: no stall */
	ck_assert_uint_eq(cluster_engine_stall_hold_ms(s.eng[3]), 0);
	s.mono_ms += 4000;                 /* frozen 4 T, no tick yet */
	ck_assert_uint_eq(cluster_engine_stall_hold_ms(s.eng[3]), VIREO_DETECTION_MS(1000));
	cluster_engine_tick(s.eng[3], s.mono_ms, 1000);   /* the tick notices */
	ck_assert_uint_eq(cluster_engine_stall_hold_ms(s.eng[3]), VIREO_DETECTION_MS(1000));
	s.mono_ms += 300;
	cluster_engine_tick(s.eng[3], s.mono_ms, 1000);
	ck_assert_uint_eq(cluster_engine_stall_hold_ms(s.eng[3]), VIREO_DETECTION_MS(1000) - 300);
	sim_tick(&s, 8);                   /* 2.4 s of ticks 300 ms apart */
	ck_assert_uint_eq(cluster_engine_stall_hold_ms(s.eng[3]), 0);
	sim_free(&s);
}
END_TEST

static Suite *engine_suite(void)
{
	Suite *s = suite_create("engine");
	TCase *tc = tcase_create("simulated cpg");

	tcase_add_test(tc, three_nodes_form_a_cluster);
	tcase_add_test(tc, minority_changes_nothing_and_catches_up);
	tcase_add_test(tc, cold_start_takes_the_newest_state);
	tcase_add_test(tc, ops_during_sync_are_held_then_applied_everywhere);
	tcase_add_test(tc, snapshot_in_many_chunks);
	tcase_add_test(tc, digest_mismatch_is_repaired);
	tcase_add_test(tc, malformed_messages_are_dropped);
	tcase_add_test(tc, flow_control_keeps_order);
	tcase_add_test(tc, disconnected_node_refuses_and_rejoins);
	tcase_add_test(tc, manager_moves_when_it_leaves);
	tcase_add_test(tc, manager_places_vms_on_healthy_nodes);
	tcase_add_test(tc, manager_fails_over_after_the_deadline_and_free_leases);
	tcase_add_test(tc, owner_back_before_the_fence_keeps_its_vm);
	tcase_add_test(tc, a_stalled_node_holds_its_hand);
	suite_add_tcase(s, tc);
	return s;
}

UNIT_MAIN(engine_suite)
