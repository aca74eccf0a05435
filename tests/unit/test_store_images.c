/* sharedstore/images: create, resize, info, list and delete with the real
 * qemu-img on a temporary pool; images in use (QEMU's lock, a held lease);
 * a full pool (as root, on a private tmpfs of a few MiB). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sharedstore/images.h"
#include "sharedstore/leases.h"
#include "sharedstore/pool.h"
#include "unit.h"

#define MiB (1ull << 20)

static char dir[64];
static struct store *st;

static bool have(const char *prog)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1", prog);
	return system(cmd) == 0;
}

/* A fresh pool in a temporary directory; false (with the reason printed) when
 * qemu-img is missing. */
static bool setup(const char *test)
{
	char id[STORE_POOL_ID_LEN + 1], err[512];

	if (!have("qemu-img")) {
		printf("skipped: %s needs qemu-img (Debian package qemu-utils)\n", test);
		return false;
	}
	snprintf(dir, sizeof(dir), "/tmp/vireo-store-img-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	ck_assert_int_eq(store_pool_init(dir, id, err, sizeof(err)), 0);
	ck_assert_int_eq(store_open(dir, &st), 0);
	return true;
}

static void teardown_pool(void)
{
	char cmd[PATH_MAX];

	store_close(st);
	st = NULL;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	ck_assert_int_eq(system(cmd), 0);
}

/* Names in <pool>/images, hidden ones included, joined by spaces. */
static void image_dir(char *buf, size_t len)
{
	char path[PATH_MAX];
	struct dirent *de;
	DIR *d;

	buf[0] = '\0';
	snprintf(path, sizeof(path), "%s/images", dir);
	ck_assert_ptr_nonnull(d = opendir(path));
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (buf[0])
			strncat(buf, " ", len - strlen(buf) - 1);
		strncat(buf, de->d_name, len - strlen(buf) - 1);
	}
	closedir(d);
}

