/* The migration data path (migration/stream.h) end to end on loopback: a
 * real qb loop, a real listener, a source session, and both QEMUs played by
 * threads on unix sockets in a temporary directory. The data is mixed
 * (zeros, random, text-like pages) and checked with SHA-256 both ways. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <nettle/sha2.h>
#include <qb/qbloop.h>

#include "migration/stream.h"
#include "unit.h"

#define MIB (1024u * 1024u)
#define PAGE 4096u
#define FAKE_TIMEOUT_MS 20000

static char dir[64];

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------ data */

static uint64_t splitmix(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Page n of the stream seeded seed: each MiB is zeros, random or text. */
static void gen_page(uint64_t seed, uint64_t n, uint8_t *out)
{
	static const char *words[] = { "guest ", "memory ", "page ", "dirty ", "vireo ", "migration ",
				       "kernel ", "buffer ", "0x7f3a ", "cache ", "\n", "block " };
	uint64_t x = seed * 1000003u + n;
	unsigned kind = (unsigned)((n * PAGE / MIB + seed) % 3);
	size_t off = 0;

	if (kind == 0) {
		memset(out, 0, PAGE);
	} else if (kind == 1) {
		for (; off < PAGE; off += 8) {
			uint64_t v = splitmix(&x);

			memcpy(out + off, &v, 8);
		}
	} else {
		while (off < PAGE) {
			const char *w = words[splitmix(&x) % 12];
			size_t len = strlen(w);

			if (len > PAGE - off)
				len = PAGE - off;
			memcpy(out + off, w, len);
			off += len;
		}
	}
}

/* ------------------------------------------------------------ fake QEMUs */

enum fake_mode {
	FAKE_NORMAL,      /* write everything, shut the write side, read to the end */
	FAKE_STALL,       /* write out_total, then neither write nor close */
	FAKE_RESET,       /* write out_total, wait for unread back data, close: a reset */
};

struct fake {
	char path[108];
	bool listen;            /* the target QEMU listens, the source QEMU connects */
	int listen_fd;
	int quit_fd;
	uint64_t out_total, out_seed;
	enum fake_mode mode;
	pthread_t thread;
	/* results */
	bool connected;
	uint64_t out_sent, in_bytes;
	bool in_eof;            /* a clean end of file */
	int in_err;
	uint8_t out_hash[SHA256_DIGEST_SIZE], in_hash[SHA256_DIGEST_SIZE];
};

static int fake_connect(struct fake *f)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct pollfd p[2];
	int fd;

	strcpy(sa.sun_path, f->path);
	if (!f->listen) {
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
			close(fd);
			return -1;
		}
		return fd;
	}
	p[0] = (struct pollfd){ .fd = f->listen_fd, .events = POLLIN };
	p[1] = (struct pollfd){ .fd = f->quit_fd, .events = POLLIN };
	if (poll(p, 2, FAKE_TIMEOUT_MS) <= 0 || p[1].revents)
		return -1;
	return accept4(f->listen_fd, NULL, NULL, SOCK_CLOEXEC);
}

