#include "sharedstore/pool.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sharedstore/run.h"

/* The child hands its result back in one write, which a pipe keeps whole. */
_Static_assert(sizeof(struct store_pool_status) <= PIPE_BUF, "pool status must fit one pipe write");

#define PROBE_BYTES 4096

struct store_pool_probe {
	pid_t pid;                      /* the checking child, -1 when none */
	int fd;                         /* its result pipe */
	uint64_t start_ms, start_us, deadline_ms;
	bool done;                      /* st holds the answer already */
	struct store_pool_status st;
	char path[PATH_MAX];
	unsigned timeout_ms;
};

static void add_reason(struct store_pool_status *st, int error, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void add_reason(struct store_pool_status *st, int error, const char *fmt, ...)
{
	va_list ap;

	if (st->error == 0)
		st->error = error;
	st->ok = false;
	if (st->n_reasons >= STORE_POOL_MAX_REASONS)
		return;
	va_start(ap, fmt);
	vsnprintf(st->reasons[st->n_reasons++], STORE_REASON_LEN, fmt, ap);
	va_end(ap);
}

bool store_pool_id_valid(const char *id)
{
	for (int i = 0; i < STORE_POOL_ID_LEN; i++) {
		char c = id[i];

		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (c != '-')
				return false;
		} else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
			return false;
		}
	}
	return id[STORE_POOL_ID_LEN] == '\0';
}

static int join(char *buf, size_t len, const char *dir, const char *name)
{
	if ((size_t)snprintf(buf, len, "%s/%s", dir, name) >= len)
		return -ENAMETOOLONG;
	return 0;
}