START_TEST(create_info_resize_delete)
{
	struct store_image_info info;
	char path[PATH_MAX], names[1024];
	struct stat sb;

	if (!setup("create_info_resize_delete"))
		return;
	ck_assert_msg(store_image_create(st, "vm1", 10 * MiB, STORE_FMT_QCOW2, 0) == 0, "%s",
		      store_error(st));
	ck_assert_int_eq(store_image_info(st, "vm1", &info), 0);
	ck_assert_str_eq(info.name, "vm1");
	ck_assert_int_eq(info.format, STORE_FMT_QCOW2);
	ck_assert(info.virtual_bytes == 10 * MiB);
	ck_assert(info.actual_bytes > 0 && info.actual_bytes < 10 * MiB);
	ck_assert(!info.in_use);
	snprintf(path, sizeof(path), "%s/images/vm1.qcow2", dir);
	ck_assert_int_eq(stat(path, &sb), 0);
	image_dir(names, sizeof(names));
	ck_assert_str_eq(names, "vm1.qcow2");   /* nothing else: no temporary file */

	/* raw, preallocated: the space is taken now */
	ck_assert_msg(store_image_create(st, "data.raw-1", 2 * MiB, STORE_FMT_RAW,
					 STORE_IMAGE_PREALLOCATE) == 0, "%s", store_error(st));
	ck_assert_int_eq(store_image_info(st, "data.raw-1", &info), 0);
	ck_assert_int_eq(info.format, STORE_FMT_RAW);
	ck_assert(info.virtual_bytes == 2 * MiB);
	ck_assert(info.actual_bytes >= 2 * MiB);

	/* one name, one image, whatever the format */
	ck_assert_int_eq(store_image_create(st, "vm1", 10 * MiB, STORE_FMT_QCOW2, 0), -EEXIST);
	ck_assert_int_eq(store_image_create(st, "vm1", 10 * MiB, STORE_FMT_RAW, 0), -EEXIST);
	snprintf(path, sizeof(path), "image vm1 exists already in shared store %s; pick another "
		 "name or delete it first", dir);
	ck_assert_str_eq(store_error(st), path);

	/* bad names and sizes are refused before anything is made */
	ck_assert_int_eq(store_image_create(st, ".hidden", 10 * MiB, STORE_FMT_QCOW2, 0), -EINVAL);
	ck_assert_ptr_nonnull(strstr(store_error(st), "image name '.hidden' is not valid"));
	ck_assert_int_eq(store_image_create(st, "a/b", 10 * MiB, STORE_FMT_QCOW2, 0), -EINVAL);
	ck_assert_int_eq(store_image_create(st, "tiny", 4096, STORE_FMT_QCOW2, 0), -EINVAL);
	ck_assert_str_eq(store_error(st), "cannot create image tiny: an image must be at least "
			 "1 MiB; give a larger size");
	ck_assert_int_eq(store_image_create(st, "huge", 65ull << 40, STORE_FMT_QCOW2, 0), -ERANGE);
	image_dir(names, sizeof(names));
	ck_assert_str_eq(names, "vm1.qcow2 data.raw-1.raw");

	/* grow; never shrink */
	ck_assert_msg(store_image_resize(st, "vm1", 20 * MiB) == 0, "%s", store_error(st));
	ck_assert_int_eq(store_image_info(st, "vm1", &info), 0);
	ck_assert(info.virtual_bytes == 20 * MiB);
	ck_assert_int_eq(store_image_resize(st, "vm1", 20 * MiB), 0);
	ck_assert_int_eq(store_image_resize(st, "vm1", 10 * MiB), -EINVAL);
	ck_assert_str_eq(store_error(st), "image vm1 is 20 MiB; shrinking it to 10 MiB would cut "
			 "off the data at its end, so vireo only grows images");
	ck_assert_int_eq(store_image_info(st, "vm1", &info), 0);
	ck_assert(info.virtual_bytes == 20 * MiB);
	ck_assert_int_eq(store_image_resize(st, "data.raw-1", 3 * MiB), 0);
	ck_assert_int_eq(store_image_info(st, "data.raw-1", &info), 0);
	ck_assert(info.virtual_bytes == 3 * MiB);
	ck_assert_int_eq(store_image_resize(st, "nope", 3 * MiB), -ENOENT);

	/* delete */
	ck_assert_msg(store_image_delete(st, "vm1") == 0, "%s", store_error(st));
	ck_assert_int_eq(stat(path, &sb), -1);
	ck_assert_int_eq(store_image_info(st, "vm1", &info), -ENOENT);
	snprintf(path, sizeof(path), "there is no image vm1 in shared store %s", dir);
	ck_assert_str_eq(store_error(st), path);
	ck_assert_int_eq(store_image_delete(st, "vm1"), -ENOENT);
	ck_assert_int_eq(store_image_delete(st, "data.raw-1"), 0);
	image_dir(names, sizeof(names));
	ck_assert_str_eq(names, "");
	/* deleting leaves no lease files behind either */
	snprintf(path, sizeof(path), "exit $(ls -A '%s/leases' | wc -l)", dir);
	ck_assert_int_eq(WEXITSTATUS(system(path)), 0);
	teardown_pool();
}
END_TEST

