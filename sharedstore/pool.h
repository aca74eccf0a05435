/* The shared storage pool: one directory that every host of the cluster mounts
 * at the same path (NFS, a cluster file system, or in the lab one ext4 file
 * system bind-mounted into every host). See doc/sharedstore.md.
 *
 *   <pool>/.vireo-pool-id   the pool's UUID, written once by store_pool_init()
 *   <pool>/images/          disk images (sharedstore/images.h)
 *   <pool>/leases/          virtlockd's lockspace: one lease file per disk
 *
 * Checking a pool touches storage that may be dead (an NFS server gone away
 * blocks every process that touches the mount, SIGKILL or not), so the check
 * runs in a child process that the caller never waits for beyond a timeout.
 * The check comes in two forms: store_pool_check() blocks up to the timeout;
 * store_pool_check_start() hands back a probe with an fd for vireod's main
 * loop, so the loop never blocks on storage at all. */
#ifndef VIREO_SHAREDSTORE_POOL_H
#define VIREO_SHAREDSTORE_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_POOL_ID_FILE    ".vireo-pool-id"
#define STORE_POOL_IMAGE_DIR  "images"
#define STORE_POOL_LEASE_DIR  "leases"
#define STORE_POOL_ID_LEN     36            /* a UUID in its 8-4-4-4-12 form */
#define STORE_POOL_MAX_REASONS 4
#define STORE_REASON_LEN      320

/* A check that takes longer is a dead or stalled store. Healthy local and NFS
 * pools answer in a few ms (doc/sharedstore.md has measurements). */
#define STORE_POOL_CHECK_TIMEOUT_MS 5000u

/* What makes a directory shared storage rather than a directory that happens
 * to exist because the mount is missing. */
enum store_pool_mount {
	STORE_POOL_MOUNTPOINT,    /* the path itself is a mount point (production, the lab) */
	STORE_POOL_NOT_ROOT_FS,   /* anywhere on a file system other than the root's */
	STORE_POOL_ANY_FS,        /* no requirement (unit tests on a temporary directory) */
};

struct store_pool_opts {
	const char *path;               /* absolute */
	const char *expected_id;        /* the cluster's pool id; NULL: any pool (reported in id) */
	enum store_pool_mount mount;
	bool need_lockspace;            /* <pool>/leases must exist, on the pool, writable */
	unsigned timeout_ms;            /* 0: STORE_POOL_CHECK_TIMEOUT_MS */
};

/* Plain data (it crosses a pipe from the checking child). */
struct store_pool_status {
	bool ok;                        /* no failure below */
	int error;                      /* -errno of the first failure, 0 when ok */
	unsigned n_reasons;
	char reasons[STORE_POOL_MAX_REASONS][STORE_REASON_LEN]; /* one sentence per failure */
	char id[STORE_POOL_ID_LEN + 1]; /* the pool's id, "" when it could not be read */
	char fstype[16];                /* "ext4", "nfs", ... or "0x<magic>" */
	bool mountpoint;                /* the path is the root of a mount */
	bool direct_io;                 /* the write probe used O_DIRECT */
	uint64_t total_bytes;
	uint64_t free_bytes;            /* available to unprivileged writers */
	uint32_t elapsed_us;            /* from start to result, in the caller */
};

/* Runs the check in a child, waits at most opts->timeout_ms. Returns 0 with
 * st filled in (st->ok says whether the pool is usable), or -errno when the
 * check could not run at all (fork failed, ...). */
int store_pool_check(const struct store_pool_opts *opts, struct store_pool_status *st);

/* The same, driven by a main loop: start, poll store_pool_probe_fd() for
 * input with store_pool_probe_timeout_ms() as the timeout, then call
 * store_pool_probe_finish(): 0 when st is final, -EAGAIN to wait again.
 * After the deadline finish always answers (the store did not answer in
 * time, error -ETIMEDOUT). Free the probe in any state: a running check is
 * killed. While a check of a path hangs, new checks of that path do not fork
 * another child; they answer at once that the store is still not answering. */
struct store_pool_probe;
int store_pool_check_start(const struct store_pool_opts *opts, struct store_pool_probe **out);
int store_pool_probe_fd(const struct store_pool_probe *p);
int store_pool_probe_timeout_ms(const struct store_pool_probe *p);
int store_pool_probe_finish(struct store_pool_probe *p, struct store_pool_status *st);
void store_pool_probe_free(struct store_pool_probe *p);

/* Initialises a pool: creates images/ and leases/, then writes a new random
 * id to .vireo-pool-id. The id file appears atomically and only once: if it
 * exists (whoever wrote it), returns -EEXIST with its id in id (when it can
 * be read) and nothing is changed. On other errors, a sentence in err. */
int store_pool_init(const char *path, char id[STORE_POOL_ID_LEN + 1], char *err, size_t errlen);

/* Reads the pool's id (no child, no timeout: for tools). -ENOENT when the
 * pool has none, -EINVAL when the file does not hold an id. */
int store_pool_read_id(const char *path, char id[STORE_POOL_ID_LEN + 1]);

/* A well-formed id: 36 characters, lowercase hex and dashes at 8-4-4-4-12. */
bool store_pool_id_valid(const char *id);

#endif
