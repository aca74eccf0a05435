/* vireo-watchdog's pieces that must be right without a host to try them
 * on: the framing of vireod's feeds (whole, split, malformed, truncated,
 * garbage), finding and killing a guest's QEMU in a fake /proc (never a
 * reused pid), the hardware watchdog's refusals (no device is ever opened
 * here) and the fencing settings. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "node/config.h"
#include "node/watchdog.h"
#include "unit.h"

#define UUID1 "6c1b2a3e-0f4d-4a5b-9c8d-7e6f5a4b3c2d"

static Vireo__WatchdogGuest g1 = { PROTOBUF_C_MESSAGE_INIT(&vireo__watchdog_guest__descriptor),
				   (char *)"web-1", (char *)UUID1 };
static Vireo__WatchdogGuest g2 = { PROTOBUF_C_MESSAGE_INIT(&vireo__watchdog_guest__descriptor),
				   (char *)"db.2", (char *)"" };

static void feed_init(Vireo__WatchdogFeed *f, Vireo__WatchdogGuest **gs, size_t n)
{
	vireo__watchdog_feed__init(f);
	f->timeout_ms = 5000;
	f->quorate = true;
	f->guests = gs;
	f->n_guests = n;
}

static uint8_t *frame(const Vireo__WatchdogFeed *f, size_t *len)
{
	uint8_t *buf = NULL;

	ck_assert_int_eq(watchdog_frame_pack(f, &buf, len), 0);
	return buf;
}

START_TEST(frame_round_trip_split)
{
	Vireo__WatchdogGuest *gs[] = { &g1, &g2 };
	Vireo__WatchdogFeed f, *got = NULL;
	struct watchdog_rx rx;
	char why[256] = "";
	size_t len;
	uint8_t *buf;

	feed_init(&f, gs, 2);
	f.leaving = true;
	buf = frame(&f, &len);
	ck_assert_uint_eq(((size_t)buf[0] << 24 | buf[1] << 16 | buf[2] << 8 | buf[3]) + 4, len);
	watchdog_rx_init(&rx);
	/* One byte at a time: nothing until the last one. */
	for (size_t i = 0; i + 1 < len; i++) {
		ck_assert_int_eq(watchdog_rx_append(&rx, buf + i, 1), 0);
		ck_assert_int_eq(watchdog_rx_next(&rx, &got, why, sizeof(why)), 0);
	}
	ck_assert_uint_eq(watchdog_rx_pending(&rx), len - 1);
	ck_assert_int_eq(watchdog_rx_append(&rx, buf + len - 1, 1), 0);
	ck_assert_int_eq(watchdog_rx_next(&rx, &got, why, sizeof(why)), 1);
	ck_assert_uint_eq(got->timeout_ms, 5000);
	ck_assert(got->quorate && got->leaving);
	ck_assert_uint_eq(got->n_guests, 2);
	ck_assert_str_eq(got->guests[0]->name, "web-1");
	ck_assert_str_eq(got->guests[0]->uuid, UUID1);
	ck_assert_str_eq(got->guests[1]->name, "db.2");
	ck_assert_uint_eq(watchdog_rx_pending(&rx), 0);
	vireo__watchdog_feed__free_unpacked(got, NULL);
	free(buf);
	watchdog_rx_free(&rx);
}
END_TEST

START_TEST(two_frames_in_one_read)
{
	Vireo__WatchdogGuest *gs[] = { &g1 };
	Vireo__WatchdogFeed f, *got = NULL;
	struct watchdog_rx rx;
	char why[256] = "";
	size_t len;
	uint8_t *buf;

	feed_init(&f, gs, 1);
	buf = frame(&f, &len);
	watchdog_rx_init(&rx);
	ck_assert_int_eq(watchdog_rx_append(&rx, buf, len), 0);
	ck_assert_int_eq(watchdog_rx_append(&rx, buf, len), 0);
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(watchdog_rx_next(&rx, &got, why, sizeof(why)), 1);
		ck_assert_uint_eq(got->n_guests, 1);
		vireo__watchdog_feed__free_unpacked(got, NULL);
	}
	ck_assert_int_eq(watchdog_rx_next(&rx, &got, why, sizeof(why)), 0);
	free(buf);
	watchdog_rx_free(&rx);
}
END_TEST