START_TEST(list_sorted_and_skips_strays)
{
	struct store_image_info *list, info;
	char path[PATH_MAX];
	size_t n;
	FILE *f;

	if (!setup("list_sorted_and_skips_strays"))
		return;
	ck_assert_int_eq(store_image_list(st, &list, &n), 0);
	ck_assert_uint_eq(n, 0);
	free(list);
	ck_assert_int_eq(store_image_create(st, "zeta", 1 * MiB, STORE_FMT_RAW, 0), 0);
	ck_assert_int_eq(store_image_create(st, "alpha", 3 * MiB, STORE_FMT_QCOW2, 0), 0);
	ck_assert_int_eq(store_image_create(st, "mid.v2", 2 * MiB, STORE_FMT_QCOW2, 0), 0);
	/* strays: a temporary file of a creator that died, foreign files, a
	 * qcow2 name that is not a valid image name, and a damaged image */
	snprintf(path, sizeof(path), "%s/images/.beta.qcow2.tmp.host.1", dir);
	ck_assert_ptr_nonnull(f = fopen(path, "w"));
	fclose(f);
	snprintf(path, sizeof(path), "%s/images/notes.txt", dir);
	ck_assert_ptr_nonnull(f = fopen(path, "w"));
	fclose(f);
	snprintf(path, sizeof(path), "%s/images/bad name.qcow2", dir);
	ck_assert_ptr_nonnull(f = fopen(path, "w"));
	fclose(f);
	snprintf(path, sizeof(path), "%s/images/broken.qcow2", dir);
	ck_assert_ptr_nonnull(f = fopen(path, "w"));
	fputs("this is not a qcow2 image", f);
	fclose(f);

	ck_assert_int_eq(store_image_list(st, &list, &n), 0);
	ck_assert_uint_eq(n, 4);
	ck_assert_str_eq(list[0].name, "alpha");
	ck_assert(list[0].virtual_bytes == 3 * MiB && list[0].format == STORE_FMT_QCOW2);
	ck_assert_int_eq(list[0].error, 0);
	ck_assert_str_eq(list[1].name, "broken");
	ck_assert_int_eq(list[1].error, -EIO);
	ck_assert_str_eq(list[2].name, "mid.v2");
	ck_assert(list[2].virtual_bytes == 2 * MiB);
	ck_assert_str_eq(list[3].name, "zeta");
	ck_assert(list[3].virtual_bytes == 1 * MiB && list[3].format == STORE_FMT_RAW);
	free(list);
	ck_assert_int_eq(store_image_info(st, "broken", &info), -EIO);
	ck_assert_ptr_nonnull(strstr(store_error(st), "qemu-img cannot read image broken: "));
	teardown_pool();
}
END_TEST

/* Starts qemu-io on the image (QEMU's own write lock, as a running VM holds
 * it) and waits until qemu-img sees the lock. Our probe (qemu-img info) holds
 * a read lock for a moment, which can make qemu-io's open fail; then qemu-io
 * exits and is started again. */
static pid_t open_in_qemu(const char *path, const char *fmt)
{
	char cmd[PATH_MAX + 64];

	snprintf(cmd, sizeof(cmd), "qemu-img info -f %s '%s' >/dev/null 2>&1", fmt, path);
	for (int attempt = 0; attempt < 20; attempt++) {
		pid_t pid = fork();

		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			int null = open("/dev/null", O_RDWR);

			/* qemu-io must not wait on a terminal or make's stdin */
			dup2(null, 0);
			dup2(null, 1);
			dup2(null, 2);
			execlp("qemu-io", "qemu-io", "-f", fmt, "-c", "sleep 20000", path, (char *)NULL);
			_exit(127);
		}
		for (int i = 0; i < 100; i++) {
			usleep(20000);
			if (waitpid(pid, NULL, WNOHANG) == pid)
				break;          /* lost the race with our probe: again */
			if (system(cmd) != 0)
				return pid;
		}
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	ck_abort_msg("qemu-io did not lock %s", path);
	return -1;
}

