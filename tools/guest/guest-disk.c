/* The sequence-record ring on the guest's raw disk.
 *
 * The disk has no file system: it is a ring of fixed-size records, one per
 * sequence number, so that a test can tell exactly which acknowledged writes
 * survived a migration, a failover or a fault (design invariant 3). A record
 * is one logical block (512 bytes, or the device's block size if larger), so
 * a write is a single block and cannot be half old, half new on a device that
 * writes blocks atomically; the checksum catches it where one does not.
 *
 * Layout of a record, little endian (doc/test-guest.md has the same table):
 *
 *   0  magic "VIREOSEQ"          32  ring_slots (u64)
 *   8  version = 1 (u32)         40  boot_id (16 bytes)
 *  12  record_size (u32)         56  uptime_ms at write (u64)
 *  16  seq (u64), from 1         64  zero up to the checksum
 *  24  slot (u64)                size-4  CRC32C of bytes [0, size-4)
 *
 * Sequence s lives in slot (s - 1) % ring_slots, so a full ring overwrites its
 * oldest record. The highest sequence on the disk is found by reading every
 * slot and taking the largest seq among the valid records (right magic,
 * version, size, slot equal to where it was found, checksum): no header has
 * to be kept in step, and torn or stale slots simply do not count. The ring
 * is capped at GUEST_RING_MAX_BYTES so this scan stays short at boot.
 */
#define _GNU_SOURCE
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "guest-agent.h"

#define GUEST_RING_MAGIC "VIREOSEQ"
#define GUEST_RING_VERSION 1
/* 8 MiB of 512-byte records: 16384 records, 27 minutes at 10 per second
 * before the ring wraps, and a scan that reads 8 MiB at boot. */
#define GUEST_RING_MAX_BYTES (8u << 20)
#define GUEST_SCAN_CHUNK (1u << 20)
#define GUEST_DIRECT_ALIGN 4096

enum {
	OFF_MAGIC = 0,
	OFF_VERSION = 8,
	OFF_RECORD_SIZE = 12,
	OFF_SEQ = 16,
	OFF_SLOT = 24,
	OFF_RING_SLOTS = 32,
	OFF_BOOT_ID = 40,
	OFF_UPTIME = 56,
	OFF_END = 64,
};

struct guest_disk {
	int fd;
	uint32_t record_size;
	uint64_t ring_slots;
	/* writer thread state */
	struct guest_boot boot;
	uint64_t next_seq;
	unsigned int period_ms;
	void *buf;
	pthread_t thread;
};

static uint32_t crc32c_table[256];

static void crc32c_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
		crc32c_table[i] = c;
	}
}

static uint32_t crc32c(const uint8_t *p, size_t len)
{
	uint32_t c = 0xffffffffu;

	while (len--)
		c = crc32c_table[(c ^ *p++) & 0xff] ^ (c >> 8);
	return c ^ 0xffffffffu;
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return le32toh(v);
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return le64toh(v);
}

static void put32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, sizeof(v));
}

static void put64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, sizeof(v));
}

int guest_disk_open(const char *path, struct guest_disk **diskp)
{
	struct guest_disk *disk = NULL;
	uint64_t bytes = 0;
	int block_size = 0;
	int rc;

	crc32c_init();
	disk = calloc(1, sizeof(*disk));
	if (!disk)
		return -ENOMEM;
	/* O_DIRECT: an acknowledged record must be on the device, not in the
	 * guest's page cache; fdatasync then flushes the device's cache. */
	disk->fd = open(path, O_RDWR | O_DIRECT | O_CLOEXEC);
	if (disk->fd < 0) {
		rc = -errno;
		goto cleanup;
	}
	if (ioctl(disk->fd, BLKGETSIZE64, &bytes) < 0 || ioctl(disk->fd, BLKSSZGET, &block_size) < 0) {
		rc = -errno;
		goto cleanup;
	}
	disk->record_size = block_size > 512 ? (uint32_t)block_size : 512;
	if (disk->record_size > GUEST_DIRECT_ALIGN || disk->record_size < OFF_END + 4) {
		rc = -EINVAL;
		goto cleanup;
	}
	if (bytes > GUEST_RING_MAX_BYTES)
		bytes = GUEST_RING_MAX_BYTES;
	disk->ring_slots = bytes / disk->record_size;
	if (disk->ring_slots < 2) {
		rc = -ENOSPC;
		goto cleanup;
	}
	rc = posix_memalign(&disk->buf, GUEST_DIRECT_ALIGN, disk->record_size);
	if (rc) {
		rc = -rc;
		goto cleanup;
	}
	*diskp = disk;
	disk = NULL;
	rc = 0;
cleanup:
	if (disk) {
		if (disk->fd >= 0)
			close(disk->fd);
		free(disk);
	}
	return rc;
}