START_TEST(an_empty_list_is_a_feed)
{
	Vireo__WatchdogFeed f, *got = NULL;
	struct watchdog_rx rx;
	char why[256] = "";
	size_t len;
	uint8_t *buf;

	feed_init(&f, NULL, 0);
	f.quorate = false;
	buf = frame(&f, &len);
	watchdog_rx_init(&rx);
	ck_assert_int_eq(watchdog_rx_append(&rx, buf, len), 0);
	ck_assert_int_eq(watchdog_rx_next(&rx, &got, why, sizeof(why)), 1);
	ck_assert_uint_eq(got->n_guests, 0);
	ck_assert(!got->quorate);
	vireo__watchdog_feed__free_unpacked(got, NULL);
	free(buf);
	watchdog_rx_free(&rx);
}
END_TEST

START_TEST(malformed_length)
{
	static const uint8_t huge[] = { 0x00, 0x10, 0x00, 0x01, 0x08, 0x01 };   /* 1 MiB + 1 */
	static const uint8_t max_u32[] = { 0xff, 0xff, 0xff, 0xff };
	Vireo__WatchdogFeed *got = NULL;
	struct watchdog_rx rx;
	char why[256] = "";

	watchdog_rx_init(&rx);
	ck_assert_int_eq(watchdog_rx_append(&rx, huge, sizeof(huge)), 0);
	ck_assert_int_eq(watchdog_rx_next(&rx, &got, why, sizeof(why)), -EBADMSG);
	ck_assert_msg(strstr(why, "1048577 bytes"), "why: %s", why);
	watchdog_rx_free(&rx);
	watchdog_rx_init(&rx);
	ck_assert_int_eq(watchdog_rx_append(&rx, max_u32, sizeof(max_u32)), 0);
	ck_assert_int_eq(watchdog_rx_next(&rx, &got, why, sizeof(why)), -EBADMSG);
	ck_assert(got == NULL);
	watchdog_rx_free(&rx);
}
END_TEST

START_TEST(truncated_message)
{
	Vireo__WatchdogGuest *gs[] = { &g1, &g2 };
	Vireo__WatchdogFeed f, *got = NULL;
	struct watchdog_rx rx;
	char why[256] = "";
	size_t len;
	uint8_t *buf;

	feed_init(&f, gs, 2);
	buf = frame(&f, &len);
	watchdog_rx_init(&rx);
	/* Only the header, then part of the body: a truncated feed waits, and
	 * what is pending tells the watchdog so when the peer closes. */
	ck_assert_int_eq(watchdog_rx_append(&rx, buf, 2), 0);
	ck_assert_int_eq(watchdog_rx_next(&rx, &got, why, sizeof(why)), 0);
	ck_assert_int_eq(watchdog_rx_append(&rx, buf + 2, len / 2), 0);
	ck_assert_int_eq(watchdog_rx_next(&rx, &got, why, sizeof(why)), 0);
	ck_assert_uint_eq(watchdog_rx_pending(&rx), 2 + len / 2);
	ck_assert(got == NULL);
	free(buf);
	watchdog_rx_free(&rx);
}
END_TEST

