/* vireo-watchdog and its clients: the protocol on the unix socket between
 * vireod and vireo-watchdog, and the pieces of the watchdog that must be
 * right without a host to try them on (finding a guest's QEMU, the hardware
 * watchdog's refusals), so the unit tests reach them.
 *
 * The protocol: vireod connects to cfg.watchdog_socket and sends, every
 * VIREO_WATCHDOG_FEED_MS, a Vireo__WatchdogFeed packed behind a 4-byte
 * big-endian length. The watchdog never answers. doc/failover.md says what
 * the watchdog does with the feeds. */
#ifndef VIREO_NODE_WATCHDOG_H
#define VIREO_NODE_WATCHDOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "proto/vireo.pb-c.h"

#define WATCHDOG_FRAME_HDR 4u
/* A feed names at most a few thousand guests (~110 bytes each); a longer
 * length is a corrupt stream, not a big cluster. */
#define WATCHDOG_MAX_FEED (1u << 20)

/* ------------------------------------------------------------ framing */

/* Packs feed behind its length into a malloc'd *buf. 0, -ENOMEM, or
 * -EMSGSIZE when it would exceed WATCHDOG_MAX_FEED. */
int watchdog_frame_pack(const Vireo__WatchdogFeed *feed, uint8_t **buf, size_t *len);

/* Reassembles feeds from the bytes of one connection. */
struct watchdog_rx {
	uint8_t *buf;
	size_t len, cap;
};

void watchdog_rx_init(struct watchdog_rx *rx);
void watchdog_rx_free(struct watchdog_rx *rx);
/* Appends bytes read from the connection. 0 or -ENOMEM. */
int watchdog_rx_append(struct watchdog_rx *rx, const void *data, size_t n);
/* Reads what fd has (non-blocking). The bytes read, 0 at end of file,
 * -EAGAIN when there is nothing, or -errno. */
ssize_t watchdog_rx_read(struct watchdog_rx *rx, int fd);
/* The next whole feed: 1 and *out (free it with
 * vireo__watchdog_feed__free_unpacked(*out, NULL)); 0 when more bytes are
 * needed; -EBADMSG when the stream is not a feed (a length over
 * WATCHDOG_MAX_FEED, bytes that do not unpack, a feed that fails
 * watchdog_feed_check), with one sentence in why. After -EBADMSG the
 * stream cannot be resynchronised: drop the connection. */
int watchdog_rx_next(struct watchdog_rx *rx, Vireo__WatchdogFeed **out, char *why, size_t whylen);
/* Bytes of a frame not yet complete: a truncated feed if the peer closes now. */
size_t watchdog_rx_pending(const struct watchdog_rx *rx);

/* A feed the watchdog can act on: timeout_ms set, every guest named as the
 * cluster names VMs (so the name is safe in a path), a uuid empty or of
 * 36 characters. 0, or -EINVAL with a sentence in why. */
int watchdog_feed_check(const Vireo__WatchdogFeed *feed, char *why, size_t whylen);

/* ------------------------------------------------------------ guests' QEMU */

/* Where libvirt keeps its QEMU pid files and where /proc is; the tests
 * point both at fake trees. */
struct watchdog_paths {
	const char *run_dir;      /* /run/libvirt/qemu: <name>.pid */
	const char *proc_dir;     /* /proc */
};

extern const struct watchdog_paths watchdog_default_paths;

/* One guest's QEMU as first seen: a pid is only ever killed while it is
 * still this process (same start time), so a reused pid is never hit. */
struct watchdog_qemu {
	pid_t pid;
	uint64_t start_time;      /* field 22 of /proc/<pid>/stat, in clock ticks */
};

/* Field 22 of /proc/<pid>/stat. 0, -ESRCH (no such process), -EINVAL. */
int watchdog_proc_start_time(const char *proc_dir, pid_t pid, uint64_t *out);
/* Whether /proc/<pid>/cmdline is the QEMU of guest name: an argument
 * "guest=<name>" (libvirt's -name) or equal to uuid (libvirt's -uuid;
 * uuid may be ""). 0, -ESRCH (gone, or another process). */
int watchdog_qemu_verify(const char *proc_dir, pid_t pid, const char *name, const char *uuid);
/* Reads <run_dir>/<name>.pid and verifies the process. 0 and *out;
 * -ENOENT when there is no pid file (the guest does not run here);
 * -ESRCH when the pid is not that guest's QEMU (gone, or reused). */
int watchdog_qemu_find(const struct watchdog_paths *p, const char *name, const char *uuid,
		       struct watchdog_qemu *out);
/* SIGKILLs the guest's QEMU: the process in seen (when given) if it is
 * still the one first seen, else the one its pid file names now, verified
 * afresh. The process is pinned with a pidfd before it is verified, so the
 * signal reaches the verified process or none. 0 and *killed; -ENOENT
 * when no QEMU of that guest runs; -errno. */
int watchdog_qemu_kill(const struct watchdog_paths *p, const char *name, const char *uuid,
		       const struct watchdog_qemu *seen, pid_t *killed);

/* ------------------------------------------------------------ hardware watchdog */

struct watchdog_hw {
	int fd;                   /* -1: none configured */
	unsigned int timeout_s;   /* what the device was set to */
	bool stopped;             /* a fence stopped the petting: the machine resets */
};

/* The seconds the hardware watchdog is set to for token token_ms: the
 * fence delay (VIREO_FENCE_DELAY_MS) rounded up to whole seconds, as the
 * devices count, and at least 2 (drivers refuse 1 s, and a pet every
 * VIREO_WATCHDOG_FEED_MS must fit several times). */
unsigned int watchdog_hw_timeout_s(uint32_t token_ms);
/* Whether path may be armed: absolute, a character device, and not in a
 * vireo lab (VIREO_LAB set in env_lab: every lab host shares the machine's
 * kernel, and a reset takes the whole machine). 0, or -errno with a
 * sentence in why. Opens nothing. */
int watchdog_hw_check(const char *path, const char *env_lab, char *why, size_t whylen);
/* Checks, opens and arms the device with timeout_s. 0, or -errno with a
 * sentence in why. */
int watchdog_hw_open(struct watchdog_hw *hw, const char *path, unsigned int timeout_s,
		     char *why, size_t whylen);
/* Pets it unless stopped. 0 or -errno. */
int watchdog_hw_pet(struct watchdog_hw *hw);
/* A clean exit: the magic close disarms the device (unless its driver was
 * built with nowayout). */
void watchdog_hw_close(struct watchdog_hw *hw);

#endif
