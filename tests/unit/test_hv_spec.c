/* VM spec validation and the libvirt translations: error codes to errno,
 * domain states, lifecycle events, and the log sentences. */
#include <errno.h>
#include <string.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "hypervisor/libvirt_map.h"
#include "unit.h"

static struct hv_vm_spec good(void)
{
	static const struct hv_disk disks[] = { { .path = "/pool/a.qcow2", .format = HV_DISK_QCOW2 } };
	static const struct hv_nic nics[] = { { .bridge = "br0", .mac = "52:54:00:aa:bb:cc" } };
	struct hv_vm_spec s = {
		.name = "web-1", .vcpus = 1, .memory_mib = 128,
		.disks = disks, .n_disks = 1, .nics = nics, .n_nics = 1,
		.kernel = "/boot/vmlinux", .serial_log = "/var/log/serial.log",
	};
	return s;
}

static void expect_invalid(const struct hv_vm_spec *s, const char *word)
{
	const char *why = NULL;

	ck_assert_int_eq(hv_vm_spec_check(s, &why), -EINVAL);
	ck_assert_ptr_nonnull(why);
	ck_assert_msg(strstr(why, word) != NULL, "'%s' does not mention '%s'", why, word);
}

START_TEST(test_good_spec)
{
	struct hv_vm_spec s = good();
	const char *why = "x";

	ck_assert_int_eq(hv_vm_spec_check(&s, &why), 0);
	ck_assert_ptr_null(why);
}
END_TEST

START_TEST(test_names)
{
	char longest[HV_NAME_MAX + 2];

	ck_assert(hv_name_valid("a"));
	ck_assert(hv_name_valid("Web_1.prod-2"));
	ck_assert(!hv_name_valid(""));
	ck_assert(!hv_name_valid(NULL));
	ck_assert(!hv_name_valid("a b"));
	ck_assert(!hv_name_valid("a/b"));
	ck_assert(!hv_name_valid("a<b"));
	ck_assert(!hv_name_valid("a'b"));
	ck_assert(!hv_name_valid("caf\xc3\xa9"));
	memset(longest, 'x', sizeof(longest));
	longest[HV_NAME_MAX] = '\0';
	ck_assert(hv_name_valid(longest));
	longest[HV_NAME_MAX] = 'x';
	longest[HV_NAME_MAX + 1] = '\0';
	ck_assert(!hv_name_valid(longest));
}
END_TEST

START_TEST(test_bad_specs)
{
	struct hv_vm_spec s;
	struct hv_disk d = { .path = "relative.img" };
	struct hv_nic n = { .bridge = "br0" };

	s = good(); s.name = "no spaces"; expect_invalid(&s, "name");
	s = good(); s.memory_mib = 0; expect_invalid(&s, "memory");
	s = good(); s.vcpus = 0; expect_invalid(&s, "CPU");
	s = good(); s.vcpus = HV_MAX_VCPUS + 1; expect_invalid(&s, "CPU");
	s = good(); s.uuid = "not-a-uuid"; expect_invalid(&s, "UUID");
	s = good(); s.uuid = "0f3b8a2c-1d2e-4f50-8a9b-0c1d2e3f4a5g"; expect_invalid(&s, "UUID");
	s = good(); s.disks = &d; expect_invalid(&s, "disk path");
	d.path = "/pool/a\nb.img";
	s = good(); s.disks = &d; expect_invalid(&s, "disk path");
	d.path = "/pool/\xff\xfe.img";
	s = good(); s.disks = &d; expect_invalid(&s, "disk path");
	d.path = "/pool/ok.img";
	d.format = (enum hv_disk_format)7;
	s = good(); s.disks = &d; expect_invalid(&s, "format");
	s = good(); s.n_disks = HV_MAX_DISKS + 1; expect_invalid(&s, "disks");
	n.bridge = "a-bridge-name-too-long";
	s = good(); s.nics = &n; expect_invalid(&s, "bridge");
	n.bridge = "br 0";
	s = good(); s.nics = &n; expect_invalid(&s, "bridge");
	n.bridge = "br0";
	n.mac = "01:00:5e:00:00:01";            /* multicast */
	s = good(); s.nics = &n; expect_invalid(&s, "MAC");
	n.mac = "52:54:00:aa:bb";
	s = good(); s.nics = &n; expect_invalid(&s, "MAC");
	s = good(); s.kernel = NULL; expect_invalid(&s, "kernel");
	s = good(); s.kernel = "vmlinux"; expect_invalid(&s, "kernel");
	s = good(); s.cmdline = "console=ttyS0\r"; expect_invalid(&s, "command line");
	s = good(); s.boot = HV_BOOT_DISK; s.boot_disk = 1; expect_invalid(&s, "boot disk");
	s = good(); s.serial_log = "serial.log"; expect_invalid(&s, "serial");
	s = good(); s.accel = (enum hv_accel)9; expect_invalid(&s, "acceleration");
}
END_TEST