START_TEST(garbage)
{
	/* A length of 8, then bytes that are no protobuf (field 0, a bad wire type). */
	static const uint8_t junk[] = { 0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	static const uint8_t text[] = "GET / HTTP/1.0\r\n\r\n";
	Vireo__WatchdogFeed *got = NULL;
	struct watchdog_rx rx;
	char why[256] = "";

	watchdog_rx_init(&rx);
	ck_assert_int_eq(watchdog_rx_append(&rx, junk, sizeof(junk)), 0);
	ck_assert_int_eq(watchdog_rx_next(&rx, &got, why, sizeof(why)), -EBADMSG);
	ck_assert_msg(strstr(why, "does not unpack"), "why: %s", why);
	watchdog_rx_free(&rx);
	/* Text: its first four bytes read as a length far over the maximum. */
	watchdog_rx_init(&rx);
	ck_assert_int_eq(watchdog_rx_append(&rx, text, sizeof(text) - 1), 0);
	ck_assert_int_eq(watchdog_rx_next(&rx, &got, why, sizeof(why)), -EBADMSG);
	watchdog_rx_free(&rx);
}
END_TEST

START_TEST(feeds_the_watchdog_cannot_act_on)
{
	Vireo__WatchdogGuest bad = g1;
	Vireo__WatchdogGuest *gs[] = { &bad };
	Vireo__WatchdogFeed f, *got = NULL;
	struct watchdog_rx rx;
	char why[256] = "";
	size_t len;
	uint8_t *buf;

	/* A name that would leave libvirt's pid directory. */
	bad.name = (char *)"../../etc/passwd";
	feed_init(&f, gs, 1);
	ck_assert_int_eq(watchdog_feed_check(&f, why, sizeof(why)), -EINVAL);
	buf = frame(&f, &len);
	watchdog_rx_init(&rx);
	ck_assert_int_eq(watchdog_rx_append(&rx, buf, len), 0);
	ck_assert_int_eq(watchdog_rx_next(&rx, &got, why, sizeof(why)), -EBADMSG);
	ck_assert_msg(strstr(why, "invalid name"), "why: %s", why);
	free(buf);
	watchdog_rx_free(&rx);

	bad.name = (char *)"ok";
	bad.uuid = (char *)"short";
	ck_assert_int_eq(watchdog_feed_check(&f, why, sizeof(why)), -EINVAL);
	bad.uuid = (char *)UUID1;
	ck_assert_int_eq(watchdog_feed_check(&f, why, sizeof(why)), 0);
	f.timeout_ms = 0;
	ck_assert_int_eq(watchdog_feed_check(&f, why, sizeof(why)), -EINVAL);
}
END_TEST

START_TEST(read_from_a_socket)
{
	Vireo__WatchdogFeed f, *got = NULL;
	struct watchdog_rx rx;
	char why[256] = "";
	size_t len;
	uint8_t *buf;
	int sv[2];

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	feed_init(&f, NULL, 0);
	buf = frame(&f, &len);
	watchdog_rx_init(&rx);
	ck_assert_int_eq(watchdog_rx_read(&rx, sv[1]), -EAGAIN);
	ck_assert_int_eq(write(sv[0], buf, len), (ssize_t)len);
	ck_assert_int_eq(watchdog_rx_read(&rx, sv[1]), (ssize_t)len);
	ck_assert_int_eq(watchdog_rx_next(&rx, &got, why, sizeof(why)), 1);
	vireo__watchdog_feed__free_unpacked(got, NULL);
	close(sv[0]);
	ck_assert_int_eq(watchdog_rx_read(&rx, sv[1]), 0);     /* end of file */
	close(sv[1]);
	free(buf);
	watchdog_rx_free(&rx);
}
END_TEST

/* ------------------------------------------------------------ a fake /proc */

struct fake {
	char root[64], run[96], proc[96];
	struct watchdog_paths paths;
};

static void put(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	ck_assert_msg(fd >= 0, "open %s: %s", path, strerror(errno));
	ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
	close(fd);
}

static void fake_init(struct fake *fk)
{
	snprintf(fk->root, sizeof(fk->root), "/tmp/vireo-test-watchdog.XXXXXX");
	ck_assert(mkdtemp(fk->root));
	snprintf(fk->run, sizeof(fk->run), "%s/run", fk->root);
	snprintf(fk->proc, sizeof(fk->proc), "%s/proc", fk->root);
	ck_assert_int_eq(mkdir(fk->run, 0755), 0);
	ck_assert_int_eq(mkdir(fk->proc, 0755), 0);
	fk->paths.run_dir = fk->run;
	fk->paths.proc_dir = fk->proc;
}

static void fake_pidfile(struct fake *fk, const char *name, const char *text)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/%s.pid", fk->run, name);
	put(path, text, strlen(text));
}

static void fake_pidfile_remove(struct fake *fk, const char *name)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/%s.pid", fk->run, name);
	ck_assert_int_eq(unlink(path), 0);
}

/* A process pid in the fake /proc: cmdline args (NUL-separated, given
 * with '|' for NUL) and a stat line with start time start. */
