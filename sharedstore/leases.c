#include "sharedstore/leases.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nettle/sha2.h>

#include "sharedstore/pool.h"

int store_lease_render_qemu_conf(char *buf, size_t len)
{
	int n = snprintf(buf, len,
			 "# Disk leases through virtlockd (vireo): no two hosts run one disk.\n"
			 "lock_manager = \"lockd\"\n");

	return n < 0 || (size_t)n >= len ? -ENOSPC : n;
}

static bool config_string_ok(const char *s)
{
	return s[0] == '/' && !strpbrk(s, "\"\\\n\r");
}

int store_lease_render_lockd_conf(const char *pool, char *buf, size_t len)
{
	int n;

	if (!config_string_ok(pool))
		return -EINVAL;
	n = snprintf(buf, len,
		     "# qemu-lockd.conf for vireo: a lease for every writable disk, kept on the\n"
		     "# shared pool so that every host sees every lease.\n"
		     "auto_disk_leases = 1\n"
		     "require_lease_for_disks = 1\n"
		     "file_lockspace_dir = \"%s/%s\"\n", pool, STORE_POOL_LEASE_DIR);
	return n < 0 || (size_t)n >= len ? -ENOSPC : n;
}

/* What vireo needs from libvirt's config files; *_set says the file set it. */
struct libvirt_conf {
	char lock_manager[64];
	long auto_disk_leases;
	bool auto_set;
	long require_lease;
	bool require_set;
	char lockspace[PATH_MAX];
};

static char *trim(char *s)
{
	char *end;

	while (isspace((unsigned char)*s))
		s++;
	end = s + strlen(s);
	while (end > s && isspace((unsigned char)end[-1]))
		*--end = '\0';
	return s;
}

/* A value of libvirt's config syntax: "string" (no escapes needed here) or
 * an integer. Strips a trailing comment. 0, or -EINVAL. */
static int parse_value(char *v, char *str, size_t strlen_max, long *num, bool *is_num)
{
	char *end;

	v = trim(v);
	if (v[0] == '"') {
		char *close = strchr(v + 1, '"');

		if (!close || (size_t)(close - v - 1) >= strlen_max)
			return -EINVAL;
		memcpy(str, v + 1, (size_t)(close - v - 1));
		str[close - v - 1] = '\0';
		*is_num = false;
		return 0;
	}
	if ((end = strchr(v, '#')))
		*end = '\0';
	v = trim(v);
	errno = 0;
	*num = strtol(v, &end, 10);
	if (errno || end == v || *end)
		return -EINVAL;
	*is_num = true;
	return 0;
}

/* Reads the keys we care about from one file; a missing file is all defaults. */
static int read_libvirt_conf(const char *path, struct libvirt_conf *c, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	char line[PATH_MAX + 128];
	unsigned lineno = 0;
	int rc = 0;

	if (!f) {
		if (errno == ENOENT)
			return 0;
		rc = -errno;
		snprintf(err, errlen, "cannot read %s (%s)", path, strerror(-rc));
		return rc;
	}
	while (fgets(line, sizeof(line), f)) {
		char *eq, *key, str[PATH_MAX];
		bool is_num = false;
		long num = 0;

		lineno++;
		key = trim(line);
		if (key[0] == '#' || !(eq = strchr(key, '=')))
			continue;
		*eq = '\0';
		key = trim(key);
		if (strcmp(key, "lock_manager") != 0 && strcmp(key, "auto_disk_leases") != 0 &&
		    strcmp(key, "require_lease_for_disks") != 0 && strcmp(key, "file_lockspace_dir") != 0)
			continue;
		if (parse_value(eq + 1, str, sizeof(str), &num, &is_num) < 0 ||
		    is_num != (key[0] == 'a' || key[0] == 'r')) {
			snprintf(err, errlen, "%s line %u: cannot read the value of %s", path, lineno, key);
			rc = -EINVAL;
			break;
		}
		if (key[0] == 'l')
			snprintf(c->lock_manager, sizeof(c->lock_manager), "%.63s", str);
		else if (key[0] == 'f')
			snprintf(c->lockspace, sizeof(c->lockspace), "%s", str);
		else if (key[0] == 'a') {
			c->auto_disk_leases = num;
			c->auto_set = true;
		} else {
			c->require_lease = num;
			c->require_set = true;
		}
	}
	fclose(f);
	return rc;
}

static void strip_slashes(char *s)
{
	size_t n = strlen(s);

	while (n > 1 && s[n - 1] == '/')
		s[--n] = '\0';
}

