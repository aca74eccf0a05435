/* mig-stream-bench: the migration data path's throughput on loopback.
 *
 * For each kind of data (zeros, random, text-like), pushes MiB (default 512)
 * through a source session and a listener in this process, with threads
 * playing both QEMUs on unix sockets, and prints the raw rate, the
 * compression ratio and where the source's and the target's time went.
 *
 *   mig-stream-bench [MiB] [chunk KiB] [lz4 level]
 *
 * The numbers are the data path's own ceiling on this machine (one core per
 * direction and side at most): a real migration adds QEMU and the network. */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <qb/qbloop.h>

#include "migration/stream.h"

#define MIB (1024u * 1024u)
#define PATTERN (8u * MIB)

enum kind { ZEROS, RANDOM, TEXT };
static const char *kind_names[] = { "zeros", "random", "text" };

struct qemu_end {
	char path[108];
	int listen_fd;          /* target side: we listen, the session connects */
	const uint8_t *pattern;
	uint64_t total;         /* source side: bytes to write */
	uint64_t got;
	pthread_t thread;
};

struct bench {
	qb_loop_t *loop;
	struct mig_result src, tgt;
	int ends;
};

static void fill(enum kind k, uint8_t *buf, size_t len)
{
	static const char *words[] = { "guest ", "memory ", "page ", "dirty ", "vireo ", "migration ",
				       "kernel ", "buffer ", "0x7f3a ", "cache ", "\n", "block " };
	uint64_t x = 0x243f6a8885a308d3ull;
	size_t off = 0;

	if (k == ZEROS) {
		memset(buf, 0, len);
		return;
	}
	while (off < len) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		if (k == RANDOM) {
			size_t n = len - off < 8 ? len - off : 8;

			memcpy(buf + off, &x, n);
			off += n;
		} else {
			const char *w = words[x % 12];
			size_t n = strlen(w);

			if (n > len - off)
				n = len - off;
			memcpy(buf + off, w, n);
			off += n;
		}
	}
}

static void *source_qemu(void *data)
{
	struct qemu_end *q = data;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	uint64_t sent = 0;
	char sink[4096];
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	strcpy(sa.sun_path, q->path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror("mig-stream-bench: connect to the source session");
		close(fd);
		return NULL;
	}
	while (sent < q->total) {
		size_t at = sent % PATTERN, n = PATTERN - at;
		ssize_t w;

		if (n > q->total - sent)
			n = q->total - sent;
		if ((w = send(fd, q->pattern + at, n, MSG_NOSIGNAL)) <= 0)
			break;
		sent += (uint64_t)w;
	}
	shutdown(fd, SHUT_WR);
	while (read(fd, sink, sizeof(sink)) > 0)
		;
	close(fd);
	return NULL;
}

static void *target_qemu(void *data)
{
	struct qemu_end *q = data;
	static uint8_t buf[1u << 20];
	struct pollfd p = { .fd = q->listen_fd, .events = POLLIN };
	ssize_t n;
	int fd;

	if (poll(&p, 1, 30000) <= 0 || (fd = accept(q->listen_fd, NULL, NULL)) < 0)
		return NULL;
	shutdown(fd, SHUT_WR);   /* nothing to say back */
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		q->got += (uint64_t)n;
	close(fd);
	return NULL;
}

static void src_done(void *ctx, const struct mig_result *r)
{
	struct bench *b = ctx;

	b->src = *r;
	if (++b->ends == 2)
		qb_loop_stop(b->loop);
}

static void tgt_done(void *ctx, const struct mig_session_id *id, const struct mig_result *r)
{
	struct bench *b = ctx;

	(void)id;
	b->tgt = *r;
	if (++b->ends == 2)
		qb_loop_stop(b->loop);
}