static void fake_proc(struct fake *fk, pid_t pid, const char *args, unsigned long long start)
{
	char dir[PATH_MAX], path[PATH_MAX + 16], cmd[512], stat[512];
	size_t n = strlen(args);

	snprintf(dir, sizeof(dir), "%s/%d", fk->proc, (int)pid);
	mkdir(dir, 0755);
	memcpy(cmd, args, n + 1);
	for (size_t i = 0; i < n; i++)
		if (cmd[i] == '|')
			cmd[i] = '\0';
	snprintf(path, sizeof(path), "%s/cmdline", dir);
	put(path, cmd, n + 1);
	/* A command name with a space and a ')' in it, as a process may choose. */
	snprintf(stat, sizeof(stat), "%d (qemu) x) S 1 %d %d 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 4 0 "
		 "%llu 1000000 500 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0\n",
		 (int)pid, (int)pid, (int)pid, start);
	snprintf(path, sizeof(path), "%s/stat", dir);
	put(path, stat, strlen(stat));
}

static void fake_free(struct fake *fk)
{
	char cmd[160];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fk->root);
	ck_assert_int_eq(system(cmd), 0);
}

#define QEMU_ARGS(name) "/usr/bin/qemu-system-x86_64|-name|guest=" name ",debug-threads=on|-S"

START_TEST(find_qemu)
{
	struct fake fk;
	struct watchdog_qemu q;

	fake_init(&fk);
	/* No pid file: the guest does not run here. */
	ck_assert_int_eq(watchdog_qemu_find(&fk.paths, "web-1", UUID1, &q), -ENOENT);
	/* A pid file of garbage. */
	fake_pidfile(&fk, "web-1", "twelve\n");
	ck_assert_int_eq(watchdog_qemu_find(&fk.paths, "web-1", UUID1, &q), -EINVAL);
	fake_pidfile(&fk, "web-1", "1\n");
	ck_assert_int_eq(watchdog_qemu_find(&fk.paths, "web-1", UUID1, &q), -EINVAL);
	/* The pid is gone. */
	fake_pidfile(&fk, "web-1", "4242\n");
	ck_assert_int_eq(watchdog_qemu_find(&fk.paths, "web-1", UUID1, &q), -ESRCH);
	/* The pid is another guest's QEMU, or one whose name only starts alike. */
	fake_proc(&fk, 4242, QEMU_ARGS("web-10"), 777);
	ck_assert_int_eq(watchdog_qemu_find(&fk.paths, "web-1", UUID1, &q), -ESRCH);
	fake_proc(&fk, 4242, "/bin/sleep|guest=web-1x", 777);
	ck_assert_int_eq(watchdog_qemu_find(&fk.paths, "web-1", "", &q), -ESRCH);
	/* By its -name ... */
	fake_proc(&fk, 4242, QEMU_ARGS("web-1"), 777);
	ck_assert_int_eq(watchdog_qemu_find(&fk.paths, "web-1", UUID1, &q), 0);
	ck_assert_int_eq(q.pid, 4242);
	ck_assert_uint_eq(q.start_time, 777);
	/* ... or by its -uuid. */
	fake_proc(&fk, 4242, "/usr/bin/qemu-system-x86_64|-uuid|" UUID1, 778);
	ck_assert_int_eq(watchdog_qemu_find(&fk.paths, "web-1", UUID1, &q), 0);
	ck_assert_uint_eq(q.start_time, 778);
	ck_assert_int_eq(watchdog_qemu_find(&fk.paths, "web-1", "", &q), -ESRCH);
	fake_free(&fk);
}
END_TEST

static pid_t child(void)
{
	pid_t pid = fork();

	ck_assert(pid >= 0);
	if (pid == 0) {
		alarm(30);      /* never outlives a failed test for long */
		for (;;)
			pause();
	}
	return pid;
}

static bool died_of_sigkill(pid_t pid)
{
	int st;

	return waitpid(pid, &st, 0) == pid && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL;
}

