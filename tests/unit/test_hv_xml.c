/* Domain XML from a VM spec: parsed back with libxml2 and compared value by
 * value, so escaping, order and the accel-dependent parts are checked the
 * way libvirt will read them. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <libxml/parser.h>
#include <libxml/xpath.h>

#include "hypervisor/domain_xml.h"
#include "unit.h"

#define NASTY_NAME "a-b_c.d"
#define NASTY_PATH "/pool/it's <a> & \"b\" ]]>/disk.img"
#define NASTY_CMDLINE "console=ttyS0 x=\"<&>\" y='q' ]]> --"
#define NASTY_SERIAL "/var/log/vireo/serial/<&'\">.log"
#define NASTY_BRIDGE "br'\"<&"

static const struct hv_disk disks[] = {
	{ .path = NASTY_PATH, .format = HV_DISK_QCOW2 },
	{ .path = "/pool/second.raw", .format = HV_DISK_RAW, .readonly = true },
	{ .path = "/pool/third.qcow2", .format = HV_DISK_QCOW2 },
};

static const struct hv_nic nics[] = {
	{ .bridge = NASTY_BRIDGE, .mac = "52:54:00:12:34:56" },
	{ .bridge = "br1", .mac = NULL },
};

static struct hv_vm_spec base_spec(void)
{
	struct hv_vm_spec s = {
		.name = NASTY_NAME,
		.uuid = "0f3b8a2c-1d2e-4f50-8a9b-0c1d2e3f4a5b",
		.vcpus = 2,
		.memory_mib = 384,
		.disks = disks,
		.n_disks = 3,
		.nics = nics,
		.n_nics = 2,
		.boot = HV_BOOT_KERNEL,
		.kernel = "/var/cache/vireo/guest/vmlinux & <kernel>",
		.initrd = "/var/cache/vireo/guest/initrd \"x\".img",
		.cmdline = NASTY_CMDLINE,
		.serial_log = NASTY_SERIAL,
	};
	return s;
}

static xmlDocPtr gen(const struct hv_vm_spec *s, enum hv_accel accel)
{
	char *xml = NULL;
	const char *why = NULL;
	xmlDocPtr doc;
	int rc = hv_domain_xml(s, accel, &xml, &why);

	ck_assert_msg(rc == 0, "hv_domain_xml: %d (%s)", rc, why ? why : "");
	doc = xmlReadMemory(xml, (int)strlen(xml), "domain.xml", NULL, XML_PARSE_NONET);
	ck_assert_msg(doc != NULL, "the generated XML does not parse:\n%s", xml);
	free(xml);
	return doc;
}

/* The string value of an XPath expression ("" when it selects nothing). */
static char *xp(xmlDocPtr doc, const char *expr)
{
	xmlXPathContextPtr ctx = xmlXPathNewContext(doc);
	char wrapped[512];
	xmlXPathObjectPtr obj;
	char *out;

	snprintf(wrapped, sizeof(wrapped), "string(%s)", expr);
	obj = xmlXPathEvalExpression(BAD_CAST wrapped, ctx);
	ck_assert_msg(obj != NULL, "bad XPath %s", expr);
	out = strdup(obj->stringval ? (const char *)obj->stringval : "");
	xmlXPathFreeObject(obj);
	xmlXPathFreeContext(ctx);
	return out;
}

static double count(xmlDocPtr doc, const char *expr)
{
	xmlXPathContextPtr ctx = xmlXPathNewContext(doc);
	char wrapped[512];
	xmlXPathObjectPtr obj;
	double n;

	snprintf(wrapped, sizeof(wrapped), "count(%s)", expr);
	obj = xmlXPathEvalExpression(BAD_CAST wrapped, ctx);
	ck_assert_msg(obj != NULL, "bad XPath %s", expr);
	n = obj->floatval;
	xmlXPathFreeObject(obj);
	xmlXPathFreeContext(ctx);
	return n;
}

#define ck_xp(doc, expr, want) do {                                                  \
		char *got_ = xp(doc, expr);                                            \
		ck_assert_msg(strcmp(got_, want) == 0, "%s: got '%s', want '%s'", expr, \
			      got_, want);                                             \
		free(got_);                                                            \
	} while (0)

