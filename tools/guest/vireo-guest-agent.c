/* vireo-guest-agent: PID 1 of vireo's test guest.
 *
 * It brings up just enough of the guest (proc, sys, devtmpfs, the virtio
 * drivers), then reports on the serial console what the cluster tests need to
 * see: that this boot is alive (HEARTBEAT), which writes its disk made durable
 * (ACKED) and what a previous boot left on the disk (DISK-LAST). The protocol
 * is in doc/test-guest.md; keep the two in step.
 *
 * As PID 1 it must never exit (the kernel would panic), so every failure is
 * reported as an AGENT-ERROR line and the agent carries on with what still
 * works.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "guest-agent.h"

#define CMDLINE_MAX 4096
#define MODULE_DIR "/lib/modules"
/* Written by build-guest in dependency order: one .ko path per line,
 * relative to MODULE_DIR; a leading '?' marks a module that may fail quietly
 * because its hardware may be absent (the ACPI button with acpi=off). */
#define MODULE_LIST MODULE_DIR "/load.list"
#define VIRTIO_ID_NET 1
#define VIRTIO_ID_BLOCK 2
/* How long a virtio device that is present may take to show up as /dev/vda
 * or eth0 after its driver loaded; probing is normally synchronous, so this
 * only matters if the kernel defers it. */
#define DEVICE_WAIT_MS 5000
#define ECHO_POLLFDS 32
#define POWER_FDS 2

static int console_fd = -1;
static pthread_mutex_t console_lock = PTHREAD_MUTEX_INITIALIZER;

static void console_write(const char *buf, size_t len)
{
	while (len > 0 && console_fd >= 0) {
		ssize_t n = write(console_fd, buf, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return; /* nowhere left to complain to */
		buf += n;
		len -= (size_t)n;
	}
}

static void say_va(const char *prefix, const char *fmt, va_list ap)
{
	char line[512];
	size_t len = strlen(prefix);
	int n;

	memcpy(line, prefix, len);
	n = vsnprintf(line + len, sizeof(line) - len - 1, fmt, ap);
	if (n < 0)
		n = 0;
	len += (size_t)n;
	if (len > sizeof(line) - 2)
		len = sizeof(line) - 2;
	line[len++] = '\n';

	pthread_mutex_lock(&console_lock);
	console_write(line, len);
	pthread_mutex_unlock(&console_lock);
}

void guest_say(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	say_va("", fmt, ap);
	va_end(ap);
}

void guest_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	say_va("AGENT-ERROR ", fmt, ap);
	va_end(ap);
}

uint64_t guest_uptime_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int mount_one(const char *source, const char *target, const char *type)
{
	if (mkdir(target, 0755) < 0 && errno != EEXIST)
		return -errno;
	if (mount(source, target, type, MS_NOSUID | MS_NOEXEC, NULL) < 0 && errno != EBUSY)
		return -errno;
	return 0;
}

/* The kernel hands init fds 0-2 only if the initrd has /dev/console; make
 * sure they exist anyway so that no later open() lands on them by accident. */
static void std_fds_ensure(void)
{
	int fd;

	while ((fd = open("/dev/null", O_RDWR)) >= 0 && fd <= 2)
		;
	if (fd > 2)
		close(fd);
}

/* The serial console carries the protocol. Output post-processing is turned
 * off so that lines end in a bare "\n", whatever the tty defaults are. */