static void *fake_main(void *data)
{
	struct fake *f = data;
	struct sha256_ctx out_ctx, in_ctx;
	uint8_t *buf = malloc(16 * PAGE), *in = malloc(64 * 1024);
	size_t have = 0, at = 0;
	uint64_t made = 0;
	bool out_done, in_done = false;
	int fd;

	sha256_init(&out_ctx);
	sha256_init(&in_ctx);
	if ((fd = fake_connect(f)) < 0)
		goto out;
	f->connected = true;
	fcntl(fd, F_SETFL, O_NONBLOCK);
	out_done = f->out_total == 0;
	if (out_done && f->mode == FAKE_NORMAL)
		shutdown(fd, SHUT_WR);
	while (!(out_done && in_done)) {
		struct pollfd p[2] = {
			{ .fd = fd, .events = (in_done || f->mode == FAKE_RESET ? 0 : POLLIN) |
					      (out_done ? 0 : POLLOUT) },
			{ .fd = f->quit_fd, .events = POLLIN },
		};
		ssize_t n;

		if (poll(p, 2, FAKE_TIMEOUT_MS) <= 0 || p[1].revents)
			break;
		if (!in_done && f->mode != FAKE_RESET && (p[0].revents & (POLLIN | POLLHUP | POLLERR))) {
			n = read(fd, in, 64 * 1024);
			if (n > 0) {
				sha256_update(&in_ctx, (size_t)n, in);
				f->in_bytes += (uint64_t)n;
			} else if (n == 0) {
				f->in_eof = in_done = true;
			} else if (errno != EAGAIN) {
				f->in_err = errno;
				in_done = true;
			}
		}
		if (!out_done && (p[0].revents & (POLLOUT | POLLHUP | POLLERR))) {
			if (at == have) {
				size_t pages = 16;

				if ((f->out_total - made) / PAGE < pages)
					pages = (f->out_total - made) / PAGE;
				for (size_t i = 0; i < pages; i++)
					gen_page(f->out_seed, made / PAGE + i, buf + i * PAGE);
				have = pages * PAGE;
				at = 0;
				sha256_update(&out_ctx, have, buf);
				made += have;
			}
			n = send(fd, buf + at, have - at, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (n > 0) {
				at += (size_t)n;
				f->out_sent += (uint64_t)n;
			} else if (n < 0 && errno != EAGAIN) {
				out_done = true;
			}
			if (f->out_sent == f->out_total) {
				out_done = true;
				if (f->mode == FAKE_NORMAL)
					shutdown(fd, SHUT_WR);
			}
		}
		if (out_done && f->mode == FAKE_RESET) {
			/* back data waits unread: closing now resets the connection */
			struct pollfd w = { .fd = fd, .events = POLLIN };

			poll(&w, 1, 5000);
			break;
		}
		if (out_done && f->mode == FAKE_STALL && in_done) {
			/* hold the connection open, silent, until told to go */
			struct pollfd q = { .fd = f->quit_fd, .events = POLLIN };

			poll(&q, 1, FAKE_TIMEOUT_MS);
			break;
		}
	}
	close(fd);
out:
	sha256_digest(&out_ctx, SHA256_DIGEST_SIZE, f->out_hash);
	sha256_digest(&in_ctx, SHA256_DIGEST_SIZE, f->in_hash);
	free(buf);
	free(in);
	return NULL;
}

static void fake_start(struct fake *f, const char *name, bool listening, uint64_t out_total,
		       uint64_t seed, enum fake_mode mode)
{
	memset(f, 0, sizeof(*f));
	snprintf(f->path, sizeof(f->path), "%s/%s", dir, name);
	f->listen = listening;
	f->out_total = out_total;
	f->out_seed = seed;
	f->mode = mode;
	f->listen_fd = -1;
	f->quit_fd = eventfd(0, EFD_CLOEXEC);
	if (listening) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };

		strcpy(sa.sun_path, f->path);
		unlink(f->path);
		f->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		ck_assert_int_eq(bind(f->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
		ck_assert_int_eq(listen(f->listen_fd, 4), 0);
	}
	ck_assert_int_eq(pthread_create(&f->thread, NULL, fake_main, f), 0);
}

/* The sessions report before QEMU has read all they wrote: a fake gets
 * patience_ms to finish on its own before it is told to go. */
static void fake_join(struct fake *f, uint32_t patience_ms)
{
	struct timespec until;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += patience_ms / 1000;
	until.tv_nsec += (long)(patience_ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	if (pthread_timedjoin_np(f->thread, NULL, &until) != 0) {
		eventfd_write(f->quit_fd, 1);
		pthread_join(f->thread, NULL);
	}
	close(f->quit_fd);
	if (f->listen_fd >= 0)
		close(f->listen_fd);
}

/* The hash of what a fake with these settings writes in full. */
static void expected_hash(uint64_t total, uint64_t seed, uint8_t out[SHA256_DIGEST_SIZE])
{
	struct sha256_ctx ctx;
	uint8_t page[PAGE];

	sha256_init(&ctx);
	for (uint64_t n = 0; n < total / PAGE; n++) {
		gen_page(seed, n, page);
		sha256_update(&ctx, PAGE, page);
	}
	sha256_digest(&ctx, SHA256_DIGEST_SIZE, out);
}

/* ------------------------------------------------------------ loop harness */

struct run {
	qb_loop_t *loop;
	struct mig_listener *l;
	struct mig_session *src;
	struct mig_result src_r, tgt_r;
	struct mig_session_id tgt_id;
	int src_calls, tgt_calls;
	bool want_tgt;
	bool free_in_done, stop_listener_in_done;
	bool timed_out;
	uint64_t cancel_at;     /* cancel the source once this much went forward */
	bool cancelled;
};

static struct mig_key key_a, key_b;

static void maybe_stop(struct run *r)
{
	if (r->src_calls && (r->tgt_calls || !r->want_tgt))
		qb_loop_stop(r->loop);
}

static void src_done(void *ctx, const struct mig_result *res)
{
	struct run *r = ctx;

	r->src_r = *res;
	r->src_calls++;
	if (r->free_in_done) {
		mig_session_free(r->src);
		r->src = NULL;
	}
	maybe_stop(r);
}

static void tgt_done(void *ctx, const struct mig_session_id *id, const struct mig_result *res)
{
	struct run *r = ctx;

	r->tgt_id = *id;
	r->tgt_r = *res;
	r->tgt_calls++;
	if (r->stop_listener_in_done) {
		mig_listener_stop(r->l);
		r->l = NULL;
	}
	maybe_stop(r);
}

static void on_limit(void *data)
{
	struct run *r = data;

	r->timed_out = true;
	qb_loop_stop(r->loop);
}

static void watch_cancel(void *data)
{
	struct run *r = data;
	qb_loop_timer_handle t;

	if (!r->src || r->src_calls)
		return;
	if (atomic_load(&mig_session_counters(r->src)->raw_forward) >= r->cancel_at) {
		mig_session_cancel(r->src);
		mig_session_cancel(r->src);   /* twice: still one done */
		r->cancelled = true;
		return;
	}
	qb_loop_timer_add(r->loop, QB_LOOP_HIGH, 2 * 1000000ull, r, watch_cancel, &t);
}

static void run_loop(struct run *r, uint32_t limit_ms)
{
	qb_loop_timer_handle t;

	r->timed_out = false;
	ck_assert_int_eq(qb_loop_timer_add(r->loop, QB_LOOP_HIGH, limit_ms * 1000000ull, r,
					   on_limit, &t), 0);
	qb_loop_run(r->loop);
	if (!r->timed_out)
		qb_loop_timer_del(r->loop, t);
}

static struct mig_session_id test_id(uint64_t mid)
{
	struct mig_session_id id = { .migration_id = mid, .generation = 7 };

	snprintf(id.vm_uuid, sizeof(id.vm_uuid), "0b6f3c1e-5d2a-4c11-9a7e-%012llu",
		 (unsigned long long)mid);
	return id;
}

static void start_listener(struct run *r, const struct mig_key *key, uint32_t stall_ms)
{
	struct mig_listener_params lp = {
		.loop = r->loop,
		.bind_host = "127.0.0.1",
		.key = key,
		.handshake_timeout_ms = 300,
		.stall_timeout_ms = stall_ms,
		.qemu_connect_timeout_ms = 2000,
		.session_done = tgt_done,
		.ctx = r,
	};

	ck_assert_int_eq(mig_listener_start(&lp, &r->l), 0);
	ck_assert_uint_ne(mig_listener_port(r->l), 0);
}

static void start_source(struct run *r, const struct mig_key *key, uint64_t mid, uint16_t port,
			 uint32_t connect_ms, uint32_t stall_ms, uint32_t corrupt)
{
	char path[108];
	struct mig_source_params sp = {
		.loop = r->loop,
		.id = test_id(mid),
		.socket_path = path,
		.target_host = "127.0.0.1",
		.target_port = port,
		.key = key,
		.connect_timeout_ms = connect_ms,
		.stall_timeout_ms = stall_ms,
		.fault_corrupt_chunk = corrupt,
		.done = src_done,
		.ctx = r,
	};
	struct stat st;

	snprintf(path, sizeof(path), "%s/src.sock", dir);
	ck_assert_int_eq(mig_source_start(&sp, &r->src), 0);
	/* listening before start returns, mode 0660 */
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert(S_ISSOCK(st.st_mode));
	ck_assert_int_eq(st.st_mode & 0777, 0660);
}

static void expect(struct run *r, uint64_t mid)
{
	struct mig_session_id id = test_id(mid);
	char path[108];

	snprintf(path, sizeof(path), "%s/tgt.sock", dir);
	ck_assert_int_eq(mig_listener_expect(r->l, &id, path), 0);
	ck_assert_int_eq(mig_listener_expect(r->l, &id, path), -EEXIST);
}

static void run_init(struct run *r)
{
	memset(r, 0, sizeof(*r));
	r->loop = qb_loop_create();
	ck_assert_ptr_nonnull(r->loop);
	r->want_tgt = true;
}

static void run_end(struct run *r)
{
	mig_session_free(r->src);
	mig_listener_stop(r->l);
	qb_loop_destroy(r->loop);
}

static void setup(void)
{
	signal(SIGPIPE, SIG_IGN);
	snprintf(dir, sizeof(dir), "/tmp/vireo-mig-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	memset(key_a.bytes, 0xa5, sizeof(key_a.bytes));
	memset(key_b.bytes, 0x5a, sizeof(key_b.bytes));
}

static void teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	ck_assert_int_eq(system(cmd), 0);
}

/* ------------------------------------------------------------ tests */

START_TEST(key_from_file)
{
	struct mig_key k1, k2, k3;
	char a[128], b[128], c[128], s[128];
	uint8_t bytes[256];
	FILE *f;

	for (size_t i = 0; i < sizeof(bytes); i++)
		bytes[i] = (uint8_t)(i * 7 + 3);
	snprintf(a, sizeof(a), "%s/a.key", dir);
	snprintf(b, sizeof(b), "%s/b.key", dir);
	snprintf(c, sizeof(c), "%s/c.key", dir);
	snprintf(s, sizeof(s), "%s/short.key", dir);
	ck_assert_ptr_nonnull(f = fopen(a, "w"));
	fwrite(bytes, 1, sizeof(bytes), f);
	fclose(f);
	ck_assert_ptr_nonnull(f = fopen(b, "w"));
	fwrite(bytes, 1, sizeof(bytes), f);
	fclose(f);
	bytes[100] ^= 1;
	ck_assert_ptr_nonnull(f = fopen(c, "w"));
	fwrite(bytes, 1, sizeof(bytes), f);
	fclose(f);
	ck_assert_ptr_nonnull(f = fopen(s, "w"));
	fwrite(bytes, 1, 15, f);
	fclose(f);

	ck_assert_int_eq(mig_key_from_file(a, &k1), 0);
	ck_assert_int_eq(mig_key_from_file(b, &k2), 0);
	ck_assert_mem_eq(k1.bytes, k2.bytes, MIG_KEY_LEN);
	ck_assert_int_eq(mig_key_from_file(c, &k3), 0);
	ck_assert(memcmp(k1.bytes, k3.bytes, MIG_KEY_LEN) != 0);
	/* derived, not the file's first bytes */
	ck_assert(memcmp(k1.bytes, bytes, MIG_KEY_LEN) != 0);
	ck_assert_int_eq(mig_key_from_file(s, &k3), -EINVAL);
	snprintf(s, sizeof(s), "%s/none.key", dir);
	ck_assert_int_eq(mig_key_from_file(s, &k3), -ENOENT);
}
END_TEST

/* 64 MiB forward and 1 MiB back, bit-exact, through the default chunking. */
START_TEST(round_trip)
{
	const uint64_t fwd = 64ull * MIB, back = 1ull * MIB;
	uint8_t want_fwd[SHA256_DIGEST_SIZE], want_back[SHA256_DIGEST_SIZE];
	struct fake qs, qt;
	struct run r;

	run_init(&r);
	r.free_in_done = true;   /* free from inside done: allowed */
	start_listener(&r, &key_a, 5000);
	expect(&r, 1);
	fake_start(&qt, "tgt.sock", true, back, 2, FAKE_NORMAL);
	start_source(&r, &key_a, 1, mig_listener_port(r.l), 2000, 5000, 0);
	fake_start(&qs, "src.sock", false, fwd, 1, FAKE_NORMAL);
	run_loop(&r, 25000);
	fake_join(&qs, 5000);
	fake_join(&qt, 5000);

	ck_assert(!r.timed_out);
	ck_assert_msg(r.src_r.rc == 0, "source: %d %s", r.src_r.rc, r.src_r.message);
	ck_assert_msg(r.tgt_r.rc == 0, "target: %d %s", r.tgt_r.rc, r.tgt_r.message);
	ck_assert_str_eq(r.src_r.message, "");
	ck_assert_int_eq(r.src_calls, 1);
	ck_assert_int_eq(r.tgt_calls, 1);
	ck_assert_uint_eq(r.tgt_id.migration_id, 1);
	ck_assert_str_eq(r.tgt_id.vm_uuid, test_id(1).vm_uuid);

	expected_hash(fwd, 1, want_fwd);
	expected_hash(back, 2, want_back);
	ck_assert_uint_eq(qs.out_sent, fwd);
	ck_assert_uint_eq(qt.in_bytes, fwd);
	ck_assert(qt.in_eof);
	ck_assert_mem_eq(qt.in_hash, want_fwd, SHA256_DIGEST_SIZE);
	ck_assert_uint_eq(qs.in_bytes, back);
	ck_assert(qs.in_eof);
	ck_assert_mem_eq(qs.in_hash, want_back, SHA256_DIGEST_SIZE);

	ck_assert_uint_eq(r.src_r.raw_forward, fwd);
	ck_assert_uint_eq(r.tgt_r.raw_forward, fwd);
	ck_assert_uint_eq(r.src_r.raw_back, back);
	ck_assert_uint_eq(r.tgt_r.raw_back, back);
	ck_assert_uint_eq(r.src_r.wire_forward, r.tgt_r.wire_forward);
	ck_assert_uint_eq(r.src_r.chunks_forward, r.tgt_r.chunks_forward);
	ck_assert_uint_ge(r.src_r.chunks_forward, fwd / MIG_CHUNK_DEFAULT);
	/* a third is zeros, a third text: well under the raw size */
	ck_assert_msg(r.src_r.wire_forward < fwd * 3 / 4, "wire %llu for %llu raw",
		      (unsigned long long)r.src_r.wire_forward, (unsigned long long)fwd);
	ck_assert_uint_ne(r.src_r.first_byte_ms, 0);
	ck_assert_uint_ge(r.src_r.last_byte_ms, r.src_r.first_byte_ms);
	ck_assert_uint_ne(r.tgt_r.first_byte_ms, 0);
	ck_assert_uint_ge(r.tgt_r.last_byte_ms, r.tgt_r.first_byte_ms);
	/* the socket file goes with the session */
	ck_assert_int_eq(access(qs.path, F_OK), -1);
	run_end(&r);
}
END_TEST

START_TEST(wrong_key_refused)
{
	struct run r;

	run_init(&r);
	r.want_tgt = false;
	start_listener(&r, &key_a, 5000);
	expect(&r, 2);
	start_source(&r, &key_b, 2, mig_listener_port(r.l), 2000, 5000, 0);
	run_loop(&r, 10000);
	ck_assert(!r.timed_out);
	ck_assert_int_eq(r.src_r.rc, -EACCES);
	ck_assert_msg(strstr(r.src_r.message, "the target refused the stream: not authenticated"),
		      "%s", r.src_r.message);
	ck_assert_int_eq(r.tgt_calls, 0);
	ck_assert_int_eq(atomic_load(&mig_session_counters(r.src)->phase), MIG_PHASE_DONE);
	run_end(&r);
}
END_TEST

START_TEST(unexpected_retried_until_timeout)
{
	uint64_t t0;
	struct run r;

	run_init(&r);
	r.want_tgt = false;
	start_listener(&r, &key_a, 5000);
	expect(&r, 3);
	t0 = now_ms();
	start_source(&r, &key_a, 4, mig_listener_port(r.l), 600, 5000, 0);
	run_loop(&r, 10000);
	ck_assert(!r.timed_out);
	ck_assert_uint_ge(now_ms() - t0, 500);
	ck_assert_int_eq(r.src_r.rc, -EACCES);
	ck_assert_msg(strstr(r.src_r.message, "not expected"), "%s", r.src_r.message);
	ck_assert_int_eq(r.tgt_calls, 0);
	run_end(&r);
}
END_TEST

/* The target expects it only after the source began: the retries bridge it. */
static void late_expect(void *data)
{
	expect(data, 5);
}

START_TEST(expected_late_retry_succeeds)
{
	struct fake qs, qt;
	qb_loop_timer_handle t;
	struct run r;

	run_init(&r);
	start_listener(&r, &key_a, 5000);
	fake_start(&qt, "tgt.sock", true, 0, 2, FAKE_NORMAL);
	start_source(&r, &key_a, 5, mig_listener_port(r.l), 3000, 5000, 0);
	fake_start(&qs, "src.sock", false, 2 * MIB, 1, FAKE_NORMAL);
	qb_loop_timer_add(r.loop, QB_LOOP_HIGH, 300 * 1000000ull, &r, late_expect, &t);
	run_loop(&r, 10000);
	fake_join(&qs, 5000);
	fake_join(&qt, 5000);
	ck_assert_msg(r.src_r.rc == 0, "source: %s", r.src_r.message);
	ck_assert_msg(r.tgt_r.rc == 0, "target: %s", r.tgt_r.message);
	ck_assert_msg(qt.in_bytes == 2 * MIB && qt.in_eof,
		      "target QEMU got %llu (eof %d, error %d); source sent %llu, target wrote %llu",
		      (unsigned long long)qt.in_bytes, qt.in_eof, qt.in_err,
		      (unsigned long long)r.src_r.raw_forward, (unsigned long long)r.tgt_r.raw_forward);
	ck_assert_uint_eq(r.src_r.raw_back, 0);
	run_end(&r);
}
END_TEST

/* A migration that failed early is retried with the same id: the one
 * expectation takes the new session once the first one ended. The source
 * cancels only once both sides finished the handshake: before that it has
 * no channel to say why, and the target rightly reports a reset instead. */
static void cancel_when_accepted(void *data)
{
	struct run *r = data;
	qb_loop_timer_handle t;
	struct mig_result snap;
	struct mig_session_id id = test_id(13);

	if (mig_listener_counters(r->l, &id, &snap) == 0 &&
	    atomic_load(&mig_session_counters(r->src)->phase) >= MIG_PHASE_WAITING) {
		mig_session_cancel(r->src);
		return;
	}
	qb_loop_timer_add(r->loop, QB_LOOP_HIGH, 2 * 1000000ull, r, cancel_when_accepted, &t);
}

START_TEST(same_id_again_after_failure)
{
	struct fake qs, qt;
	qb_loop_timer_handle t;
	struct run r;

	run_init(&r);
	start_listener(&r, &key_a, 5000);
	expect(&r, 13);
	start_source(&r, &key_a, 13, mig_listener_port(r.l), 2000, 5000, 0);
	qb_loop_timer_add(r.loop, QB_LOOP_HIGH, 1000000ull, &r, cancel_when_accepted, &t);
	run_loop(&r, 10000);
	ck_assert(!r.timed_out);
	ck_assert_int_eq(r.src_r.rc, -ECANCELED);
	ck_assert_int_eq(r.tgt_r.rc, -ECANCELED);
	mig_session_free(r.src);
	r.src = NULL;
	r.src_calls = r.tgt_calls = 0;

	fake_start(&qt, "tgt.sock", true, 4096, 2, FAKE_NORMAL);
	start_source(&r, &key_a, 13, mig_listener_port(r.l), 2000, 5000, 0);
	fake_start(&qs, "src.sock", false, 2 * MIB, 1, FAKE_NORMAL);
	run_loop(&r, 10000);
	fake_join(&qs, 5000);
	fake_join(&qt, 5000);
	ck_assert_msg(r.src_r.rc == 0, "source: %s", r.src_r.message);
	ck_assert_msg(r.tgt_r.rc == 0, "target: %s", r.tgt_r.message);
	ck_assert_uint_eq(qt.in_bytes, 2 * MIB);
	run_end(&r);
}
END_TEST

START_TEST(corrupt_chunk_detected)
{
	const uint64_t fwd = 16ull * MIB;
	struct fake qs, qt;
	struct run r;

	run_init(&r);
	start_listener(&r, &key_a, 5000);
	expect(&r, 6);
	fake_start(&qt, "tgt.sock", true, 64 * 1024, 2, FAKE_NORMAL);
	start_source(&r, &key_a, 6, mig_listener_port(r.l), 2000, 5000, 5);
	fake_start(&qs, "src.sock", false, fwd, 1, FAKE_NORMAL);
	run_loop(&r, 20000);
	fake_join(&qs, 5000);
	fake_join(&qt, 5000);
	ck_assert(!r.timed_out);
	ck_assert_int_eq(r.tgt_r.rc, -EBADMSG);
	ck_assert_msg(strstr(r.tgt_r.message, "chunk 5 from the source failed its integrity check"),
		      "%s", r.tgt_r.message);
	ck_assert_int_ne(r.src_r.rc, 0);
	ck_assert_msg(strstr(r.src_r.message, "the target ended the stream: chunk 5"), "%s",
		      r.src_r.message);
	/* the target QEMU got the first four chunks at most, and an end */
	ck_assert_uint_le(qt.in_bytes, 4 * MIG_CHUNK_DEFAULT);
	ck_assert_uint_lt(qt.in_bytes, fwd);
	run_end(&r);
}
END_TEST

/* The source QEMU's connection resets part way (unread data at close). */
START_TEST(source_qemu_reset)
{
	struct fake qs, qt;
	struct run r;

	run_init(&r);
	start_listener(&r, &key_a, 5000);
	expect(&r, 7);
	fake_start(&qt, "tgt.sock", true, 64 * 1024, 2, FAKE_NORMAL);
	start_source(&r, &key_a, 7, mig_listener_port(r.l), 2000, 5000, 0);
	fake_start(&qs, "src.sock", false, 4 * MIB, 1, FAKE_RESET);
	run_loop(&r, 20000);
	fake_join(&qs, 5000);
	fake_join(&qt, 5000);
	ck_assert(!r.timed_out);
	ck_assert_msg(r.src_r.rc == -EPIPE, "%d %s", r.src_r.rc, r.src_r.message);
	ck_assert_msg(strstr(r.src_r.message, "the source QEMU's connection failed"), "%s",
		      r.src_r.message);
	ck_assert_int_ne(r.tgt_r.rc, 0);
	ck_assert_msg(strstr(r.tgt_r.message, "the source ended the stream"), "%s", r.tgt_r.message);
	run_end(&r);
}
END_TEST

/* A TCP proxy between the two that resets both connections part way. */
struct proxy {
	int listen_fd, quit_fd;
	uint16_t port, to_port;
	uint64_t kill_after, forwarded;
	pthread_t thread;
};

static void *proxy_main(void *data)
{
	struct proxy *p = data;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(p->to_port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct linger lin = { .l_onoff = 1, .l_linger = 0 };
	struct pollfd w[2] = { { .fd = p->listen_fd, .events = POLLIN },
			       { .fd = p->quit_fd, .events = POLLIN } };
	static uint8_t buf[64 * 1024];
	int a, b;

	if (poll(w, 2, FAKE_TIMEOUT_MS) <= 0 || w[1].revents)
		return NULL;
	a = accept(p->listen_fd, NULL, NULL);
	b = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(b, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		goto out;
	while (p->forwarded < p->kill_after) {
		struct pollfd q[2] = { { .fd = a, .events = POLLIN }, { .fd = b, .events = POLLIN } };
		ssize_t n;

		if (poll(q, 2, FAKE_TIMEOUT_MS) <= 0)
			break;
		if (q[0].revents) {
			if ((n = read(a, buf, sizeof(buf))) <= 0 || write(b, buf, (size_t)n) != n)
				break;
			p->forwarded += (uint64_t)n;
		}
		if (q[1].revents) {
			if ((n = read(b, buf, sizeof(buf))) <= 0 || write(a, buf, (size_t)n) != n)
				break;
		}
	}
out:
	setsockopt(a, SOL_SOCKET, SO_LINGER, &lin, sizeof(lin));
	setsockopt(b, SOL_SOCKET, SO_LINGER, &lin, sizeof(lin));
	close(a);
	close(b);
	return NULL;
}

static void proxy_start(struct proxy *p, uint16_t to_port, uint64_t kill_after)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);

	memset(p, 0, sizeof(*p));
	p->to_port = to_port;
	p->kill_after = kill_after;
	p->quit_fd = eventfd(0, EFD_CLOEXEC);
	p->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_eq(bind(p->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(p->listen_fd, 4), 0);
	ck_assert_int_eq(getsockname(p->listen_fd, (struct sockaddr *)&sa, &len), 0);
	p->port = ntohs(sa.sin_port);
	ck_assert_int_eq(pthread_create(&p->thread, NULL, proxy_main, p), 0);
}

static void proxy_join(struct proxy *p)
{
	eventfd_write(p->quit_fd, 1);
	pthread_join(p->thread, NULL);
	close(p->quit_fd);
	close(p->listen_fd);
}

START_TEST(connection_cut_midway)
{
	const uint64_t fwd = 32ull * MIB;
	struct fake qs, qt;
	struct proxy p;
	struct run r;

	run_init(&r);
	start_listener(&r, &key_a, 5000);
	expect(&r, 8);
	proxy_start(&p, mig_listener_port(r.l), 3 * MIB);
	fake_start(&qt, "tgt.sock", true, 16 * 1024, 2, FAKE_NORMAL);
	start_source(&r, &key_a, 8, p.port, 2000, 5000, 0);
	fake_start(&qs, "src.sock", false, fwd, 1, FAKE_NORMAL);
	run_loop(&r, 20000);
	fake_join(&qs, 5000);
	fake_join(&qt, 5000);
	proxy_join(&p);
	ck_assert(!r.timed_out);
	ck_assert_msg(r.src_r.rc == -ECONNRESET, "%d %s", r.src_r.rc, r.src_r.message);
	ck_assert_msg(strstr(r.src_r.message, "was cut after"), "%s", r.src_r.message);
	ck_assert_msg(r.tgt_r.rc == -ECONNRESET, "%d %s", r.tgt_r.rc, r.tgt_r.message);
	ck_assert_msg(strstr(r.tgt_r.message, "the stream from the source was cut after"), "%s",
		      r.tgt_r.message);
	ck_assert_uint_lt(qt.in_bytes, fwd);
	run_end(&r);
}
END_TEST

START_TEST(cancel_midway)
{
	struct fake qs, qt;
	qb_loop_timer_handle t;
	struct run r;

	run_init(&r);
	start_listener(&r, &key_a, 5000);
	expect(&r, 9);
	fake_start(&qt, "tgt.sock", true, 0, 2, FAKE_NORMAL);
	start_source(&r, &key_a, 9, mig_listener_port(r.l), 2000, 5000, 0);
	fake_start(&qs, "src.sock", false, 1024ull * MIB, 1, FAKE_NORMAL);
	r.cancel_at = 4 * MIB;
	qb_loop_timer_add(r.loop, QB_LOOP_HIGH, 1000000ull, &r, watch_cancel, &t);
	run_loop(&r, 20000);
	ck_assert(!r.timed_out);
	ck_assert(r.cancelled);
	ck_assert_int_eq(r.src_r.rc, -ECANCELED);
	ck_assert_msg(strstr(r.src_r.message, "cancelled on the source"), "%s", r.src_r.message);
	ck_assert_int_ne(r.tgt_r.rc, 0);
	/* done stays at one, even when cancelled again after it */
	mig_session_cancel(r.src);
	run_loop(&r, 300);
	ck_assert_int_eq(r.src_calls, 1);
	ck_assert_int_eq(r.tgt_calls, 1);
	fake_join(&qs, 5000);
	fake_join(&qt, 5000);
	ck_assert_uint_lt(qt.in_bytes, 1024ull * MIB);
	run_end(&r);
}
END_TEST

START_TEST(stall_timeout)
{
	struct fake qs, qt;
	struct run r;
	uint64_t t0;

	run_init(&r);
	r.stop_listener_in_done = true;   /* stopping from inside session_done: allowed */
	start_listener(&r, &key_a, 10000);
	expect(&r, 10);
	fake_start(&qt, "tgt.sock", true, 0, 2, FAKE_NORMAL);
	start_source(&r, &key_a, 10, mig_listener_port(r.l), 2000, 500, 0);
	fake_start(&qs, "src.sock", false, 1 * MIB, 1, FAKE_STALL);
	t0 = now_ms();
	run_loop(&r, 10000);
	fake_join(&qs, 0);
	fake_join(&qt, 5000);
	ck_assert(!r.timed_out);
	ck_assert_uint_lt(now_ms() - t0, 5000);
	ck_assert_int_eq(r.src_r.rc, -ETIMEDOUT);
	ck_assert_msg(strstr(r.src_r.message, "no data either way for 500 ms"), "%s",
		      r.src_r.message);
	ck_assert_int_eq(r.tgt_r.rc, -ETIMEDOUT);
	ck_assert_msg(strstr(r.tgt_r.message, "the source ended the stream: the stream stalled"),
		      "%s", r.tgt_r.message);
	ck_assert_uint_eq(qt.in_bytes, 1 * MIB);
	ck_assert(r.l == NULL);
	run_end(&r);
}
END_TEST

/* Raw bytes at the listener: it closes such connections and carries on. */
static bool closed_by_peer(int fd, int within_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char c[64];

	for (;;) {
		if (poll(&p, 1, within_ms) <= 0)
			return false;
		ssize_t n = read(fd, c, sizeof(c));

		if (n == 0 || (n < 0 && errno == ECONNRESET))
			return true;
		if (n < 0)
			return false;
	}
}

static int raw_client(uint16_t port, const void *bytes, size_t len)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	if (len)
		ck_assert_int_eq(write(fd, bytes, len), (ssize_t)len);
	return fd;
}

struct raw_job {
	uint16_t port;
	bool ok;
	pthread_t thread;
};

static void *raw_clients(void *data)
{
	struct raw_job *j = data;
	static const uint8_t huge[] = { 0xff, 0xff, 0xff, 0xff, 1, 2, 3 };
	static const uint8_t zero[] = { 0, 0, 0, 0 };
	uint8_t junk[4 + 200];
	int fds[4];

	junk[0] = 0;
	junk[1] = 0;
	junk[2] = 0;
	junk[3] = 200;
	for (int i = 4; i < (int)sizeof(junk); i++)
		junk[i] = (uint8_t)(i * 37 + 11);
	fds[0] = raw_client(j->port, huge, sizeof(huge));
	fds[1] = raw_client(j->port, zero, sizeof(zero));
	fds[2] = raw_client(j->port, junk, sizeof(junk));
	fds[3] = raw_client(j->port, NULL, 0);   /* says nothing: the handshake times out */
	j->ok = true;
	for (int i = 0; i < 4; i++) {
		if (!closed_by_peer(fds[i], 3000))
			j->ok = false;
		close(fds[i]);
	}
	return NULL;
}

static void after_raw(void *data)
{
	struct run *r = data;

	qb_loop_stop(r->loop);
}

START_TEST(malformed_input_survived)
{
	struct fake qs, qt;
	qb_loop_timer_handle t;
	struct raw_job j;
	struct run r;

	run_init(&r);
	start_listener(&r, &key_a, 5000);
	j.port = mig_listener_port(r.l);
	ck_assert_int_eq(pthread_create(&j.thread, NULL, raw_clients, &j), 0);
	/* the loop must run to reap the connections while they are refused */
	qb_loop_timer_add(r.loop, QB_LOOP_HIGH, 1000 * 1000000ull, &r, after_raw, &t);
	qb_loop_run(r.loop);
	pthread_join(j.thread, NULL);
	ck_assert(j.ok);
	ck_assert_int_eq(r.tgt_calls, 0);

	expect(&r, 11);
	fake_start(&qt, "tgt.sock", true, 4096, 2, FAKE_NORMAL);
	start_source(&r, &key_a, 11, mig_listener_port(r.l), 2000, 5000, 0);
	fake_start(&qs, "src.sock", false, 4 * MIB, 1, FAKE_NORMAL);
	run_loop(&r, 10000);
	fake_join(&qs, 5000);
	fake_join(&qt, 5000);
	ck_assert_msg(r.src_r.rc == 0, "%s", r.src_r.message);
	ck_assert_msg(r.tgt_r.rc == 0, "%s", r.tgt_r.message);
	ck_assert_uint_eq(qt.in_bytes, 4 * MIB);
	ck_assert_uint_eq(qs.in_bytes, 4096);
	run_end(&r);
}
END_TEST

/* The target forgets the migration while it streams: cancelled there. */
static void forget_now(void *data)
{
	struct run *r = data;
	struct mig_session_id id = test_id(12);
	struct mig_result snap;

	ck_assert_int_eq(mig_listener_counters(r->l, &id, &snap), 0);
	mig_listener_forget(r->l, &id);
}

START_TEST(forget_cancels_target)
{
	struct fake qs, qt;
	qb_loop_timer_handle t;
	struct mig_session_id other = test_id(99);
	struct mig_result snap;
	struct run r;

	run_init(&r);
	start_listener(&r, &key_a, 5000);
	expect(&r, 12);
	ck_assert_int_eq(mig_listener_counters(r.l, &other, &snap), -ENOENT);
	fake_start(&qt, "tgt.sock", true, 0, 2, FAKE_NORMAL);
	start_source(&r, &key_a, 12, mig_listener_port(r.l), 2000, 5000, 0);
	fake_start(&qs, "src.sock", false, 1024ull * MIB, 1, FAKE_NORMAL);
	qb_loop_timer_add(r.loop, QB_LOOP_HIGH, 300 * 1000000ull, &r, forget_now, &t);
	run_loop(&r, 20000);
	fake_join(&qs, 5000);
	fake_join(&qt, 5000);
	ck_assert(!r.timed_out);
	ck_assert_int_eq(r.tgt_r.rc, -ECANCELED);
	ck_assert_int_eq(r.src_r.rc, -ECANCELED);
	ck_assert_msg(strstr(r.src_r.message, "the target ended the stream"), "%s", r.src_r.message);
	run_end(&r);
}
END_TEST

static Suite *mig_suite(void)
{
	Suite *s = suite_create("mig_stream");
	TCase *tc = tcase_create("stream");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, key_from_file);
	tcase_add_test(tc, round_trip);
	tcase_add_test(tc, wrong_key_refused);
	tcase_add_test(tc, unexpected_retried_until_timeout);
	tcase_add_test(tc, expected_late_retry_succeeds);
	tcase_add_test(tc, same_id_again_after_failure);
	tcase_add_test(tc, corrupt_chunk_detected);
	tcase_add_test(tc, source_qemu_reset);
	tcase_add_test(tc, connection_cut_midway);
	tcase_add_test(tc, cancel_midway);
	tcase_add_test(tc, stall_timeout);
	tcase_add_test(tc, malformed_input_survived);
	tcase_add_test(tc, forget_cancels_target);
	suite_add_tcase(s, tc);
	return s;
}

UNIT_MAIN(mig_suite)
