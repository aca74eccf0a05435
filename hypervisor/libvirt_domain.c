/* The VM operations of the libvirt driver, and its table. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libvirt/virterror.h>
#include <qb/qblog.h>

#include "hypervisor/domain_xml.h"
#include "hypervisor/libvirt_int.h"

/* A spec whose name or UUID already belongs to another VM would silently
 * redefine or clash; say which VM holds it instead. */
static int check_identity(virConnectPtr conn, const struct hv_vm_spec *spec)
{
	char uuid[VIR_UUID_STRING_BUFLEN];
	virDomainPtr dom = NULL;
	int rc = 0;

	if (spec->uuid && (dom = virDomainLookupByUUIDString(conn, spec->uuid))) {
		if (strcmp(virDomainGetName(dom), spec->name) != 0) {
			qb_log(LOG_ERR, "cannot define VM %s: its UUID %s belongs to VM %s on this "
			       "host; give it another UUID or undefine %s", spec->name, spec->uuid,
			       virDomainGetName(dom), virDomainGetName(dom));
			rc = -EEXIST;
		}
		goto cleanup;
	}
	virResetLastError();
	if (spec->uuid && (dom = virDomainLookupByName(conn, spec->name)) &&
	    virDomainGetUUIDString(dom, uuid) == 0 && strcasecmp(uuid, spec->uuid) != 0) {
		qb_log(LOG_ERR, "cannot define VM %s with UUID %s: a VM of that name with UUID %s "
		       "exists on this host; undefine it first", spec->name, spec->uuid, uuid);
		rc = -EEXIST;
	}
cleanup:
	virResetLastError();
	if (dom)
		virDomainFree(dom);
	return rc;
}

/* Without a UUID in the spec, a VM of that name keeps its own: redefining
 * it replaces its configuration instead of clashing. */
static void keep_uuid(virConnectPtr conn, struct hv_vm_spec *spec, char uuid[VIR_UUID_STRING_BUFLEN])
{
	virDomainPtr dom;

	if (spec->uuid || !(dom = virDomainLookupByName(conn, spec->name))) {
		virResetLastError();
		return;
	}
	if (virDomainGetUUIDString(dom, uuid) == 0)
		spec->uuid = uuid;
	virDomainFree(dom);
}

static int lv_define(struct hv_conn *c, const struct hv_vm_spec *given)
{
	struct hv_vm_spec copy = *given, *spec = &copy;
	enum hv_accel accel = spec->accel == HV_ACCEL_AUTO ? c->accel : spec->accel;
	char uuid[VIR_UUID_STRING_BUFLEN];
	virConnectPtr conn = NULL;
	virDomainPtr dom = NULL;
	const char *why = NULL;
	char *xml = NULL;
	int rc;

	if ((rc = hv_vm_spec_check(spec, &why)) < 0) {
		qb_log(LOG_ERR, "cannot define VM %s: %s", hv_name_valid(spec->name)
		       ? spec->name : "(invalid name)", why);
		goto cleanup;
	}
	if (!(conn = hv_lv_ref(c))) {
		qb_log(LOG_WARNING, "VM %s: not connected to the libvirt daemon at %s; vireo is "
		       "reconnecting", spec->name, c->uri);
		rc = -ENOTCONN;
		goto cleanup;
	}
	if ((rc = check_identity(conn, spec)) < 0)
		goto cleanup;
	keep_uuid(conn, spec, uuid);
	if ((rc = hv_domain_xml(spec, accel, &xml, &why)) < 0) {
		qb_log(LOG_ERR, "cannot define VM %s: %s", spec->name, why ? why : "out of memory");
		goto cleanup;
	}
	if (!(dom = virDomainDefineXMLFlags(conn, xml, VIR_DOMAIN_DEFINE_VALIDATE))) {
		rc = hv_lv_fail(c, HV_OP_DEFINE, spec->name);
		goto cleanup;
	}
	qb_log(LOG_INFO, "defined VM %s (%s, %s, %u vCPUs, %lu MiB)", spec->name,
	       hv_accel_name(accel), hv_machine_name(spec->machine), spec->vcpus,
	       (unsigned long)spec->memory_mib);
	rc = 0;
cleanup:
	if (dom)
		virDomainFree(dom);
	if (conn)
		virConnectClose(conn);
	free(xml);
	return rc;
}

