/* Checking a VM spec before any XML is made, and the names of the enums. */
#include <ctype.h>
#include <errno.h>
#include <string.h>
#include <libxml/xmlstring.h>

#include "hypervisor/hv.h"

bool hv_name_valid(const char *name)
{
	size_t n;

	if (!name)
		return false;
	n = strlen(name);
	if (n == 0 || n > HV_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)name[i];

		if (!isascii(ch) || !(isalnum(ch) || ch == '-' || ch == '_' || ch == '.'))
			return false;
	}
	return true;
}

bool hv_uuid_valid(const char *uuid)
{
	static const char pattern[] = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";

	if (!uuid || strlen(uuid) != HV_UUID_STRLEN)
		return false;
	for (size_t i = 0; i < HV_UUID_STRLEN; i++) {
		if (pattern[i] == '-' ? uuid[i] != '-' : !isxdigit((unsigned char)uuid[i]))
			return false;
	}
	return true;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)tolower((unsigned char)c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

bool hv_mac_valid(const char *mac)
{
	bool all_zero = true;

	if (!mac || strlen(mac) != HV_MAC_STRLEN)
		return false;
	for (size_t i = 0; i < HV_MAC_STRLEN; i++) {
		if (i % 3 == 2 ? mac[i] != ':' : hexval(mac[i]) < 0)
			return false;
		if (i % 3 != 2 && mac[i] != '0')
			all_zero = false;
	}
	/* The low bit of the first octet marks multicast: never a NIC's own. */
	return !all_zero && (hexval(mac[1]) & 1) == 0;
}

/* Text that goes into the domain XML: valid UTF-8 without control
 * characters (XML 1.0 cannot carry most of them, escaped or not). */
static bool text_ok(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p < 0x20 || *p == 0x7f)
			return false;
	}
	return xmlCheckUTF8((const xmlChar *)s) != 0;
}

static bool path_ok(const char *s)
{
	return s && s[0] == '/' && text_ok(s);
}

static bool bridge_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n == 0 || n > HV_BRIDGE_MAX || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch <= ' ' || ch == '/' || ch == ':' || ch >= 0x7f)
			return false;
	}
	return true;
}

#define FAIL(msg) do { *why = (msg); return -EINVAL; } while (0)

int hv_vm_spec_check(const struct hv_vm_spec *s, const char **why)
{
	const char *dummy;

	if (!why)
		why = &dummy;
	*why = NULL;
	if (!hv_name_valid(s->name))
		FAIL("the VM name must be 1 to 64 letters, digits, '-', '_' or '.'");
	if (s->uuid && !hv_uuid_valid(s->uuid))
		FAIL("the VM UUID must be 32 hex digits as 8-4-4-4-12");
	if (s->vcpus < 1 || s->vcpus > HV_MAX_VCPUS)
		FAIL("the VM needs 1 to 1024 virtual CPUs");
	if (s->memory_mib == 0)
		FAIL("the VM needs more than 0 MiB of memory");
	if (s->memory_mib > (UINT64_MAX >> 20))
		FAIL("the VM's memory size is too large");
	if (s->n_disks > HV_MAX_DISKS)
		FAIL("the VM may have at most 16 disks");
	if (s->n_disks && !s->disks)
		FAIL("the VM's disk list is missing");
	for (size_t i = 0; i < s->n_disks; i++) {
		if (!path_ok(s->disks[i].path))
			FAIL("every disk path must be absolute, UTF-8, without control characters");
		if (s->disks[i].format != HV_DISK_RAW && s->disks[i].format != HV_DISK_QCOW2)
			FAIL("a disk's format must be raw or qcow2");
	}
	if (s->n_nics > HV_MAX_NICS)
		FAIL("the VM may have at most 8 NICs");
	if (s->n_nics && !s->nics)
		FAIL("the VM's NIC list is missing");
	for (size_t i = 0; i < s->n_nics; i++) {
		if (!bridge_ok(s->nics[i].bridge))
			FAIL("every NIC needs a bridge name of 1 to 15 characters without spaces, '/' or ':'");
		if (s->nics[i].mac && !hv_mac_valid(s->nics[i].mac))
			FAIL("a NIC's MAC address must be a unicast aa:bb:cc:dd:ee:ff");
	}
	switch (s->boot) {
	case HV_BOOT_KERNEL:
		if (!path_ok(s->kernel))
			FAIL("direct kernel boot needs an absolute kernel path");
		if (s->initrd && !path_ok(s->initrd))
			FAIL("the initrd path must be absolute, UTF-8, without control characters");
		if (s->cmdline && !text_ok(s->cmdline))
			FAIL("the kernel command line must be UTF-8 without control characters");
		break;
	case HV_BOOT_DISK:
		if (s->boot_disk >= s->n_disks)
			FAIL("the boot disk must be one of the VM's disks");
		break;
	default:
		FAIL("the boot method must be kernel or disk");
	}
	if (s->serial_log && !path_ok(s->serial_log))
		FAIL("the serial log path must be absolute, UTF-8, without control characters");
	if (s->accel != HV_ACCEL_AUTO && s->accel != HV_ACCEL_KVM && s->accel != HV_ACCEL_TCG)
		FAIL("the acceleration must be kvm, tcg or auto");
	if (s->machine != HV_MACHINE_DEFAULT && s->machine != HV_MACHINE_PC &&
	    s->machine != HV_MACHINE_Q35)
		FAIL("the machine type must be pc or q35");
	return 0;
}

