/* sharedstore/: image names, sizes and formats; the lease configuration
 * vireo renders and checks; lease files and their locks. No qemu-img here. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sharedstore/images.h"
#include "sharedstore/leases.h"
#include "sharedstore/pool.h"
#include "unit.h"

START_TEST(image_names)
{
	static const char *good[] = { "a", "vm1-disk0", "web_01.data", "A.B-C_D", "0",
				      "x123456789012345678901234567890123456789012345678901234567890123" };
	static const char *bad[] = { "", ".hidden", "..", "a/b", "/abs", "sp ace", "tab\t",
				     "new\nline", "ünï", "semi;colon", "star*", "$(x)",
				     "x1234567890123456789012345678901234567890123456789012345678901234" };

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		ck_assert_msg(store_image_name_valid(good[i]), "'%s' should be valid", good[i]);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(!store_image_name_valid(bad[i]), "'%s' should be invalid", bad[i]);
	ck_assert_uint_eq(strlen(good[5]), 64);
	ck_assert_uint_eq(strlen(bad[12]), 65);
}
END_TEST

START_TEST(size_parsing)
{
	static const struct { const char *text; uint64_t bytes; } ok[] = {
		{ "1048576", 1048576 }, { "512M", 512ull << 20 }, { "512m", 512ull << 20 },
		{ "10G", 10ull << 30 }, { "10GiB", 10ull << 30 }, { "1T", 1ull << 40 },
		{ "4096K", 4ull << 20 }, { "0", 0 },
	};
	static const char *bad[] = { "", "G", "-1", "+1G", " 1G", "1G ", "1.5G", "1GB", "1Gi",
				     "1P", "1 G", "1X", "0x10", "1iB" };
	uint64_t v;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		ck_assert_msg(store_parse_size(ok[i].text, &v) == 0, "'%s' should parse", ok[i].text);
		ck_assert_msg(v == ok[i].bytes, "'%s' gave %llu", ok[i].text, (unsigned long long)v);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(store_parse_size(bad[i], &v) == -EINVAL, "'%s' should not parse", bad[i]);
	/* 2^64 and beyond do not fit */
	ck_assert_int_eq(store_parse_size("16777216T", &v), -ERANGE);
	ck_assert_int_eq(store_parse_size("18446744073709551616", &v), -ERANGE);
	ck_assert_int_eq(store_parse_size("18446744073709551615", &v), 0);
	ck_assert(v == UINT64_MAX);
	ck_assert_int_eq(store_parse_size("16777215T", &v), 0);
}
END_TEST