static bool record_valid(const struct guest_disk *disk, const uint8_t *rec, uint64_t slot)
{
	uint32_t size = disk->record_size;

	return memcmp(rec + OFF_MAGIC, GUEST_RING_MAGIC, 8) == 0 &&
	       get32(rec + OFF_VERSION) == GUEST_RING_VERSION &&
	       get32(rec + OFF_RECORD_SIZE) == size && get64(rec + OFF_SLOT) == slot &&
	       get64(rec + OFF_SEQ) != 0 && crc32c(rec, size - 4) == get32(rec + size - 4);
}

int guest_disk_last_seq(struct guest_disk *disk, uint64_t *seqp)
{
	uint64_t ring_bytes = disk->ring_slots * disk->record_size;
	uint64_t off = 0, last = 0;
	uint8_t *chunk = NULL;
	int rc;

	rc = posix_memalign((void **)&chunk, GUEST_DIRECT_ALIGN, GUEST_SCAN_CHUNK);
	if (rc) {
		chunk = NULL;
		rc = -rc;
		goto cleanup;
	}
	while (off < ring_bytes) {
		size_t want = ring_bytes - off < GUEST_SCAN_CHUNK ? ring_bytes - off : GUEST_SCAN_CHUNK;
		ssize_t n = pread(disk->fd, chunk, want, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			goto cleanup;
		}
		if (n == 0 || n % disk->record_size) {
			rc = -EIO;
			goto cleanup;
		}
		for (size_t i = 0; i < (size_t)n; i += disk->record_size) {
			uint64_t slot = (off + i) / disk->record_size;

			if (record_valid(disk, chunk + i, slot) && get64(chunk + i + OFF_SEQ) > last)
				last = get64(chunk + i + OFF_SEQ);
		}
		off += (uint64_t)n;
	}
	*seqp = last;
	rc = 0;
cleanup:
	free(chunk);
	return rc;
}

static int record_write(struct guest_disk *disk, uint64_t seq)
{
	uint32_t size = disk->record_size;
	uint64_t slot = (seq - 1) % disk->ring_slots;
	uint8_t *rec = disk->buf;
	ssize_t n;

	memset(rec, 0, size);
	memcpy(rec + OFF_MAGIC, GUEST_RING_MAGIC, 8);
	put32(rec + OFF_VERSION, GUEST_RING_VERSION);
	put32(rec + OFF_RECORD_SIZE, size);
	put64(rec + OFF_SEQ, seq);
	put64(rec + OFF_SLOT, slot);
	put64(rec + OFF_RING_SLOTS, disk->ring_slots);
	memcpy(rec + OFF_BOOT_ID, disk->boot.id, GUEST_BOOT_ID_BYTES);
	put64(rec + OFF_UPTIME, guest_uptime_ms());
	put32(rec + size - 4, crc32c(rec, size - 4));

	do
		n = pwrite(disk->fd, rec, size, (off_t)(slot * size));
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	if (n != (ssize_t)size)
		return -EIO;
	/* O_DIRECT bypasses the page cache but not the disk's write cache:
	 * only after the flush may the record be called durable. */
	if (fdatasync(disk->fd) < 0)
		return -errno;
	return 0;
}

static void timespec_add_ms(struct timespec *ts, unsigned int ms)
{
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* One record per period. A failed write is retried with the same sequence
 * (it was never acknowledged, so reusing it is safe) and reported once per
 * run of failures with the same errno, not every period. */
static void *disk_writer(void *arg)
{
	struct guest_disk *disk = arg;
	uint64_t seq = disk->next_seq;
	struct timespec next, now;
	int last_err = 0;

	clock_gettime(CLOCK_MONOTONIC, &next);
	for (;;) {
		int rc = record_write(disk, seq);

		if (rc == 0) {
			guest_say("ACKED %" PRIu64, seq);
			seq++;
			last_err = 0;
		} else if (rc != last_err) {
			guest_error("writing record %" PRIu64 " to /dev/vda failed (%s); retrying",
				    seq, strerror(-rc));
			last_err = rc;
		}
		timespec_add_ms(&next, disk->period_ms);
		clock_gettime(CLOCK_MONOTONIC, &now);
		/* After a stall (slow storage, paused VM) start a fresh period
		 * rather than writing a burst to catch up. */
		if (now.tv_sec > next.tv_sec || (now.tv_sec == next.tv_sec && now.tv_nsec > next.tv_nsec))
			next = now;
		else
			while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR)
				;
	}
	return NULL;
}

int guest_disk_start_writer(struct guest_disk *disk, const struct guest_boot *boot,
			    uint64_t first_seq, unsigned int period_ms)
{
	pthread_attr_t attr;
	int rc;

	disk->boot = *boot;
	disk->next_seq = first_seq;
	disk->period_ms = period_ms;
	rc = pthread_attr_init(&attr);
	if (rc)
		return -rc;
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = -pthread_create(&disk->thread, &attr, disk_writer, disk);
	pthread_attr_destroy(&attr);
	return rc;
}