START_TEST(test_uuid_and_mac)
{
	ck_assert(hv_uuid_valid("0F3B8A2C-1D2E-4F50-8A9B-0C1D2E3F4A5B"));
	ck_assert(!hv_uuid_valid("0f3b8a2c1d2e4f508a9b0c1d2e3f4a5b"));
	ck_assert(hv_mac_valid("52:54:00:AA:bb:cc"));
	ck_assert(!hv_mac_valid("00:00:00:00:00:00"));
	ck_assert(!hv_mac_valid("ff:ff:ff:ff:ff:ff"));
	ck_assert(!hv_mac_valid("52-54-00-aa-bb-cc"));
}
END_TEST

START_TEST(test_accel_names)
{
	enum hv_accel a;

	ck_assert_int_eq(hv_accel_parse("kvm", &a), 0);
	ck_assert_int_eq(a, HV_ACCEL_KVM);
	ck_assert_int_eq(hv_accel_parse("tcg", &a), 0);
	ck_assert_int_eq(a, HV_ACCEL_TCG);
	ck_assert_int_eq(hv_accel_parse("auto", &a), 0);
	ck_assert_int_eq(a, HV_ACCEL_AUTO);
	ck_assert_int_eq(hv_accel_parse("KVM", &a), -EINVAL);
	ck_assert_int_eq(hv_accel_parse(NULL, &a), -EINVAL);
	ck_assert_str_eq(hv_accel_name(HV_ACCEL_TCG), "tcg");
}
END_TEST

START_TEST(test_errno_mapping)
{
	ck_assert_int_eq(hv_libvirt_errno(HV_OP_START, VIR_ERR_NO_DOMAIN, 0, true), -ENOENT);
	ck_assert_int_eq(hv_libvirt_errno(HV_OP_LOOKUP, VIR_ERR_NO_DOMAIN, 0, true), -ENOENT);
	/* "domain is already running" */
	ck_assert_int_eq(hv_libvirt_errno(HV_OP_START, VIR_ERR_OPERATION_INVALID, 0, true), -EEXIST);
	ck_assert_int_eq(hv_libvirt_errno(HV_OP_RESTORE, VIR_ERR_OPERATION_INVALID, 0, true), -EEXIST);
	/* "domain is not running" */
	ck_assert_int_eq(hv_libvirt_errno(HV_OP_DESTROY, VIR_ERR_OPERATION_INVALID, 0, true), -ESRCH);
	ck_assert_int_eq(hv_libvirt_errno(HV_OP_PAUSE, VIR_ERR_OPERATION_INVALID, 0, true), -ESRCH);
	ck_assert_int_eq(hv_libvirt_errno(HV_OP_SAVE, VIR_ERR_OPERATION_INVALID, 0, true), -ESRCH);
	ck_assert_int_eq(hv_libvirt_errno(HV_OP_UNDEFINE, VIR_ERR_OPERATION_INVALID, 0, true), -EBUSY);
	ck_assert_int_eq(hv_libvirt_errno(HV_OP_DEFINE, VIR_ERR_DOM_EXIST, 0, true), -EEXIST);
	ck_assert_int_eq(hv_libvirt_errno(HV_OP_START, VIR_ERR_OPERATION_TIMEOUT, 0, true), -ETIMEDOUT);
	ck_assert_int_eq(hv_libvirt_errno(HV_OP_START, VIR_ERR_RESOURCE_BUSY, 0, true), -EBUSY);
	ck_assert_int_eq(hv_libvirt_errno(HV_OP_DEFINE, VIR_ERR_XML_ERROR, 0, true), -EINVAL);
	ck_assert_int_eq(hv_libvirt_errno(HV_OP_DEFINE, VIR_ERR_CONFIG_UNSUPPORTED, 0, true), -EINVAL);
	ck_assert_int_eq(hv_libvirt_errno(HV_OP_MIGRATE, VIR_ERR_OPERATION_ABORTED, 0, true), -ECANCELED);
	ck_assert_int_eq(hv_libvirt_errno(HV_OP_START, VIR_ERR_NO_SUPPORT, 0, true), -EOPNOTSUPP);
	ck_assert_int_eq(hv_libvirt_errno(HV_OP_START, VIR_ERR_ACCESS_DENIED, 0, true), -EACCES);
	ck_assert_int_eq(hv_libvirt_errno(HV_OP_START, VIR_ERR_NO_MEMORY, 0, true), -ENOMEM);
	ck_assert_int_eq(hv_libvirt_errno(HV_OP_SAVE, VIR_ERR_SYSTEM_ERROR, ENOSPC, true), -ENOSPC);
	ck_assert_int_eq(hv_libvirt_errno(HV_OP_SAVE, VIR_ERR_SYSTEM_ERROR, 0, true), -EIO);
	ck_assert_int_eq(hv_libvirt_errno(HV_OP_START, VIR_ERR_INTERNAL_ERROR, 0, true), -EIO);
	ck_assert_int_eq(hv_libvirt_errno(HV_OP_START, VIR_ERR_OK, 0, true), -EIO);
	/* A dead connection wins over whatever the code says. */
	ck_assert_int_eq(hv_libvirt_errno(HV_OP_START, VIR_ERR_INTERNAL_ERROR, 0, false), -ENOTCONN);
	ck_assert_int_eq(hv_libvirt_errno(HV_OP_START, VIR_ERR_NO_DOMAIN, 0, false), -ENOTCONN);
	ck_assert_int_eq(hv_libvirt_errno(HV_OP_STATE, VIR_ERR_INVALID_CONN, 0, true), -ENOTCONN);
	/* Opening: refused, unless it is about credentials. */
	ck_assert_int_eq(hv_libvirt_errno(HV_OP_CONNECT, VIR_ERR_SYSTEM_ERROR, ENOENT, true),
			 -ECONNREFUSED);
	ck_assert_int_eq(hv_libvirt_errno(HV_OP_CONNECT, VIR_ERR_AUTH_FAILED, 0, true), -EACCES);
}
END_TEST