START_TEST(kill_only_the_process_first_seen)
{
	struct fake fk;
	struct watchdog_qemu seen;
	char pidtext[32];
	uint64_t real_start;
	pid_t pid = child(), killed = 0;

	fake_init(&fk);
	/* The real start time of the child, in the fake /proc with its pid. */
	ck_assert_int_eq(watchdog_proc_start_time("/proc", pid, &real_start), 0);
	fake_proc(&fk, pid, QEMU_ARGS("web-1"), real_start);
	snprintf(pidtext, sizeof(pidtext), "%d\n", (int)pid);
	fake_pidfile(&fk, "web-1", pidtext);
	ck_assert_int_eq(watchdog_qemu_find(&fk.paths, "web-1", UUID1, &seen), 0);

	/* The pid was reused: another start time, and the pid file now names
	 * no QEMU of that guest. Nothing is killed. */
	fake_proc(&fk, pid, "/bin/bash", real_start + 1);
	ck_assert_int_eq(watchdog_qemu_kill(&fk.paths, "web-1", UUID1, &seen, &killed), -ENOENT);
	ck_assert_int_eq(kill(pid, 0), 0);
	/* The same command line with another start time is another process
	 * too; without a pid file libvirt runs no such guest. */
	fake_proc(&fk, pid, QEMU_ARGS("web-1"), real_start + 1);
	fake_pidfile_remove(&fk, "web-1");
	ck_assert_int_eq(watchdog_qemu_kill(&fk.paths, "web-1", UUID1, &seen, &killed), -ENOENT);
	ck_assert_int_eq(kill(pid, 0), 0);

	/* Still the process first seen: killed. */
	fake_proc(&fk, pid, QEMU_ARGS("web-1"), real_start);
	ck_assert_int_eq(watchdog_qemu_kill(&fk.paths, "web-1", UUID1, &seen, &killed), 0);
	ck_assert_int_eq(killed, pid);
	ck_assert(died_of_sigkill(pid));
	fake_free(&fk);
}
END_TEST

START_TEST(kill_a_guest_restarted_since)
{
	struct fake fk;
	struct watchdog_qemu seen = { .pid = 4242, .start_time = 5 };
	char pidtext[32];
	uint64_t real_start;
	pid_t pid = child(), killed = 0;

	fake_init(&fk);
	/* First seen as pid 4242, long gone; the guest's QEMU now is pid,
	 * proven afresh from the pid file. */
	ck_assert_int_eq(watchdog_proc_start_time("/proc", pid, &real_start), 0);
	fake_proc(&fk, pid, "/usr/bin/qemu-system-x86_64|-uuid|" UUID1, real_start);
	snprintf(pidtext, sizeof(pidtext), "%d", (int)pid);
	fake_pidfile(&fk, "web-1", pidtext);
	ck_assert_int_eq(watchdog_qemu_kill(&fk.paths, "web-1", UUID1, &seen, &killed), 0);
	ck_assert_int_eq(killed, pid);
	ck_assert(died_of_sigkill(pid));
	/* Never seen and not running: nothing to kill. */
	ck_assert_int_eq(watchdog_qemu_kill(&fk.paths, "db.2", "", NULL, &killed), -ENOENT);
	fake_free(&fk);
}
END_TEST

START_TEST(start_time_of_a_real_process)
{
	uint64_t a = 0, b = 0;

	ck_assert_int_eq(watchdog_proc_start_time("/proc", getpid(), &a), 0);
	ck_assert_int_eq(watchdog_proc_start_time("/proc", getpid(), &b), 0);
	ck_assert_uint_eq(a, b);
	ck_assert_uint_gt(a, 0);
	ck_assert_int_eq(watchdog_proc_start_time("/proc", INT_MAX, &a), -ESRCH);
}
END_TEST

/* ------------------------------------------------------------ hardware watchdog */

START_TEST(hardware_refusals)
{
	struct watchdog_hw hw = { .fd = -1 };
	char why[512] = "", file[] = "/tmp/vireo-test-wdt.XXXXXX";
	int fd = mkstemp(file);

	ck_assert(fd >= 0);
	close(fd);
	ck_assert_int_eq(watchdog_hw_check("watchdog0", NULL, why, sizeof(why)), -EINVAL);
	ck_assert_int_eq(watchdog_hw_check("/nonexistent/watchdog", NULL, why, sizeof(why)), -ENOENT);
	ck_assert_msg(strstr(why, "/nonexistent/watchdog"), "why: %s", why);
	ck_assert_int_eq(watchdog_hw_check(file, NULL, why, sizeof(why)), -ENODEV);
	ck_assert_msg(strstr(why, "not a character device"), "why: %s", why);
	/* In a lab, refused before anything else is looked at. */
	ck_assert_int_eq(watchdog_hw_check("/dev/watchdog", "mylab", why, sizeof(why)), -EPERM);
	ck_assert_msg(strstr(why, "mylab") && strstr(why, "whole machine"), "why: %s", why);
	/* open refuses the same way and opens nothing. */
	ck_assert_int_eq(watchdog_hw_open(&hw, file, 2, why, sizeof(why)), -ENODEV);
	ck_assert_int_eq(hw.fd, -1);
	ck_assert_int_eq(watchdog_hw_pet(&hw), 0);
	watchdog_hw_close(&hw);
	unlink(file);
	/* Whole seconds, the fence delay rounded up, at least 2. */
	ck_assert_uint_eq(watchdog_hw_timeout_s(1000), 2);
	ck_assert_uint_eq(watchdog_hw_timeout_s(3000), 3);
	ck_assert_uint_eq(watchdog_hw_timeout_s(4100), 5);
}
END_TEST

