/* sharedstore/pool: initialising a pool and checking it, on temporary
 * directories (and, as root, on private mounts: read-only, full). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sharedstore/pool.h"
#include "sharedstore/run.h"
#include "unit.h"

static char dir[64];

static void make_dir(void)
{
	snprintf(dir, sizeof(dir), "/tmp/vireo-store-pool-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void rm_rf(const char *path)
{
	char cmd[PATH_MAX + 16];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
	ck_assert_int_eq(system(cmd), 0);
}

/* How many entries of dir have text in their name. */
static int count_entries(const char *text)
{
	char cmd[PATH_MAX + 64];

	snprintf(cmd, sizeof(cmd), "exit $(ls -A '%s' | grep -c '%s')", dir, text);
	return WEXITSTATUS(system(cmd));
}

static bool has_reason(const struct store_pool_status *st, const char *text)
{
	for (unsigned i = 0; i < st->n_reasons; i++)
		if (strstr(st->reasons[i], text))
			return true;
	return false;
}

static void print_reasons(const char *what, const struct store_pool_status *st)
{
	printf("%s: ok=%d error=%d fstype=%s mountpoint=%d direct_io=%d %u us\n", what, st->ok,
	       st->error, st->fstype, st->mountpoint, st->direct_io, st->elapsed_us);
	for (unsigned i = 0; i < st->n_reasons; i++)
		printf("  reason: %s\n", st->reasons[i]);
}

/* Root with its own mount namespace (each Check test runs in a fork), or a
 * printed reason to skip. */
static bool private_mounts(const char *test)
{
	if (geteuid() != 0) {
		printf("skipped: %s needs root for a private mount\n", test);
		return false;
	}
	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
		printf("skipped: %s cannot make a private mount namespace: %s\n", test, strerror(errno));
		return false;
	}
	return true;
}

START_TEST(init_once)
{
	char id[STORE_POOL_ID_LEN + 1], id2[STORE_POOL_ID_LEN + 1], err[512], path[PATH_MAX];
	struct stat sb;

	make_dir();
	ck_assert_int_eq(store_pool_read_id(dir, id), -ENOENT);
	ck_assert_int_eq(store_pool_init(dir, id, err, sizeof(err)), 0);
	ck_assert_msg(store_pool_id_valid(id), "bad id %s", id);
	ck_assert_int_eq(id[14], '4');  /* version 4 */
	ck_assert_int_eq(store_pool_read_id(dir, id2), 0);
	ck_assert_str_eq(id, id2);
	snprintf(path, sizeof(path), "%s/images", dir);
	ck_assert(stat(path, &sb) == 0 && S_ISDIR(sb.st_mode));
	snprintf(path, sizeof(path), "%s/leases", dir);
	ck_assert(stat(path, &sb) == 0 && S_ISDIR(sb.st_mode));

	/* a second init changes nothing and says which pool this is */
	ck_assert_int_eq(store_pool_init(dir, id2, err, sizeof(err)), -EEXIST);
	ck_assert_str_eq(id, id2);
	ck_assert_ptr_nonnull(strstr(err, "is initialised already"));
	ck_assert_ptr_nonnull(strstr(err, id));
	ck_assert_int_eq(store_pool_read_id(dir, id2), 0);
	ck_assert_str_eq(id, id2);
	/* no temporary files left behind */
	ck_assert_int_eq(count_entries("vireo-pool-id."), 0);

	/* a damaged id file is not an id, and init still refuses to overwrite it */
	snprintf(path, sizeof(path), "%s/%s", dir, STORE_POOL_ID_FILE);
	ck_assert_int_eq(truncate(path, 10), 0);
	ck_assert_int_eq(store_pool_read_id(dir, id2), -EINVAL);
	ck_assert_int_eq(store_pool_init(dir, id2, err, sizeof(err)), -EEXIST);
	ck_assert_ptr_nonnull(strstr(err, "damaged id file"));
	rm_rf(dir);

	ck_assert_int_eq(store_pool_init("/nonexistent/pool", id, err, sizeof(err)), -ENOENT);
	ck_assert_ptr_nonnull(strstr(err, "cannot create /nonexistent/pool/images"));
}
END_TEST

