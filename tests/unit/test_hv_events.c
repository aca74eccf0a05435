/* libvirt's event loop on qb_loop (libvirt_events.c), driven through
 * libvirt's own virEvent* calls as libvirt's client code makes them:
 * watches, shared fds, disabled watches, periodic and immediate timeouts,
 * deferred free callbacks, and calls from another thread. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>
#include <libvirt/libvirt.h>
#include <qb/qbloop.h>

#include "hypervisor/libvirt_events.h"
#include "unit.h"

#define NS_PER_MS 1000000ull

static qb_loop_t *loop;

struct counter {
	int calls;
	int last_events;
	int freed;
	bool in_remove;          /* a free callback must not run inside remove */
	bool freed_in_remove;
	pthread_t thread;
};

static void stop_loop(void *data)
{
	qb_loop_stop(loop);
}

static void run_for(unsigned int ms)
{
	qb_loop_timer_handle th;

	ck_assert_int_eq(qb_loop_timer_add(loop, QB_LOOP_LOW, ms * NS_PER_MS, NULL, stop_loop, &th), 0);
	qb_loop_run(loop);
}

static void on_fd(int watch, int fd, int events, void *opaque)
{
	struct counter *c = opaque;

	c->calls++;
	c->last_events = events;
	c->thread = pthread_self();
	(void)watch;
	(void)fd;
}

static void on_timer(int timer, void *opaque)
{
	struct counter *c = opaque;

	c->calls++;
	c->thread = pthread_self();
}

static void on_free(void *opaque)
{
	struct counter *c = opaque;

	c->freed++;
	if (c->in_remove)
		c->freed_in_remove = true;
}

static void setup(void)
{
	ck_assert_int_eq(virInitialize(), 0);
	loop = qb_loop_create();
	ck_assert_ptr_nonnull(loop);
	ck_assert_int_eq(hv_libvirt_events_init(loop), 0);
}

static void teardown(void)
{
	/* The implementation stays registered for the process (as in libvirt);
	 * each test runs in its own process. */
}

START_TEST(test_init_is_per_loop)
{
	qb_loop_t *other = qb_loop_create();

	ck_assert_int_eq(hv_libvirt_events_init(loop), 0);
	ck_assert_int_eq(hv_libvirt_events_init(other), -EBUSY);
	qb_loop_destroy(other);
}
END_TEST

START_TEST(test_watch_readable_disabled_removed)
{
	struct counter c = { 0 };
	int p[2];
	int w;

	ck_assert_int_eq(pipe(p), 0);
	w = virEventAddHandle(p[0], VIR_EVENT_HANDLE_READABLE, on_fd, &c, on_free);
	ck_assert_int_gt(w, 0);
	run_for(20);
	ck_assert_int_eq(c.calls, 0);

	ck_assert_int_eq(write(p[1], "x", 1), 1);
	run_for(20);
	ck_assert_int_gt(c.calls, 0);
	ck_assert_int_eq(c.last_events, VIR_EVENT_HANDLE_READABLE);

	/* Disabled: the readable pipe is not reported (nor is a hang-up). */
	virEventUpdateHandle(w, 0);
	c.calls = 0;
	close(p[1]);
	run_for(30);
	ck_assert_int_eq(c.calls, 0);

	virEventUpdateHandle(w, VIR_EVENT_HANDLE_READABLE);
	run_for(20);
	ck_assert_int_gt(c.calls, 0);

	c.in_remove = true;
	ck_assert_int_eq(virEventRemoveHandle(w), 0);
	c.in_remove = false;
	ck_assert_int_eq(c.freed, 0);
	c.calls = 0;
	run_for(20);
	ck_assert_int_eq(c.calls, 0);
	ck_assert_int_eq(c.freed, 1);
	ck_assert(!c.freed_in_remove);
	ck_assert_int_eq(virEventRemoveHandle(w), -1);
	close(p[0]);
}
END_TEST

START_TEST(test_two_watches_share_an_fd)
{
	struct counter a = { 0 }, b = { 0 };
	int p[2];
	int wa, wb;

	ck_assert_int_eq(pipe(p), 0);
	ck_assert_int_eq(write(p[1], "x", 1), 1);
	wa = virEventAddHandle(p[0], VIR_EVENT_HANDLE_READABLE, on_fd, &a, NULL);
	wb = virEventAddHandle(p[0], VIR_EVENT_HANDLE_READABLE, on_fd, &b, NULL);
	ck_assert_int_gt(wa, 0);
	ck_assert_int_gt(wb, 0);
	ck_assert_int_ne(wa, wb);
	run_for(20);
	ck_assert_int_gt(a.calls, 0);
	ck_assert_int_gt(b.calls, 0);

	ck_assert_int_eq(virEventRemoveHandle(wa), 0);
	a.calls = b.calls = 0;
	run_for(20);
	ck_assert_int_eq(a.calls, 0);
	ck_assert_int_gt(b.calls, 0);
	ck_assert_int_eq(virEventRemoveHandle(wb), 0);
	close(p[0]);
	close(p[1]);
}
END_TEST

