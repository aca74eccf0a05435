/* Sync decisions: whose state wins after a membership change. */
#include <string.h>

#include "cluster/sync.h"
#include "unit.h"

static struct cluster_sync_hello hello(uint32_t node, uint64_t version, uint8_t digest_byte, bool auth)
{
	struct cluster_sync_hello h = { .node = node, .version = version, .authoritative = auth };

	memset(h.digest.bytes, digest_byte, sizeof(h.digest.bytes));
	return h;
}

START_TEST(authoritative_beats_newer)
{
	/* a minority that somehow got ahead never overwrites the quorate side */
	struct cluster_sync_hello h[] = { hello(1, 90, 1, true), hello(2, 90, 1, true), hello(3, 120, 2, false) };

	ck_assert_uint_eq(cluster_sync_choose(h, 3), 0);
	ck_assert(cluster_sync_needs_transfer(h, 3, 0));
}
END_TEST

START_TEST(highest_version_then_lowest_id)
{
	struct cluster_sync_hello cold[] = { hello(1, 5, 1, false), hello(2, 9, 2, false), hello(3, 9, 3, false) };
	struct cluster_sync_hello tie[] = { hello(4, 7, 1, true), hello(2, 7, 2, true), hello(3, 7, 3, true) };

	ck_assert_uint_eq(cluster_sync_choose(cold, 3), 1);   /* whole-cluster restart */
	ck_assert_uint_eq(cluster_sync_choose(tie, 3), 1);    /* node 2 */
}
END_TEST

/* Same version, one member diverged: the majority's copy wins even when the
 * diverged member has the lowest id. */
START_TEST(majority_digest_beats_lowest_id)
{
	struct cluster_sync_hello h[] = { hello(1, 7, 9, true), hello(2, 7, 4, true), hello(3, 7, 4, true) };

	ck_assert_uint_eq(cluster_sync_choose(h, 3), 1);
}
END_TEST

START_TEST(equal_digests_need_no_transfer)
{
	struct cluster_sync_hello h[] = { hello(1, 5, 7, true), hello(2, 5, 7, false) };

	ck_assert(!cluster_sync_needs_transfer(h, 2, cluster_sync_choose(h, 2)));
	ck_assert(!cluster_sync_needs_transfer(h, 1, 0));
}
END_TEST

START_TEST(manager_is_lowest_member)
{
	uint32_t m[] = { 5, 3, 9 };

	ck_assert_uint_eq(cluster_manager_elect(m, 3), 3);
	ck_assert_uint_eq(cluster_manager_elect(m, 0), 0);
}
END_TEST

static Suite *sync_suite(void)
{
	Suite *s = suite_create("sync");
	TCase *tc = tcase_create("decisions");

	tcase_add_test(tc, authoritative_beats_newer);
	tcase_add_test(tc, highest_version_then_lowest_id);
	tcase_add_test(tc, majority_digest_beats_lowest_id);
	tcase_add_test(tc, equal_digests_need_no_transfer);
	tcase_add_test(tc, manager_is_lowest_member);
	suite_add_tcase(s, tc);
	return s;
}

UNIT_MAIN(sync_suite)