static int console_open(void)
{
	struct termios tio;
	int fd;

	fd = open("/dev/ttyS0", O_WRONLY | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		fd = open("/dev/console", O_WRONLY | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (tcgetattr(fd, &tio) == 0) {
		tio.c_oflag &= ~(tcflag_t)OPOST;
		tcsetattr(fd, TCSANOW, &tio);
	}
	console_fd = fd;
	return 0;
}

/* The boot id only has to differ between boots; it is not a secret. So if the
 * kernel's pool is not initialised yet (likely this early under TCG) take the
 * insecure bytes rather than stall the boot, and fold in the clocks so two
 * boots can never share an id even if the pool were identical. */
static void boot_id_make(struct guest_boot *boot)
{
	struct timespec rt, mono;
	ssize_t n;
	size_t i;

	n = getrandom(boot->id, sizeof(boot->id), GRND_NONBLOCK);
	if (n != (ssize_t)sizeof(boot->id))
		n = getrandom(boot->id, sizeof(boot->id), GRND_INSECURE);
	if (n != (ssize_t)sizeof(boot->id))
		memset(boot->id, 0, sizeof(boot->id));
	clock_gettime(CLOCK_REALTIME, &rt);
	clock_gettime(CLOCK_MONOTONIC, &mono);
	for (i = 0; i < 8; i++) {
		boot->id[i] ^= (uint8_t)((uint64_t)rt.tv_sec >> (8 * i));
		boot->id[8 + i] ^= (uint8_t)(((uint64_t)rt.tv_nsec ^ (uint64_t)mono.tv_nsec) >> (8 * i));
	}
	for (i = 0; i < sizeof(boot->id); i++)
		snprintf(boot->hex + 2 * i, 3, "%02x", boot->id[i]);
}

static int cmdline_read(char *buf, size_t len)
{
	ssize_t n;
	int fd, rc = 0;

	fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	if (n < 0) {
		rc = -errno;
		n = 0;
	}
	buf[n] = '\0';
	close(fd);
	return rc;
}

/* Finds "key=value" among the space-separated words of the command line. */
static int cmdline_value(const char *cmdline, const char *key, char *out, size_t outlen)
{
	size_t klen = strlen(key);
	const char *p = cmdline;

	while (*p) {
		size_t wlen;

		while (*p == ' ' || *p == '\n')
			p++;
		wlen = strcspn(p, " \n");
		if (wlen > klen && strncmp(p, key, klen) == 0 && p[klen] == '=') {
			size_t vlen = wlen - klen - 1;

			if (vlen >= outlen)
				return -ENAMETOOLONG;
			memcpy(out, p + klen + 1, vlen);
			out[vlen] = '\0';
			return 0;
		}
		p += wlen;
	}
	return -ENOENT;
}

static int cmdline_ulong(const char *cmdline, const char *key, unsigned long max,
			 unsigned long *valp)
{
	char word[32], *end;
	unsigned long v;
	int rc;

	rc = cmdline_value(cmdline, key, word, sizeof(word));
	if (rc < 0)
		return rc;
	errno = 0;
	v = strtoul(word, &end, 10);
	if (errno || end == word || *end || v > max)
		return -EINVAL;
	*valp = v;
	return 0;
}

static void config_load(struct guest_config *cfg)
{
	static char cmdline[CMDLINE_MAX];
	char word[32];
	unsigned long v;
	int rc;

	memset(cfg, 0, sizeof(*cfg));
	cfg->fill = GUEST_FILL_RANDOM;
	cfg->heartbeat_ms = 100;
	cfg->disk_ms = 100;

	rc = cmdline_read(cmdline, sizeof(cmdline));
	if (rc < 0) {
		guest_error("cannot read /proc/cmdline (%s); running with defaults", strerror(-rc));
		return;
	}
	rc = cmdline_value(cmdline, "vireo.ip", cfg->ip, sizeof(cfg->ip));
	if (rc == -ENAMETOOLONG)
		guest_error("kernel option vireo.ip is too long; networking stays off");
	rc = cmdline_value(cmdline, "vireo.gw", cfg->gw, sizeof(cfg->gw));
	if (rc == -ENAMETOOLONG)
		guest_error("kernel option vireo.gw is too long; no default route is set");

	rc = cmdline_ulong(cmdline, "vireo.fill_mb", 1UL << 20, &cfg->fill_mb);
	if (rc == -EINVAL)
		guest_error("kernel option vireo.fill_mb is not a number of MiB; no memory is filled");
	if (cmdline_value(cmdline, "vireo.fill", word, sizeof(word)) == 0 &&
	    guest_fill_parse(word, &cfg->fill) < 0)
		guest_error("kernel option vireo.fill=%s is not random, zero or pattern; using random",
			    word);

	rc = cmdline_ulong(cmdline, "vireo.heartbeat_ms", 60000, &v);
	if (rc == 0 && v > 0)
		cfg->heartbeat_ms = (unsigned int)v;
	else if (rc != -ENOENT)
		guest_error("kernel option vireo.heartbeat_ms must be 1..60000; using 100");
	rc = cmdline_ulong(cmdline, "vireo.disk_ms", 60000, &v);
	if (rc == 0)
		cfg->disk_ms = (unsigned int)v;
	else if (rc != -ENOENT)
		guest_error("kernel option vireo.disk_ms must be 0..60000; using 100");
}

static int module_load(const char *relpath)
{
	char path[256];
	int fd, rc = 0;

	if ((size_t)snprintf(path, sizeof(path), MODULE_DIR "/%s", relpath) >= sizeof(path))
		return -ENAMETOOLONG;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (syscall(SYS_finit_module, fd, "", 0) < 0 && errno != EEXIST)
		rc = -errno;
	close(fd);
	return rc;
}

/* Loads the modules build-guest chose, in the order it wrote them. A module
 * that fails is reported and skipped: the rest may still give us a disk.
 * Fails only if the list itself is missing. */
static int modules_load(void)
{
	char line[256];
	FILE *list;

	list = fopen(MODULE_LIST, "re");
	if (!list)
		return -errno;
	while (fgets(line, sizeof(line), list)) {
		bool optional = line[0] == '?';
		char *name = line + optional;
		int mrc;

		name[strcspn(name, "\r\n")] = '\0';
		if (name[0] == '\0' || name[0] == '#')
			continue;
		mrc = module_load(name);
		if (mrc < 0 && !optional) {
			guest_error("kernel module %s did not load (%s); its devices will be missing",
				    name, strerror(-mrc));
		}
	}
	fclose(list);
	return 0;
}

/* Whether the virtio bus has a device of this type, so that we wait for its
 * node only when it exists and a guest without a disk boots without delay. */
static bool virtio_has_device(unsigned int type)
{
	struct dirent *de;
	bool found = false;
	DIR *dir;

	dir = opendir("/sys/bus/virtio/devices");
	if (!dir)
		return false;
	while (!found && (de = readdir(dir))) {
		char path[300], id[16] = "";
		FILE *f;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/sys/bus/virtio/devices/%s/device", de->d_name);
		f = fopen(path, "re");
		if (!f)
			continue;
		if (fgets(id, sizeof(id), f) && strtoul(id, NULL, 0) == type)
			found = true;
		fclose(f);
	}
	closedir(dir);
	return found;
}

static int path_wait(const char *path, unsigned int timeout_ms)
{
	const struct timespec tick = { 0, 10 * 1000 * 1000 };
	unsigned int waited = 0;

	while (access(path, F_OK) < 0) {
		if (waited >= timeout_ms)
			return -ETIMEDOUT;
		nanosleep(&tick, NULL);
		waited += 10;
	}
	return 0;
}

/* DISK-LAST must be printed before the first record of this boot is
 * written, so that a test can compare it with what the last boot acked. */
static void disk_setup(const struct guest_config *cfg, const struct guest_boot *boot)
{
	struct guest_disk *disk = NULL;
	uint64_t last = 0;
	int rc;

	if (!virtio_has_device(VIRTIO_ID_BLOCK)) {
		guest_say("DISK-NONE");
		return;
	}
	rc = path_wait("/dev/vda", DEVICE_WAIT_MS);
	if (rc < 0) {
		guest_error("a virtio disk exists but /dev/vda did not appear within %u ms",
			    DEVICE_WAIT_MS);
		return;
	}
	rc = guest_disk_open("/dev/vda", &disk);
	if (rc < 0) {
		guest_error("cannot use /dev/vda for sequence records (%s)", strerror(-rc));
		return;
	}
	rc = guest_disk_last_seq(disk, &last);
	if (rc < 0) {
		/* Writing on without knowing the last sequence could reuse one. */
		guest_error("cannot read the sequence records on /dev/vda (%s); not writing any",
			    strerror(-rc));
		return;
	}
	guest_say("DISK-LAST %" PRIu64, last);
	if (cfg->disk_ms == 0)
		return;
	rc = guest_disk_start_writer(disk, boot, last + 1, cfg->disk_ms);
	if (rc < 0)
		guest_error("cannot start the disk writer (%s)", strerror(-rc));
}

static struct guest_echo *net_setup(const struct guest_config *cfg)
{
	struct guest_echo *echo = NULL;
	int rc;

	if (cfg->ip[0] == '\0')
		return NULL;
	if (!virtio_has_device(VIRTIO_ID_NET)) {
		guest_error("vireo.ip=%s is set but the guest has no virtio NIC", cfg->ip);
		return NULL;
	}
	rc = path_wait("/sys/class/net/eth0", DEVICE_WAIT_MS);
	if (rc < 0) {
		guest_error("a virtio NIC exists but eth0 did not appear within %u ms",
			    DEVICE_WAIT_MS);
		return NULL;
	}
	rc = guest_net_configure("eth0", cfg->ip, cfg->gw);
	if (rc < 0) {
		guest_error("cannot configure eth0 as %s (%s)", cfg->ip, strerror(-rc));
		return NULL;
	}
	rc = guest_echo_open(&echo);
	if (rc < 0) {
		guest_error("cannot open the echo service on port 7 (%s)", strerror(-rc));
		return NULL;
	}
	guest_say("NET-UP eth0 %s", cfg->ip);
	return echo;
}

/* Last resort when poll() or the timer fails: keep heartbeating with sleeps,
 * since a guest that is alive but silent would look dead to every test. */
static void __attribute__((noreturn)) heartbeat_fallback(const struct guest_config *cfg,
							 const struct guest_boot *boot, uint64_t n)
{
	struct timespec period = { cfg->heartbeat_ms / 1000,
				   (long)(cfg->heartbeat_ms % 1000) * 1000000L };

	for (;;) {
		nanosleep(&period, NULL);
		guest_say("HEARTBEAT %" PRIu64 " %s %" PRIu64, ++n, boot->hex, guest_uptime_ms());
	}
}

/* One heartbeat per timer wake-up, however many periods passed: after a pause
 * (migration, SIGSTOP of QEMU) n keeps counting lines, not elapsed time. */
static void __attribute__((noreturn)) heartbeat_loop(const struct guest_config *cfg,
						     const struct guest_boot *boot,
						     struct guest_echo *echo)
{
	int power[POWER_FDS];
	size_t npower = guest_power_open(power, POWER_FDS);
	struct itimerspec its = {
		.it_interval = { cfg->heartbeat_ms / 1000, (long)(cfg->heartbeat_ms % 1000) * 1000000L },
		.it_value = { 0, 1 },
	};
	struct pollfd fds[1 + POWER_FDS + ECHO_POLLFDS];
	uint64_t n = 0;
	int tfd;

	tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
	if (tfd < 0 || timerfd_settime(tfd, 0, &its, NULL) < 0) {
		guest_error("cannot arm the heartbeat timer (%s); the echo service stops",
			    strerror(errno));
		heartbeat_fallback(cfg, boot, n);
	}
	for (;;) {
		size_t nfds = 1 + npower;

		fds[0] = (struct pollfd){ .fd = tfd, .events = POLLIN };
		for (size_t i = 0; i < npower; i++)
			fds[1 + i] = (struct pollfd){ .fd = power[i], .events = POLLIN };
		if (echo)
			nfds += guest_echo_pollfds(echo, fds + nfds, ECHO_POLLFDS);
		if (poll(fds, nfds, -1) < 0) {
			if (errno == EINTR)
				continue;
			guest_error("poll failed (%s); the echo service stops", strerror(errno));
			heartbeat_fallback(cfg, boot, n);
		}
		if (fds[0].revents & POLLIN) {
			uint64_t expirations;

			if (read(tfd, &expirations, sizeof(expirations)) > 0)
				guest_say("HEARTBEAT %" PRIu64 " %s %" PRIu64, ++n, boot->hex,
					  guest_uptime_ms());
		}
		for (size_t i = 0; i < npower; i++)
			if (fds[1 + i].revents & POLLIN)
				guest_power_dispatch(power[i]);
		if (echo)
			guest_echo_dispatch(echo, fds + 1 + npower, nfds - 1 - npower);
	}
}

int main(void)
{
	struct guest_config cfg;
	struct guest_boot boot;
	struct guest_echo *echo;
	int rc_proc, rc_sys, rc_dev, rc;

	/* devtmpfs first: the console lives there. */
	rc_dev = mount_one("devtmpfs", "/dev", "devtmpfs");
	rc_proc = mount_one("proc", "/proc", "proc");
	rc_sys = mount_one("sysfs", "/sys", "sysfs");
	std_fds_ensure();
	console_open(); /* if even this fails, we still run: the disk records speak */
	boot_id_make(&boot);

	/* The leading newline ends whatever partial line the firmware left
	 * (SeaBIOS prints "Booting from ROM.." without one). */
	guest_say("\nVIREO-GUEST-START %s", boot.hex);
	if (rc_dev < 0)
		guest_error("cannot mount devtmpfs on /dev (%s)", strerror(-rc_dev));
	if (rc_proc < 0)
		guest_error("cannot mount proc on /proc (%s)", strerror(-rc_proc));
	if (rc_sys < 0)
		guest_error("cannot mount sysfs on /sys (%s)", strerror(-rc_sys));

	config_load(&cfg);
	rc = modules_load();
	if (rc == -ENOENT)
		guest_error("%s is missing from the initrd; no virtio drivers were loaded",
			    MODULE_LIST);

	disk_setup(&cfg, &boot);
	echo = net_setup(&cfg);
	if (cfg.fill_mb > 0) {
		rc = guest_fill_start(cfg.fill_mb, cfg.fill);
		if (rc < 0)
			guest_error("cannot start filling %lu MiB of memory (%s)", cfg.fill_mb,
				    strerror(-rc));
	}
	heartbeat_loop(&cfg, &boot, echo);
}