static int lv_undefine(struct hv_conn *c, const char *name)
{
	unsigned int flags = VIR_DOMAIN_UNDEFINE_MANAGED_SAVE |
			     VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA |
			     VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA |
			     VIR_DOMAIN_UNDEFINE_NVRAM;
	virDomainPtr dom;
	int rc;

	if ((rc = hv_lv_lookup(c, name, HV_OP_UNDEFINE, &dom)) < 0)
		return rc;
	/* libvirt would make a running VM transient; vireo wants it stopped first. */
	if (virDomainIsActive(dom) == 1) {
		qb_log(LOG_ERR, "VM %s is running; stop it before undefining it", name);
		rc = -EBUSY;
	} else if (virDomainUndefineFlags(dom, flags) < 0) {
		rc = hv_lv_fail(c, HV_OP_UNDEFINE, name);
	} else {
		qb_log(LOG_INFO, "undefined VM %s", name);
	}
	virDomainFree(dom);
	return rc;
}

static int lv_start(struct hv_conn *c, const char *name, unsigned int flags)
{
	virDomainPtr dom;
	int rc;

	if ((rc = hv_lv_lookup(c, name, HV_OP_START, &dom)) < 0)
		return rc;
	if (virDomainCreateWithFlags(dom, flags & HV_START_PAUSED ? VIR_DOMAIN_START_PAUSED : 0) < 0)
		rc = hv_lv_fail(c, HV_OP_START, name);
	else
		qb_log(LOG_INFO, "started VM %s%s", name, flags & HV_START_PAUSED ? " paused" : "");
	virDomainFree(dom);
	return rc;
}

static int lv_shutdown(struct hv_conn *c, const char *name)
{
	virDomainPtr dom;
	int rc;

	if ((rc = hv_lv_lookup(c, name, HV_OP_SHUTDOWN, &dom)) < 0)
		return rc;
	if (virDomainShutdownFlags(dom, VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN) < 0)
		rc = hv_lv_fail(c, HV_OP_SHUTDOWN, name);
	else
		qb_log(LOG_INFO, "asked VM %s to power off (ACPI)", name);
	virDomainFree(dom);
	return rc;
}

static int lv_destroy(struct hv_conn *c, const char *name)
{
	virDomainPtr dom;
	int rc;

	if ((rc = hv_lv_lookup(c, name, HV_OP_DESTROY, &dom)) < 0)
		return rc;
	if (virDomainDestroy(dom) < 0)
		rc = hv_lv_fail(c, HV_OP_DESTROY, name);
	else
		qb_log(LOG_INFO, "destroyed VM %s", name);
	virDomainFree(dom);
	return rc;
}

static int lv_pause(struct hv_conn *c, const char *name)
{
	virDomainPtr dom;
	int rc;

	if ((rc = hv_lv_lookup(c, name, HV_OP_PAUSE, &dom)) < 0)
		return rc;
	if (virDomainSuspend(dom) < 0)
		rc = hv_lv_fail(c, HV_OP_PAUSE, name);
	virDomainFree(dom);
	return rc;
}

static int lv_resume(struct hv_conn *c, const char *name)
{
	virDomainPtr dom;
	int rc;

	if ((rc = hv_lv_lookup(c, name, HV_OP_RESUME, &dom)) < 0)
		return rc;
	if (virDomainResume(dom) < 0)
		rc = hv_lv_fail(c, HV_OP_RESUME, name);
	virDomainFree(dom);
	return rc;
}

static int lv_state(struct hv_conn *c, const char *name, enum hv_vm_state *state)
{
	virDomainPtr dom;
	int st = 0, reason = 0;
	int rc;

	if ((rc = hv_lv_lookup(c, name, HV_OP_STATE, &dom)) < 0)
		return rc;
	if (virDomainGetState(dom, &st, &reason, 0) < 0)
		rc = hv_lv_fail(c, HV_OP_STATE, name);
	else
		*state = hv_libvirt_state(st);
	virDomainFree(dom);
	return rc;
}

static int fill_info(virDomainPtr dom, struct hv_vm_info *info)
{
	virDomainInfo di;
	char *meta;

	memset(info, 0, sizeof(*info));
	if (virDomainGetInfo(dom, &di) < 0)
		return -1;
	snprintf(info->name, sizeof(info->name), "%s", virDomainGetName(dom));
	virDomainGetUUIDString(dom, info->uuid);
	info->state = hv_libvirt_state(di.state);
	info->persistent = virDomainIsPersistent(dom) == 1;
	info->vcpus = di.nrVirtCpu;
	info->cpu_time_ns = di.cpuTime;
	info->memory_kib = di.memory;
	info->max_memory_kib = di.maxMem;
	meta = virDomainGetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, HV_VIREO_XMLNS, 0);
	info->vireo = meta != NULL;
	if (!meta)
		virResetLastError();     /* no such element: not ours */
	free(meta);
	return 0;
}

