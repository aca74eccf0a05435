/* util/workq.c: jobs run off the loop and complete on it, one key's jobs in
 * order and never two at once, other keys side by side, a hung job shows in
 * the stats without holding anything else, and freeing cancels what never
 * ran. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>
#include <qb/qbloop.h>

#include "tests/unit/unit.h"
#include "util/clock.h"
#include "util/workq.h"

#define NS_PER_MS 1000000ull

static qb_loop_t *loop;
static pthread_t loop_thread;

struct rec {
	int id;
	int key;                    /* index into the keys' counters */
	unsigned sleep_ms;
	atomic_bool *gate;          /* waits until true, if set */
	bool ran_off_loop;
	bool done_on_loop;
	int done_rc;
	int order;                  /* when done ran */
};

static atomic_int in_key[4];
static atomic_int overlaps;
static atomic_int concurrent, max_concurrent;
static int done_count, done_seq;
static int want_done;

static void work(void *arg)
{
	struct rec *r = arg;
	int now;

	r->ran_off_loop = !pthread_equal(pthread_self(), loop_thread);
	if (atomic_fetch_add(&in_key[r->key], 1) > 0)
		atomic_fetch_add(&overlaps, 1);
	now = atomic_fetch_add(&concurrent, 1) + 1;
	for (int m = atomic_load(&max_concurrent); now > m;)
		if (atomic_compare_exchange_weak(&max_concurrent, &m, now))
			break;
	while (r->gate && !atomic_load(r->gate))
		usleep(1000);
	if (r->sleep_ms)
		usleep(r->sleep_ms * 1000u);
	atomic_fetch_sub(&concurrent, 1);
	atomic_fetch_sub(&in_key[r->key], 1);
}

static void done(void *arg, int rc)
{
	struct rec *r = arg;

	r->done_on_loop = pthread_equal(pthread_self(), loop_thread);
	r->done_rc = rc;
	r->order = done_seq++;
	if (++done_count == want_done)
		qb_loop_stop(loop);
}

static void give_up(void *data)
{
	qb_loop_stop(loop);
}

static void run_until_done(int n, uint32_t limit_ms)
{
	qb_loop_timer_handle th;

	want_done = n;
	ck_assert_int_eq(qb_loop_timer_add(loop, QB_LOOP_LOW, limit_ms * NS_PER_MS, NULL, give_up,
					   &th), 0);
	qb_loop_run(loop);
	qb_loop_timer_del(loop, th);
}

static void setup(void)
{
	loop = qb_loop_create();
	loop_thread = pthread_self();
	memset(in_key, 0, sizeof(in_key));
	atomic_store(&overlaps, 0);
	atomic_store(&concurrent, 0);
	atomic_store(&max_concurrent, 0);
	done_count = done_seq = 0;
}

static void teardown(void)
{
	qb_loop_destroy(loop);
}

static struct util_workq *new_queue(unsigned threads)
{
	struct util_workq_params p = { .loop = loop, .name = "test", .threads = threads };
	struct util_workq *q = NULL;

	ck_assert_int_eq(util_workq_new(&p, &q), 0);
	return q;
}

START_TEST(one_key_in_order_others_in_parallel)
{
	static const char *keys[] = { "a", "b", "c" };
	struct util_workq *q = new_queue(3);
	struct rec r[12];

	memset(r, 0, sizeof(r));
	for (int i = 0; i < 12; i++) {
		r[i].id = i;
		r[i].key = i % 3;
		r[i].sleep_ms = 20;
		ck_assert_int_eq(util_workq_submit(q, keys[i % 3], "test job", work, done, &r[i]), 0);
	}
	ck_assert(util_workq_busy(q, "a"));
	ck_assert(!util_workq_busy(q, "z"));
	run_until_done(12, 5000);
	ck_assert_int_eq(done_count, 12);
	for (int i = 0; i < 12; i++) {
		ck_assert(r[i].ran_off_loop);
		ck_assert(r[i].done_on_loop);
		ck_assert_int_eq(r[i].done_rc, 0);
		/* A key's jobs complete in the order they were submitted. */
		if (i >= 3)
			ck_assert_int_lt(r[i - 3].order, r[i].order);
	}
	ck_assert_int_eq(atomic_load(&overlaps), 0);
	/* Three keys, three threads: they ran side by side. */
	ck_assert_int_ge(atomic_load(&max_concurrent), 2);
	ck_assert(!util_workq_busy(q, "a"));
	util_workq_free(q, 1000);
}
END_TEST

