/* vireo test-guest agent: what the pieces of the agent share.
 *
 * The agent is PID 1 of the test guest (see doc/test-guest.md). It is split by
 * responsibility: vireo-guest-agent.c (boot, console, heartbeat loop),
 * guest-disk.c (the sequence-record ring on /dev/vda), guest-net.c (eth0
 * set-up and the echo service), guest-fill.c (memory fill for migration
 * benchmarks), guest-power.c (the ACPI power button).
 */
#ifndef VIREO_GUEST_AGENT_H
#define VIREO_GUEST_AGENT_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* 128-bit boot id as 32 lowercase hex digits plus NUL. */
#define GUEST_BOOT_ID_BYTES 16
#define GUEST_BOOT_ID_HEX (2 * GUEST_BOOT_ID_BYTES + 1)

enum guest_fill_kind {
	GUEST_FILL_RANDOM, /* incompressible: defeats lz4/zstd and zero-page detection */
	GUEST_FILL_ZERO, /* every page zero: QEMU sends them as zero pages */
	GUEST_FILL_PATTERN, /* compressible, but no two pages identical */
};

/* Everything the kernel command line can ask of the agent. */
struct guest_config {
	char ip[32]; /* "10.0.0.5/24"; empty: no networking */
	char gw[16]; /* default gateway; empty: none */
	unsigned long fill_mb; /* 0: no fill */
	enum guest_fill_kind fill;
	unsigned int heartbeat_ms;
	unsigned int disk_ms; /* period of disk records; 0: never write */
};

struct guest_boot {
	uint8_t id[GUEST_BOOT_ID_BYTES];
	char hex[GUEST_BOOT_ID_HEX];
};

/* Print one protocol line on the serial console. The line is written with a
 * single write() under a lock, so lines from different threads never mix. */
void guest_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* AGENT-ERROR line: the reason is a whole sentence, errno text included. */
void guest_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

uint64_t guest_uptime_ms(void);

/* guest-disk.c */
struct guest_disk;
int guest_disk_open(const char *path, struct guest_disk **diskp);
int guest_disk_last_seq(struct guest_disk *disk, uint64_t *seqp);
/* Starts the writer thread; records continue from first_seq. */
int guest_disk_start_writer(struct guest_disk *disk, const struct guest_boot *boot,
			    uint64_t first_seq, unsigned int period_ms);

/* guest-net.c */
int guest_net_configure(const char *ifname, const char *cidr, const char *gw);
struct guest_echo;
int guest_echo_open(struct guest_echo **echop);
/* Fills up to max pollfds for the echo service; returns how many it used. */
size_t guest_echo_pollfds(struct guest_echo *echo, struct pollfd *fds, size_t max);
void guest_echo_dispatch(struct guest_echo *echo, const struct pollfd *fds, size_t n);

/* guest-fill.c */
int guest_fill_parse(const char *word, enum guest_fill_kind *kindp);
int guest_fill_start(unsigned long mb, enum guest_fill_kind kind);

/* guest-power.c: opens the power button's evdev devices (up to max);
 * dispatch powers the guest off when the button is pressed. */
size_t guest_power_open(int *fds, size_t max);
void guest_power_dispatch(int fd);

#endif
