/* eth0 set-up from the kernel command line, and the echo service (port 7,
 * UDP and TCP) that lets a test check the guest's network end to end, e.g.
 * that the guest is reachable at its address after a migration.
 *
 * Plain ioctls rather than netlink: the guest needs one address, one route
 * and nothing that has to be undone.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "guest-agent.h"

#define ECHO_PORT 7
#define ECHO_MAX_CONNS 16
#define ECHO_BUF 4096

struct echo_conn {
	int fd;
	size_t len, off; /* pending bytes buf[off..len) still to echo */
	char buf[ECHO_BUF];
};

struct guest_echo {
	int udp;
	int tcp;
	struct echo_conn conns[ECHO_MAX_CONNS];
};

static void sin_set(struct sockaddr *sa, in_addr_t addr)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = addr };

	memcpy(sa, &sin, sizeof(sin));
}

static int if_up(int sock, const char *ifname)
{
	struct ifreq ifr = { 0 };

	strncpy(ifr.ifr_name, ifname, IFNAMSIZ - 1);
	if (ioctl(sock, SIOCGIFFLAGS, &ifr) < 0)
		return -errno;
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	if (ioctl(sock, SIOCSIFFLAGS, &ifr) < 0)
		return -errno;
	return 0;
}

/* cidr is "a.b.c.d/len" (len defaults to 24). */
static int cidr_parse(const char *cidr, struct in_addr *addr, struct in_addr *mask)
{
	char host[INET_ADDRSTRLEN];
	const char *slash = strchr(cidr, '/');
	size_t hlen = slash ? (size_t)(slash - cidr) : strlen(cidr);
	unsigned long prefix = 24;

	if (hlen >= sizeof(host))
		return -EINVAL;
	memcpy(host, cidr, hlen);
	host[hlen] = '\0';
	if (inet_pton(AF_INET, host, addr) != 1)
		return -EINVAL;
	if (slash) {
		char *end;

		prefix = strtoul(slash + 1, &end, 10);
		if (end == slash + 1 || *end || prefix > 32)
			return -EINVAL;
	}
	mask->s_addr = prefix ? htonl(~0u << (32 - prefix)) : 0;
	return 0;
}

int guest_net_configure(const char *ifname, const char *cidr, const char *gw)
{
	struct in_addr addr, mask, gateway;
	struct ifreq ifr = { 0 };
	int sock = -1;
	int rc;

	rc = cidr_parse(cidr, &addr, &mask);
	if (rc < 0)
		goto cleanup;
	if (gw[0] && inet_pton(AF_INET, gw, &gateway) != 1) {
		rc = -EINVAL;
		goto cleanup;
	}
	sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (sock < 0) {
		rc = -errno;
		goto cleanup;
	}
	/* The kernel gives lo 127.0.0.1 itself once it is up. */
	rc = if_up(sock, "lo");
	if (rc < 0)
		goto cleanup;

	strncpy(ifr.ifr_name, ifname, IFNAMSIZ - 1);
	sin_set(&ifr.ifr_addr, addr.s_addr);
	if (ioctl(sock, SIOCSIFADDR, &ifr) < 0) {
		rc = -errno;
		goto cleanup;
	}
	sin_set(&ifr.ifr_netmask, mask.s_addr);
	if (ioctl(sock, SIOCSIFNETMASK, &ifr) < 0) {
		rc = -errno;
		goto cleanup;
	}
	rc = if_up(sock, ifname);
	if (rc < 0)
		goto cleanup;

	if (gw[0]) {
		struct rtentry rt = { 0 };

		sin_set(&rt.rt_dst, INADDR_ANY);
		sin_set(&rt.rt_genmask, INADDR_ANY);
		sin_set(&rt.rt_gateway, gateway.s_addr);
		rt.rt_flags = RTF_UP | RTF_GATEWAY;
		if (ioctl(sock, SIOCADDRT, &rt) < 0 && errno != EEXIST) {
			rc = -errno;
			goto cleanup;
		}
	}
	rc = 0;
cleanup:
	if (sock >= 0)
		close(sock);
	return rc;
}