static int run(const char *dir, enum kind k, uint64_t total, uint32_t chunk, int level,
	       const uint8_t *pattern)
{
	struct mig_key key;
	struct bench b = { 0 };
	struct mig_listener *l = NULL;
	struct mig_session *s = NULL;
	struct mig_session_id id = { .vm_uuid = "00000000-0000-4000-8000-000000000001",
				     .migration_id = (uint64_t)k + 1, .generation = 1 };
	struct qemu_end src = { .pattern = pattern, .total = total }, tgt = { .listen_fd = -1 };
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char src_path[108];
	struct mig_listener_params lp = {
		.bind_host = "127.0.0.1", .key = &key, .handshake_timeout_ms = 5000,
		.stall_timeout_ms = 30000, .qemu_connect_timeout_ms = 5000, .session_done = tgt_done,
		.ctx = &b,
	};
	struct mig_source_params sp = {
		.id = id, .socket_path = src_path, .target_host = "127.0.0.1", .key = &key,
		.connect_timeout_ms = 5000, .stall_timeout_ms = 30000, .chunk_bytes = chunk,
		.lz4_level = level, .done = src_done, .ctx = &b,
	};
	double secs;
	int rc;

	memset(key.bytes, 0x42, sizeof(key.bytes));
	b.loop = lp.loop = sp.loop = qb_loop_create();
	snprintf(src_path, sizeof(src_path), "%s/src.sock", dir);
	snprintf(src.path, sizeof(src.path), "%s", src_path);
	snprintf(tgt.path, sizeof(tgt.path), "%s/tgt.sock", dir);
	strcpy(sa.sun_path, tgt.path);
	unlink(tgt.path);
	tgt.listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (bind(tgt.listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(tgt.listen_fd, 1) < 0) {
		rc = -errno;
		goto cleanup;
	}
	if ((rc = mig_listener_start(&lp, &l)) < 0 ||
	    (rc = mig_listener_expect(l, &id, tgt.path)) < 0)
		goto cleanup;
	sp.target_port = mig_listener_port(l);
	if ((rc = mig_source_start(&sp, &s)) < 0)
		goto cleanup;
	pthread_create(&tgt.thread, NULL, target_qemu, &tgt);
	pthread_create(&src.thread, NULL, source_qemu, &src);
	qb_loop_run(b.loop);
	pthread_join(src.thread, NULL);
	pthread_join(tgt.thread, NULL);
	rc = b.src.rc ? b.src.rc : b.tgt.rc;
	if (rc) {
		fprintf(stderr, "mig-stream-bench: %s: %s / %s\n", kind_names[k], b.src.message,
			b.tgt.message);
		goto cleanup;
	}
	if (tgt.got != total) {
		fprintf(stderr, "mig-stream-bench: %s: the target QEMU got %" PRIu64 " of %" PRIu64
			" bytes\n", kind_names[k], tgt.got, total);
		rc = -EIO;
		goto cleanup;
	}
	secs = (double)(b.tgt.last_byte_ms - b.src.first_byte_ms) / 1000.0;
	if (secs <= 0)
		secs = 0.001;
	printf("%-7s %8" PRIu64 " MiB %9.0f MiB/s  wire/raw %6.3f  "
	       "source read/lz4+mac/send %5" PRIu64 "/%5" PRIu64 "/%5" PRIu64 " ms  "
	       "target recv/verify+lz4/write %5" PRIu64 "/%5" PRIu64 "/%5" PRIu64 " ms\n",
	       kind_names[k], total / MIB, (double)total / MIB / secs,
	       (double)b.src.wire_forward / (double)b.src.raw_forward, b.src.read_ms,
	       b.src.codec_ms, b.src.write_ms, b.tgt.read_ms, b.tgt.codec_ms, b.tgt.write_ms);
cleanup:
	if (rc && rc != b.src.rc && rc != b.tgt.rc)
		fprintf(stderr, "mig-stream-bench: %s: %s\n", kind_names[k], strerror(-rc));
	mig_session_free(s);
	mig_listener_stop(l);
	if (tgt.listen_fd >= 0)
		close(tgt.listen_fd);
	unlink(tgt.path);
	qb_loop_destroy(b.loop);
	return rc;
}

int main(int argc, char **argv)
{
	uint64_t mib = argc > 1 ? strtoull(argv[1], NULL, 10) : 512;
	uint32_t chunk = argc > 2 ? (uint32_t)strtoul(argv[2], NULL, 10) * 1024u : 0;
	int level = argc > 3 ? atoi(argv[3]) : 0;
	char dir[] = "/tmp/mig-stream-bench-XXXXXX";
	uint8_t *pattern = malloc(PATTERN);
	int failed = 0;

	signal(SIGPIPE, SIG_IGN);
	if (!pattern || !mkdtemp(dir)) {
		perror("mig-stream-bench");
		return 1;
	}
	printf("mig-stream-bench: %" PRIu64 " MiB per kind, chunk %u KiB, lz4 level %d, loopback\n",
	       mib, (chunk ? chunk : MIG_CHUNK_DEFAULT) / 1024, level);
	for (int k = ZEROS; k <= TEXT; k++) {
		fill((enum kind)k, pattern, PATTERN);
		if (run(dir, (enum kind)k, mib * MIB, chunk, level, pattern) < 0)
			failed = 1;
	}
	rmdir(dir);
	free(pattern);
	return failed;
}