START_TEST(a_hung_job_holds_only_its_key)
{
	struct util_workq *q = new_queue(2);
	atomic_bool gate = false;
	struct rec hung = { .key = 0, .gate = &gate }, same = { .key = 0 }, other[3];
	struct util_workq_stats st;

	memset(other, 0, sizeof(other));
	ck_assert_int_eq(util_workq_submit(q, "vm1", "a call that hangs", work, done, &hung), 0);
	ck_assert_int_eq(util_workq_submit(q, "vm1", "the next call", work, done, &same), 0);
	for (int i = 0; i < 3; i++) {
		other[i].key = 1;
		ck_assert_int_eq(util_workq_submit(q, NULL, "another", work, done, &other[i]), 0);
	}
	/* The other jobs finish on the second thread while vm1 waits. */
	run_until_done(3, 5000);
	ck_assert_int_eq(done_count, 3);
	ck_assert(!hung.done_on_loop && !same.done_on_loop);
	usleep(30000);
	util_workq_stats(q, &st);
	ck_assert_uint_eq(st.running, 1);
	ck_assert_uint_eq(st.queued, 1);
	ck_assert_uint_ge(st.oldest_ms, 30);
	ck_assert_str_eq(st.oldest_key, "vm1");
	ck_assert_str_eq(st.oldest_what, "a call that hangs");
	atomic_store(&gate, true);
	run_until_done(5, 5000);
	ck_assert(hung.done_on_loop && same.done_on_loop);
	ck_assert_int_lt(hung.order, same.order);
	util_workq_free(q, 1000);
}
END_TEST

static void *open_gate_later(void *arg)
{
	usleep(50000);
	atomic_store((atomic_bool *)arg, true);
	return NULL;
}

START_TEST(free_cancels_what_never_ran)
{
	struct util_workq *q = new_queue(1);
	atomic_bool gate = false;
	struct rec running = { .gate = &gate }, waiting = { .key = 1 };
	pthread_t t;

	/* The same key: the second cannot start before the first's done(),
	 * which only the loop (not running here) or free calls. */
	ck_assert_int_eq(util_workq_submit(q, "k", "running", work, done, &running), 0);
	ck_assert_int_eq(util_workq_submit(q, "k", "waiting", work, done, &waiting), 0);
	while (atomic_load(&concurrent) == 0)
		usleep(1000);
	ck_assert_int_eq(pthread_create(&t, NULL, open_gate_later, &gate), 0);
	/* free waits for the running job (the gate opens after 50 ms). */
	util_workq_free(q, 2000);
	pthread_join(t, NULL);
	ck_assert(running.done_on_loop);
	ck_assert_int_eq(running.done_rc, 0);
	ck_assert(waiting.done_on_loop);
	ck_assert_int_eq(waiting.done_rc, -ECANCELED);
	ck_assert(!waiting.ran_off_loop);
}
END_TEST

static struct util_workq *asking_q;
static bool asked_busy;
static int resubmit_rc;

/* A done() that, like vireod's, asks the queue again and submits a follow-up. */
static void done_asks_queue(void *arg, int rc)
{
	asked_busy = util_workq_busy(asking_q, "k");
	resubmit_rc = util_workq_submit(asking_q, "k", "follow-up", work, done, arg);
	done(arg, rc);
}

START_TEST(a_done_may_ask_the_queue_being_freed)
{
	struct util_workq *q = new_queue(1);
	atomic_bool gate = false;
	struct rec running = { .gate = &gate }, waiting = { .key = 1 };
	pthread_t t;

	asking_q = q;
	ck_assert_int_eq(util_workq_submit(q, "k", "running", work, done_asks_queue, &running), 0);
	ck_assert_int_eq(util_workq_submit(q, "k", "waiting", work, done_asks_queue, &waiting), 0);
	while (atomic_load(&concurrent) == 0)
		usleep(1000);
	ck_assert_int_eq(pthread_create(&t, NULL, open_gate_later, &gate), 0);
	/* Held its lock while calling done(): this deadlocked. */
	util_workq_free(q, 2000);
	pthread_join(t, NULL);
	ck_assert(waiting.done_on_loop);
	ck_assert_int_eq(waiting.done_rc, -ECANCELED);
	ck_assert_int_eq(resubmit_rc, -ESHUTDOWN);
	ck_assert(!asked_busy);
}
END_TEST

static struct util_workq *batch_q;
static bool key_busy_in_other_done;

static void done_sees_key(void *arg, int rc)
{
	key_busy_in_other_done = util_workq_busy(batch_q, "k");
	done(arg, rc);
}

START_TEST(a_key_is_busy_until_its_done_ran_even_in_one_batch)
{
	struct util_workq *q = new_queue(2);
	struct rec first = { .key = 1 }, keyed = { .key = 0 };

	batch_q = q;
	/* Both finish before the loop runs: one batch, the unkeyed one first. */
	ck_assert_int_eq(util_workq_submit(q, NULL, "a list", work, done_sees_key, &first), 0);
	ck_assert_int_eq(util_workq_submit(q, "k", "a call", work, done, &keyed), 0);
	usleep(100000);
	run_until_done(2, 5000);
	ck_assert_int_lt(first.order, keyed.order);
	/* The list's answer came first: k's answer had not been taken in. */
	ck_assert(key_busy_in_other_done);
	ck_assert(!util_workq_busy(q, "k"));
	util_workq_free(q, 1000);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("workq");
	TCase *tc = tcase_create("workq");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, one_key_in_order_others_in_parallel);
	tcase_add_test(tc, a_hung_job_holds_only_its_key);
	tcase_add_test(tc, free_cancels_what_never_ran);
	tcase_add_test(tc, a_done_may_ask_the_queue_being_freed);
	tcase_add_test(tc, a_key_is_busy_until_its_done_ran_even_in_one_batch);
	suite_add_tcase(s, tc);
	return s;
}

UNIT_MAIN(suite)
