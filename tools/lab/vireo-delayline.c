/*
 * vireo-delayline: delay a lab host's packets where the kernel has no netem.
 *
 *   vireo-delayline --queue N --delay MS [--jitter MS] [--ready-fd FD]
 *
 * `vireo-lab netem --delay` needs sch_netem, which some kernels (ours) are
 * built without. They still have NFQUEUE: an iptables rule in the host's
 * network namespace hands each packet arriving on its eth0 to queue N, and
 * this program, run in that namespace, gives it back (NF_ACCEPT) MS
 * milliseconds later, give or take a uniform JITTER, as netem's delay does.
 * Packets are never dropped here: with jitter they may pass out of order, as
 * under netem. (The way in, not out: a packet held on its way out still
 * counts against its TCP socket's small-queue budget, which would throttle
 * the sender to a few packets per delay.)
 *
 * With --ready-fd we write "ready\n" to FD and close it once the queue is
 * bound, so the lab installs its rule only when somebody serves the queue
 * (and the rule's --queue-bypass lets packets through whenever nobody does:
 * after we exit, say). On SIGTERM or SIGINT every held packet is let go at
 * once and we exit 0; the count of packets delayed goes to stderr.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <linux/netfilter.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <libnetfilter_queue/libnetfilter_queue.h>

#define PROG "vireo-delayline"
/* Packets held at once: the kernel queue's length too, so we can always hold
 * what it hands us; past it the kernel lets packets through (fail-open). */
#define MAX_HELD 65536u
#define RCVBUF_BYTES (16u << 20)
#define MAX_DELAY_MS 60000.0

struct held {
	uint64_t due_ns;
	uint32_t id;
};

struct delayline {
	struct nfq_handle *h;
	struct nfq_q_handle *qh;
	uint64_t delay_ns, jitter_ns;
	struct held *heap;       /* min-heap on due_ns */
	size_t n_held;
	uint64_t delayed;        /* packets given back after their delay */
	unsigned int seed;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void heap_swap(struct held *a, struct held *b)
{
	struct held t = *a;

	*a = *b;
	*b = t;
}

static void heap_push(struct delayline *dl, struct held x)
{
	size_t i = dl->n_held++;

	dl->heap[i] = x;
	while (i > 0 && dl->heap[(i - 1) / 2].due_ns > dl->heap[i].due_ns) {
		heap_swap(&dl->heap[(i - 1) / 2], &dl->heap[i]);
		i = (i - 1) / 2;
	}
}

static struct held heap_pop(struct delayline *dl)
{
	struct held top = dl->heap[0];
	size_t i = 0;

	dl->heap[0] = dl->heap[--dl->n_held];
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;

		if (l < dl->n_held && dl->heap[l].due_ns < dl->heap[m].due_ns)
			m = l;
		if (r < dl->n_held && dl->heap[r].due_ns < dl->heap[m].due_ns)
			m = r;
		if (m == i)
			break;
		heap_swap(&dl->heap[i], &dl->heap[m]);
		i = m;
	}
	return top;
}

/* When a packet queued now leaves: delay ± a uniform jitter, never before now. */
static uint64_t due_time(struct delayline *dl, uint64_t now)
{
	int64_t d = (int64_t)dl->delay_ns;

	if (dl->jitter_ns) {
		double u = (double)rand_r(&dl->seed) / RAND_MAX;     /* 0..1 */

		d += (int64_t)((2.0 * u - 1.0) * (double)dl->jitter_ns);
	}
	return d > 0 ? now + (uint64_t)d : now;
}

static int release(struct delayline *dl, uint32_t id)
{
	if (nfq_set_verdict(dl->qh, id, NF_ACCEPT, 0, NULL) < 0)
		return -errno;
	return 0;
}

static int on_packet(struct nfq_q_handle *qh, struct nfgenmsg *msg, struct nfq_data *nfa, void *data)
{
	struct delayline *dl = data;
	struct nfqnl_msg_packet_hdr *ph = nfq_get_msg_packet_hdr(nfa);
	struct held x;

	(void)qh;
	(void)msg;
	if (!ph)
		return 0;
	x.id = ntohl(ph->packet_id);
	if (dl->n_held == MAX_HELD)
		return release(dl, x.id);     /* cannot happen: the kernel queue is no longer */
	x.due_ns = due_time(dl, now_ns());
	heap_push(dl, x);
	return 0;
}

/* Lets every packet that is due go; returns the ns until the next is due, or -1. */
static int64_t release_due(struct delayline *dl, bool all)
{
	uint64_t now = now_ns();

	while (dl->n_held && (all || dl->heap[0].due_ns <= now)) {
		struct held x = heap_pop(dl);
		int rc = release(dl, x.id);

		if (rc < 0 && rc != -ENOENT)
			fprintf(stderr, PROG ": cannot let packet %u go: %s\n", x.id, strerror(-rc));
		dl->delayed++;
	}
	return dl->n_held ? (int64_t)(dl->heap[0].due_ns - now) : -1;
}

/* Everything the kernel queued for us so far; never blocks. */
static int take_packets(struct delayline *dl, int fd)
{
	static char buf[65536] __attribute__((aligned));

	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		if (n < 0 && errno == ENOBUFS) {
			/* Our socket overflowed: the kernel dropped what it
			 * could not hand us; carry on with the rest. */
			fprintf(stderr, PROG ": receive buffer overflowed; some packets were lost\n");
			continue;
		}
		if (n < 0)
			return -errno;
		nfq_handle_packet(dl->h, buf, (int)n);
	}
}

