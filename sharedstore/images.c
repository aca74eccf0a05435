#include "sharedstore/images.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <json-c/json.h>

#include "sharedstore/leases.h"
#include "sharedstore/pool.h"
#include "sharedstore/run.h"

static void set_error(struct store *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_error(struct store *st, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(st->error, sizeof(st->error), fmt, ap);
	va_end(ap);
}

const char *store_error(const struct store *st)
{
	return st->error;
}

int store_open(const char *pool, struct store **out)
{
	struct store *st = NULL;
	size_t n = strlen(pool), len;
	int rc = -ENOMEM;

	*out = NULL;
	if (pool[0] != '/')
		return -EINVAL;
	while (n > 1 && pool[n - 1] == '/')
		n--;
	len = n + sizeof("/" STORE_POOL_IMAGE_DIR);
	if (!(st = calloc(1, sizeof(*st))) || !(st->pool = strndup(pool, n)) ||
	    !(st->images = malloc(len)) || !(st->qemu_img = strdup("qemu-img")))
		goto cleanup;
	snprintf(st->images, len, "%s/%s", st->pool, STORE_POOL_IMAGE_DIR);
	st->timeout_ms = STORE_QEMU_IMG_TIMEOUT_MS;
	*out = st;
	st = NULL;
	rc = 0;
cleanup:
	store_close(st);
	return rc;
}

void store_close(struct store *st)
{
	if (!st)
		return;
	free(st->pool);
	free(st->images);
	free(st->qemu_img);
	free(st);
}

bool store_image_name_valid(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > STORE_IMAGE_NAME_MAX || name[0] == '.')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)name[i]) && !strchr("-_.", name[i]))
			return false;
	return true;
}