static int lv_stats(struct hv_conn *c, const char *name, struct hv_vm_info *info)
{
	virDomainPtr dom;
	int rc;

	if ((rc = hv_lv_lookup(c, name, HV_OP_STATS, &dom)) < 0)
		return rc;
	if (fill_info(dom, info) < 0)
		rc = hv_lv_fail(c, HV_OP_STATS, name);
	virDomainFree(dom);
	return rc;
}

static int lv_list(struct hv_conn *c, struct hv_vm_info **vms, size_t *n)
{
	virDomainPtr *doms = NULL;
	struct hv_vm_info *out = NULL;
	virConnectPtr conn;
	size_t k = 0;
	int count;
	int rc = 0;

	*vms = NULL;
	*n = 0;
	if (!(conn = hv_lv_ref(c)))
		return -ENOTCONN;
	/* The failure is read before virConnectClose resets it. */
	count = virConnectListAllDomains(conn, &doms, 0);
	rc = count < 0 ? hv_lv_fail(c, HV_OP_LIST, c->uri) : 0;
	virConnectClose(conn);
	if (count < 0)
		return rc;
	if (count > 0 && !(out = calloc((size_t)count, sizeof(*out)))) {
		rc = -ENOMEM;
		goto cleanup;
	}
	for (int i = 0; i < count; i++) {
		/* A VM undefined between the two calls is simply not listed. */
		if (fill_info(doms[i], &out[k]) == 0)
			k++;
		else
			virResetLastError();
	}
	*vms = out;
	*n = k;
	out = NULL;
cleanup:
	for (int i = 0; i < count; i++)
		virDomainFree(doms[i]);
	free(doms);
	free(out);
	return rc;
}

static int lv_save(struct hv_conn *c, const char *name, const char *path, unsigned int flags)
{
	virDomainPtr dom;
	int rc;

	if ((rc = hv_lv_lookup(c, name, HV_OP_SAVE, &dom)) < 0)
		return rc;
	if (virDomainSaveFlags(dom, path, NULL,
			       flags & HV_SAVE_BYPASS_CACHE ? VIR_DOMAIN_SAVE_BYPASS_CACHE : 0) < 0)
		rc = hv_lv_fail(c, HV_OP_SAVE, name);
	else
		qb_log(LOG_INFO, "saved VM %s to %s", name, path);
	virDomainFree(dom);
	return rc;
}

static int lv_restore(struct hv_conn *c, const char *path, unsigned int flags)
{
	unsigned int vflags = flags & HV_RESTORE_PAUSED ? VIR_DOMAIN_SAVE_PAUSED : VIR_DOMAIN_SAVE_RUNNING;

	if (flags & HV_SAVE_BYPASS_CACHE)
		vflags |= VIR_DOMAIN_SAVE_BYPASS_CACHE;
	virConnectPtr conn = hv_lv_ref(c);
	int rc;

	if (!conn)
		return -ENOTCONN;
	if (virDomainRestoreFlags(conn, path, NULL, vflags) < 0)
		rc = hv_lv_fail(c, HV_OP_RESTORE, path);
	else
		rc = 0;
	virConnectClose(conn);   /* after hv_lv_fail: it resets the error */
	if (rc < 0)
		return rc;
	qb_log(LOG_INFO, "restored a VM from %s", path);
	return 0;
}

const struct hv_driver hv_libvirt_driver = {
	.name = "libvirt",
	.connect = hv_lv_connect,
	.disconnect = hv_lv_disconnect,
	.connected = hv_lv_connected,
	.define = lv_define,
	.undefine = lv_undefine,
	.start = lv_start,
	.shutdown = lv_shutdown,
	.destroy = lv_destroy,
	.pause = lv_pause,
	.resume = lv_resume,
	.state = lv_state,
	.list = lv_list,
	.stats = lv_stats,
	.save = lv_save,
	.restore = lv_restore,
	.migrate = hv_lv_migrate,
	.migrate_abort = hv_lv_migrate_abort,
	.migrate_progress = hv_lv_migrate_progress,
	.job_active = hv_lv_job_active,
	.resolve_accel = hv_lv_resolve_accel,
	.accel = hv_lv_accel,
	.last_error = hv_lv_last_failure,
};