START_TEST(ids)
{
	ck_assert(store_pool_id_valid("0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"));
	ck_assert(!store_pool_id_valid("0F1E2D3C-4B5A-4978-8695-A4B3C2D1E0F9"));
	ck_assert(!store_pool_id_valid("0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f"));
	ck_assert(!store_pool_id_valid("0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f99"));
	ck_assert(!store_pool_id_valid("0f1e2d3c4b5a-4978-8695-a4b3c2d1e0f9-"));
	ck_assert(!store_pool_id_valid(""));
}
END_TEST

START_TEST(check_healthy_dir)
{
	struct store_pool_opts o = { .mount = STORE_POOL_ANY_FS, .need_lockspace = true };
	struct store_pool_status st;
	char id[STORE_POOL_ID_LEN + 1], err[512];
	uint32_t best = UINT32_MAX;

	make_dir();
	o.path = dir;
	ck_assert_int_eq(store_pool_init(dir, id, err, sizeof(err)), 0);
	for (int i = 0; i < 20; i++) {
		ck_assert_int_eq(store_pool_check(&o, &st), 0);
		if (st.elapsed_us < best)
			best = st.elapsed_us;
	}
	print_reasons("healthy", &st);
	printf("pool check on %s (%s): best of 20 %u us, last %u us\n", dir, st.fstype, best,
	       st.elapsed_us);
	ck_assert_msg(st.ok, "healthy pool not ok: %s", st.reasons[0]);
	ck_assert_int_eq(st.error, 0);
	ck_assert_uint_eq(st.n_reasons, 0);
	ck_assert_str_eq(st.id, id);
	ck_assert(st.fstype[0] != '\0');
	ck_assert(st.total_bytes > 0 && st.free_bytes <= st.total_bytes);
	ck_assert(!st.mountpoint);
	ck_assert_msg(st.elapsed_us < 1000000, "check took %u us", st.elapsed_us);

	/* the expected id matches */
	o.expected_id = id;
	ck_assert_int_eq(store_pool_check(&o, &st), 0);
	ck_assert(st.ok);
	/* no probe file is left behind */
	ck_assert_int_eq(count_entries("probe"), 0);
	rm_rf(dir);
}
END_TEST