int store_parse_size(const char *text, uint64_t *bytes)
{
	static const char units[] = "KMGT";
	uint64_t v = 0, mult = 1;
	const char *p = text;
	const char *u;

	if (!isdigit((unsigned char)*p))
		return -EINVAL;
	for (; isdigit((unsigned char)*p); p++) {
		if (v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
			return -ERANGE;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	if (*p) {
		if (!(u = strchr(units, toupper((unsigned char)*p))))
			return -EINVAL;
		for (long i = 0; i <= u - units; i++)
			mult *= 1024;
		p++;
		if (strcmp(p, "iB") == 0)
			p += 2;
		if (*p)
			return -EINVAL;
	}
	if (v > UINT64_MAX / mult)
		return -ERANGE;
	*bytes = v * mult;
	return 0;
}

int store_image_size_check(uint64_t bytes, char *err, size_t errlen)
{
	if (bytes < STORE_IMAGE_MIN_BYTES) {
		snprintf(err, errlen, "an image must be at least 1 MiB; give a larger size");
		return -EINVAL;
	}
	if (bytes > STORE_IMAGE_MAX_BYTES) {
		snprintf(err, errlen, "an image can be at most 64 TiB; give a smaller size");
		return -ERANGE;
	}
	if (bytes % 512) {
		snprintf(err, errlen, "an image size must be a multiple of 512 bytes; round %" PRIu64
			 " up or use a unit such as M or G", bytes);
		return -EINVAL;
	}
	return 0;
}

const char *store_format_name(enum store_format fmt)
{
	return fmt == STORE_FMT_RAW ? "raw" : "qcow2";
}

int store_format_parse(const char *text, enum store_format *fmt)
{
	if (strcmp(text, "qcow2") == 0)
		*fmt = STORE_FMT_QCOW2;
	else if (strcmp(text, "raw") == 0)
		*fmt = STORE_FMT_RAW;
	else
		return -EINVAL;
	return 0;
}

int store_image_path(const struct store *st, const char *name, enum store_format fmt,
		     char *buf, size_t len)
{
	if (!store_image_name_valid(name))
		return -EINVAL;
	if ((size_t)snprintf(buf, len, "%s/%s.%s", st->images, name, store_format_name(fmt)) >= len)
		return -ENAMETOOLONG;
	return 0;
}

/* Which file holds image name: 0 with *fmt and path, -ENOENT, or -errno. */
static int find_image(struct store *st, const char *name, enum store_format *fmt,
		      char *path, size_t len)
{
	static const enum store_format fmts[] = { STORE_FMT_QCOW2, STORE_FMT_RAW };
	int found = 0, rc;

	if (!store_image_name_valid(name)) {
		set_error(st, "image name '%s' is not valid; use 1-%d letters, digits, '-', '_' or "
			  "'.', not starting with '.'", name, STORE_IMAGE_NAME_MAX);
		return -EINVAL;
	}
	for (size_t i = 0; i < 2; i++) {
		char p[PATH_MAX];

		if ((rc = store_image_path(st, name, fmts[i], p, sizeof(p))) < 0)
			return rc;
		if (access(p, F_OK) == 0) {
			found++;
			*fmt = fmts[i];
			snprintf(path, len, "%s", p);
		} else if (errno != ENOENT) {
			rc = -errno;
			set_error(st, "cannot look up image %s in shared store %s (%s); check the "
				  "pool's mount", name, st->pool, strerror(errno));
			return rc;
		}
	}
	if (found == 0) {
		set_error(st, "there is no image %s in shared store %s", name, st->pool);
		return -ENOENT;
	}
	if (found == 2)
		set_error(st, "image %s exists both as qcow2 and as raw in shared store %s; "
			  "remove the stray one by hand", name, st->pool);
	return found == 2 ? -EEXIST : 0;
}

/* The first line of qemu-img's stderr without the "qemu-img: " prefix; every
 * mention of tmp is shown as shown (the name the user knows). */
static void qemu_img_reason(const char *err, const char *tmp, const char *shown,
			    char *buf, size_t len)
{
	const char *p = err, *nl;
	size_t tlen = tmp ? strlen(tmp) : 0, k = 0;

	if (strncmp(p, "qemu-img: ", 10) == 0)
		p += 10;
	nl = strchr(p, '\n');
	if (!nl)
		nl = p + strlen(p);
	while (p < nl && k + 1 < len) {
		if (tlen && (size_t)(nl - p) >= tlen && strncmp(p, tmp, tlen) == 0) {
			k += (size_t)snprintf(buf + k, len - k, "%s", shown);
			if (k >= len)
				k = len - 1;
			p += tlen;
			continue;
		}
		buf[k++] = *p++;
	}
	buf[k] = '\0';
	if (k == 0)
		snprintf(buf, len, "no message");
}

static bool lock_error(const struct store_run_result *r)
{
	return strstr(r->err, "\"write\" lock") || strstr(r->err, "Is another process using");
}

static bool space_error(const struct store_run_result *r)
{
	return strstr(r->err, "No space left on device") || strstr(r->err, "Disk quota exceeded");
}

/* Runs qemu-img; a failure that is not a plain non-zero exit becomes -errno. */
static int qemu_img(struct store *st, const char *const argv[], struct store_run_result *r,
		    const char *what)
{
	int rc = store_run(argv, st->timeout_ms, r);

	if (rc < 0) {
		set_error(st, "cannot run %s to %s (%s); install qemu-utils on this node",
			  st->qemu_img, what, strerror(-rc));
		return rc;
	}
	if (r->timed_out) {
		set_error(st, "%s did not finish within %.1f s while trying to %s; check the "
			  "shared store %s and its mount", st->qemu_img, st->timeout_ms / 1000.0,
			  what, st->pool);
		return -ETIMEDOUT;
	}
	return 0;
}

static int fsync_path(const char *path, int flags)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | flags);
	int rc = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

static int ensure_image_dir(struct store *st)
{
	if (mkdir(st->images, 0755) == 0 || errno == EEXIST)
		return 0;
	set_error(st, "cannot create the image directory %s (%s); check that the shared store "
		  "is mounted read-write", st->images, strerror(errno));
	return -errno;
}

int store_image_create(struct store *st, const char *name, uint64_t bytes,
		       enum store_format fmt, unsigned flags)
{
	char path[PATH_MAX], tmp[PATH_MAX], size[32], why[320], host[65] = "host";
	const char *argv[10];
	struct store_run_result r = { 0 };
	enum store_format existing;
	struct statvfs sv;
	bool made = false;
	int rc, n = 0;

	if ((rc = find_image(st, name, &existing, path, sizeof(path))) != -ENOENT) {
		if (rc == 0) {
			set_error(st, "image %s exists already in shared store %s; pick another "
				  "name or delete it first", name, st->pool);
			rc = -EEXIST;
		}
		return rc;
	}
	if ((rc = store_image_size_check(bytes, why, sizeof(why))) < 0) {
		set_error(st, "cannot create image %s: %s", name, why);
		return rc;
	}
	if ((rc = store_image_path(st, name, fmt, path, sizeof(path))) < 0)
		return rc;
	gethostname(host, sizeof(host) - 1);
	/* Hidden (list skips dot files) and unique across the hosts of the pool. */
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s/.%s.%s.tmp.%s.%ld", st->images, name,
			     store_format_name(fmt), host, (long)getpid()) >= sizeof(tmp))
		return -ENAMETOOLONG;
	if ((rc = ensure_image_dir(st)) < 0)
		return rc;
	if ((flags & STORE_IMAGE_PREALLOCATE) && statvfs(st->images, &sv) == 0 &&
	    (uint64_t)sv.f_bavail * sv.f_frsize < bytes) {
		set_error(st, "shared store %s is too full for image %s: it needs %" PRIu64
			  " MiB and %" PRIu64 " MiB are free; free space in the pool or grow it",
			  st->pool, name, bytes >> 20, ((uint64_t)sv.f_bavail * sv.f_frsize) >> 20);
		return -ENOSPC;
	}
	snprintf(size, sizeof(size), "%" PRIu64, bytes);
	argv[n++] = st->qemu_img;
	argv[n++] = "create";
	argv[n++] = "-q";
	argv[n++] = "-f";
	argv[n++] = store_format_name(fmt);
	if (flags & STORE_IMAGE_PREALLOCATE) {
		argv[n++] = "-o";
		argv[n++] = "preallocation=falloc";
	}
	argv[n++] = tmp;
	argv[n++] = size;
	argv[n] = NULL;
	made = true;
	if ((rc = qemu_img(st, argv, &r, "create an image")) < 0)
		goto cleanup;
	if (r.exit_code != 0) {
		qemu_img_reason(r.err, tmp, path, why, sizeof(why));
		if (space_error(&r)) {
			set_error(st, "shared store %s is full: there is no room for image %s (%s); "
				  "free space in the pool or grow it", st->pool, name, why);
			rc = -ENOSPC;
		} else {
			set_error(st, "qemu-img could not create image %s: %s", name, why);
			rc = -EIO;
		}
		goto cleanup;
	}
	/* qemu-img does not sync; the image must be on stable storage before it
	 * has a name another host may act on. */
	if ((rc = fsync_path(tmp, 0)) < 0) {
		set_error(st, "cannot sync new image %s to shared store %s (%s)", name, st->pool,
			  strerror(-rc));
		goto cleanup;
	}
	/* link() refuses to replace, atomically even on NFS (rename would replace). */
	if (link(tmp, path) < 0) {
		rc = -errno;
		if (rc == -EEXIST)
			set_error(st, "image %s was created by someone else at the same time; "
				  "pick another name", name);
		else if (rc == -ENOSPC || rc == -EDQUOT)
			set_error(st, "shared store %s is full: there is no room for image %s; free "
				  "space in the pool or grow it", st->pool, name);
		else
			set_error(st, "cannot create image %s in shared store %s (%s)", name,
				  st->pool, strerror(-rc));
		goto cleanup;
	}
	fsync_path(st->images, O_DIRECTORY);
	rc = 0;
