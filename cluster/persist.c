#include "cluster/persist.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static int write_all(int fd, const uint8_t *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static int fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

int cluster_persist_save(const char *dir, const cluster_state *st)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int rc;

	if ((rc = cluster_state_pack(st, &buf, &len)) == 0)
		rc = cluster_persist_write(dir, buf, len);
	free(buf);
	return rc;
}

int cluster_persist_write(const char *dir, const uint8_t *buf, size_t len)
{
	char path[PATH_MAX], tmp[PATH_MAX];
	int fd = -1;
	int rc;

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, CLUSTER_STATE_FILE) >= sizeof(path) ||
	    (size_t)snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, CLUSTER_STATE_FILE) >= sizeof(tmp))
		return -ENAMETOOLONG;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		goto cleanup;
	}
	if ((rc = write_all(fd, buf, len)) < 0)
		goto cleanup;
	if (fsync(fd) < 0) {
		rc = -errno;
		goto cleanup;
	}
	if (close(fd) < 0) {
		fd = -1;
		rc = -errno;
		goto cleanup;
	}
	fd = -1;
	if (rename(tmp, path) < 0) {
		rc = -errno;
		goto cleanup;
	}
	rc = fsync_dir(dir);
cleanup:
	if (fd >= 0)
		close(fd);
	if (rc < 0)
		unlink(tmp);
	return rc;
}

int cluster_persist_load(const char *dir, cluster_state **out)
{
	char path[PATH_MAX];
	uint8_t *buf = NULL;
	struct stat sb;
	size_t got = 0;
	int fd = -1;
	int rc;

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, CLUSTER_STATE_FILE) >= sizeof(path))
		return -ENAMETOOLONG;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &sb) < 0) {
		rc = -errno;
		goto cleanup;
	}
	if (!(buf = malloc(sb.st_size ? (size_t)sb.st_size : 1))) {
		rc = -ENOMEM;
		goto cleanup;
	}
	while (got < (size_t)sb.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)sb.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = n < 0 ? -errno : -EIO;
			goto cleanup;
		}
		got += (size_t)n;
	}
	rc = cluster_state_unpack(buf, got, out);
cleanup:
	if (fd >= 0)
		close(fd);
	free(buf);
	return rc;
}