static int open_queue(struct delayline *dl, uint16_t queue)
{
	/* The packet's id is all we need: no payload is copied to us, and a
	 * GSO packet (a migration stream's) comes whole, not cut up first. */
	uint32_t flags = NFQA_CFG_F_FAIL_OPEN | NFQA_CFG_F_GSO;

	if (!(dl->h = nfq_open()))
		return errno ? -errno : -EIO;
	if (!(dl->qh = nfq_create_queue(dl->h, queue, on_packet, dl)))
		return errno ? -errno : -EBUSY;
	if (nfq_set_mode(dl->qh, NFQNL_COPY_META, 0) < 0 ||
	    nfq_set_queue_maxlen(dl->qh, MAX_HELD) < 0 ||
	    nfq_set_queue_flags(dl->qh, flags, flags) < 0)
		return errno ? -errno : -EIO;
	nfnl_rcvbufsiz(nfq_nfnlh(dl->h), RCVBUF_BYTES);
	return 0;
}

static int run(struct delayline *dl, int sigfd)
{
	int fd = nfq_fd(dl->h), rc = 0;
	int64_t next = -1;

	for (;;) {
		struct pollfd pfd[2] = { { .fd = fd, .events = POLLIN }, { .fd = sigfd, .events = POLLIN } };
		struct timespec ts = { .tv_sec = next / 1000000000, .tv_nsec = next % 1000000000 };

		if (ppoll(pfd, 2, next >= 0 ? &ts : NULL, NULL) < 0 && errno != EINTR) {
			rc = -errno;
			break;
		}
		if (pfd[1].revents)
			break;
		if (pfd[0].revents && (rc = take_packets(dl, fd)) < 0)
			break;
		next = release_due(dl, false);
	}
	release_due(dl, true);
	return rc;
}

static int parse_ms(const char *opt, const char *s, uint64_t *ns)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= 0 && v <= MAX_DELAY_MS)) {
		fprintf(stderr, PROG ": %s must be a number of milliseconds from 0 to %g, not '%s'\n",
			opt, MAX_DELAY_MS, s);
		return -EINVAL;
	}
	*ns = (uint64_t)(v * 1e6);
	return 0;
}

static int parse_args(int argc, char **argv, struct delayline *dl, long *queue, int *ready_fd)
{
	static const struct option opts[] = {
		{ "queue", required_argument, NULL, 'q' },
		{ "delay", required_argument, NULL, 'd' },
		{ "jitter", required_argument, NULL, 'j' },
		{ "ready-fd", required_argument, NULL, 'r' },
		{ NULL, 0, NULL, 0 },
	};
	bool have_delay = false;
	char *end;
	int c;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'q':
			*queue = strtol(optarg, &end, 10);
			if (end == optarg || *end || *queue < 0 || *queue > 65535) {
				fprintf(stderr, PROG ": --queue must be 0 to 65535, not '%s'\n", optarg);
				return -EINVAL;
			}
			break;
		case 'd':
			if (parse_ms("--delay", optarg, &dl->delay_ns) < 0)
				return -EINVAL;
			have_delay = true;
			break;
		case 'j':
			if (parse_ms("--jitter", optarg, &dl->jitter_ns) < 0)
				return -EINVAL;
			break;
		case 'r':
			*ready_fd = (int)strtol(optarg, &end, 10);
			if (end == optarg || *end || *ready_fd < 0) {
				fprintf(stderr, PROG ": --ready-fd must be a file descriptor, not '%s'\n", optarg);
				return -EINVAL;
			}
			break;
		default:
			return -EINVAL;
		}
	}
	if (optind < argc || *queue < 0 || !have_delay) {
		fprintf(stderr, "usage: " PROG " --queue N --delay MS [--jitter MS] [--ready-fd FD]\n");
		return -EINVAL;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct delayline dl = { .seed = (unsigned int)now_ns() ^ (unsigned int)getpid() };
	long queue = -1;
	int ready_fd = -1, sigfd = -1, rc;
	sigset_t mask;

	if ((rc = parse_args(argc, argv, &dl, &queue, &ready_fd)) < 0)
		return 2;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0 || (sigfd = signalfd(-1, &mask, SFD_CLOEXEC)) < 0) {
		rc = -errno;
		fprintf(stderr, PROG ": cannot take signals: %s\n", strerror(-rc));
		goto cleanup;
	}
	if (!(dl.heap = calloc(MAX_HELD, sizeof(*dl.heap)))) {
		rc = -ENOMEM;
		goto cleanup;
	}
	if ((rc = open_queue(&dl, (uint16_t)queue)) < 0) {
		fprintf(stderr, PROG ": cannot serve netfilter queue %ld: %s (is another program "
			"serving it? are we root in this network namespace?)\n", queue, strerror(-rc));
		goto cleanup;
	}
	if (ready_fd >= 0) {
		if (write(ready_fd, "ready\n", 6) != 6)
			fprintf(stderr, PROG ": cannot say we are ready on fd %d: %s\n", ready_fd,
				strerror(errno));
		close(ready_fd);
	}
	rc = run(&dl, sigfd);
	fprintf(stderr, PROG ": %" PRIu64 " packets delayed%s%s\n", dl.delayed, rc < 0 ? "; stopped: " : "",
		rc < 0 ? strerror(-rc) : "");
cleanup:
	if (dl.qh)
		nfq_destroy_queue(dl.qh);
	if (dl.h)
		nfq_close(dl.h);
	free(dl.heap);
	if (sigfd >= 0)
		close(sigfd);
	return rc < 0 ? 1 : 0;
}