START_TEST(size_limits)
{
	char err[256];

	ck_assert_int_eq(store_image_size_check(1ull << 20, err, sizeof(err)), 0);
	ck_assert_int_eq(store_image_size_check(64ull << 40, err, sizeof(err)), 0);
	ck_assert_int_eq(store_image_size_check((1ull << 20) - 512, err, sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "an image must be at least 1 MiB; give a larger size");
	ck_assert_int_eq(store_image_size_check(0, err, sizeof(err)), -EINVAL);
	ck_assert_int_eq(store_image_size_check((64ull << 40) + 512, err, sizeof(err)), -ERANGE);
	ck_assert_ptr_nonnull(strstr(err, "at most 64 TiB"));
	ck_assert_int_eq(store_image_size_check((1ull << 20) + 1, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "multiple of 512 bytes"));
}
END_TEST

START_TEST(formats_and_paths)
{
	struct store *st;
	enum store_format f;
	char path[PATH_MAX];

	ck_assert_int_eq(store_format_parse("qcow2", &f), 0);
	ck_assert_int_eq(f, STORE_FMT_QCOW2);
	ck_assert_int_eq(store_format_parse("raw", &f), 0);
	ck_assert_int_eq(f, STORE_FMT_RAW);
	ck_assert_int_eq(store_format_parse("vmdk", &f), -EINVAL);
	ck_assert_str_eq(store_format_name(STORE_FMT_RAW), "raw");

	ck_assert_int_eq(store_open("relative/pool", &st), -EINVAL);
	ck_assert_int_eq(store_open("/var/lib/vireo/pool//", &st), 0);
	ck_assert_int_eq(store_image_path(st, "vm1", STORE_FMT_QCOW2, path, sizeof(path)), 0);
	ck_assert_str_eq(path, "/var/lib/vireo/pool/images/vm1.qcow2");
	ck_assert_int_eq(store_image_path(st, "vm1", STORE_FMT_RAW, path, sizeof(path)), 0);
	ck_assert_str_eq(path, "/var/lib/vireo/pool/images/vm1.raw");
	ck_assert_int_eq(store_image_path(st, "../etc", STORE_FMT_RAW, path, sizeof(path)), -EINVAL);
	ck_assert_int_eq(store_image_path(st, "vm1", STORE_FMT_RAW, path, 10), -ENAMETOOLONG);
	store_close(st);
}
END_TEST

START_TEST(render_config)
{
	char buf[1024];

	ck_assert_int_gt(store_lease_render_qemu_conf(buf, sizeof(buf)), 0);
	ck_assert_ptr_nonnull(strstr(buf, "\nlock_manager = \"lockd\"\n"));
	ck_assert_int_eq(store_lease_render_qemu_conf(buf, 10), -ENOSPC);

	ck_assert_int_gt(store_lease_render_lockd_conf("/var/lib/vireo/pool", buf, sizeof(buf)), 0);
	ck_assert_ptr_nonnull(strstr(buf, "\nauto_disk_leases = 1\n"));
	ck_assert_ptr_nonnull(strstr(buf, "\nrequire_lease_for_disks = 1\n"));
	ck_assert_ptr_nonnull(strstr(buf, "\nfile_lockspace_dir = \"/var/lib/vireo/pool/leases\"\n"));
	ck_assert_int_eq(store_lease_render_lockd_conf("pool", buf, sizeof(buf)), -EINVAL);
	ck_assert_int_eq(store_lease_render_lockd_conf("/p\"ool", buf, sizeof(buf)), -EINVAL);
	ck_assert_int_eq(store_lease_render_lockd_conf("/po\nol", buf, sizeof(buf)), -EINVAL);
	ck_assert_int_eq(store_lease_render_lockd_conf("/pool", buf, 20), -ENOSPC);
}
END_TEST

static void write_text(const char *dir, const char *name, const char *text)
{
	char path[PATH_MAX];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	ck_assert_ptr_nonnull(f = fopen(path, "w"));
	fputs(text, f);
	fclose(f);
}

START_TEST(check_host_config)
{
	char dir[] = "/tmp/vireo-store-conf-XXXXXX", buf[1024], err[512];

	ck_assert_ptr_nonnull(mkdtemp(dir));
	/* nothing configured: libvirt's default lock manager is "nop" */
	ck_assert_int_eq(store_lease_check_host(dir, "/pool", err, sizeof(err)), -ENOLCK);
	ck_assert_ptr_nonnull(strstr(err, "lock_manager is \"nop\""));

	/* what vireo renders passes */
	store_lease_render_qemu_conf(buf, sizeof(buf));
	write_text(dir, "qemu.conf", buf);
	store_lease_render_lockd_conf("/pool", buf, sizeof(buf));
	write_text(dir, "qemu-lockd.conf", buf);
	ck_assert_int_eq(store_lease_check_host(dir, "/pool", err, sizeof(err)), 0);
	ck_assert_int_eq(store_lease_check_host(dir, "/pool/", err, sizeof(err)), 0);

	/* the lab's own files (comments, other keys, trailing slash) pass */
	write_text(dir, "qemu.conf", "# comment\nstdio_handler = \"file\"\ncgroup_controllers = [ ]\n"
		   "user = \"root\"\n#lock_manager = \"sanlock\"\n  lock_manager=\"lockd\"  # on\n");
	write_text(dir, "qemu-lockd.conf", "auto_disk_leases = 1 # yes\nrequire_lease_for_disks = 1\n"
		   "file_lockspace_dir = \"/pool/leases/\"\n");
	ck_assert_int_eq(store_lease_check_host(dir, "/pool", err, sizeof(err)), 0);

	/* lockspace elsewhere */
	ck_assert_int_eq(store_lease_check_host(dir, "/other", err, sizeof(err)), -ENOLCK);
	ck_assert_ptr_nonnull(strstr(err, "keeps disk leases in /pool/leases, not on the shared store"));
	ck_assert_ptr_nonnull(strstr(err, "file_lockspace_dir = \"/other/leases\""));

	/* no lockspace: lockd would lock the images themselves */
	write_text(dir, "qemu-lockd.conf", "auto_disk_leases = 1\nrequire_lease_for_disks = 1\n");
	ck_assert_int_eq(store_lease_check_host(dir, "/pool", err, sizeof(err)), -ENOLCK);
	ck_assert_ptr_nonnull(strstr(err, "file_lockspace_dir is not set"));

	/* no automatic leases */
	write_text(dir, "qemu-lockd.conf", "auto_disk_leases = 0\nfile_lockspace_dir = \"/pool/leases\"\n");
	ck_assert_int_eq(store_lease_check_host(dir, "/pool", err, sizeof(err)), -ENOLCK);
	ck_assert_ptr_nonnull(strstr(err, "auto_disk_leases = 0"));

	/* require_lease_for_disks defaults to off when leases are automatic */
	write_text(dir, "qemu-lockd.conf", "file_lockspace_dir = \"/pool/leases\"\n");
	ck_assert_int_eq(store_lease_check_host(dir, "/pool", err, sizeof(err)), -ENOLCK);
	ck_assert_ptr_nonnull(strstr(err, "require_lease_for_disks is off"));

	/* a value of the wrong kind */
	write_text(dir, "qemu-lockd.conf", "auto_disk_leases = \"yes\"\n");
	ck_assert_int_eq(store_lease_check_host(dir, "/pool", err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "line 1: cannot read the value of auto_disk_leases"));

	/* lockd off */
	store_lease_render_lockd_conf("/pool", buf, sizeof(buf));
	write_text(dir, "qemu-lockd.conf", buf);
	write_text(dir, "qemu.conf", "lock_manager = \"sanlock\"\n");
	ck_assert_int_eq(store_lease_check_host(dir, "/pool", err, sizeof(err)), -ENOLCK);
	ck_assert_ptr_nonnull(strstr(err, "set lock_manager = \"lockd\""));

	snprintf(buf, sizeof(buf), "%s/qemu.conf", dir);
	unlink(buf);
	snprintf(buf, sizeof(buf), "%s/qemu-lockd.conf", dir);
	unlink(buf);
	rmdir(dir);
}
END_TEST

START_TEST(lease_paths)
{
	char path[PATH_MAX];

	/* lockd names the lease by the SHA-256 of the disk path (FIPS 180-2 "abc") */
	ck_assert_int_eq(store_lease_path("/pool", "abc", path, sizeof(path)), 0);
	ck_assert_str_eq(path, "/pool/leases/"
			 "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	ck_assert_int_eq(store_lease_path("/pool", "abc", path, 20), -ENAMETOOLONG);
}
END_TEST

/* A child that holds the lease the way virtlockd does (a POSIX lock on byte 0)
 * until killed. Returns its pid once the lock is held. */
static pid_t hold_like_virtlockd(const char *lease)
{
	int ready[2];
	char c;
	pid_t pid;

	ck_assert_int_eq(pipe(ready), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1 };
		int fd = open(lease, O_RDWR | O_CREAT, 0600);

		if (fd < 0 || fcntl(fd, F_SETLK, &fl) < 0)
			_exit(1);
		if (write(ready[1], "x", 1) != 1)
			_exit(1);
		pause();
		_exit(0);
	}
	close(ready[1]);
	ck_assert_int_eq(read(ready[0], &c, 1), 1);
	close(ready[0]);
	return pid;
}

START_TEST(lease_locks)
{
	char dir[] = "/tmp/vireo-store-lease-XXXXXX", leases[PATH_MAX], lease[PATH_MAX];
	const char *disk = "/var/lib/vireo/pool/images/vm1.qcow2";
	struct stat sb;
	pid_t holder;
	int fd, fd2;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(leases, sizeof(leases), "%s/leases", dir);
	/* no lease directory: nothing can be held, and nothing can be taken */
	ck_assert_int_eq(store_lease_held(dir, disk), 0);
	ck_assert_int_eq(store_lease_take(dir, disk), -ENOENT);
	ck_assert_int_eq(mkdir(leases, 0755), 0);
	ck_assert_int_eq(store_lease_path(dir, disk, lease, sizeof(lease)), 0);

	/* no lease file: free, and testing creates none */
	ck_assert_int_eq(store_lease_held(dir, disk), 0);
	ck_assert_int_eq(stat(lease, &sb), -1);

	/* virtlockd-style holder: held, and cannot be taken */
	holder = hold_like_virtlockd(lease);
	ck_assert_int_eq(store_lease_held(dir, disk), 1);
	ck_assert_int_eq(store_lease_take(dir, disk), -EBUSY);
	kill(holder, SIGKILL);
	waitpid(holder, NULL, 0);
	/* the holder died: its lock went with it */
	ck_assert_int_eq(store_lease_held(dir, disk), 0);

	/* taken by us: another process sees it held; a second take fails */
	fd = store_lease_take(dir, disk);
	ck_assert_int_ge(fd, 0);
	holder = fork();
	if (holder == 0)
		_exit(store_lease_held(dir, disk) == 1 ? 0 : 1);
	{
		int status;

		waitpid(holder, &status, 0);
		ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
			      "another process does not see our lease as held");
	}
	fd2 = store_lease_take(dir, disk);
	ck_assert_int_eq(fd2, -EBUSY);
	store_lease_release(fd, dir, disk, true);
	ck_assert_int_eq(stat(lease, &sb), -1);
	ck_assert_int_eq(store_lease_held(dir, disk), 0);
	rmdir(leases);
	rmdir(dir);
}
END_TEST

