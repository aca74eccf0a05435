/* Domain XML from a VM spec. Never printf'd: xmlTextWriter escapes '<', '&'
 * and quotes in names, paths and the kernel command line.
 *
 * Choices, and why:
 *   - type 'kvm' or 'qemu' (TCG) from the resolved accel; KVM guests get the
 *     host's CPU (host-passthrough: vireo's hosts are alike, and live
 *     migration needs the same CPU on both ends anyway).
 *   - machine pc unless asked: it boots the test guest faster than q35
 *     under TCG (doc/hypervisor.md has the numbers).
 *   - disks virtio with cache='none' io='native': O_DIRECT, so a write the
 *     guest saw completed is on the shared storage, not in this host's page
 *     cache, when the host dies or the VM moves.
 *   - no USB controller, no balloon, no graphics: less to emulate, faster
 *     boot, and a balloon would make memory accounting lie.
 *   - on_poweroff/on_crash destroy: vireo, not libvirt, decides whether a
 *     stopped VM runs again (and where); a guest reboot stays a reboot. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libxml/xmlwriter.h>

#include "hypervisor/domain_xml.h"

struct writer {
	xmlTextWriterPtr w;
	int err;
};

static void start(struct writer *x, const char *name)
{
	if (!x->err && xmlTextWriterStartElement(x->w, BAD_CAST name) < 0)
		x->err = -ENOMEM;
}

static void end(struct writer *x)
{
	if (!x->err && xmlTextWriterEndElement(x->w) < 0)
		x->err = -ENOMEM;
}

static void attr(struct writer *x, const char *name, const char *value)
{
	if (!x->err && xmlTextWriterWriteAttribute(x->w, BAD_CAST name, BAD_CAST value) < 0)
		x->err = -ENOMEM;
}

/* <name attr='value'/> */
static void empty(struct writer *x, const char *name, const char *a, const char *value)
{
	start(x, name);
	if (a)
		attr(x, a, value);
	end(x);
}

static void element(struct writer *x, const char *name, const char *text)
{
	if (!x->err && xmlTextWriterWriteElement(x->w, BAD_CAST name, BAD_CAST text) < 0)
		x->err = -ENOMEM;
}

static void write_os(struct writer *x, const struct hv_vm_spec *s)
{
	start(x, "os");
	start(x, "type");
	attr(x, "machine", hv_machine_name(s->machine));
	if (!x->err && xmlTextWriterWriteString(x->w, BAD_CAST "hvm") < 0)
		x->err = -ENOMEM;
	end(x);
	if (s->boot == HV_BOOT_KERNEL) {
		element(x, "kernel", s->kernel);
		if (s->initrd)
			element(x, "initrd", s->initrd);
		if (s->cmdline)
			element(x, "cmdline", s->cmdline);
	}
	end(x);
}

static void write_disk(struct writer *x, const struct hv_vm_spec *s, size_t i)
{
	const struct hv_disk *d = &s->disks[i];
	char dev[8];

	snprintf(dev, sizeof(dev), "vd%c", (char)('a' + i));
	start(x, "disk");
	attr(x, "type", "file");
	attr(x, "device", "disk");
	start(x, "driver");
	attr(x, "name", "qemu");
	attr(x, "type", d->format == HV_DISK_QCOW2 ? "qcow2" : "raw");
	attr(x, "cache", "none");
	attr(x, "io", "native");
	end(x);
	empty(x, "source", "file", d->path);
	start(x, "target");
	attr(x, "dev", dev);
	attr(x, "bus", "virtio");
	end(x);
	if (d->readonly)
		empty(x, "readonly", NULL, NULL);
	if (s->boot == HV_BOOT_DISK && s->boot_disk == i)
		empty(x, "boot", "order", "1");
	end(x);
}

static void write_nic(struct writer *x, const struct hv_nic *n)
{
	start(x, "interface");
	attr(x, "type", "bridge");
	if (n->mac)
		empty(x, "mac", "address", n->mac);
	empty(x, "source", "bridge", n->bridge);
	empty(x, "model", "type", "virtio");
	end(x);
}