START_TEST(test_escaping_round_trips)
{
	struct hv_vm_spec s = base_spec();
	xmlDocPtr doc = gen(&s, HV_ACCEL_TCG);

	ck_xp(doc, "/domain/name", NASTY_NAME);
	ck_xp(doc, "/domain/os/kernel", "/var/cache/vireo/guest/vmlinux & <kernel>");
	ck_xp(doc, "/domain/os/initrd", "/var/cache/vireo/guest/initrd \"x\".img");
	ck_xp(doc, "/domain/os/cmdline", NASTY_CMDLINE);
	ck_xp(doc, "/domain/devices/disk[1]/source/@file", NASTY_PATH);
	ck_xp(doc, "/domain/devices/serial/source/@path", NASTY_SERIAL);
	ck_xp(doc, "/domain/devices/interface[1]/source/@bridge", NASTY_BRIDGE);
	xmlFreeDoc(doc);
}
END_TEST

START_TEST(test_basics)
{
	struct hv_vm_spec s = base_spec();
	xmlDocPtr doc = gen(&s, HV_ACCEL_TCG);

	ck_xp(doc, "/domain/uuid", "0f3b8a2c-1d2e-4f50-8a9b-0c1d2e3f4a5b");
	ck_assert(count(doc, "/domain/metadata/*[local-name()='vm' and namespace-uri()='" HV_VIREO_XMLNS "']") == 1);
	ck_xp(doc, "/domain/memory", "384");
	ck_xp(doc, "/domain/memory/@unit", "MiB");
	ck_xp(doc, "/domain/vcpu", "2");
	ck_xp(doc, "/domain/os/type", "hvm");
	ck_xp(doc, "/domain/os/type/@machine", "pc");
	ck_xp(doc, "/domain/on_poweroff", "destroy");
	ck_xp(doc, "/domain/on_crash", "destroy");
	ck_xp(doc, "/domain/devices/memballoon/@model", "none");
	ck_xp(doc, "/domain/devices/serial/@type", "file");
	ck_xp(doc, "/domain/devices/serial/source/@append", "on");
	ck_assert(count(doc, "/domain/devices/graphics") == 0);
	ck_assert(count(doc, "/domain/devices/video") == 0);
	ck_assert(count(doc, "/domain/os/boot") == 0);
	ck_assert(count(doc, "//boot") == 0);
	xmlFreeDoc(doc);
}
END_TEST

START_TEST(test_kvm_vs_qemu)
{
	struct hv_vm_spec s = base_spec();
	xmlDocPtr doc = gen(&s, HV_ACCEL_TCG);

	ck_xp(doc, "/domain/@type", "qemu");
	ck_assert(count(doc, "/domain/cpu") == 0);
	xmlFreeDoc(doc);

	doc = gen(&s, HV_ACCEL_KVM);
	ck_xp(doc, "/domain/@type", "kvm");
	ck_xp(doc, "/domain/cpu/@mode", "host-passthrough");
	xmlFreeDoc(doc);

	/* AUTO must have been resolved by the caller. */
	{
		char *xml = NULL;
		const char *why = NULL;

		ck_assert_int_eq(hv_domain_xml(&s, HV_ACCEL_AUTO, &xml, &why), -EINVAL);
		ck_assert_ptr_null(xml);
		ck_assert_ptr_nonnull(why);
	}
}
END_TEST