int store_lease_check_host(const char *conf_dir, const char *pool, char *err, size_t errlen)
{
	char qemu[PATH_MAX], lockd[PATH_MAX], want[PATH_MAX], base[PATH_MAX];
	struct libvirt_conf c;
	int rc;

	/* "/pool/" and "/pool" are one pool */
	snprintf(base, sizeof(base), "%s", pool);
	strip_slashes(base);
	pool = base;
	memset(&c, 0, sizeof(c));
	snprintf(c.lock_manager, sizeof(c.lock_manager), "nop");   /* libvirt's default */
	c.auto_disk_leases = 1;
	if ((size_t)snprintf(qemu, sizeof(qemu), "%s/%s", conf_dir, STORE_LEASE_QEMU_CONF) >= sizeof(qemu) ||
	    (size_t)snprintf(lockd, sizeof(lockd), "%s/%s", conf_dir, STORE_LEASE_LOCKD_CONF) >= sizeof(lockd) ||
	    (size_t)snprintf(want, sizeof(want), "%s/%s", pool, STORE_POOL_LEASE_DIR) >= sizeof(want)) {
		snprintf(err, errlen, "the path of the libvirt configuration or the pool is too long");
		return -ENAMETOOLONG;
	}
	strip_slashes(want);
	if ((rc = read_libvirt_conf(qemu, &c, err, errlen)) < 0 ||
	    (rc = read_libvirt_conf(lockd, &c, err, errlen)) < 0)
		return rc;
	if (!c.require_set)
		c.require_lease = !c.auto_disk_leases;    /* libvirt's default */
	strip_slashes(c.lockspace);
	if (strcmp(c.lock_manager, "lockd") != 0) {
		snprintf(err, errlen, "libvirt on this node runs VMs without disk leases "
			 "(lock_manager is \"%s\" in %s); set lock_manager = \"lockd\" there and "
			 "restart the libvirt daemon", c.lock_manager, qemu);
		return -ENOLCK;
	}
	if (c.auto_disk_leases != 1) {
		snprintf(err, errlen, "libvirt on this node gives disks no automatic leases "
			 "(auto_disk_leases = %ld in %s); set it to 1 and restart the libvirt daemon",
			 c.auto_disk_leases, lockd);
		return -ENOLCK;
	}
	if (c.require_lease != 1) {
		snprintf(err, errlen, "libvirt on this node may start a VM whose disk has no lease "
			 "(require_lease_for_disks is off in %s); set it to 1 and restart the libvirt "
			 "daemon", lockd);
		return -ENOLCK;
	}
	if (strcmp(c.lockspace, want) != 0) {
		if (c.lockspace[0])
			snprintf(err, errlen, "virtlockd on this node keeps disk leases in %s, not on "
				 "the shared store; set file_lockspace_dir = \"%s\" in %s and restart "
				 "the libvirt daemon", c.lockspace, want, lockd);
		else
			snprintf(err, errlen, "virtlockd on this node has no lease directory on the "
				 "shared store (file_lockspace_dir is not set in %s); set "
				 "file_lockspace_dir = \"%s\" there and restart the libvirt daemon",
				 lockd, want);
		return -ENOLCK;
	}
	return 0;
}

int store_lease_path(const char *pool, const char *disk_path, char *out, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	uint8_t digest[SHA256_DIGEST_SIZE];
	char name[2 * SHA256_DIGEST_SIZE + 1];
	struct sha256_ctx ctx;

	sha256_init(&ctx);
	sha256_update(&ctx, strlen(disk_path), (const uint8_t *)disk_path);
	sha256_digest(&ctx, sizeof(digest), digest);
	for (size_t i = 0; i < sizeof(digest); i++) {
		name[2 * i] = hex[digest[i] >> 4];
		name[2 * i + 1] = hex[digest[i] & 15];
	}
	name[sizeof(name) - 1] = '\0';
	if ((size_t)snprintf(out, len, "%s/%s/%s", pool, STORE_POOL_LEASE_DIR, name) >= len)
		return -ENAMETOOLONG;
	return 0;
}

int store_lease_held(const char *pool, const char *disk_path)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1 };
	char path[PATH_MAX];
	int fd, rc;

	if ((rc = store_lease_path(pool, disk_path, path, sizeof(path))) < 0)
		return rc;
	/* Read-only suffices for F_OFD_GETLK, and creates nothing. */
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
		return errno == ENOENT ? 0 : -errno;
	rc = fcntl(fd, F_OFD_GETLK, &fl) < 0 ? -errno : fl.l_type != F_UNLCK;
	close(fd);
	return rc;
}

int store_disk_locked(const char *disk_path)
{
	/* A write lock over the whole file conflicts with any lock QEMU holds
	 * on it, shared or not; F_OFD_GETLK only asks. */
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0 };
	int fd, rc;

	if ((fd = open(disk_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)) < 0)
		return errno == ENOENT ? 0 : -errno;
	rc = fcntl(fd, F_OFD_GETLK, &fl) < 0 ? -errno : fl.l_type != F_UNLCK;
	close(fd);
	return rc;
}

int store_disk_in_use(const char *pool, const char *disk_path)
{
	int rc = store_lease_held(pool, disk_path);

	return rc != 0 ? rc : store_disk_locked(disk_path);
}

int store_lease_take(const char *pool, const char *disk_path)
{
	char path[PATH_MAX];
	int rc;

	if ((rc = store_lease_path(pool, disk_path, path, sizeof(path))) < 0)
		return rc;
	for (;;) {
		struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1 };
		struct stat a, b;
		int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);

		if (fd < 0)
			return -errno;
		if (fcntl(fd, F_OFD_SETLK, &fl) < 0) {
			rc = errno == EAGAIN || errno == EACCES ? -EBUSY : -errno;
			close(fd);
			return rc;
		}
		/* The file we locked must still be the one under the name: whoever
		 * held it last may have unlinked it as we opened it (virtlockd does
		 * the same dance). */
		if (fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_ino == b.st_ino &&
		    a.st_dev == b.st_dev)
			return fd;
		close(fd);
	}
}

void store_lease_release(int fd, const char *pool, const char *disk_path, bool unlink_file)
{
	char path[PATH_MAX];

	if (fd < 0)
		return;
	if (unlink_file && store_lease_path(pool, disk_path, path, sizeof(path)) == 0)
		unlink(path);
	close(fd);
}
