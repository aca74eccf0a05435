/* virEventRegisterImpl on qb_loop.
 *
 * libvirt may register several watches on one fd; qb_loop takes an fd once,
 * so each fd is registered once with the union of its enabled watches'
 * events and the readiness is handed to every watch that wants it. A watch
 * with no events is not polled at all (epoll would still report HUP/ERR).
 *
 * Timeouts: -1 off, 0 "every loop iteration", n > 0 every n ms. qb timers
 * are one-shot timerfds (and a 0 ns timerfd never fires), so each firing
 * re-arms, and 0 becomes 1 us.
 *
 * libvirt wants free callbacks called from a clean stack, never from inside
 * the remove call, so they are posted to the loop. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <libvirt/libvirt.h>
#include <qb/qblog.h>

#include "hypervisor/libvirt_events.h"

#define NS_PER_MS 1000000ull
#define MIN_TIMER_NS 1000ull

struct watch {
	struct watch *next;
	int id;
	int fd;
	int events;             /* VIR_EVENT_HANDLE_* */
	virEventHandleCallback cb;
	void *opaque;
	virFreeCallback ff;
};

/* How an fd is registered with qb_loop. */
struct fdreg {
	struct fdreg *next;
	int fd;
	int events;             /* POLL*, as registered */
	bool dirty;
	bool emptied;           /* all its watches went away since the last sync:
				 * the fd may be closed and its number reused */
};

struct timer {
	struct timer *next;
	int id;
	int interval_ms;        /* -1 off */
	virEventTimeoutCallback cb;
	void *opaque;
	virFreeCallback ff;
	qb_loop_timer_handle th;
	bool armed;
	bool dirty;
};

struct post {
	struct post *next;
	void (*fn)(void *data);
	void *data;
};

static struct {
	pthread_mutex_t lock;
	qb_loop_t *loop;
	pthread_t loop_thread;
	int wake[2];
	int next_id;
	struct watch *watches;
	struct fdreg *fds;
	struct timer *timers;
	struct post *posts, **posts_tail;
	bool dirty;
} ev = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.wake = { -1, -1 },
	.next_id = 1,
};

static bool on_loop_thread(void)
{
	return pthread_equal(pthread_self(), ev.loop_thread);
}

static void wake_loop(void)
{
	char b = 1;

	/* A full pipe already holds a wake-up. */
	if (write(ev.wake[1], &b, 1) < 0 && errno != EAGAIN)
		qb_log(LOG_ERR, "cannot wake the main loop for libvirt: %s", strerror(errno));
}

static int to_poll(int vir)
{
	return (vir & VIR_EVENT_HANDLE_READABLE ? POLLIN : 0) |
	       (vir & VIR_EVENT_HANDLE_WRITABLE ? POLLOUT : 0);
}

static int to_vir(int revents)
{
	return (revents & POLLIN ? VIR_EVENT_HANDLE_READABLE : 0) |
	       (revents & POLLOUT ? VIR_EVENT_HANDLE_WRITABLE : 0) |
	       (revents & POLLERR ? VIR_EVENT_HANDLE_ERROR : 0) |
	       (revents & POLLHUP ? VIR_EVENT_HANDLE_HANGUP : 0);
}

/* Caller holds the lock. */
static int post_locked(void (*fn)(void *), void *data)
{
	struct post *p = calloc(1, sizeof(*p));

	if (!p)
		return -ENOMEM;
	p->fn = fn;
	p->data = data;
	*ev.posts_tail = p;
	ev.posts_tail = &p->next;
	wake_loop();
	return 0;
}

static struct fdreg *fdreg_get(int fd, bool create)
{
	struct fdreg *r;

	for (r = ev.fds; r; r = r->next) {
		if (r->fd == fd)
			return r;
	}
	if (!create || !(r = calloc(1, sizeof(*r))))
		return NULL;
	r->fd = fd;
	r->next = ev.fds;
	ev.fds = r;
	return r;
}

static int32_t fd_ready(int32_t fd, int32_t revents, void *data);

/* Loop thread, lock held: makes qb_loop poll fd for what its watches want. */
static void sync_fd(struct fdreg *r)
{
	int want = 0;
	int rc = 0;

	for (struct watch *w = ev.watches; w; w = w->next) {
		if (w->fd == r->fd)
			want |= to_poll(w->events);
	}
	if (r->events && (r->emptied || !want)) {
		qb_loop_poll_del(ev.loop, r->fd);
		r->events = 0;
	}
	if (want && !r->events)
		rc = qb_loop_poll_add(ev.loop, QB_LOOP_MED, r->fd, want, NULL, fd_ready);
	else if (want && want != r->events)
		rc = qb_loop_poll_mod(ev.loop, QB_LOOP_MED, r->fd, want, NULL, fd_ready);
	if (rc < 0)
		qb_log(LOG_ERR, "cannot poll libvirt's fd %d in the main loop: %s", r->fd,
		       strerror(-rc));
	r->events = rc < 0 ? 0 : want;
	r->dirty = false;
	r->emptied = false;
}

