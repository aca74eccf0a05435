/* The optional hardware watchdog of vireo-watchdog (node/watchdog.h): armed
 * only when watchdog_device is set, petted while things are fine, left
 * alone by a fence so that the machine resets. Opening such a device arms
 * it for the whole machine: the checks below come first and open nothing. */
#include <errno.h>
#include <fcntl.h>
#include <linux/watchdog.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cluster/timeouts.h"
#include "node/watchdog.h"

unsigned int watchdog_hw_timeout_s(uint32_t token_ms)
{
	unsigned int s = (VIREO_FENCE_DELAY_MS(token_ms) + 999u) / 1000u;

	return s < 2 ? 2 : s;
}

int watchdog_hw_check(const char *path, const char *env_lab, char *why, size_t whylen)
{
	struct stat st;

	if (!path || path[0] != '/') {
		snprintf(why, whylen, "watchdog_device must be an absolute path such as "
			 "/dev/watchdog0");
		return -EINVAL;
	}
	if (env_lab && env_lab[0]) {
		snprintf(why, whylen, "refusing to arm the hardware watchdog %s inside vireo lab %s: "
			 "lab hosts share the machine's kernel, and its reset would take the whole "
			 "machine; remove watchdog_device from the lab's vireo.conf", path, env_lab);
		return -EPERM;
	}
	if (stat(path, &st) < 0) {
		int rc = -errno;

		snprintf(why, whylen, "watchdog_device %s: %s; load the driver of the hardware "
			 "watchdog or remove the setting", path, strerror(-rc));
		return rc;
	}
	if (!S_ISCHR(st.st_mode)) {
		snprintf(why, whylen, "watchdog_device %s is not a character device", path);
		return -ENODEV;
	}
	return 0;
}

int watchdog_hw_open(struct watchdog_hw *hw, const char *path, unsigned int timeout_s,
		     char *why, size_t whylen)
{
	int t = (int)timeout_s;
	int rc;

	hw->fd = -1;
	hw->stopped = false;
	if ((rc = watchdog_hw_check(path, getenv("VIREO_LAB"), why, whylen)) < 0)
		return rc;
	if ((hw->fd = open(path, O_WRONLY | O_CLOEXEC)) < 0) {
		rc = -errno;
		snprintf(why, whylen, "cannot open the hardware watchdog %s: %s (is another "
			 "watchdog daemon using it?)", path, strerror(-rc));
		return rc;
	}
	/* A device that keeps its own timeout is still a watchdog: use it. */
	if (ioctl(hw->fd, WDIOC_SETTIMEOUT, &t) < 0 && ioctl(hw->fd, WDIOC_GETTIMEOUT, &t) < 0)
		t = 0;
	hw->timeout_s = t > 0 ? (unsigned int)t : 0;
	return watchdog_hw_pet(hw);
}

int watchdog_hw_pet(struct watchdog_hw *hw)
{
	if (hw->fd < 0 || hw->stopped)
		return 0;
	if (ioctl(hw->fd, WDIOC_KEEPALIVE, 0) == 0 || write(hw->fd, "\0", 1) == 1)
		return 0;
	return -errno;
}

void watchdog_hw_close(struct watchdog_hw *hw)
{
	ssize_t n = 0;

	if (hw->fd < 0)
		return;
	/* The magic close: 'V' just before close disarms the device. After a
	 * fence it is left armed: the reset is what the fence asked for. */
	if (!hw->stopped)
		n = write(hw->fd, "V", 1);
	(void)n;
	close(hw->fd);
	hw->fd = -1;
}