static int echo_socket(int type, int *fdp)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(ECHO_PORT),
				   .sin_addr.s_addr = htonl(INADDR_ANY) };
	int one = 1;
	int fd, rc;

	fd = socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
	    (type == SOCK_STREAM && listen(fd, ECHO_MAX_CONNS) < 0)) {
		rc = -errno;
		close(fd);
		return rc;
	}
	*fdp = fd;
	return 0;
}

int guest_echo_open(struct guest_echo **echop)
{
	struct guest_echo *echo;
	int rc;

	echo = calloc(1, sizeof(*echo));
	if (!echo)
		return -ENOMEM;
	echo->udp = echo->tcp = -1;
	for (size_t i = 0; i < ECHO_MAX_CONNS; i++)
		echo->conns[i].fd = -1;
	rc = echo_socket(SOCK_DGRAM, &echo->udp);
	if (rc < 0)
		goto cleanup;
	rc = echo_socket(SOCK_STREAM, &echo->tcp);
	if (rc < 0)
		goto cleanup;
	*echop = echo;
	echo = NULL;
cleanup:
	if (echo) {
		if (echo->udp >= 0)
			close(echo->udp);
		free(echo);
	}
	return rc;
}

/* Fixed layout, so dispatch can map fds back: [0] udp, [1] tcp listener,
 * [2 + i] connection i (fd -1 when the slot is free; poll skips it). */
size_t guest_echo_pollfds(struct guest_echo *echo, struct pollfd *fds, size_t max)
{
	if (max < 2 + ECHO_MAX_CONNS)
		return 0;
	fds[0] = (struct pollfd){ .fd = echo->udp, .events = POLLIN };
	fds[1] = (struct pollfd){ .fd = echo->tcp, .events = POLLIN };
	for (size_t i = 0; i < ECHO_MAX_CONNS; i++) {
		struct echo_conn *c = &echo->conns[i];

		/* Read more only once everything read so far went back out:
		 * a client that does not read stalls only itself. */
		fds[2 + i] = (struct pollfd){ .fd = c->fd, .events = c->len ? POLLOUT : POLLIN };
	}
	return 2 + ECHO_MAX_CONNS;
}

static void conn_close(struct echo_conn *c)
{
	close(c->fd);
	c->fd = -1;
	c->len = c->off = 0;
}

static void conn_flush(struct echo_conn *c)
{
	while (c->off < c->len) {
		ssize_t n = send(c->fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			conn_close(c);
			return;
		}
		c->off += (size_t)n;
	}
	c->len = c->off = 0;
}

static void conn_dispatch(struct echo_conn *c, short revents)
{
	ssize_t n;

	if (revents & POLLOUT) {
		conn_flush(c);
		return;
	}
	if (!(revents & (POLLIN | POLLHUP | POLLERR)))
		return;
	n = recv(c->fd, c->buf, sizeof(c->buf), 0);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		conn_close(c);
		return;
	}
	c->len = (size_t)n;
	c->off = 0;
	conn_flush(c);
}

static void echo_accept(struct guest_echo *echo)
{
	int fd = accept4(echo->tcp, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (fd < 0)
		return;
	for (size_t i = 0; i < ECHO_MAX_CONNS; i++) {
		if (echo->conns[i].fd < 0) {
			echo->conns[i].fd = fd;
			return;
		}
	}
	close(fd); /* full: the client sees the connection closed and may retry */
}

static void echo_udp(struct guest_echo *echo)
{
	static char buf[65536];
	struct sockaddr_storage from;
	socklen_t fromlen = sizeof(from);
	ssize_t n;

	n = recvfrom(echo->udp, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fromlen);
	if (n >= 0)
		sendto(echo->udp, buf, (size_t)n, 0, (struct sockaddr *)&from, fromlen);
}

void guest_echo_dispatch(struct guest_echo *echo, const struct pollfd *fds, size_t n)
{
	if (n < 2 + ECHO_MAX_CONNS)
		return;
	if (fds[0].revents & POLLIN)
		echo_udp(echo);
	if (fds[1].revents & POLLIN)
		echo_accept(echo);
	for (size_t i = 0; i < ECHO_MAX_CONNS; i++)
		if (echo->conns[i].fd >= 0 && fds[2 + i].fd == echo->conns[i].fd && fds[2 + i].revents)
			conn_dispatch(&echo->conns[i], fds[2 + i].revents);
}