START_TEST(test_disks_and_nics_in_order)
{
	struct hv_vm_spec s = base_spec();
	xmlDocPtr doc = gen(&s, HV_ACCEL_TCG);

	ck_assert(count(doc, "/domain/devices/disk") == 3);
	ck_xp(doc, "/domain/devices/disk[1]/target/@dev", "vda");
	ck_xp(doc, "/domain/devices/disk[2]/target/@dev", "vdb");
	ck_xp(doc, "/domain/devices/disk[3]/target/@dev", "vdc");
	ck_xp(doc, "/domain/devices/disk[2]/source/@file", "/pool/second.raw");
	ck_xp(doc, "/domain/devices/disk[3]/source/@file", "/pool/third.qcow2");
	for (int i = 1; i <= 3; i++) {
		char e[128];

		snprintf(e, sizeof(e), "/domain/devices/disk[%d]/target/@bus", i);
		ck_xp(doc, e, "virtio");
		snprintf(e, sizeof(e), "/domain/devices/disk[%d]/driver/@cache", i);
		ck_xp(doc, e, "none");
		snprintf(e, sizeof(e), "/domain/devices/disk[%d]/driver/@io", i);
		ck_xp(doc, e, "native");
	}
	ck_xp(doc, "/domain/devices/disk[1]/driver/@type", "qcow2");
	ck_xp(doc, "/domain/devices/disk[2]/driver/@type", "raw");
	ck_assert(count(doc, "/domain/devices/disk[1]/readonly") == 0);
	ck_assert(count(doc, "/domain/devices/disk[2]/readonly") == 1);

	ck_assert(count(doc, "/domain/devices/interface") == 2);
	ck_xp(doc, "/domain/devices/interface[1]/@type", "bridge");
	ck_xp(doc, "/domain/devices/interface[1]/mac/@address", "52:54:00:12:34:56");
	ck_xp(doc, "/domain/devices/interface[1]/model/@type", "virtio");
	ck_xp(doc, "/domain/devices/interface[2]/source/@bridge", "br1");
	ck_assert(count(doc, "/domain/devices/interface[2]/mac") == 0);
	xmlFreeDoc(doc);
}
END_TEST

START_TEST(test_boot_disk_and_machine)
{
	struct hv_vm_spec s = base_spec();
	xmlDocPtr doc;

	s.boot = HV_BOOT_DISK;
	s.boot_disk = 2;
	s.machine = HV_MACHINE_Q35;
	s.serial_log = NULL;
	doc = gen(&s, HV_ACCEL_TCG);
	ck_assert(count(doc, "/domain/os/kernel") == 0);
	ck_assert(count(doc, "/domain/os/cmdline") == 0);
	ck_xp(doc, "/domain/os/type/@machine", "q35");
	ck_assert(count(doc, "//boot") == 1);
	ck_xp(doc, "/domain/devices/disk[3]/boot/@order", "1");
	ck_assert(count(doc, "/domain/devices/serial") == 0);
	xmlFreeDoc(doc);
}
END_TEST

START_TEST(test_minimal_spec)
{
	struct hv_vm_spec s = {
		.name = "m", .vcpus = 1, .memory_mib = 1, .kernel = "/k",
	};
	xmlDocPtr doc = gen(&s, HV_ACCEL_TCG);

	ck_assert(count(doc, "/domain/uuid") == 0);
	ck_assert(count(doc, "/domain/os/initrd") == 0);
	ck_assert(count(doc, "/domain/devices/disk") == 0);
	ck_assert(count(doc, "/domain/devices/interface") == 0);
	xmlFreeDoc(doc);
}
END_TEST

START_TEST(test_invalid_spec_makes_no_xml)
{
	struct hv_vm_spec s = base_spec();
	char *xml = NULL;
	const char *why = NULL;

	s.name = "bad<name>";
	ck_assert_int_eq(hv_domain_xml(&s, HV_ACCEL_TCG, &xml, &why), -EINVAL);
	ck_assert_ptr_null(xml);
	ck_assert_ptr_nonnull(strstr(why, "name"));
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("hv_xml");
	TCase *tc = tcase_create("xml");

	tcase_add_test(tc, test_escaping_round_trips);
	tcase_add_test(tc, test_basics);
	tcase_add_test(tc, test_kvm_vs_qemu);
	tcase_add_test(tc, test_disks_and_nics_in_order);
	tcase_add_test(tc, test_boot_disk_and_machine);
	tcase_add_test(tc, test_minimal_spec);
	tcase_add_test(tc, test_invalid_spec_makes_no_xml);
	suite_add_tcase(s, tc);
	return s;
}

UNIT_MAIN(suite)
