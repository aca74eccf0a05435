/* Memory fill for the migration benchmarks: vireo.fill_mb=N makes the guest
 * hold N MiB of resident memory of a chosen kind, so that the saved state's
 * size and compressibility are known. It runs in its own thread, so the
 * heartbeat starts on time however long the fill takes under TCG.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>

#include "guest-agent.h"

#define PAGE 4096

struct fill_job {
	unsigned long mb;
	enum guest_fill_kind kind;
};

int guest_fill_parse(const char *word, enum guest_fill_kind *kindp)
{
	if (strcmp(word, "random") == 0)
		*kindp = GUEST_FILL_RANDOM;
	else if (strcmp(word, "zero") == 0)
		*kindp = GUEST_FILL_ZERO;
	else if (strcmp(word, "pattern") == 0)
		*kindp = GUEST_FILL_PATTERN;
	else
		return -EINVAL;
	return 0;
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

/* xoshiro256**: getrandom() itself would be far slower under TCG, and the
 * data only has to be incompressible, not unpredictable. */
static void fill_random(uint64_t *p, size_t words)
{
	uint64_t s[4];
	struct timespec ts;

	if (getrandom(s, sizeof(s), GRND_INSECURE) != (ssize_t)sizeof(s)) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		s[0] = (uint64_t)ts.tv_nsec;
		s[1] = (uint64_t)ts.tv_sec;
		s[2] = 0x9e3779b97f4a7c15ull;
		s[3] = 0xbf58476d1ce4e5b9ull;
	}
	s[0] |= 1; /* the all-zero state would stay zero */
	for (size_t i = 0; i < words; i++) {
		uint64_t t = s[1] << 17;

		p[i] = rotl(s[1] * 5, 7) * 9;
		s[2] ^= s[0];
		s[3] ^= s[1];
		s[1] ^= s[2];
		s[0] ^= s[3];
		s[2] ^= t;
		s[3] = rotl(s[3], 45);
	}
}

/* A page number followed by a repeated phrase: compresses well, yet no two
 * pages are equal, so a migration cannot dedupe them away. */
static void fill_pattern(uint8_t *p, size_t bytes)
{
	static const char phrase[] = "vireo test guest memory fill pattern ";
	size_t plen = sizeof(phrase) - 1;

	for (size_t page = 0; page < bytes / PAGE; page++) {
		uint8_t *pg = p + page * PAGE;
		uint64_t no = page;

		memcpy(pg, &no, sizeof(no));
		for (size_t off = sizeof(no); off < PAGE; off++)
			pg[off] = (uint8_t)phrase[off % plen];
	}
}

static void *fill_thread(void *arg)
{
	struct fill_job job = *(struct fill_job *)arg;
	size_t bytes = (size_t)job.mb << 20;
	void *mem;

	free(arg);
	mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) {
		guest_error("cannot map %lu MiB to fill (%s)", job.mb, strerror(errno));
		return NULL;
	}
	switch (job.kind) {
	case GUEST_FILL_RANDOM:
		fill_random(mem, bytes / sizeof(uint64_t));
		break;
	case GUEST_FILL_ZERO:
		/* Writing zeros still makes every page resident, unlike
		 * leaving the mapping untouched. */
		memset(mem, 0, bytes);
		break;
	case GUEST_FILL_PATTERN:
		fill_pattern(mem, bytes);
		break;
	}
	/* Locked so the pages stay what we wrote, should the guest ever gain
	 * swap or zram; failure only means no such guarantee. */
	mlock(mem, bytes);
	guest_say("FILLED %lu", job.mb);
	return NULL; /* the mapping stays for the life of the guest */
}

int guest_fill_start(unsigned long mb, enum guest_fill_kind kind)
{
	struct fill_job *job;
	pthread_attr_t attr;
	pthread_t thread;
	int rc;

	job = malloc(sizeof(*job));
	if (!job)
		return -ENOMEM;
	job->mb = mb;
	job->kind = kind;
	rc = pthread_attr_init(&attr);
	if (rc)
		goto cleanup;
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = pthread_create(&thread, &attr, fill_thread, job);
	pthread_attr_destroy(&attr);
	if (rc == 0)
		job = NULL; /* the thread owns it now */
cleanup:
	free(job);
	return -rc;
}