cleanup:
	if (made)
		unlink(tmp);
	store_run_result_free(&r);
	return rc;
}

static int parse_info(struct store *st, const char *name, const char *json,
		      struct store_image_info *info)
{
	struct json_object *root = json_tokener_parse(json), *v;
	int rc = -EIO;

	if (!root || !json_object_is_type(root, json_type_object) ||
	    !json_object_object_get_ex(root, "virtual-size", &v) ||
	    !json_object_is_type(v, json_type_int)) {
		set_error(st, "qemu-img gave no size for image %s; check that qemu-utils is "
			  "installed properly", name);
		goto cleanup;
	}
	info->virtual_bytes = (uint64_t)json_object_get_int64(v);
	if (json_object_object_get_ex(root, "actual-size", &v) && json_object_is_type(v, json_type_int))
		info->actual_bytes = (uint64_t)json_object_get_int64(v);
	if (json_object_object_get_ex(root, "format", &v) &&
	    strcmp(json_object_get_string(v), store_format_name(info->format)) != 0) {
		set_error(st, "qemu-img reads image %s as %s, not %s", name,
			  json_object_get_string(v), store_format_name(info->format));
		goto cleanup;
	}
	rc = 0;
cleanup:
	json_object_put(root);
	return rc;
}

/* qemu-img info; force_share reads an image that a running QEMU holds. */
static int image_info(struct store *st, const char *name, enum store_format fmt,
		      const char *path, bool force_share, struct store_image_info *info)
{
	const char *argv[] = { st->qemu_img, "info", "--output=json", "-f", store_format_name(fmt),
			       force_share ? "-U" : path, force_share ? path : NULL, NULL };
	struct store_run_result r = { 0 };
	char why[320];
	int rc;

	memset(info, 0, sizeof(*info));
	snprintf(info->name, sizeof(info->name), "%s", name);
	info->format = fmt;
	if ((rc = qemu_img(st, argv, &r, "read an image")) < 0)
		goto cleanup;
	if (r.exit_code != 0) {
		qemu_img_reason(r.err, NULL, NULL, why, sizeof(why));
		if (lock_error(&r)) {
			set_error(st, "image %s is open in a running VM; stop the VM that uses it "
				  "first", name);
			rc = -EBUSY;
		} else {
			set_error(st, "qemu-img cannot read image %s: %s", name, why);
			rc = -EIO;
		}
		goto cleanup;
	}
	if ((rc = parse_info(st, name, r.out, info)) < 0)
		goto cleanup;
	rc = store_lease_held(st->pool, path);
	info->in_use = rc > 0;
	rc = 0;
cleanup:
	store_run_result_free(&r);
	return rc;
}

