/* The ACPI power button: `virsh shutdown` (QEMU's system_powerdown) presses
 * it, and a guest that ignored it would make every graceful stop wait for the
 * hypervisor's timeout. Without acpid or systemd, PID 1 has to listen itself:
 * the button driver reports the press as KEY_POWER on an evdev device.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/input.h>
#include <stdio.h>
#include <string.h>
#include <sys/reboot.h>
#include <unistd.h>

#include "guest-agent.h"

static bool input_is_power_button(const char *event)
{
	char path[300], name[64] = "";
	bool yes = false;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/class/input/%s/device/name", event);
	f = fopen(path, "re");
	if (!f)
		return false;
	if (fgets(name, sizeof(name), f))
		yes = strncmp(name, "Power Button", 12) == 0;
	fclose(f);
	return yes;
}

size_t guest_power_open(int *fds, size_t max)
{
	struct dirent *de;
	size_t n = 0;
	DIR *dir;

	dir = opendir("/sys/class/input");
	if (!dir)
		return 0;
	while (n < max && (de = readdir(dir))) {
		char dev[300];
		int fd;

		if (strncmp(de->d_name, "event", 5) != 0 || !input_is_power_button(de->d_name))
			continue;
		snprintf(dev, sizeof(dev), "/dev/input/%s", de->d_name);
		fd = open(dev, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
		if (fd >= 0)
			fds[n++] = fd;
	}
	closedir(dir);
	return n;
}

void guest_power_dispatch(int fd)
{
	struct input_event ev[16];
	ssize_t n;

	n = read(fd, ev, sizeof(ev));
	for (ssize_t i = 0; n > 0 && i < n / (ssize_t)sizeof(ev[0]); i++) {
		if (ev[i].type != EV_KEY || ev[i].code != KEY_POWER || ev[i].value != 1)
			continue;
		/* Acknowledged records are already durable (O_DIRECT +
		 * fdatasync); nothing else in the guest needs saving. */
		guest_say("POWEROFF");
		sync();
		reboot(RB_POWER_OFF);
		guest_error("power off failed (%s); still running", strerror(errno));
	}
}
