/* The framing of vireod's feeds to vireo-watchdog (node/watchdog.h): a
 * 4-byte big-endian length, then a packed Vireo__WatchdogFeed. Shared by
 * both ends and the unit tests. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster/state.h"
#include "node/watchdog.h"

#define UUID_LEN 36u

int watchdog_frame_pack(const Vireo__WatchdogFeed *feed, uint8_t **buf, size_t *len)
{
	size_t n = vireo__watchdog_feed__get_packed_size(feed);
	uint8_t *b;

	if (n > WATCHDOG_MAX_FEED)
		return -EMSGSIZE;
	if (!(b = malloc(WATCHDOG_FRAME_HDR + n)))
		return -ENOMEM;
	b[0] = (uint8_t)(n >> 24);
	b[1] = (uint8_t)(n >> 16);
	b[2] = (uint8_t)(n >> 8);
	b[3] = (uint8_t)n;
	vireo__watchdog_feed__pack(feed, b + WATCHDOG_FRAME_HDR);
	*buf = b;
	*len = WATCHDOG_FRAME_HDR + n;
	return 0;
}

void watchdog_rx_init(struct watchdog_rx *rx)
{
	memset(rx, 0, sizeof(*rx));
}

void watchdog_rx_free(struct watchdog_rx *rx)
{
	free(rx->buf);
	watchdog_rx_init(rx);
}

static int reserve(struct watchdog_rx *rx, size_t more)
{
	size_t cap = rx->cap ? rx->cap : 4096;
	uint8_t *b;

	if (rx->len + more <= rx->cap)
		return 0;
	/* Never more than one maximal frame and one read's worth. */
	if (rx->len + more > WATCHDOG_FRAME_HDR + WATCHDOG_MAX_FEED + 65536)
		return -EMSGSIZE;
	while (cap < rx->len + more)
		cap *= 2;
	if (!(b = realloc(rx->buf, cap)))
		return -ENOMEM;
	rx->buf = b;
	rx->cap = cap;
	return 0;
}

int watchdog_rx_append(struct watchdog_rx *rx, const void *data, size_t n)
{
	int rc = reserve(rx, n);

	if (rc < 0)
		return rc;
	memcpy(rx->buf + rx->len, data, n);
	rx->len += n;
	return 0;
}

ssize_t watchdog_rx_read(struct watchdog_rx *rx, int fd)
{
	ssize_t n;
	int rc;

	if ((rc = reserve(rx, 16384)) < 0)
		return rc;
	do
		n = read(fd, rx->buf + rx->len, rx->cap - rx->len);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	rx->len += (size_t)n;
	return n;
}

static uint32_t frame_len(const uint8_t *b)
{
	return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

int watchdog_rx_next(struct watchdog_rx *rx, Vireo__WatchdogFeed **out, char *why, size_t whylen)
{
	Vireo__WatchdogFeed *f;
	uint32_t n;

	if (rx->len < WATCHDOG_FRAME_HDR)
		return 0;
	n = frame_len(rx->buf);
	if (n > WATCHDOG_MAX_FEED) {
		snprintf(why, whylen, "a frame of %u bytes is announced, more than the %u a feed "
			 "may have: the stream is not vireod's feed", n, WATCHDOG_MAX_FEED);
		return -EBADMSG;
	}
	if (rx->len - WATCHDOG_FRAME_HDR < n)
		return 0;
	f = vireo__watchdog_feed__unpack(NULL, n, rx->buf + WATCHDOG_FRAME_HDR);
	if (!f) {
		snprintf(why, whylen, "a frame of %u bytes does not unpack as a WatchdogFeed", n);
		return -EBADMSG;
	}
	if (watchdog_feed_check(f, why, whylen) < 0) {
		vireo__watchdog_feed__free_unpacked(f, NULL);
		return -EBADMSG;
	}
	rx->len -= WATCHDOG_FRAME_HDR + n;
	memmove(rx->buf, rx->buf + WATCHDOG_FRAME_HDR + n, rx->len);
	*out = f;
	return 1;
}

size_t watchdog_rx_pending(const struct watchdog_rx *rx)
{
	return rx->len;
}

int watchdog_feed_check(const Vireo__WatchdogFeed *feed, char *why, size_t whylen)
{
	if (feed->timeout_ms == 0) {
		snprintf(why, whylen, "the feed has no timeout_ms");
		return -EINVAL;
	}
	for (size_t i = 0; i < feed->n_guests; i++) {
		const Vireo__WatchdogGuest *g = feed->guests[i];

		/* The name goes into a path: only what the cluster accepts. */
		if (!cluster_name_valid(g->name)) {
			snprintf(why, whylen, "guest %zu of the feed has an invalid name", i + 1);
			return -EINVAL;
		}
		if (g->uuid[0] && strlen(g->uuid) != UUID_LEN) {
			snprintf(why, whylen, "guest %s of the feed has an invalid uuid", g->name);
			return -EINVAL;
		}
	}
	return 0;
}