START_TEST(check_failures)
{
	struct store_pool_opts o = { .mount = STORE_POOL_ANY_FS };
	struct store_pool_status st;
	char id[STORE_POOL_ID_LEN + 1], err[512], msg[512], path[PATH_MAX];

	/* missing */
	o.path = "/nonexistent/vireo/pool";
	ck_assert_int_eq(store_pool_check(&o, &st), 0);
	ck_assert(!st.ok);
	ck_assert_int_eq(st.error, -ENOENT);
	ck_assert_str_eq(st.reasons[0], "shared store /nonexistent/vireo/pool does not exist on "
			 "this node; mount it or remove the node from the pool");

	/* not a mount point, when one is required */
	make_dir();
	o.path = dir;
	o.mount = STORE_POOL_MOUNTPOINT;
	ck_assert_int_eq(store_pool_init(dir, id, err, sizeof(err)), 0);
	ck_assert_int_eq(store_pool_check(&o, &st), 0);
	print_reasons("not mounted", &st);
	ck_assert(!st.ok);
	snprintf(msg, sizeof(msg), "shared store %s is not mounted on this node; mount it or "
		 "remove the node from the pool", dir);
	ck_assert_str_eq(st.reasons[0], msg);
	ck_assert_uint_eq(st.n_reasons, 1);
	ck_assert_str_eq(st.id, id);     /* the rest is still checked and reported */

	/* on the root file system, when it must not be */
	{
		struct stat a, b;

		o.mount = STORE_POOL_NOT_ROOT_FS;
		ck_assert_int_eq(store_pool_check(&o, &st), 0);
		if (stat("/", &a) == 0 && stat(dir, &b) == 0 && a.st_dev == b.st_dev)
			ck_assert(has_reason(&st, "is on this node's root file system, not on shared storage"));
		else
			ck_assert(st.ok);
	}

	/* another cluster's pool */
	o.mount = STORE_POOL_ANY_FS;
	o.expected_id = "00000000-0000-4000-8000-000000000000";
	ck_assert_int_eq(store_pool_check(&o, &st), 0);
	print_reasons("mismatch", &st);
	ck_assert(!st.ok);
	ck_assert_int_eq(st.error, -ESTALE);
	snprintf(msg, sizeof(msg), "shared store %s holds pool %s, but this cluster uses pool "
		 "00000000-0000-4000-8000-000000000000; mount the cluster's pool there", dir, id);
	ck_assert_str_eq(st.reasons[0], msg);
	ck_assert_str_eq(st.id, id);

	/* a damaged id */
	o.expected_id = NULL;
	snprintf(path, sizeof(path), "%s/%s", dir, STORE_POOL_ID_FILE);
	ck_assert_int_eq(truncate(path, 5), 0);
	ck_assert_int_eq(store_pool_check(&o, &st), 0);
	ck_assert_int_eq(st.error, -EINVAL);
	ck_assert(has_reason(&st, "has a damaged pool id file"));
	ck_assert_str_eq(st.id, "");

	/* no id at all */
	ck_assert_int_eq(unlink(path), 0);
	ck_assert_int_eq(store_pool_check(&o, &st), 0);
	ck_assert_int_eq(st.error, -ENOENT);
	ck_assert(has_reason(&st, "has no pool id (.vireo-pool-id); initialise the pool once"));

	/* no lease directory, when leases are needed */
	ck_assert_int_eq(store_pool_init(dir, id, err, sizeof(err)), 0);
	snprintf(path, sizeof(path), "%s/leases", dir);
	ck_assert_int_eq(rmdir(path), 0);
	o.need_lockspace = true;
	ck_assert_int_eq(store_pool_check(&o, &st), 0);
	ck_assert(!st.ok);
	ck_assert(has_reason(&st, "has no lease directory"));
	ck_assert_int_eq(mkdir(path, 0755), 0);
	ck_assert_int_eq(store_pool_check(&o, &st), 0);
	ck_assert(st.ok);

	/* a file where the pool should be */
	snprintf(path, sizeof(path), "%s/%s", dir, STORE_POOL_ID_FILE);
	o.path = path;
	ck_assert_int_eq(store_pool_check(&o, &st), 0);
	ck_assert_int_eq(st.error, -ENOTDIR);
	o.path = "relative";
	ck_assert_int_eq(store_pool_check(&o, &st), -EINVAL);
	rm_rf(dir);
}
END_TEST

START_TEST(check_read_only)
{
	struct store_pool_opts o = { .mount = STORE_POOL_MOUNTPOINT, .need_lockspace = true };
	struct store_pool_status st;
	char id[STORE_POOL_ID_LEN + 1], err[512], msg[512];

	make_dir();
	ck_assert_int_eq(store_pool_init(dir, id, err, sizeof(err)), 0);
	o.path = dir;
	if (geteuid() != 0) {
		/* a directory we may not write */
		ck_assert_int_eq(chmod(dir, 0555), 0);
		o.mount = STORE_POOL_ANY_FS;
		ck_assert_int_eq(store_pool_check(&o, &st), 0);
		print_reasons("not writable", &st);
		ck_assert(has_reason(&st, "is not writable by vireod on this node"));
		chmod(dir, 0755);
		rm_rf(dir);
		return;
	}
	if (!private_mounts("the read-only pool test")) {
		rm_rf(dir);
		return;
	}
	/* the pool mounted read-only, the way a host sees a read-only export */
	ck_assert_int_eq(mount(dir, dir, NULL, MS_BIND, NULL), 0);
	ck_assert_int_eq(mount(NULL, dir, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL), 0);
	ck_assert_int_eq(store_pool_check(&o, &st), 0);
	print_reasons("read-only", &st);
	ck_assert(!st.ok);
	ck_assert(st.mountpoint);
	ck_assert_int_eq(st.error, -EROFS);
	snprintf(msg, sizeof(msg), "shared store %s is read-only on this node; remount it "
		 "read-write", dir);
	ck_assert_str_eq(st.reasons[0], msg);
	ck_assert_uint_eq(st.n_reasons, 1);     /* said once, not again for the lease directory */
	ck_assert_str_eq(st.id, id);            /* a read-only pool still says which pool it is */
	ck_assert_int_eq(umount(dir), 0);
	rm_rf(dir);
}
END_TEST