static void timer_fired(void *data);

/* Loop thread, lock held: (re)arms the qb timer from the interval. */
static void sync_timer(struct timer *t)
{
	uint64_t ns;
	int rc;

	if (t->armed)
		qb_loop_timer_del(ev.loop, t->th);
	t->armed = false;
	t->dirty = false;
	if (t->interval_ms < 0)
		return;
	ns = (uint64_t)t->interval_ms * NS_PER_MS;
	if (ns < MIN_TIMER_NS)
		ns = MIN_TIMER_NS;
	rc = qb_loop_timer_add(ev.loop, QB_LOOP_MED, ns, (void *)(intptr_t)t->id, timer_fired, &t->th);
	if (rc < 0)
		qb_log(LOG_ERR, "cannot arm libvirt's timer %d in the main loop: %s", t->id,
		       strerror(-rc));
	else
		t->armed = true;
}

/* Loop thread, lock held. */
static void sync_all(void)
{
	struct fdreg **pr = &ev.fds;

	ev.dirty = false;
	for (struct timer *t = ev.timers; t; t = t->next) {
		if (t->dirty)
			sync_timer(t);
	}
	while (*pr) {
		struct fdreg *r = *pr;

		if (r->dirty)
			sync_fd(r);
		if (!r->events) {
			*pr = r->next;
			free(r);
		} else {
			pr = &r->next;
		}
	}
}

/* Lock held: apply now on the loop thread, else have the loop do it. */
static void changed(void)
{
	if (on_loop_thread()) {
		sync_all();
	} else {
		ev.dirty = true;
		wake_loop();
	}
}

static int32_t fd_ready(int32_t fd, int32_t revents, void *data)
{
	enum { MAX_PER_FD = 8 };
	int ids[MAX_PER_FD];
	int n = 0;

	pthread_mutex_lock(&ev.lock);
	for (struct watch *w = ev.watches; w && n < MAX_PER_FD; w = w->next) {
		if (w->fd == fd && w->events)
			ids[n++] = w->id;
	}
	pthread_mutex_unlock(&ev.lock);
	/* Each callback may remove or change the others: look each up again. */
	for (int i = 0; i < n; i++) {
		virEventHandleCallback cb = NULL;
		void *opaque = NULL;
		int mask = 0;

		pthread_mutex_lock(&ev.lock);
		for (struct watch *w = ev.watches; w; w = w->next) {
			if (w->id == ids[i]) {
				mask = revents & (to_poll(w->events) | POLLERR | POLLHUP);
				cb = w->events ? w->cb : NULL;
				opaque = w->opaque;
				break;
			}
		}
		pthread_mutex_unlock(&ev.lock);
		if (cb && mask)
			cb(ids[i], fd, to_vir(mask), opaque);
	}
	return 0;
}

static void timer_fired(void *data)
{
	int id = (int)(intptr_t)data;
	virEventTimeoutCallback cb = NULL;
	void *opaque = NULL;

	pthread_mutex_lock(&ev.lock);
	for (struct timer *t = ev.timers; t; t = t->next) {
		if (t->id != id)
			continue;
		t->armed = false;
		if (t->interval_ms >= 0) {
			sync_timer(t);      /* periodic: the next one counts from now */
			cb = t->cb;
			opaque = t->opaque;
		}
		break;
	}
	pthread_mutex_unlock(&ev.lock);
	if (cb)
		cb(id, opaque);
}

static int32_t wake_ready(int32_t fd, int32_t revents, void *data)
{
	char buf[64];
	struct post *posts;

	while (read(fd, buf, sizeof(buf)) > 0)
		;
	pthread_mutex_lock(&ev.lock);
	if (ev.dirty)
		sync_all();
	posts = ev.posts;
	ev.posts = NULL;
	ev.posts_tail = &ev.posts;
	pthread_mutex_unlock(&ev.lock);
	while (posts) {
		struct post *p = posts;

		posts = p->next;
		p->fn(p->data);
		free(p);
	}
	return 0;
}

/* ---- the callbacks libvirt calls */

static int add_handle(int fd, int events, virEventHandleCallback cb, void *opaque, virFreeCallback ff)
{
	struct watch *w = calloc(1, sizeof(*w));
	struct fdreg *r;
	int id;

	if (!w)
		return -1;
	pthread_mutex_lock(&ev.lock);
	if (!(r = fdreg_get(fd, true))) {
		pthread_mutex_unlock(&ev.lock);
		free(w);
		return -1;
	}
	id = w->id = ev.next_id++;
	w->fd = fd;
	w->events = events;
	w->cb = cb;
	w->opaque = opaque;
	w->ff = ff;
	w->next = ev.watches;
	ev.watches = w;
	r->dirty = true;
	changed();
	pthread_mutex_unlock(&ev.lock);
	return id;
}