START_TEST(test_messages)
{
	char buf[256];

	hv_libvirt_op_message(HV_OP_START, -ENOENT, "web-1", "Domain not found", buf, sizeof(buf));
	ck_assert_str_eq(buf, "VM web-1 is not defined on this host (Domain not found); define it first");
	hv_libvirt_op_message(HV_OP_START, -EEXIST, "web-1", "x", buf, sizeof(buf));
	ck_assert_str_eq(buf, "VM web-1 is already running (x)");
	hv_libvirt_op_message(HV_OP_PAUSE, -ENOTCONN, "web-1", "x", buf, sizeof(buf));
	ck_assert_ptr_nonnull(strstr(buf, "reconnects"));
	hv_libvirt_op_message(HV_OP_SAVE, -EIO, "web-1", "disk full", buf, sizeof(buf));
	ck_assert_str_eq(buf, "cannot save the state of VM web-1 (disk full)");
}
END_TEST

START_TEST(test_states)
{
	ck_assert_int_eq(hv_libvirt_state(VIR_DOMAIN_RUNNING), HV_STATE_RUNNING);
	ck_assert_int_eq(hv_libvirt_state(VIR_DOMAIN_BLOCKED), HV_STATE_RUNNING);
	ck_assert_int_eq(hv_libvirt_state(VIR_DOMAIN_PAUSED), HV_STATE_PAUSED);
	ck_assert_int_eq(hv_libvirt_state(VIR_DOMAIN_SHUTOFF), HV_STATE_SHUTOFF);
	ck_assert_int_eq(hv_libvirt_state(VIR_DOMAIN_SHUTDOWN), HV_STATE_SHUTTING_DOWN);
	ck_assert_int_eq(hv_libvirt_state(VIR_DOMAIN_CRASHED), HV_STATE_CRASHED);
	ck_assert_int_eq(hv_libvirt_state(VIR_DOMAIN_NOSTATE), HV_STATE_UNKNOWN);
	ck_assert_str_eq(hv_state_name(HV_STATE_PAUSED), "paused");
}
END_TEST