START_TEST(check_full)
{
	struct store_pool_opts o = { .mount = STORE_POOL_MOUNTPOINT };
	struct store_pool_status st;
	char id[STORE_POOL_ID_LEN + 1], err[512], fill[PATH_MAX];
	static char block[65536];
	int fd;

	make_dir();
	if (!private_mounts("the full pool test")) {
		rm_rf(dir);
		return;
	}
	ck_assert_int_eq(mount("tmpfs", dir, "tmpfs", 0, "size=2m"), 0);
	ck_assert_int_eq(store_pool_init(dir, id, err, sizeof(err)), 0);
	o.path = dir;
	ck_assert_int_eq(store_pool_check(&o, &st), 0);
	ck_assert_msg(st.ok, "%s", st.reasons[0]);
	ck_assert(st.mountpoint);
	ck_assert_str_eq(st.fstype, "tmpfs");
	printf("tmpfs: direct_io=%d (older kernels refuse O_DIRECT on tmpfs; the probe falls back)\n",
	       st.direct_io);
	snprintf(fill, sizeof(fill), "%s/fill", dir);
	ck_assert_int_ge(fd = open(fill, O_WRONLY | O_CREAT, 0600), 0);
	while (write(fd, block, sizeof(block)) > 0)
		;
	close(fd);
	ck_assert_int_eq(store_pool_check(&o, &st), 0);
	print_reasons("full", &st);
	ck_assert_int_eq(st.error, -ENOSPC);
	ck_assert(has_reason(&st, "is full; free space in the pool or grow it"));
	ck_assert_uint_eq(st.free_bytes, 0);
	ck_assert_int_eq(umount(dir), 0);
	rm_rf(dir);
}
END_TEST

START_TEST(check_times_out)
{
	struct store_pool_opts o = { .mount = STORE_POOL_ANY_FS, .timeout_ms = 300 };
	struct store_pool_status st;
	char path[PATH_MAX], msg[512];
	uint64_t t0;

	/* An id "file" that is a FIFO blocks its reader as a dead NFS server
	 * blocks every reader: the check must give up at its deadline. */
	make_dir();
	snprintf(path, sizeof(path), "%s/%s", dir, STORE_POOL_ID_FILE);
	ck_assert_int_eq(mkfifo(path, 0600), 0);
	o.path = dir;
	t0 = store_now_ms();
	ck_assert_int_eq(store_pool_check(&o, &st), 0);
	print_reasons("hung", &st);
	ck_assert_msg(store_now_ms() - t0 < 1000, "check took %llu ms",
		      (unsigned long long)(store_now_ms() - t0));
	/* The deadline is kept in whole milliseconds: it may fire up to 1 ms
	 * before 300 ms of microseconds have passed (CI saw 299980 us). */
	ck_assert_uint_ge(st.elapsed_us, 299000);
	ck_assert(!st.ok);
	ck_assert_int_eq(st.error, -ETIMEDOUT);
	snprintf(msg, sizeof(msg), "shared store %s did not answer within 300 ms; check the NFS "
		 "server or the storage path (a hung mount hangs every VM on it)", dir);
	ck_assert_str_eq(st.reasons[0], msg);
	/* the hung child was killed (a FIFO reader dies on SIGKILL) and reaped */
	ck_assert_uint_eq(store_child_stuck(dir), 0);
	rm_rf(dir);
}
END_TEST

START_TEST(check_from_a_main_loop)
{
	struct store_pool_opts o = { .mount = STORE_POOL_ANY_FS };
	struct store_pool_probe *p;
	struct store_pool_status st;
	char id[STORE_POOL_ID_LEN + 1], err[512];
	int rc, rounds = 0;

	make_dir();
	ck_assert_int_eq(store_pool_init(dir, id, err, sizeof(err)), 0);
	o.path = dir;
	ck_assert_int_eq(store_pool_check_start(&o, &p), 0);
	ck_assert_int_ge(store_pool_probe_fd(p), 0);
	ck_assert_int_gt(store_pool_probe_timeout_ms(p), 0);
	while ((rc = store_pool_probe_finish(p, &st)) == -EAGAIN) {
		struct pollfd pfd = { .fd = store_pool_probe_fd(p), .events = POLLIN };

		ck_assert_int_ge(poll(&pfd, 1, store_pool_probe_timeout_ms(p)), 0);
		rounds++;
	}
	ck_assert_int_eq(rc, 0);
	ck_assert(st.ok);
	ck_assert_str_eq(st.id, id);
	/* finishing again gives the same answer */
	ck_assert_int_eq(store_pool_probe_finish(p, &st), 0);
	ck_assert(st.ok);
	store_pool_probe_free(p);

	/* freeing a probe that is still running kills its child */
	ck_assert_int_eq(store_pool_check_start(&o, &p), 0);
	store_pool_probe_free(p);
	rm_rf(dir);
}
END_TEST

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	ck_assert_msg(f != NULL, "cannot open %s: %s", path, strerror(errno));
	fputs(text, f);
	ck_assert_int_eq(fclose(f), 0);
}