int store_image_info(struct store *st, const char *name, struct store_image_info *info)
{
	char path[PATH_MAX];
	enum store_format fmt;
	int rc;

	if ((rc = find_image(st, name, &fmt, path, sizeof(path))) < 0)
		return rc;
	return image_info(st, name, fmt, path, true, info);
}

/* Takes the disk's lease for a change that must not race with a VM start.
 * A pool without a lease directory has no leases to respect: -ENOENT, and
 * the caller goes on with QEMU's own image lock as the only check. */
static int take_lease(struct store *st, const char *name, const char *path, const char *what)
{
	int fd = store_lease_take(st->pool, path);

	if (fd == -EBUSY)
		set_error(st, "image %s is in use by a running VM (its disk lease is held); stop "
			  "the VM before you %s it", name, what);
	else if (fd < 0 && fd != -ENOENT)
		set_error(st, "cannot take the disk lease of image %s in shared store %s (%s); "
			  "check the pool's lease directory", name, st->pool, strerror(-fd));
	return fd;
}

int store_image_delete(struct store *st, const char *name)
{
	struct store_image_info info;
	char path[PATH_MAX];
	enum store_format fmt;
	int lease = -1, rc;

	if ((rc = find_image(st, name, &fmt, path, sizeof(path))) < 0)
		return rc;
	if ((lease = take_lease(st, name, path, "delete")) < 0 && lease != -ENOENT)
		return lease;
	/* The lease covers VMs started through libvirt with leases; QEMU's own
	 * image lock covers any QEMU that has the file open. */
	if ((rc = image_info(st, name, fmt, path, false, &info)) < 0) {
		if (rc == -EBUSY)
			set_error(st, "image %s is open by a QEMU process on a host of the pool; "
				  "stop the VM that uses it before you delete it", name);
		goto cleanup;
	}
	if (unlink(path) < 0) {
		rc = -errno;
		set_error(st, "cannot delete image %s from shared store %s (%s)", name, st->pool,
			  strerror(-rc));
		goto cleanup;
	}
	fsync_path(st->images, O_DIRECTORY);
	rc = 0;
cleanup:
	if (lease >= 0)
		store_lease_release(lease, st->pool, path, rc == 0);
	return rc;
}