static void update_handle(int id, int events)
{
	pthread_mutex_lock(&ev.lock);
	for (struct watch *w = ev.watches; w; w = w->next) {
		struct fdreg *r;

		if (w->id != id)
			continue;
		if (w->events != events) {
			w->events = events;
			if ((r = fdreg_get(w->fd, true)))
				r->dirty = true;
			changed();
		}
		break;
	}
	pthread_mutex_unlock(&ev.lock);
}

static int remove_handle(int id)
{
	int rc = -1;

	pthread_mutex_lock(&ev.lock);
	for (struct watch **pw = &ev.watches; *pw; pw = &(*pw)->next) {
		struct watch *w = *pw;
		struct fdreg *r;
		bool last = true;

		if (w->id != id)
			continue;
		*pw = w->next;
		for (struct watch *o = ev.watches; o; o = o->next)
			last &= o->fd != w->fd;
		if ((r = fdreg_get(w->fd, true))) {
			r->dirty = true;
			r->emptied |= last;
		}
		if (w->ff)
			post_locked(w->ff, w->opaque);
		free(w);
		changed();
		rc = 0;
		break;
	}
	pthread_mutex_unlock(&ev.lock);
	return rc;
}

static int add_timeout(int interval_ms, virEventTimeoutCallback cb, void *opaque, virFreeCallback ff)
{
	struct timer *t = calloc(1, sizeof(*t));
	int id;

	if (!t)
		return -1;
	pthread_mutex_lock(&ev.lock);
	id = t->id = ev.next_id++;
	t->interval_ms = interval_ms < 0 ? -1 : interval_ms;
	t->cb = cb;
	t->opaque = opaque;
	t->ff = ff;
	t->dirty = true;
	t->next = ev.timers;
	ev.timers = t;
	changed();
	pthread_mutex_unlock(&ev.lock);
	return id;
}

static void update_timeout(int id, int interval_ms)
{
	pthread_mutex_lock(&ev.lock);
	for (struct timer *t = ev.timers; t; t = t->next) {
		if (t->id != id)
			continue;
		/* Even the same interval restarts it, as in libvirt's own loop. */
		t->interval_ms = interval_ms < 0 ? -1 : interval_ms;
		t->dirty = true;
		changed();
		break;
	}
	pthread_mutex_unlock(&ev.lock);
}

static int remove_timeout(int id)
{
	int rc = -1;

	pthread_mutex_lock(&ev.lock);
	for (struct timer **pt = &ev.timers; *pt; pt = &(*pt)->next) {
		struct timer *t = *pt;

		if (t->id != id)
			continue;
		*pt = t->next;
		if (t->armed) {
			if (on_loop_thread()) {
				qb_loop_timer_del(ev.loop, t->th);
			} else {
				/* Disarmed by the loop: a firing finds no timer of this id. */
				ev.dirty = true;
				wake_loop();
			}
		}
		if (t->ff)
			post_locked(t->ff, t->opaque);
		free(t);
		rc = 0;
		break;
	}
	pthread_mutex_unlock(&ev.lock);
	return rc;
}

int hv_libvirt_events_init(qb_loop_t *loop)
{
	int rc = 0;

	pthread_mutex_lock(&ev.lock);
	if (ev.loop) {
		rc = ev.loop == loop ? 0 : -EBUSY;
		goto cleanup;
	}
	if (pipe2(ev.wake, O_CLOEXEC | O_NONBLOCK) < 0) {
		rc = -errno;
		goto cleanup;
	}
	ev.loop = loop;
	ev.loop_thread = pthread_self();
	ev.posts_tail = &ev.posts;
	rc = qb_loop_poll_add(loop, QB_LOOP_HIGH, ev.wake[0], POLLIN, NULL, wake_ready);
	if (rc < 0) {
		close(ev.wake[0]);
		close(ev.wake[1]);
		ev.wake[0] = ev.wake[1] = -1;
		ev.loop = NULL;
		goto cleanup;
	}
	virEventRegisterImpl(add_handle, update_handle, remove_handle, add_timeout, update_timeout,
			     remove_timeout);
cleanup:
	pthread_mutex_unlock(&ev.lock);
	return rc;
}

int hv_libvirt_events_post(void (*fn)(void *data), void *data)
{
	int rc;

	pthread_mutex_lock(&ev.lock);
	rc = ev.loop ? post_locked(fn, data) : -ENOTCONN;
	pthread_mutex_unlock(&ev.lock);
	return rc;
}

bool hv_libvirt_events_on_loop(void)
{
	bool yes;

	pthread_mutex_lock(&ev.lock);
	yes = ev.loop && on_loop_thread();
	pthread_mutex_unlock(&ev.lock);
	return yes;
}

void hv_libvirt_events_counts(int *watches, int *timeouts)
{
	int nw = 0, nt = 0;

	pthread_mutex_lock(&ev.lock);
	for (struct watch *w = ev.watches; w; w = w->next)
		nw++;
	for (struct timer *t = ev.timers; t; t = t->next)
		nt++;
	pthread_mutex_unlock(&ev.lock);
	*watches = nw;
	*timeouts = nt;
}
