/* apply(), digest, snapshots and persistence of the cluster state. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cluster/persist.h"
#include "cluster/state.h"
#include "unit.h"

static Vireo__NodeAnnounce announce_body;
static Vireo__Op op;

static Vireo__Op *announce(uint32_t id, const char *name, int64_t t)
{
	vireo__node_announce__init(&announce_body);
	announce_body.id = id;
	announce_body.name = (char *)name;
	announce_body.address = "10.0.0.1";
	announce_body.version = "0.1.0";
	announce_body.cpus = 2;
	announce_body.memory_mib = 1024;
	vireo__op__init(&op);
	op.origin = id;
	op.time_ms = t;
	op.body_case = VIREO__OP__BODY_NODE_ANNOUNCE;
	op.node_announce = &announce_body;
	return &op;
}

static Vireo__Op *note(const char *text, int64_t t)
{
	static Vireo__EventNote n;

	vireo__event_note__init(&n);
	n.text = (char *)text;
	vireo__op__init(&op);
	op.origin = 1;
	op.time_ms = t;
	op.body_case = VIREO__OP__BODY_EVENT_NOTE;
	op.event_note = &n;
	return &op;
}

static Vireo__Op *membership(uint32_t id, bool online, int64_t t)
{
	static Vireo__NodeMembership m;

	vireo__node_membership__init(&m);
	m.id = id;
	m.online = online;
	vireo__op__init(&op);
	op.origin = 1;
	op.time_ms = t;
	op.body_case = VIREO__OP__BODY_NODE_MEMBERSHIP;
	op.node_membership = &m;
	return &op;
}

START_TEST(announce_adds_nodes_sorted)
{
	cluster_state *st = cluster_state_new("c");

	ck_assert_int_eq(cluster_apply(st, announce(3, "n3", 10)), 0);
	ck_assert_int_eq(cluster_apply(st, announce(1, "n1", 11)), 0);
	ck_assert_int_eq(cluster_apply(st, announce(2, "n2", 12)), 0);
	ck_assert_uint_eq(st->n_nodes, 3);
	for (uint32_t i = 0; i < 3; i++)
		ck_assert_uint_eq(st->nodes[i]->id, i + 1);
	ck_assert_str_eq(cluster_state_node(st, 2)->name, "n2");
	ck_assert_uint_eq(st->version, 3);
	ck_assert_uint_eq(st->n_events, 3);
	cluster_state_free(st);
}
END_TEST

START_TEST(bad_ops_change_nothing)
{
	cluster_state *st = cluster_state_new("c");
	struct cluster_digest before, after;
	char big[CLUSTER_TEXT_MAX + 2];

	ck_assert_int_eq(cluster_apply(st, announce(1, "n1", 1)), 0);
	cluster_state_digest(st, &before);
	ck_assert_int_eq(cluster_apply(st, announce(2, "n1", 2)), -EINVAL);   /* name taken */
	ck_assert_int_eq(cluster_apply(st, announce(0, "zero", 2)), -EINVAL);
	ck_assert_int_eq(cluster_apply(st, announce(4, "bad name", 2)), -EINVAL);
	ck_assert_int_eq(cluster_apply(st, announce(4, "", 2)), -EINVAL);
	ck_assert_int_eq(cluster_apply(st, membership(9, true, 2)), -EINVAL); /* unknown node */
	ck_assert_int_eq(cluster_apply(st, note("", 2)), -EINVAL);
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	ck_assert_int_eq(cluster_apply(st, note(big, 2)), -EINVAL);
	vireo__op__init(&op);
	ck_assert_int_eq(cluster_apply(st, &op), -EINVAL);                    /* no body */
	cluster_state_digest(st, &after);
	ck_assert_mem_eq(before.bytes, after.bytes, CLUSTER_DIGEST_LEN);
	ck_assert_uint_eq(st->version, 1);
	cluster_state_free(st);
}
END_TEST

START_TEST(membership_records_times_and_events)
{
	cluster_state *st = cluster_state_new("c");

	cluster_apply(st, announce(2, "n2", 1));
	ck_assert_int_eq(cluster_apply(st, membership(2, true, 100)), 0);
	ck_assert(cluster_state_node(st, 2)->online);
	ck_assert_int_eq(cluster_state_node(st, 2)->joined_at_ms, 100);
	ck_assert_int_eq(cluster_apply(st, membership(2, true, 101)), -EALREADY);
	ck_assert_int_eq(cluster_apply(st, membership(2, false, 200)), 0);
	ck_assert(!cluster_state_node(st, 2)->online);
	ck_assert_int_eq(cluster_state_node(st, 2)->left_at_ms, 200);
	ck_assert_str_eq(st->events[st->n_events - 1]->text, "node n2 (id 2) is offline");
	cluster_state_free(st);
}
END_TEST