/* ------------------------------------------------------------ settings */

static int parse(const char *text, struct node_config *cfg, char *err)
{
	node_config_defaults(cfg);
	return node_config_parse("test.conf", text, cfg, err, 256);
}

START_TEST(fencing_settings)
{
	struct node_config cfg;
	char err[256] = "";

	ck_assert_int_eq(parse("node_name = n1\n", &cfg, err), 0);
	ck_assert_str_eq(cfg.watchdog_socket, "/run/vireo/watchdog.sock");
	ck_assert_str_eq(cfg.watchdog_device, "");
	ck_assert_str_eq(cfg.watchdog_log_file, "/var/log/vireo/vireo-watchdog.log");
	ck_assert(!cfg.nonha_stop);
	ck_assert_int_eq(parse("node_name = n1\nwatchdog_socket = /run/x.sock\n"
			       "watchdog_device = /dev/watchdog1\nnonha_on_quorum_loss = stop\n"
			       "watchdog_log_file = /l/w.log\n", &cfg, err), 0);
	ck_assert_str_eq(cfg.watchdog_socket, "/run/x.sock");
	ck_assert_str_eq(cfg.watchdog_device, "/dev/watchdog1");
	ck_assert_str_eq(cfg.watchdog_log_file, "/l/w.log");
	ck_assert(cfg.nonha_stop);
	ck_assert_int_eq(parse("node_name = n1\nwatchdog_socket = none\nwatchdog_device =\n",
			       &cfg, err), 0);
	ck_assert_str_eq(cfg.watchdog_socket, "");
	ck_assert_str_eq(cfg.watchdog_device, "");
	ck_assert_int_eq(parse("node_name = n1\nnonha_on_quorum_loss = maybe\n", &cfg, err), -EINVAL);
	ck_assert_str_eq(err, "test.conf line 2: nonha_on_quorum_loss must be 'stop' or 'keep'");
	ck_assert_int_eq(parse("node_name = n1\nwatchdog_device = watchdog0\n", &cfg, err), -EINVAL);
	/* A unix socket path has 108 bytes. */
	char long_path[200] = "node_name = n1\nwatchdog_socket = /";

	memset(long_path + strlen(long_path), 'a', 120);
	ck_assert_int_eq(parse(long_path, &cfg, err), -EINVAL);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("watchdog");
	TCase *frames = tcase_create("frames");
	TCase *qemu = tcase_create("qemu");
	TCase *other = tcase_create("hardware and settings");

	tcase_add_test(frames, frame_round_trip_split);
	tcase_add_test(frames, two_frames_in_one_read);
	tcase_add_test(frames, an_empty_list_is_a_feed);
	tcase_add_test(frames, malformed_length);
	tcase_add_test(frames, truncated_message);
	tcase_add_test(frames, garbage);
	tcase_add_test(frames, feeds_the_watchdog_cannot_act_on);
	tcase_add_test(frames, read_from_a_socket);
	suite_add_tcase(s, frames);
	tcase_add_test(qemu, find_qemu);
	tcase_add_test(qemu, kill_only_the_process_first_seen);
	tcase_add_test(qemu, kill_a_guest_restarted_since);
	tcase_add_test(qemu, start_time_of_a_real_process);
	suite_add_tcase(s, qemu);
	tcase_add_test(other, hardware_refusals);
	tcase_add_test(other, fencing_settings);
	suite_add_tcase(s, other);
	return s;
}

UNIT_MAIN(suite)