START_TEST(in_use_is_refused)
{
	struct store_image_info info;
	char path[PATH_MAX];
	struct stat sb;
	pid_t qemu;
	int lease;

	if (!setup("in_use_is_refused"))
		return;
	if (!have("qemu-io")) {
		printf("skipped: in_use_is_refused needs qemu-io (Debian package qemu-utils)\n");
		teardown_pool();
		return;
	}
	ck_assert_int_eq(store_image_create(st, "busy", 4 * MiB, STORE_FMT_QCOW2, 0), 0);
	ck_assert_int_eq(store_image_path(st, "busy", STORE_FMT_QCOW2, path, sizeof(path)), 0);

	/* open in a QEMU process */
	qemu = open_in_qemu(path, "qcow2");
	ck_assert_int_eq(store_image_delete(st, "busy"), -EBUSY);
	ck_assert_str_eq(store_error(st), "image busy is open by a QEMU process on a host of the "
			 "pool; stop the VM that uses it before you delete it");
	ck_assert_int_eq(stat(path, &sb), 0);
	ck_assert_int_eq(store_image_resize(st, "busy", 8 * MiB), -EBUSY);
	ck_assert_ptr_nonnull(strstr(store_error(st), "is open in a running VM"));
	/* info and list still read it */
	ck_assert_int_eq(store_image_info(st, "busy", &info), 0);
	ck_assert(info.virtual_bytes == 4 * MiB);
	kill(qemu, SIGKILL);
	waitpid(qemu, NULL, 0);

	/* its lease held (by another process, as virtlockd holds it) */
	lease = fork();
	if (lease == 0) {
		int fd = store_lease_take(dir, path);

		if (fd < 0)
			_exit(1);
		pause();
		_exit(0);
	}
	for (int i = 0; i < 500 && store_lease_held(dir, path) != 1; i++)
		usleep(10000);
	ck_assert_int_eq(store_image_info(st, "busy", &info), 0);
	ck_assert(info.in_use);
	ck_assert_int_eq(store_image_delete(st, "busy"), -EBUSY);
	ck_assert_str_eq(store_error(st), "image busy is in use by a running VM (its disk lease is "
			 "held); stop the VM before you delete it");
	ck_assert_int_eq(store_image_resize(st, "busy", 8 * MiB), -EBUSY);
	ck_assert_int_eq(stat(path, &sb), 0);
	kill(lease, SIGKILL);
	waitpid(lease, NULL, 0);

	/* free again */
	ck_assert_int_eq(store_image_info(st, "busy", &info), 0);
	ck_assert(!info.in_use);
	ck_assert_msg(store_image_delete(st, "busy") == 0, "%s", store_error(st));
	ck_assert_int_eq(stat(path, &sb), -1);
	teardown_pool();
}
END_TEST

START_TEST(qemu_img_failures)
{
	char script[PATH_MAX], names[1024];
	FILE *f;

	if (!setup("qemu_img_failures"))
		return;
	/* no qemu-img at all */
	free(st->qemu_img);
	st->qemu_img = strdup("/nonexistent/qemu-img");
	ck_assert_int_eq(store_image_create(st, "x", 1 * MiB, STORE_FMT_QCOW2, 0), -ENOENT);
	ck_assert_str_eq(store_error(st), "cannot run /nonexistent/qemu-img to create an image "
			 "(No such file or directory); install qemu-utils on this node");

	/* a qemu-img that leaves a partial file and reports a full disk: the
	 * partial file goes, the error says the pool is full */
	snprintf(script, sizeof(script), "%s/fake-qemu-img", dir);
	ck_assert_ptr_nonnull(f = fopen(script, "w"));
	fputs("#!/bin/sh\n"
	      "for last; do :; done\n"
	      "eval \"file=\\${$(($# - 1))}\"\n"
	      "head -c 4096 /dev/zero > \"$file\"\n"
	      "echo \"qemu-img: $file: Could not preallocate new data: No space left on device\" >&2\n"
	      "exit 1\n", f);
	fclose(f);
	chmod(script, 0755);
	free(st->qemu_img);
	st->qemu_img = strdup(script);
	ck_assert_int_eq(store_image_create(st, "partial", 2 * MiB, STORE_FMT_RAW, 0), -ENOSPC);
	printf("fake full pool: %s\n", store_error(st));
	ck_assert_ptr_nonnull(strstr(store_error(st), "is full: there is no room for image partial ("));
	/* the temporary name is never shown: the user knows the image's name */
	ck_assert_ptr_null(strstr(store_error(st), ".tmp."));
	ck_assert_ptr_nonnull(strstr(store_error(st), "/images/partial.raw: Could not preallocate"));
	image_dir(names, sizeof(names));
	ck_assert_str_eq(names, "");

	/* a qemu-img that hangs is killed at the deadline, and its file removed */
	ck_assert_ptr_nonnull(f = fopen(script, "w"));
	fputs("#!/bin/sh\neval \"file=\\${$(($# - 1))}\"\n: > \"$file\"\nexec sleep 30\n", f);
	fclose(f);
	st->timeout_ms = 300;
	ck_assert_int_eq(store_image_create(st, "slow", 2 * MiB, STORE_FMT_RAW, 0), -ETIMEDOUT);
	ck_assert_ptr_nonnull(strstr(store_error(st), "did not finish within 0.3 s while trying to "
				     "create an image"));
	image_dir(names, sizeof(names));
	ck_assert_str_eq(names, "");
	teardown_pool();
}
END_TEST