/* QEMU locks the images it has open (shared OFD locks on a few bytes), also
 * while its guest is paused and libvirt has let the lease go. */
START_TEST(disk_locks)
{
	char dir[] = "/tmp/vireo-store-disk-XXXXXX", disk[PATH_MAX];
	int ready[2], fd, status;
	char c;
	pid_t qemu;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(disk, sizeof(disk), "%s/vm1-disk1.qcow2", dir);
	/* no image: nothing can hold it */
	ck_assert_int_eq(store_disk_locked(disk), 0);
	ck_assert_int_eq(store_disk_in_use(dir, disk), 0);
	fd = open(disk, O_RDWR | O_CREAT, 0600);
	ck_assert_int_ge(fd, 0);
	close(fd);
	ck_assert_int_eq(store_disk_locked(disk), 0);

	ck_assert_int_eq(pipe(ready), 0);
	qemu = fork();
	ck_assert_int_ge(qemu, 0);
	if (qemu == 0) {
		struct flock fl = { .l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 100, .l_len = 1 };
		int qfd = open(disk, O_RDWR);

		if (qfd < 0 || fcntl(qfd, F_OFD_SETLK, &fl) < 0)
			_exit(1);
		if (write(ready[1], "x", 1) != 1)
			_exit(1);
		pause();
		_exit(0);
	}
	close(ready[1]);
	ck_assert_int_eq(read(ready[0], &c, 1), 1);
	close(ready[0]);
	/* a shared lock on one byte: the disk is in use, with no lease at all */
	ck_assert_int_eq(store_disk_locked(disk), 1);
	ck_assert_int_eq(store_lease_held(dir, disk), 0);
	ck_assert_int_eq(store_disk_in_use(dir, disk), 1);
	kill(qemu, SIGKILL);
	waitpid(qemu, &status, 0);
	ck_assert_int_eq(store_disk_locked(disk), 0);
	ck_assert_int_eq(store_disk_in_use(dir, disk), 0);
	unlink(disk);
	rmdir(dir);
}
END_TEST

static Suite *names_suite(void)
{
	Suite *s = suite_create("store_names");
	TCase *tc = tcase_create("names");

	tcase_add_test(tc, image_names);
	tcase_add_test(tc, size_parsing);
	tcase_add_test(tc, size_limits);
	tcase_add_test(tc, formats_and_paths);
	tcase_add_test(tc, render_config);
	tcase_add_test(tc, check_host_config);
	tcase_add_test(tc, lease_paths);
	tcase_add_test(tc, lease_locks);
	tcase_add_test(tc, disk_locks);
	suite_add_tcase(s, tc);
	return s;
}

UNIT_MAIN(names_suite)