START_TEST(hung_child_is_parked)
{
	struct store_pool_opts o = { .mount = STORE_POOL_ANY_FS };
	struct store_pool_status st;
	char cg[128], path[PATH_MAX], state[32] = "", pidtext[32];
	uint64_t t0;
	pid_t pid;
	FILE *f;

	/* A child that SIGKILL cannot end for now, as one blocked on a dead NFS
	 * server: a task frozen by the (v1) freezer dies only once thawed. */
	if (geteuid() != 0 || access("/sys/fs/cgroup/freezer/cgroup.procs", W_OK) < 0) {
		printf("skipped: hung_child_is_parked needs root and the cgroup v1 freezer\n");
		return;
	}
	make_dir();
	snprintf(cg, sizeof(cg), "/sys/fs/cgroup/freezer/vireo-store-test-%ld", (long)getpid());
	ck_assert_int_eq(mkdir(cg, 0755), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		for (;;)
			pause();
	}
	snprintf(path, sizeof(path), "%s/cgroup.procs", cg);
	snprintf(pidtext, sizeof(pidtext), "%ld\n", (long)pid);
	write_file(path, pidtext);
	snprintf(path, sizeof(path), "%s/freezer.state", cg);
	write_file(path, "FROZEN\n");
	for (int i = 0; i < 200 && strncmp(state, "FROZEN", 6) != 0; i++) {
		usleep(5000);
		ck_assert_ptr_nonnull(f = fopen(path, "r"));
		if (!fgets(state, sizeof(state), f))
			state[0] = '\0';
		fclose(f);
	}
	ck_assert_str_eq(state, "FROZEN\n");

	t0 = store_now_ms();
	store_child_kill(pid, dir, t0);
	ck_assert_msg(store_now_ms() - t0 < 500, "store_child_kill waited %llu ms",
		      (unsigned long long)(store_now_ms() - t0));
	ck_assert_uint_eq(store_child_stuck(dir), t0);
	ck_assert_uint_eq(store_child_stuck("/some/other/pool"), 0);

	/* a check of that pool forks no second child: it answers at once */
	o.path = dir;
	ck_assert_int_eq(store_pool_check(&o, &st), 0);
	print_reasons("still hung", &st);
	ck_assert_int_eq(st.error, -ETIMEDOUT);
	ck_assert(has_reason(&st, "still has not answered a check started 0 s ago"));
	ck_assert_msg(st.elapsed_us < 100000, "answer took %u us", st.elapsed_us);

	/* thawed, it dies of the pending SIGKILL and is reaped */
	write_file(path, "THAWED\n");
	for (int i = 0; i < 200 && store_child_stuck(dir); i++)
		usleep(5000);
	ck_assert_uint_eq(store_child_stuck(dir), 0);
	ck_assert_int_eq(store_pool_check(&o, &st), 0);
	ck_assert(has_reason(&st, "has no pool id"));    /* a real check again */
	ck_assert_int_eq(rmdir(cg), 0);
	rm_rf(dir);
}
END_TEST

static Suite *pool_suite(void)
{
	Suite *s = suite_create("store_pool");
	TCase *tc = tcase_create("pool");

	tcase_add_test(tc, ids);
	tcase_add_test(tc, init_once);
	tcase_add_test(tc, check_healthy_dir);
	tcase_add_test(tc, check_failures);
	tcase_add_test(tc, check_read_only);
	tcase_add_test(tc, check_full);
	tcase_add_test(tc, check_times_out);
	tcase_add_test(tc, hung_child_is_parked);
	tcase_add_test(tc, check_from_a_main_loop);
	suite_add_tcase(s, tc);
	return s;
}

UNIT_MAIN(pool_suite)