START_TEST(full_pool)
{
	char id[STORE_POOL_ID_LEN + 1], err[512], fill[PATH_MAX], names[1024];
	static char block[65536];
	int fd;

	if (!have("qemu-img")) {
		printf("skipped: full_pool needs qemu-img (Debian package qemu-utils)\n");
		return;
	}
	if (geteuid() != 0) {
		printf("skipped: full_pool needs root to mount a small tmpfs\n");
		return;
	}
	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
		printf("skipped: full_pool cannot make a private mount namespace: %s\n", strerror(errno));
		return;
	}
	snprintf(dir, sizeof(dir), "/tmp/vireo-store-full-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	ck_assert_int_eq(mount("tmpfs", dir, "tmpfs", 0, "size=4m"), 0);
	ck_assert_int_eq(store_pool_init(dir, id, err, sizeof(err)), 0);
	ck_assert_int_eq(store_open(dir, &st), 0);

	/* more than the pool holds, preallocated: refused up front */
	ck_assert_int_eq(store_image_create(st, "big", 16 * MiB, STORE_FMT_RAW,
					    STORE_IMAGE_PREALLOCATE), -ENOSPC);
	printf("preallocated, too big: %s\n", store_error(st));
	ck_assert_ptr_nonnull(strstr(store_error(st), "is too full for image big: it needs 16 MiB"));

	/* fill the pool to the last block */
	snprintf(fill, sizeof(fill), "%s/fill", dir);
	ck_assert_int_ge(fd = open(fill, O_WRONLY | O_CREAT, 0600), 0);
	while (write(fd, block, sizeof(block)) > 0)
		;
	while (write(fd, block, 512) > 0)
		;
	close(fd);

	/* qemu-img itself hits the full disk */
	ck_assert_int_eq(store_image_create(st, "vm1", 10 * MiB, STORE_FMT_QCOW2, 0), -ENOSPC);
	printf("qcow2 on a full pool: %s\n", store_error(st));
	ck_assert_ptr_nonnull(strstr(store_error(st), "is full: there is no room for image vm1"));
	ck_assert_ptr_nonnull(strstr(store_error(st), "free space in the pool or grow it"));
	image_dir(names, sizeof(names));
	ck_assert_str_eq(names, "");
	ck_assert_int_eq(store_image_create(st, "vm2", 1 * MiB, STORE_FMT_QCOW2,
					    STORE_IMAGE_PREALLOCATE), -ENOSPC);
	image_dir(names, sizeof(names));
	ck_assert_str_eq(names, "");

	/* room again: the same name works */
	ck_assert_int_eq(unlink(fill), 0);
	ck_assert_msg(store_image_create(st, "vm1", 10 * MiB, STORE_FMT_QCOW2, 0) == 0, "%s",
		      store_error(st));
	image_dir(names, sizeof(names));
	ck_assert_str_eq(names, "vm1.qcow2");
	store_close(st);
	st = NULL;
	ck_assert_int_eq(umount(dir), 0);
	rmdir(dir);
}
END_TEST

static Suite *images_suite(void)
{
	Suite *s = suite_create("store_images");
	TCase *tc = tcase_create("images");

	tcase_add_test(tc, create_info_resize_delete);
	tcase_add_test(tc, list_sorted_and_skips_strays);
	tcase_add_test(tc, in_use_is_refused);
	tcase_add_test(tc, qemu_img_failures);
	tcase_add_test(tc, full_pool);
	suite_add_tcase(s, tc);
	return s;
}

UNIT_MAIN(images_suite)