int store_pool_read_id(const char *path, char id[STORE_POOL_ID_LEN + 1])
{
	char file[PATH_MAX], buf[64];
	ssize_t n;
	int fd, rc;

	id[0] = '\0';
	if ((rc = join(file, sizeof(file), path, STORE_POOL_ID_FILE)) < 0)
		return rc;
	if ((fd = open(file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
		return -errno;
	do
		n = read(fd, buf, sizeof(buf) - 1);
	while (n < 0 && errno == EINTR);
	rc = -errno;
	close(fd);
	if (n < 0)
		return rc;
	buf[n] = '\0';
	if (n > 0 && buf[n - 1] == '\n')
		buf[--n] = '\0';
	if (!store_pool_id_valid(buf))
		return -EINVAL;
	memcpy(id, buf, STORE_POOL_ID_LEN + 1);
	return 0;
}

static const char *fs_name(long magic, char *buf, size_t len)
{
	static const struct { unsigned long magic; const char *name; } names[] = {
		{ 0xEF53, "ext4" }, { 0x58465342, "xfs" }, { 0x9123683E, "btrfs" },
		{ 0x6969, "nfs" }, { 0x01161970, "gfs2" }, { 0x7461636f, "ocfs2" },
		{ 0x00c36400, "ceph" }, { 0xFF534D42, "cifs" }, { 0xFE534D42, "smb2" },
		{ 0x65735546, "fuse" }, { 0x01021994, "tmpfs" }, { 0x794c7630, "overlay" },
		{ 0x2fc12fc1, "zfs" },
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if ((unsigned long)magic == names[i].magic)
			return names[i].name;
	snprintf(buf, len, "0x%lx", (unsigned long)magic);
	return buf;
}

/* 1 when path is the root of a mount, 0 when not, -errno. */
static int is_mount_root(const char *path)
{
	struct statx sx, parent;
	char up[PATH_MAX];
	int rc;

	if (statx(AT_FDCWD, path, 0, STATX_BASIC_STATS, &sx) < 0)
		return -errno;
	if (sx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT)
		return !!(sx.stx_attributes & STATX_ATTR_MOUNT_ROOT);
	/* Older kernels: a different device than the parent's means a mount.
	 * (This misses a bind mount within one file system; the kernel check above does not.) */
	if ((rc = join(up, sizeof(up), path, "..")) < 0)
		return rc;
	if (statx(AT_FDCWD, up, 0, STATX_BASIC_STATS, &parent) < 0)
		return -errno;
	return sx.stx_dev_major != parent.stx_dev_major || sx.stx_dev_minor != parent.stx_dev_minor ||
	       sx.stx_ino == parent.stx_ino;
}

static void write_probe(const char *path, struct store_pool_status *st)
{
	static char block[PROBE_BYTES] __attribute__((aligned(PROBE_BYTES)));
	char file[PATH_MAX], host[65] = "host";
	int flags = O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW;
	int fd, err = 0;
	ssize_t n;

	gethostname(host, sizeof(host) - 1);
	/* Hosts share the pool and may share pids: the name carries both. */
	if ((size_t)snprintf(file, sizeof(file), "%s/.vireo-probe.%s.%ld", path, host,
			     (long)getpid()) >= sizeof(file)) {
		add_reason(st, -ENAMETOOLONG, "shared store path %s is too long", path);
		return;
	}
	memset(block, 'v', sizeof(block));
	fd = open(file, flags | O_DIRECT, 0600);
	if (fd < 0 && errno == EINVAL)  /* tmpfs and some FUSE file systems refuse O_DIRECT */
		fd = open(file, flags, 0600);
	else if (fd >= 0)
		st->direct_io = true;
	if (fd < 0) {
		err = errno;
		goto report;
	}
	do
		n = write(fd, block, sizeof(block));
	while (n < 0 && errno == EINTR);
	if (n < 0 && errno == EINVAL && st->direct_io) {
		/* O_DIRECT wants a larger alignment here; an ordinary write still probes the store. */
		st->direct_io = false;
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_DIRECT);
		n = write(fd, block, sizeof(block));
	}
	if (n < 0)
		err = errno;
	else if (n != (ssize_t)sizeof(block))
		err = ENOSPC;
	else if (fsync(fd) < 0)
		err = errno;
	if (close(fd) < 0 && !err)
		err = errno;
	if (unlink(file) < 0 && !err)
		err = errno;
report:
	switch (err) {
	case 0:
		return;
	case EROFS:
		add_reason(st, -err, "shared store %s is read-only on this node; remount it "
			   "read-write", path);
		return;
	case EACCES:
	case EPERM:
		add_reason(st, -err, "shared store %s is not writable by vireod on this node; "
			   "fix the directory's permissions or the export's options", path);
		return;
	case ENOSPC:
	case EDQUOT:
		add_reason(st, -err, "shared store %s is full; free space in the pool or grow it",
			   path);
		return;
	default:
		add_reason(st, -err, "shared store %s failed a write test (%s); check the storage "
			   "and its mount on this node", path, strerror(err));
	}
}

static void check_lockspace(const char *path, const struct stat *pool_sb,
			    struct store_pool_status *st)
{
	char dir[PATH_MAX];
	struct stat sb;

	if (join(dir, sizeof(dir), path, STORE_POOL_LEASE_DIR) < 0)
		return;
	if (stat(dir, &sb) < 0) {
		add_reason(st, -errno, "shared store %s has no lease directory %s; create it "
			   "(virtlockd keeps the disk leases there) or initialise the pool", path, dir);
		return;
	}
	if (!S_ISDIR(sb.st_mode)) {
		add_reason(st, -ENOTDIR, "lease directory %s is not a directory; replace it with "
			   "one (virtlockd keeps the disk leases there)", dir);
		return;
	}
	if (sb.st_dev != pool_sb->st_dev) {
		add_reason(st, -EXDEV, "lease directory %s is not on the shared store %s; leases "
			   "protect nothing unless every host sees the same lease files", dir, path);
		return;
	}
	if (access(dir, W_OK) < 0 && errno != EROFS)  /* read-only is reported once, above */
		add_reason(st, -errno, "lease directory %s is not writable on this node; fix its "
			   "permissions so virtlockd can create leases", dir);
}

/* Everything that touches the store; runs in the child. */
static void check_pool(const struct store_pool_opts *o, struct store_pool_status *st)
{
	const char *path = o->path;
	char id[STORE_POOL_ID_LEN + 1], magic[16];
	struct stat sb, root;
	struct statfs sfs;
	struct statvfs svfs;
	bool read_only = false;
	int rc;

	if (stat(path, &sb) < 0) {
		if (errno == ENOENT)
			add_reason(st, -ENOENT, "shared store %s does not exist on this node; mount "
				   "it or remove the node from the pool", path);
		else
			add_reason(st, -errno, "cannot reach shared store %s (%s); check the storage "
				   "and its mount on this node", path, strerror(errno));
		return;
	}
	if (!S_ISDIR(sb.st_mode)) {
		add_reason(st, -ENOTDIR, "shared store %s is not a directory; mount the pool there "
			   "or fix the pool path", path);
		return;
	}
	rc = is_mount_root(path);
	st->mountpoint = rc > 0;
	if (o->mount == STORE_POOL_MOUNTPOINT && rc <= 0)
		add_reason(st, rc < 0 ? rc : -ENOTCONN, "shared store %s is not mounted on this "
			   "node; mount it or remove the node from the pool", path);
	if (o->mount == STORE_POOL_NOT_ROOT_FS && stat("/", &root) == 0 && root.st_dev == sb.st_dev)
		add_reason(st, -ENOTCONN, "shared store %s is on this node's root file system, not "
			   "on shared storage; mount the pool there or remove the node from the pool",
			   path);
	if (statfs(path, &sfs) == 0)
		snprintf(st->fstype, sizeof(st->fstype), "%s",
			 fs_name((long)sfs.f_type, magic, sizeof(magic)));
	if (statvfs(path, &svfs) == 0) {
		st->total_bytes = (uint64_t)svfs.f_blocks * svfs.f_frsize;
		st->free_bytes = (uint64_t)svfs.f_bavail * svfs.f_frsize;
		read_only = svfs.f_flag & ST_RDONLY;
	}

	rc = store_pool_read_id(path, id);
	if (rc == 0)
		memcpy(st->id, id, sizeof(id));
	if (rc == -ENOENT)
		add_reason(st, rc, "shared store %s has no pool id (%s); initialise the pool once, "
			   "from one node, before hosts use it", path, STORE_POOL_ID_FILE);
	else if (rc == -EINVAL)
		add_reason(st, rc, "shared store %s has a damaged pool id file %s; restore the "
			   "pool's id into it (vireod logs the id it expects)", path, STORE_POOL_ID_FILE);
	else if (rc < 0)
		add_reason(st, rc, "cannot read the pool id of shared store %s (%s); check the "
			   "storage and its mount on this node", path, strerror(-rc));
	else if (o->expected_id && o->expected_id[0] && strcmp(id, o->expected_id) != 0)
		add_reason(st, -ESTALE, "shared store %s holds pool %s, but this cluster uses pool "
			   "%s; mount the cluster's pool there", path, id, o->expected_id);

	if (read_only)
		add_reason(st, -EROFS, "shared store %s is read-only on this node; remount it "
			   "read-write", path);
	else
		write_probe(path, st);
	if (o->need_lockspace)
		check_lockspace(path, &sb, st);
}

static void hang_status(struct store_pool_status *st, const char *path, int error,
			unsigned timeout_ms, uint64_t stuck_since)
{
	memset(st, 0, sizeof(*st));
	if (stuck_since)
		add_reason(st, error, "shared store %s still has not answered a check started "
			   "%llu s ago; check the NFS server or the storage path (a hung mount "
			   "hangs every VM on it)", path,
			   (unsigned long long)((store_now_ms() - stuck_since) / 1000u));
	else
		add_reason(st, error, "shared store %s did not answer within %u ms; check the "
			   "NFS server or the storage path (a hung mount hangs every VM on it)",
			   path, timeout_ms);
}

int store_pool_check_start(const struct store_pool_opts *opts, struct store_pool_probe **out)
{
	struct store_pool_probe *p = NULL;
	int fds[2] = { -1, -1 };
	uint64_t stuck_since;
	int rc;

	*out = NULL;
	if (!opts->path || opts->path[0] != '/')
		return -EINVAL;
	if (!(p = calloc(1, sizeof(*p))))
		return -ENOMEM;
	p->pid = -1;
	p->fd = -1;
	p->timeout_ms = opts->timeout_ms ? opts->timeout_ms : STORE_POOL_CHECK_TIMEOUT_MS;
	p->start_ms = store_now_ms();
	p->start_us = store_now_us();
	p->deadline_ms = p->start_ms + p->timeout_ms;
	if ((size_t)snprintf(p->path, sizeof(p->path), "%s", opts->path) >= sizeof(p->path)) {
		rc = -ENAMETOOLONG;
		goto cleanup;
	}
	if (pipe2(fds, O_CLOEXEC) < 0) {
		rc = -errno;
		goto cleanup;
	}
	if ((stuck_since = store_child_stuck(p->path))) {
		/* Do not stack another child behind the hung one; answer now. The
		 * fd is readable (EOF) at once so the caller's loop is the same. */
		hang_status(&p->st, p->path, -ETIMEDOUT, p->timeout_ms, stuck_since);
		p->done = true;
	} else if ((p->pid = fork()) < 0) {
		rc = -errno;
		goto cleanup;
	} else if (p->pid == 0) {
		struct store_pool_status st;
		ssize_t n;

		/* The child may outlive its parent (a pool that hangs): it must
		 * not hold the parent's other descriptors open with it (the
		 * watchdog and corosync see the parent gone when they close). */
		close_range(3, (unsigned)fds[1] - 1, 0);
		close_range((unsigned)fds[1] + 1, ~0u, 0);
		memset(&st, 0, sizeof(st));
		st.ok = true;
		check_pool(opts, &st);
		st.ok = st.n_reasons == 0;
		n = write(fds[1], &st, sizeof(st));
		_exit(n == (ssize_t)sizeof(st) ? 0 : 1);
	}
	close(fds[1]);
	fds[1] = -1;
	p->fd = fds[0];
	fds[0] = -1;
	if (fcntl(p->fd, F_SETFL, O_NONBLOCK) < 0) {
		rc = -errno;
		goto cleanup;
	}
	*out = p;
	p = NULL;
	rc = 0;
cleanup:
	if (fds[0] >= 0)
		close(fds[0]);
	if (fds[1] >= 0)
		close(fds[1]);
	store_pool_probe_free(p);
	return rc;
}

int store_pool_probe_fd(const struct store_pool_probe *p)
{
	return p->fd;
}

int store_pool_probe_timeout_ms(const struct store_pool_probe *p)
{
	uint64_t now = store_now_ms();

	if (p->done || now >= p->deadline_ms)
		return 0;
	return (int)(p->deadline_ms - now);
}

int store_pool_probe_finish(struct store_pool_probe *p, struct store_pool_status *st)
{
	struct store_pool_status got;
	ssize_t n;

	if (!p->done) {
		do
			n = read(p->fd, &got, sizeof(got));
		while (n < 0 && errno == EINTR);
		if (n == (ssize_t)sizeof(got)) {
			p->st = got;
		} else if (n < 0 && errno == EAGAIN) {
			if (store_now_ms() < p->deadline_ms)
				return -EAGAIN;
			hang_status(&p->st, p->path, -ETIMEDOUT, p->timeout_ms, 0);
		} else {
			memset(&p->st, 0, sizeof(p->st));
			add_reason(&p->st, -EIO, "the check of shared store %s failed: its process "
				   "died without an answer; see vireod's log", p->path);
		}
		/* It has answered (or died, or is hung): either way it is done. */
		store_child_kill(p->pid, p->path, p->start_ms);
		p->pid = -1;
		p->done = true;
	}
	*st = p->st;
	st->elapsed_us = (uint32_t)(store_now_us() - p->start_us);
	return 0;
}

void store_pool_probe_free(struct store_pool_probe *p)
{
	if (!p)
		return;
	if (p->pid > 0)
		store_child_kill(p->pid, p->path, p->start_ms);
	if (p->fd >= 0)
		close(p->fd);
	free(p);
}

int store_pool_check(const struct store_pool_opts *opts, struct store_pool_status *st)
{
	struct store_pool_probe *p = NULL;
	int rc;

	if ((rc = store_pool_check_start(opts, &p)) < 0)
		return rc;
	while ((rc = store_pool_probe_finish(p, st)) == -EAGAIN) {
		struct pollfd pfd = { .fd = store_pool_probe_fd(p), .events = POLLIN };

		if (poll(&pfd, 1, store_pool_probe_timeout_ms(p)) < 0 && errno != EINTR) {
			rc = -errno;
			break;
		}
	}
	store_pool_probe_free(p);
	return rc;
}

static void make_uuid(char out[STORE_POOL_ID_LEN + 1], const uint8_t b[16])
{
	static const char hex[] = "0123456789abcdef";
	int j = 0;

	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[j++] = '-';
		out[j++] = hex[b[i] >> 4];
		out[j++] = hex[b[i] & 15];
	}
	out[j] = '\0';
}

static int mkdir_p1(const char *path, const char *name, char *err, size_t errlen)
{
	char dir[PATH_MAX];
	int rc;

	if ((rc = join(dir, sizeof(dir), path, name)) < 0)
		return rc;
	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		rc = -errno;
		snprintf(err, errlen, "cannot create %s (%s); check that the shared store is "
			 "mounted read-write", dir, strerror(-rc));
		return rc;
	}
	return 0;
}

int store_pool_init(const char *path, char id[STORE_POOL_ID_LEN + 1], char *err, size_t errlen)
{
	char file[PATH_MAX], tmp[PATH_MAX], host[65] = "host", line[STORE_POOL_ID_LEN + 2];
	uint8_t rnd[16];
	bool linked = false;
	ssize_t n;
	int fd = -1, rc;

	id[0] = '\0';
	err[0] = '\0';
	gethostname(host, sizeof(host) - 1);
	if ((rc = join(file, sizeof(file), path, STORE_POOL_ID_FILE)) < 0 ||
	    (size_t)snprintf(tmp, sizeof(tmp), "%s/.vireo-pool-id.%s.%ld", path, host,
			     (long)getpid()) >= sizeof(tmp)) {
		snprintf(err, errlen, "shared store path %s is too long", path);
		return -ENAMETOOLONG;
	}
	if (store_pool_read_id(path, id) == 0 || access(file, F_OK) == 0) {
		snprintf(err, errlen, "shared store %s is initialised already (pool %s); nothing "
			 "was changed", path, id[0] ? id : "with a damaged id file");
		return -EEXIST;
	}
	/* The directories first: the id file says the pool is complete. */
	if ((rc = mkdir_p1(path, STORE_POOL_IMAGE_DIR, err, errlen)) < 0 ||
	    (rc = mkdir_p1(path, STORE_POOL_LEASE_DIR, err, errlen)) < 0)
		return rc;
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
		rc = -EIO;
		snprintf(err, errlen, "cannot get random bytes for a pool id");
		return rc;
	}
	rnd[6] = (uint8_t)((rnd[6] & 0x0f) | 0x40);    /* version 4 */
	rnd[8] = (uint8_t)((rnd[8] & 0x3f) | 0x80);    /* RFC 4122 variant */
	make_uuid(id, rnd);
	snprintf(line, sizeof(line), "%s\n", id);
	/* Written in full under a private name, then linked into place: link()
	 * fails if the name exists, atomically even on NFS, so two hosts racing
	 * to initialise get one id, and nobody ever reads a half-written file. */
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0)
		rc = -errno;
	else if ((n = write(fd, line, strlen(line))) != (ssize_t)strlen(line))
		rc = n < 0 ? -errno : -ENOSPC;
	else if (fsync(fd) < 0)
		rc = -errno;
	if (rc < 0) {
		snprintf(err, errlen, "cannot write the pool id on shared store %s (%s); check "
			 "that it is mounted read-write and has space", path, strerror(-rc));
		goto cleanup;
	}
	if (link(tmp, file) < 0) {
		rc = -errno;
		if (rc == -EEXIST) {
			store_pool_read_id(path, id);
			snprintf(err, errlen, "shared store %s was initialised by another node at "
				 "the same time (pool %s); nothing was changed", path,
				 id[0] ? id : "unknown");
		} else {
			snprintf(err, errlen, "cannot create the pool id file on shared store %s "
				 "(%s)", path, strerror(-rc));
			id[0] = '\0';
		}
		goto cleanup;
	}
	linked = true;
	rc = 0;
cleanup:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	if (linked) {
		int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		if (dfd >= 0) {
			fsync(dfd);
			close(dfd);
		}
	}
	if (rc < 0 && rc != -EEXIST)
		id[0] = '\0';
	return rc;
}