START_TEST(event_log_is_bounded)
{
	cluster_state *st = cluster_state_new("c");
	char text[32];

	for (int i = 0; i < CLUSTER_EVENT_LOG_MAX + 50; i++) {
		snprintf(text, sizeof(text), "e%d", i);
		ck_assert_int_eq(cluster_apply(st, note(text, i)), 0);
	}
	ck_assert_uint_eq(st->n_events, CLUSTER_EVENT_LOG_MAX);
	ck_assert_str_eq(st->events[0]->text, "e50");
	ck_assert_uint_eq(st->events[0]->seq, 51);
	ck_assert_str_eq(st->events[CLUSTER_EVENT_LOG_MAX - 1]->text, "e305");
	cluster_state_free(st);
}
END_TEST

/* The same ops in the same order give the same digest; another order does not. */
START_TEST(apply_is_deterministic)
{
	cluster_state *a = cluster_state_new("c"), *b = cluster_state_new("c"), *c = cluster_state_new("c");
	struct cluster_digest da, db, dc;

	cluster_apply(a, announce(1, "n1", 5));
	cluster_apply(a, note("hello", 6));
	cluster_apply(b, announce(1, "n1", 5));
	cluster_apply(b, note("hello", 6));
	cluster_apply(c, note("hello", 6));
	cluster_apply(c, announce(1, "n1", 5));
	cluster_state_digest(a, &da);
	cluster_state_digest(b, &db);
	cluster_state_digest(c, &dc);
	ck_assert_mem_eq(da.bytes, db.bytes, CLUSTER_DIGEST_LEN);
	ck_assert(memcmp(da.bytes, dc.bytes, CLUSTER_DIGEST_LEN) != 0);
	cluster_state_free(a);
	cluster_state_free(b);
	cluster_state_free(c);
}
END_TEST

START_TEST(snapshot_roundtrip_and_malformed)
{
	cluster_state *st = cluster_state_new("c"), *copy = NULL, *bad = NULL;
	struct cluster_digest d1, d2;
	uint8_t *buf;
	size_t len;

	cluster_apply(st, announce(1, "n1", 5));
	cluster_apply(st, note("x", 6));
	ck_assert_int_eq(cluster_state_pack(st, &buf, &len), 0);
	ck_assert_int_eq(cluster_state_unpack(buf, len, &copy), 0);
	cluster_state_digest(st, &d1);
	cluster_state_digest(copy, &d2);
	ck_assert_mem_eq(d1.bytes, d2.bytes, CLUSTER_DIGEST_LEN);
	/* truncated and garbage snapshots are refused, not half-read */
	ck_assert_int_eq(cluster_state_unpack(buf, len - 3, &bad), -EINVAL);
	memset(buf, 0xff, len);
	ck_assert_int_eq(cluster_state_unpack(buf, len, &bad), -EINVAL);
	ck_assert_ptr_null(bad);
	free(buf);
	cluster_state_free(st);
	cluster_state_free(copy);
}
END_TEST

START_TEST(persist_roundtrip)
{
	char dir[] = "/tmp/vireo-unit-XXXXXX", path[64];
	cluster_state *st = cluster_state_new("c"), *loaded = NULL;
	struct cluster_digest d1, d2;
	FILE *f;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	ck_assert_int_eq(cluster_persist_load(dir, &loaded), -ENOENT);
	cluster_apply(st, announce(1, "n1", 5));
	ck_assert_int_eq(cluster_persist_save(dir, st), 0);
	ck_assert_int_eq(cluster_persist_load(dir, &loaded), 0);
	cluster_state_digest(st, &d1);
	cluster_state_digest(loaded, &d2);
	ck_assert_mem_eq(d1.bytes, d2.bytes, CLUSTER_DIGEST_LEN);
	cluster_state_free(loaded);
	/* a corrupt file is reported as such */
	snprintf(path, sizeof(path), "%s/%s", dir, CLUSTER_STATE_FILE);
	f = fopen(path, "w");
	fputs("\xff\xff\xff not a snapshot", f);
	fclose(f);
	ck_assert_int_eq(cluster_persist_load(dir, &loaded), -EINVAL);
	ck_assert_int_eq(cluster_persist_save("/nonexistent/dir", st), -ENOENT);
	unlink(path);
	rmdir(dir);
	cluster_state_free(st);
}
END_TEST

static Suite *state_suite(void)
{
	Suite *s = suite_create("state");
	TCase *tc = tcase_create("apply");

	tcase_add_test(tc, announce_adds_nodes_sorted);
	tcase_add_test(tc, bad_ops_change_nothing);
	tcase_add_test(tc, membership_records_times_and_events);
	tcase_add_test(tc, event_log_is_bounded);
	tcase_add_test(tc, apply_is_deterministic);
	tcase_add_test(tc, snapshot_roundtrip_and_malformed);
	tcase_add_test(tc, persist_roundtrip);
	suite_add_tcase(s, tc);
	return s;
}

UNIT_MAIN(state_suite)
