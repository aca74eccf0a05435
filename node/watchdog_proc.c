/* Finding and killing a guest's QEMU without libvirt (node/watchdog.h).
 *
 * The watchdog kills guests when vireod cannot, and maybe libvirtd cannot
 * either, so it goes to the processes: libvirt's pid file names the QEMU,
 * /proc/<pid>/cmdline proves it is that guest's, and the start time in
 * /proc/<pid>/stat proves it is still the process seen earlier. A pidfd
 * pins the process before the proof, so the signal reaches it or nothing. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <unistd.h>

#include "node/watchdog.h"

#define CMDLINE_MAX (256u * 1024u)

const struct watchdog_paths watchdog_default_paths = {
	.run_dir = "/run/libvirt/qemu",
	.proc_dir = "/proc",
};

/* Reads a small file whole, at most max bytes (NUL-terminated past its
 * end). 0, -EFBIG, -errno. */
static int read_file(const char *path, char **out, size_t *len, size_t max)
{
	size_t cap = max + 1 < 4096 ? max + 1 : 4096, n = 0;
	char *buf = malloc(cap), *b;
	int fd = -1, rc = 0;

	if (!buf)
		return -ENOMEM;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		rc = -errno;
		goto cleanup;
	}
	for (;;) {
		ssize_t r;

		if (n + 1 == cap) {
			if (cap == max + 1) {
				rc = -EFBIG;
				goto cleanup;
			}
			cap = cap * 2 < max + 1 ? cap * 2 : max + 1;
			if (!(b = realloc(buf, cap))) {
				rc = -ENOMEM;
				goto cleanup;
			}
			buf = b;
		}
		r = read(fd, buf + n, cap - n - 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = -errno;
			goto cleanup;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	buf[n] = '\0';
	*out = buf;
	*len = n;
	buf = NULL;
cleanup:
	free(buf);
	if (fd >= 0)
		close(fd);
	return rc;
}

int watchdog_proc_start_time(const char *proc_dir, pid_t pid, uint64_t *out)
{
	char path[PATH_MAX], *text = NULL, *p;
	unsigned long long v;
	size_t len;
	int rc;

	snprintf(path, sizeof(path), "%s/%d/stat", proc_dir, (int)pid);
	if ((rc = read_file(path, &text, &len, 4096)) < 0)
		return rc == -ENOENT ? -ESRCH : rc;
	/* The command name may hold spaces and ')': fields start after the last ')'. */
	rc = -EINVAL;
	if (!(p = strrchr(text, ')')))
		goto cleanup;
	p++;
	/* Field 3 (state) is the first after it; the start time is field 22. */
	for (int field = 3; field < 22; field++) {
		p += strspn(p, " ");
		p += strcspn(p, " ");
		if (!*p)
			goto cleanup;
	}
	if (sscanf(p, " %llu", &v) != 1)
		goto cleanup;
	*out = v;
	rc = 0;
cleanup:
	free(text);
	return rc;
}

/* "guest=<name>" alone or followed by libvirt's ",debug-threads=on". */
static bool names_guest(const char *arg, const char *name)
{
	size_t n = strlen(name);

	return strncmp(arg, "guest=", 6) == 0 && strncmp(arg + 6, name, n) == 0 &&
	       (arg[6 + n] == '\0' || arg[6 + n] == ',');
}

int watchdog_qemu_verify(const char *proc_dir, pid_t pid, const char *name, const char *uuid)
{
	char path[PATH_MAX], *args = NULL;
	size_t len;
	int rc;

	snprintf(path, sizeof(path), "%s/%d/cmdline", proc_dir, (int)pid);
	if ((rc = read_file(path, &args, &len, CMDLINE_MAX)) < 0)
		return rc == -ENOENT ? -ESRCH : rc;
	rc = -ESRCH;
	for (size_t off = 0; off < len; off += strlen(args + off) + 1) {
		const char *arg = args + off;

		if (names_guest(arg, name) || (uuid[0] && strcmp(arg, uuid) == 0)) {
			rc = 0;
			break;
		}
	}
	free(args);
	return rc;
}

int watchdog_qemu_find(const struct watchdog_paths *p, const char *name, const char *uuid,
		       struct watchdog_qemu *out)
{
	char path[PATH_MAX], *text = NULL, *end;
	long pid;
	size_t len;
	int rc;

	snprintf(path, sizeof(path), "%s/%s.pid", p->run_dir, name);
	if ((rc = read_file(path, &text, &len, 64)) < 0)
		return rc == -EFBIG ? -EINVAL : rc;
	errno = 0;
	pid = strtol(text, &end, 10);
	while (*end == '\n' || *end == ' ')
		end++;
	rc = -EINVAL;
	if (errno || end == text || *end || pid <= 1 || pid > INT_MAX)
		goto cleanup;
	out->pid = (pid_t)pid;
	if ((rc = watchdog_qemu_verify(p->proc_dir, out->pid, name, uuid)) < 0)
		goto cleanup;
	rc = watchdog_proc_start_time(p->proc_dir, out->pid, &out->start_time);
cleanup:
	free(text);
	return rc;
}

/* Pins q's process and proves it is still that guest's QEMU, started when
 * it was first seen. The pidfd, or -ESRCH. */
static int pin(const struct watchdog_paths *p, const char *name, const char *uuid,
	       const struct watchdog_qemu *q)
{
	uint64_t start;
	int fd = pidfd_open(q->pid, 0);

	if (fd < 0)
		return -errno;
	if (watchdog_proc_start_time(p->proc_dir, q->pid, &start) < 0 || start != q->start_time ||
	    watchdog_qemu_verify(p->proc_dir, q->pid, name, uuid) < 0) {
		close(fd);
		return -ESRCH;
	}
	return fd;
}

int watchdog_qemu_kill(const struct watchdog_paths *p, const char *name, const char *uuid,
		       const struct watchdog_qemu *seen, pid_t *killed)
{
	struct watchdog_qemu now;
	int fd = -ESRCH, rc;

	if (seen && seen->pid > 0)
		fd = pin(p, name, uuid, seen);
	if (fd >= 0) {
		now = *seen;
	} else {
		/* Gone since (or never seen): whatever QEMU runs the guest now. */
		if ((rc = watchdog_qemu_find(p, name, uuid, &now)) < 0)
			return rc == -ESRCH ? -ENOENT : rc;
		if ((fd = pin(p, name, uuid, &now)) < 0)
			return fd == -ESRCH ? -ENOENT : fd;
	}
	rc = pidfd_send_signal(fd, SIGKILL, NULL, 0) < 0 ? -errno : 0;
	close(fd);
	if (rc == -ESRCH)
		return -ENOENT;    /* it died between the proof and the signal */
	if (rc == 0)
		*killed = now.pid;
	return rc;
}
