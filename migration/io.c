/* Blocking-style socket I/O for the session threads: every wait is a poll()
 * that also watches the session's cancel eventfd and its deadlines, and the
 * reads and writes themselves never block (MSG_DONTWAIT), so a thread can
 * always be woken, whatever it waits for. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "migration/stream_int.h"

uint64_t mig_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t mig_now_ms(void)
{
	return mig_now_ns() / 1000000u;
}

static void touch(const struct mig_wait *w)
{
	if (w->activity_ms)
		atomic_store(w->activity_ms, mig_now_ms());
}

/* The poll timeout that honours both the deadline and the stall limit;
 * -ETIMEDOUT when one has passed. Recomputed after every wakeup because the
 * other direction's thread moves activity_ms on. */
static int timeout_for(const struct mig_wait *w, int *timeout)
{
	uint64_t now = mig_now_ms(), until = 0;

	if (w->deadline_ms)
		until = w->deadline_ms;
	if (w->activity_ms && w->stall_ms) {
		uint64_t stall = atomic_load(w->activity_ms) + w->stall_ms;

		if (!until || stall < until)
			until = stall;
	}
	if (!until) {
		*timeout = -1;
		return 0;
	}
	if (now >= until)
		return -ETIMEDOUT;
	*timeout = until - now > 60000 ? 60000 : (int)(until - now);
	return 0;
}

int mig_io_wait(int fd, short events, const struct mig_wait *w)
{
	struct pollfd p[2] = {
		{ .fd = fd, .events = events },
		{ .fd = w->cancel_fd, .events = POLLIN },
	};
	int timeout, rc, n;

	for (;;) {
		if ((rc = timeout_for(w, &timeout)) < 0)
			return rc;
		n = poll(p, w->cancel_fd >= 0 ? 2 : 1, timeout);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (w->cancel_fd >= 0 && p[1].revents)
			return -ECANCELED;
		if (p[0].revents & POLLNVAL)
			return -EBADF;
		if (p[0].revents)
			return 0;
	}
}

int mig_io_read_full(int fd, void *buf, size_t len, const struct mig_wait *w)
{
	uint8_t *p = buf;
	ssize_t n;
	int rc;

	while (len) {
		n = recv(fd, p, len, MSG_DONTWAIT);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			touch(w);
			continue;
		}
		if (n == 0)
			return -ENODATA;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		if ((rc = mig_io_wait(fd, POLLIN, w)) < 0)
			return rc;
	}
	return 0;
}

/* Keeps reading while data is there so chunks are large when the writer is
 * fast (better compression, fewer frames) and small when it trickles (the
 * target gets what there is at once). An error after some data still wins:
 * a socket's pending error is reported once, and losing it would turn a
 * reset into a clean end of file. */
int mig_io_read_some(int fd, void *buf, size_t len, const struct mig_wait *w, size_t *got)
{
	uint8_t *p = buf;
	size_t have = 0;
	ssize_t n;
	int rc;

	*got = 0;
	while (have < len) {
		n = recv(fd, p + have, len - have, MSG_DONTWAIT);
		if (n > 0) {
			have += (size_t)n;
			touch(w);
			continue;
		}
		if (n == 0)
			break;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		if (have)
			break;
		if ((rc = mig_io_wait(fd, POLLIN, w)) < 0)
			return rc;
	}
	*got = have;
	return 0;
}

int mig_io_writev(int fd, const struct iovec *iov_in, int iovcnt, const struct mig_wait *w,
		  size_t *sent)
{
	struct iovec iov[4];
	struct msghdr msg = { .msg_iov = iov };
	ssize_t n;
	int rc, i = 0;

	*sent = 0;
	if (iovcnt > 4)
		return -EINVAL;
	memcpy(iov, iov_in, sizeof(*iov) * (size_t)iovcnt);
	while (i < iovcnt) {
		if (!iov[i].iov_len) {
			i++;
			continue;
		}
		msg.msg_iov = iov + i;
		msg.msg_iovlen = (size_t)(iovcnt - i);
		n = sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				return -errno;
			if ((rc = mig_io_wait(fd, POLLOUT, w)) < 0)
				return rc;
			continue;
		}
		*sent += (size_t)n;
		touch(w);
		while (n > 0 && i < iovcnt) {
			size_t take = (size_t)n < iov[i].iov_len ? (size_t)n : iov[i].iov_len;

			iov[i].iov_base = (uint8_t *)iov[i].iov_base + take;
			iov[i].iov_len -= take;
			n -= (ssize_t)take;
			if (!iov[i].iov_len)
				i++;
		}
	}
	return 0;
}

static int unix_addr(const char *path, struct sockaddr_un *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (!path || !path[0])
		return -EINVAL;
	if (strlen(path) >= sizeof(sa->sun_path))
		return -ENAMETOOLONG;
	strcpy(sa->sun_path, path);
	return 0;
}

int mig_io_unix_listen(const char *path, int *out)
{
	struct sockaddr_un sa;
	struct stat st;
	int fd = -1, rc;

	if ((rc = unix_addr(path, &sa)) < 0)
		return rc;
	/* A socket left by a vireod that died is ours to replace; a file of
	 * another kind is not. */
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return -EEXIST;
		if (unlink(path) < 0)
			return -errno;
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(path, 0660) < 0 ||
	    listen(fd, 4) < 0) {
		rc = -errno;
		goto cleanup;
	}
	*out = fd;
	return 0;
cleanup:
	close(fd);
	return rc;
}

int mig_io_unix_connect(const char *path, int *out)
{
	struct sockaddr_un sa;
	int fd, rc;

	if ((rc = unix_addr(path, &sa)) < 0)
		return rc;
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0)
		return -errno;
	rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ? -errno : 0;
	/* A unix connect completes at once or fails; EAGAIN means a full backlog. */
	if (rc == 0 || rc == -EINPROGRESS) {
		*out = fd;
		return rc;
	}
	close(fd);
	return rc;
}

int mig_io_connect_result(int fd)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		return -errno;
	return -err;
}

/* Small frames (QEMU's back channel, END) go at once; large ones fill
 * segments anyway. */
void mig_io_tcp_tune(int fd)
{
	int one = 1;

	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}