const char *hv_accel_name(enum hv_accel a)
{
	switch (a) {
	case HV_ACCEL_KVM: return "kvm";
	case HV_ACCEL_TCG: return "tcg";
	case HV_ACCEL_AUTO: return "auto";
	}
	return "?";
}

int hv_accel_parse(const char *s, enum hv_accel *out)
{
	static const enum hv_accel all[] = { HV_ACCEL_AUTO, HV_ACCEL_KVM, HV_ACCEL_TCG };

	for (size_t i = 0; s && i < sizeof(all) / sizeof(all[0]); i++) {
		if (strcmp(s, hv_accel_name(all[i])) == 0) {
			*out = all[i];
			return 0;
		}
	}
	return -EINVAL;
}

const char *hv_machine_name(enum hv_machine m)
{
	return m == HV_MACHINE_Q35 ? "q35" : "pc";
}

const char *hv_state_name(enum hv_vm_state s)
{
	switch (s) {
	case HV_STATE_UNKNOWN: return "unknown";
	case HV_STATE_SHUTOFF: return "shutoff";
	case HV_STATE_RUNNING: return "running";
	case HV_STATE_PAUSED: return "paused";
	case HV_STATE_SHUTTING_DOWN: return "shutting-down";
	case HV_STATE_CRASHED: return "crashed";
	}
	return "?";
}

const char *hv_event_name(enum hv_event_type t)
{
	switch (t) {
	case HV_EVENT_DEFINED: return "defined";
	case HV_EVENT_UNDEFINED: return "undefined";
	case HV_EVENT_STARTED: return "started";
	case HV_EVENT_STOPPED: return "stopped";
	case HV_EVENT_CRASHED: return "crashed";
	case HV_EVENT_PAUSED: return "paused";
	case HV_EVENT_RESUMED: return "resumed";
	case HV_EVENT_CONNECTION_LOST: return "connection-lost";
	case HV_EVENT_CONNECTION_RESTORED: return "connection-restored";
	case HV_EVENT_MIGRATION_DONE: return "migration-done";
	}
	return "?";
}

const char *hv_reason_name(enum hv_event_reason r)
{
	switch (r) {
	case HV_REASON_NONE: return "none";
	case HV_REASON_BOOTED: return "booted";
	case HV_REASON_RESTORED: return "restored";
	case HV_REASON_MIGRATED: return "migrated";
	case HV_REASON_USER: return "user";
	case HV_REASON_IO_ERROR: return "io-error";
	case HV_REASON_SHUTDOWN: return "shutdown";
	case HV_REASON_DESTROYED: return "destroyed";
	case HV_REASON_SAVED: return "saved";
	case HV_REASON_FAILED: return "failed";
	case HV_REASON_CRASHED: return "crashed";
	case HV_REASON_OTHER: return "other";
	}
	return "?";
}