static void write_devices(struct writer *x, const struct hv_vm_spec *s)
{
	start(x, "devices");
	for (size_t i = 0; i < s->n_disks; i++)
		write_disk(x, s, i);
	for (size_t i = 0; i < s->n_nics; i++)
		write_nic(x, &s->nics[i]);
	start(x, "controller");
	attr(x, "type", "usb");
	attr(x, "model", "none");
	end(x);
	if (s->serial_log) {
		start(x, "serial");
		attr(x, "type", "file");
		start(x, "source");
		attr(x, "path", s->serial_log);
		attr(x, "append", "on");
		end(x);
		empty(x, "target", "port", "0");
		end(x);
	}
	empty(x, "memballoon", "model", "none");
	end(x);
}

static void write_domain(struct writer *x, const struct hv_vm_spec *s, enum hv_accel accel)
{
	char num[32];

	start(x, "domain");
	attr(x, "type", accel == HV_ACCEL_KVM ? "kvm" : "qemu");
	element(x, "name", s->name);
	if (s->uuid)
		element(x, "uuid", s->uuid);
	start(x, "metadata");
	if (!x->err && xmlTextWriterStartElementNS(x->w, BAD_CAST HV_VIREO_XMLNS_PREFIX,
						   BAD_CAST "vm", BAD_CAST HV_VIREO_XMLNS) < 0)
		x->err = -ENOMEM;
	end(x);
	end(x);
	start(x, "memory");
	attr(x, "unit", "MiB");
	snprintf(num, sizeof(num), "%" PRIu64, s->memory_mib);
	if (!x->err && xmlTextWriterWriteString(x->w, BAD_CAST num) < 0)
		x->err = -ENOMEM;
	end(x);
	snprintf(num, sizeof(num), "%u", s->vcpus);
	element(x, "vcpu", num);
	write_os(x, s);
	if (accel == HV_ACCEL_KVM)
		empty(x, "cpu", "mode", "host-passthrough");
	start(x, "features");
	empty(x, "acpi", NULL, NULL);
	empty(x, "apic", NULL, NULL);
	end(x);
	empty(x, "clock", "offset", "utc");
	element(x, "on_poweroff", "destroy");
	element(x, "on_reboot", "restart");
	element(x, "on_crash", "destroy");
	write_devices(x, s);
	end(x);
}

int hv_domain_xml(const struct hv_vm_spec *spec, enum hv_accel accel, char **xml, const char **why)
{
	struct writer x = { NULL, 0 };
	xmlBufferPtr buf = NULL;
	const char *dummy;
	int rc;

	if (!why)
		why = &dummy;
	*xml = NULL;
	if ((rc = hv_vm_spec_check(spec, why)) < 0)
		return rc;
	if (accel != HV_ACCEL_KVM && accel != HV_ACCEL_TCG) {
		*why = "the acceleration must be resolved to kvm or tcg before making domain XML";
		return -EINVAL;
	}
	rc = -ENOMEM;
	if (!(buf = xmlBufferCreate()) || !(x.w = xmlNewTextWriterMemory(buf, 0)))
		goto cleanup;
	if (xmlTextWriterSetIndent(x.w, 1) < 0 ||
	    xmlTextWriterSetIndentString(x.w, BAD_CAST "  ") < 0 ||
	    xmlTextWriterStartDocument(x.w, NULL, "UTF-8", NULL) < 0)
		goto cleanup;
	write_domain(&x, spec, accel);
	if (x.err || xmlTextWriterEndDocument(x.w) < 0)
		goto cleanup;
	xmlFreeTextWriter(x.w);     /* flushes into buf */
	x.w = NULL;
	if (!(*xml = strdup((const char *)xmlBufferContent(buf))))
		goto cleanup;
	rc = 0;
cleanup:
	if (x.w)
		xmlFreeTextWriter(x.w);
	if (buf)
		xmlBufferFree(buf);
	return rc;
}