int store_image_resize(struct store *st, const char *name, uint64_t bytes)
{
	struct store_image_info info;
	struct store_run_result r = { 0 };
	char path[PATH_MAX], size[32], why[320];
	enum store_format fmt;
	int lease = -1, rc;

	if ((rc = find_image(st, name, &fmt, path, sizeof(path))) < 0)
		return rc;
	if ((rc = store_image_size_check(bytes, why, sizeof(why))) < 0) {
		set_error(st, "cannot resize image %s: %s", name, why);
		return rc;
	}
	if ((lease = take_lease(st, name, path, "resize")) < 0 && lease != -ENOENT)
		return lease;
	if ((rc = image_info(st, name, fmt, path, false, &info)) < 0)
		goto cleanup;
	if (bytes < info.virtual_bytes) {
		set_error(st, "image %s is %" PRIu64 " MiB; shrinking it to %" PRIu64 " MiB would "
			  "cut off the data at its end, so vireo only grows images", name,
			  info.virtual_bytes >> 20, bytes >> 20);
		rc = -EINVAL;
		goto cleanup;
	}
	if (bytes == info.virtual_bytes) {
		rc = 0;
		goto cleanup;
	}
	snprintf(size, sizeof(size), "%" PRIu64, bytes);
	{
		const char *argv[] = { st->qemu_img, "resize", "-q", "-f", store_format_name(fmt),
				       path, size, NULL };

		if ((rc = qemu_img(st, argv, &r, "resize an image")) < 0)
			goto cleanup;
	}
	if (r.exit_code != 0) {
		qemu_img_reason(r.err, NULL, NULL, why, sizeof(why));
		if (lock_error(&r)) {
			set_error(st, "image %s is open in a running VM; stop the VM before you "
				  "resize it", name);
			rc = -EBUSY;
		} else if (space_error(&r)) {
			set_error(st, "shared store %s is full: there is no room to grow image %s "
				  "(%s); free space in the pool or grow it", st->pool, name, why);
			rc = -ENOSPC;
		} else {
			set_error(st, "qemu-img could not resize image %s: %s", name, why);
			rc = -EIO;
		}
		goto cleanup;
	}
	rc = fsync_path(path, 0);
cleanup:
	if (lease >= 0)
		store_lease_release(lease, st->pool, path, false);
	store_run_result_free(&r);
	return rc;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(((const struct store_image_info *)a)->name,
		      ((const struct store_image_info *)b)->name);
}

int store_image_list(struct store *st, struct store_image_info **out, size_t *n)
{
	struct store_image_info *list = NULL;
	size_t count = 0, cap = 0;
	struct dirent *de;
	DIR *d = NULL;
	int rc;

	*out = NULL;
	*n = 0;
	if (!(d = opendir(st->images))) {
		rc = -errno;
		if (rc == -ENOENT)
			return 0;    /* a pool with no images yet */
		set_error(st, "cannot list images in shared store %s (%s); check the pool's mount",
			  st->pool, strerror(-rc));
		return rc;
	}
	while ((errno = 0, de = readdir(d))) {
		char name[NAME_MAX + 1], path[PATH_MAX];
		enum store_format fmt;
		char *dot;

		if (de->d_name[0] == '.' || !(dot = strrchr(de->d_name, '.')) ||
		    store_format_parse(dot + 1, &fmt) < 0)
			continue;
		snprintf(name, sizeof(name), "%.*s", (int)(dot - de->d_name), de->d_name);
		if (!store_image_name_valid(name) ||
		    store_image_path(st, name, fmt, path, sizeof(path)) < 0)
			continue;
		if (count == cap) {
			struct store_image_info *grown;

			cap = cap ? cap * 2 : 16;
			if (!(grown = realloc(list, cap * sizeof(*list)))) {
				rc = -ENOMEM;
				goto cleanup;
			}
			list = grown;
		}
		rc = image_info(st, name, fmt, path, true, &list[count]);
		list[count].error = rc;
		count++;
	}
	if (errno) {
		rc = -errno;
		set_error(st, "cannot list images in shared store %s (%s)", st->pool, strerror(-rc));
		goto cleanup;
	}
	if (count)
		qsort(list, count, sizeof(*list), by_name);
	*out = list;
	*n = count;
	list = NULL;
	rc = 0;
cleanup:
	closedir(d);
	free(list);
	return rc;
}