START_TEST(test_fd_number_reused)
{
	struct counter a = { 0 }, b = { 0 };
	int p[2], q[2];
	int w;

	ck_assert_int_eq(pipe(p), 0);
	w = virEventAddHandle(p[0], VIR_EVENT_HANDLE_READABLE, on_fd, &a, NULL);
	ck_assert_int_eq(virEventRemoveHandle(w), 0);
	close(p[0]);
	close(p[1]);
	ck_assert_int_eq(pipe(q), 0);
	ck_assert_int_eq(q[0], p[0]);
	ck_assert_int_eq(write(q[1], "x", 1), 1);
	w = virEventAddHandle(q[0], VIR_EVENT_HANDLE_READABLE, on_fd, &b, NULL);
	run_for(20);
	ck_assert_int_eq(a.calls, 0);
	ck_assert_int_gt(b.calls, 0);
	virEventRemoveHandle(w);
	close(q[0]);
	close(q[1]);
}
END_TEST

START_TEST(test_timeouts)
{
	struct counter c = { 0 };
	int t = virEventAddTimeout(10, on_timer, &c, on_free);

	ck_assert_int_gt(t, 0);
	run_for(105);
	/* Periodic: about 10 in 105 ms; a loaded machine may manage fewer. */
	ck_assert_msg(c.calls >= 3 && c.calls <= 11, "fired %d times", c.calls);

	virEventUpdateTimeout(t, -1);
	c.calls = 0;
	run_for(40);
	ck_assert_int_eq(c.calls, 0);

	/* 0: every loop iteration. */
	virEventUpdateTimeout(t, 0);
	run_for(20);
	ck_assert_int_gt(c.calls, 2);

	virEventUpdateTimeout(t, 1000);
	c.calls = 0;
	run_for(30);
	ck_assert_int_eq(c.calls, 0);

	c.in_remove = true;
	ck_assert_int_eq(virEventRemoveTimeout(t), 0);
	c.in_remove = false;
	run_for(10);
	ck_assert_int_eq(c.freed, 1);
	ck_assert(!c.freed_in_remove);
	ck_assert_int_eq(virEventRemoveTimeout(t), -1);
}
END_TEST

static void remove_self(int timer, void *opaque)
{
	struct counter *c = opaque;

	c->calls++;
	c->in_remove = true;
	ck_assert_int_eq(virEventRemoveTimeout(timer), 0);
	c->in_remove = false;
}

/* libvirt removes timeouts and watches from inside their own callbacks. */
START_TEST(test_timeout_removed_from_its_callback)
{
	struct counter c = { 0 };
	int id = virEventAddTimeout(0, remove_self, &c, on_free);

	ck_assert_int_gt(id, 0);
	run_for(30);
	ck_assert_int_eq(c.calls, 1);
	ck_assert_int_eq(c.freed, 1);
	ck_assert(!c.freed_in_remove);
}
END_TEST

struct foreign {
	int watch;
	int timer;
	struct counter posted;
};

static void posted(void *data)
{
	struct counter *c = data;

	c->calls++;
	c->thread = pthread_self();
}

static void *foreign_thread(void *data)
{
	struct foreign *f = data;

	virEventUpdateHandle(f->watch, VIR_EVENT_HANDLE_READABLE);
	virEventUpdateTimeout(f->timer, 0);
	hv_libvirt_events_post(posted, &f->posted);
	return NULL;
}

START_TEST(test_calls_from_another_thread)
{
	struct counter w = { 0 }, t = { 0 };
	struct foreign f = { 0 };
	pthread_t th;
	int p[2];

	ck_assert_int_eq(pipe(p), 0);
	ck_assert_int_eq(write(p[1], "x", 1), 1);
	f.watch = virEventAddHandle(p[0], 0, on_fd, &w, NULL);
	f.timer = virEventAddTimeout(-1, on_timer, &t, NULL);
	run_for(20);
	ck_assert_int_eq(w.calls, 0);
	ck_assert_int_eq(t.calls, 0);

	ck_assert_int_eq(pthread_create(&th, NULL, foreign_thread, &f), 0);
	pthread_join(th, NULL);
	run_for(30);
	ck_assert_int_gt(w.calls, 0);
	ck_assert_int_gt(t.calls, 0);
	ck_assert_int_eq(f.posted.calls, 1);
	/* Everything ran on the loop's thread. */
	ck_assert(pthread_equal(w.thread, pthread_self()));
	ck_assert(pthread_equal(t.thread, pthread_self()));
	ck_assert(pthread_equal(f.posted.thread, pthread_self()));
	virEventRemoveHandle(f.watch);
	virEventRemoveTimeout(f.timer);
	close(p[0]);
	close(p[1]);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("hv_events");
	TCase *tc = tcase_create("events");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_init_is_per_loop);
	tcase_add_test(tc, test_watch_readable_disabled_removed);
	tcase_add_test(tc, test_two_watches_share_an_fd);
	tcase_add_test(tc, test_fd_number_reused);
	tcase_add_test(tc, test_timeouts);
	tcase_add_test(tc, test_timeout_removed_from_its_callback);
	tcase_add_test(tc, test_calls_from_another_thread);
	suite_add_tcase(s, tc);
	return s;
}

UNIT_MAIN(suite)