static void ev(int event, int detail, enum hv_event_type type, enum hv_event_reason reason)
{
	enum hv_event_type t;
	enum hv_event_reason r;

	ck_assert_msg(hv_libvirt_event(event, detail, &t, &r), "event %d/%d dropped", event, detail);
	ck_assert_msg(t == type && r == reason, "event %d/%d gave %s/%s, want %s/%s", event, detail,
		      hv_event_name(t), hv_reason_name(r), hv_event_name(type), hv_reason_name(reason));
}

START_TEST(test_events)
{
	enum hv_event_type t;
	enum hv_event_reason r;

	ev(VIR_DOMAIN_EVENT_STARTED, VIR_DOMAIN_EVENT_STARTED_BOOTED, HV_EVENT_STARTED, HV_REASON_BOOTED);
	ev(VIR_DOMAIN_EVENT_STARTED, VIR_DOMAIN_EVENT_STARTED_RESTORED, HV_EVENT_STARTED,
	   HV_REASON_RESTORED);
	ev(VIR_DOMAIN_EVENT_STARTED, VIR_DOMAIN_EVENT_STARTED_MIGRATED, HV_EVENT_STARTED,
	   HV_REASON_MIGRATED);
	ev(VIR_DOMAIN_EVENT_SUSPENDED, VIR_DOMAIN_EVENT_SUSPENDED_PAUSED, HV_EVENT_PAUSED, HV_REASON_USER);
	ev(VIR_DOMAIN_EVENT_SUSPENDED, VIR_DOMAIN_EVENT_SUSPENDED_IOERROR, HV_EVENT_PAUSED,
	   HV_REASON_IO_ERROR);
	ev(VIR_DOMAIN_EVENT_RESUMED, VIR_DOMAIN_EVENT_RESUMED_UNPAUSED, HV_EVENT_RESUMED, HV_REASON_USER);
	ev(VIR_DOMAIN_EVENT_STOPPED, VIR_DOMAIN_EVENT_STOPPED_DESTROYED, HV_EVENT_STOPPED,
	   HV_REASON_DESTROYED);
	ev(VIR_DOMAIN_EVENT_STOPPED, VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN, HV_EVENT_STOPPED,
	   HV_REASON_SHUTDOWN);
	ev(VIR_DOMAIN_EVENT_STOPPED, VIR_DOMAIN_EVENT_STOPPED_SAVED, HV_EVENT_STOPPED, HV_REASON_SAVED);
	ev(VIR_DOMAIN_EVENT_STOPPED, VIR_DOMAIN_EVENT_STOPPED_MIGRATED, HV_EVENT_STOPPED,
	   HV_REASON_MIGRATED);
	ev(VIR_DOMAIN_EVENT_STOPPED, VIR_DOMAIN_EVENT_STOPPED_CRASHED, HV_EVENT_CRASHED,
	   HV_REASON_CRASHED);
	ev(VIR_DOMAIN_EVENT_STOPPED, VIR_DOMAIN_EVENT_STOPPED_FAILED, HV_EVENT_CRASHED, HV_REASON_FAILED);
	ev(VIR_DOMAIN_EVENT_CRASHED, VIR_DOMAIN_EVENT_CRASHED_PANICKED, HV_EVENT_CRASHED,
	   HV_REASON_CRASHED);
	ev(VIR_DOMAIN_EVENT_DEFINED, 0, HV_EVENT_DEFINED, HV_REASON_NONE);
	ev(VIR_DOMAIN_EVENT_UNDEFINED, 0, HV_EVENT_UNDEFINED, HV_REASON_NONE);
	/* The guest's own shutdown is followed by STOPPED: not reported twice. */
	ck_assert(!hv_libvirt_event(VIR_DOMAIN_EVENT_SHUTDOWN, 0, &t, &r));
	ck_assert(!hv_libvirt_event(1000, 0, &t, &r));
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("hv_spec");
	TCase *tc = tcase_create("spec");
	TCase *tm = tcase_create("libvirt_map");

	tcase_add_test(tc, test_good_spec);
	tcase_add_test(tc, test_names);
	tcase_add_test(tc, test_bad_specs);
	tcase_add_test(tc, test_uuid_and_mac);
	tcase_add_test(tc, test_accel_names);
	tcase_add_test(tm, test_errno_mapping);
	tcase_add_test(tm, test_messages);
	tcase_add_test(tm, test_states);
	tcase_add_test(tm, test_events);
	suite_add_tcase(s, tc);
	suite_add_tcase(s, tm);
	return s;
}

UNIT_MAIN(suite)
