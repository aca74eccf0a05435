/* libvirt's codes in hv.h's terms. */
#include <errno.h>
#include <stdio.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "hypervisor/libvirt_map.h"

/* VIR_ERR_OPERATION_INVALID is libvirt's "not in this state": which state
 * depends on what was asked. */
static int state_conflict(enum hv_op op)
{
	switch (op) {
	case HV_OP_START:
	case HV_OP_RESTORE:
		return -EEXIST;         /* "domain is already running/active" */
	case HV_OP_SHUTDOWN:
	case HV_OP_DESTROY:
	case HV_OP_PAUSE:
	case HV_OP_RESUME:
	case HV_OP_SAVE:
	case HV_OP_MIGRATE:
		return -ESRCH;          /* "domain is not running" */
	default:
		return -EBUSY;
	}
}

int hv_libvirt_errno(enum hv_op op, int code, int int1, bool alive)
{
	if (!alive)
		return -ENOTCONN;
	if (op == HV_OP_CONNECT) {
		if (code == VIR_ERR_AUTH_FAILED || code == VIR_ERR_ACCESS_DENIED ||
		    code == VIR_ERR_AUTH_UNAVAILABLE || code == VIR_ERR_AUTH_CANCELLED)
			return -EACCES;
		return -ECONNREFUSED;
	}
	switch (code) {
	case VIR_ERR_OK:
		return -EIO;            /* failed without saying why */
	case VIR_ERR_NO_DOMAIN:
		return -ENOENT;
	case VIR_ERR_DOM_EXIST:
		return -EEXIST;
	case VIR_ERR_OPERATION_INVALID:
		return state_conflict(op);
	case VIR_ERR_RESOURCE_BUSY:
	case VIR_ERR_BLOCK_COPY_ACTIVE:
		return -EBUSY;
	case VIR_ERR_OPERATION_TIMEOUT:
	case VIR_ERR_AGENT_UNRESPONSIVE:
		return -ETIMEDOUT;
	case VIR_ERR_OPERATION_ABORTED:
		return -ECANCELED;
	case VIR_ERR_NO_MEMORY:
		return -ENOMEM;
	case VIR_ERR_INVALID_ARG:
	case VIR_ERR_XML_ERROR:
	case VIR_ERR_XML_DETAIL:
	case VIR_ERR_XML_INVALID_SCHEMA:
	case VIR_ERR_CONFIG_UNSUPPORTED:
	case VIR_ERR_INVALID_MAC:
	case VIR_ERR_MIGRATE_UNSAFE:
	case VIR_ERR_CPU_INCOMPATIBLE:
		return -EINVAL;
	case VIR_ERR_NO_SUPPORT:
	case VIR_ERR_OPERATION_UNSUPPORTED:
	case VIR_ERR_ARGUMENT_UNSUPPORTED:
		return -EOPNOTSUPP;
	case VIR_ERR_OPERATION_DENIED:
	case VIR_ERR_ACCESS_DENIED:
	case VIR_ERR_AUTH_FAILED:
		return -EACCES;
	case VIR_ERR_NO_CONNECT:
	case VIR_ERR_INVALID_CONN:
		return -ENOTCONN;
	case VIR_ERR_SYSTEM_ERROR:
		return int1 > 0 ? -int1 : -EIO;
	default:
		return -EIO;
	}
}

/* Each format is a literal, so the compiler checks it. */
#define MSG(fmt) snprintf(buf, len, fmt, subject, detail)

void hv_libvirt_op_message(enum hv_op op, int err, const char *subject, const char *detail,
			   char *buf, size_t len)
{
	if (err == -ENOTCONN) {
		MSG("lost the connection to the libvirt daemon while working on %s (%s); "
		    "vireo reconnects by itself");
		return;
	}
	switch (op) {
	case HV_OP_CONNECT:
		MSG("cannot connect to the libvirt daemon at %s (%s); check that libvirtd runs");
		return;
	case HV_OP_LIST:
		MSG("cannot list the VMs of %s (%s)");
		return;
	case HV_OP_RESTORE:
		if (err == -EEXIST)
			MSG("the VM saved in %s is already running (%s)");
		else
			MSG("cannot restore a VM from %s (%s)");
		return;
	case HV_OP_PROBE:
		MSG("a KVM guest (%s) does not start on this host (%s)");
		return;
	default:
		break;
	}
	if (err == -ENOENT)
		MSG("VM %s is not defined on this host (%s); define it first");
	else if (err == -ESRCH)
		MSG("VM %s is not running (%s)");
	else if (err == -EEXIST && op == HV_OP_START)
		MSG("VM %s is already running (%s)");
	else if (op == HV_OP_LOOKUP)
		MSG("cannot look up VM %s (%s)");
	else if (op == HV_OP_DEFINE)
		MSG("cannot define VM %s (%s)");
	else if (op == HV_OP_UNDEFINE)
		MSG("cannot undefine VM %s (%s)");
	else if (op == HV_OP_START)
		MSG("cannot start VM %s (%s)");
	else if (op == HV_OP_SHUTDOWN)
		MSG("cannot ask VM %s to shut down (%s)");
	else if (op == HV_OP_DESTROY)
		MSG("cannot stop VM %s (%s)");
	else if (op == HV_OP_PAUSE)
		MSG("cannot pause VM %s (%s)");
	else if (op == HV_OP_RESUME)
		MSG("cannot resume VM %s (%s)");
	else if (op == HV_OP_STATE)
		MSG("cannot read the state of VM %s (%s)");
	else if (op == HV_OP_STATS)
		MSG("cannot read the statistics of VM %s (%s)");
	else if (op == HV_OP_SAVE)
		MSG("cannot save the state of VM %s (%s)");
	else if (op == HV_OP_MIGRATE)
		MSG("cannot live-migrate VM %s (%s)");
	else
		MSG("libvirt failed on %s (%s)");
}

enum hv_vm_state hv_libvirt_state(int state)
{
	switch (state) {
	case VIR_DOMAIN_RUNNING:
	case VIR_DOMAIN_BLOCKED:
		return HV_STATE_RUNNING;
	case VIR_DOMAIN_PAUSED:
	case VIR_DOMAIN_PMSUSPENDED:
		return HV_STATE_PAUSED;
	case VIR_DOMAIN_SHUTDOWN:
		return HV_STATE_SHUTTING_DOWN;
	case VIR_DOMAIN_SHUTOFF:
		return HV_STATE_SHUTOFF;
	case VIR_DOMAIN_CRASHED:
		return HV_STATE_CRASHED;
	default:
		return HV_STATE_UNKNOWN;
	}
}

static enum hv_event_reason started_reason(int d)
{
	switch (d) {
	case VIR_DOMAIN_EVENT_STARTED_BOOTED: return HV_REASON_BOOTED;
	case VIR_DOMAIN_EVENT_STARTED_MIGRATED: return HV_REASON_MIGRATED;
	case VIR_DOMAIN_EVENT_STARTED_RESTORED: return HV_REASON_RESTORED;
	default: return HV_REASON_OTHER;
	}
}

static enum hv_event_reason suspended_reason(int d)
{
	switch (d) {
	case VIR_DOMAIN_EVENT_SUSPENDED_PAUSED: return HV_REASON_USER;
	case VIR_DOMAIN_EVENT_SUSPENDED_MIGRATED: return HV_REASON_MIGRATED;
	case VIR_DOMAIN_EVENT_SUSPENDED_IOERROR: return HV_REASON_IO_ERROR;
	case VIR_DOMAIN_EVENT_SUSPENDED_RESTORED: return HV_REASON_RESTORED;
	default: return HV_REASON_OTHER;
	}
}

static enum hv_event_reason resumed_reason(int d)
{
	switch (d) {
	case VIR_DOMAIN_EVENT_RESUMED_UNPAUSED: return HV_REASON_USER;
	case VIR_DOMAIN_EVENT_RESUMED_MIGRATED: return HV_REASON_MIGRATED;
	default: return HV_REASON_OTHER;
	}
}

static enum hv_event_reason stopped_reason(int d)
{
	switch (d) {
	case VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN: return HV_REASON_SHUTDOWN;
	case VIR_DOMAIN_EVENT_STOPPED_DESTROYED: return HV_REASON_DESTROYED;
	case VIR_DOMAIN_EVENT_STOPPED_CRASHED: return HV_REASON_CRASHED;
	case VIR_DOMAIN_EVENT_STOPPED_MIGRATED: return HV_REASON_MIGRATED;
	case VIR_DOMAIN_EVENT_STOPPED_SAVED: return HV_REASON_SAVED;
	case VIR_DOMAIN_EVENT_STOPPED_FAILED: return HV_REASON_FAILED;
	default: return HV_REASON_OTHER;
	}
}

bool hv_libvirt_event(int event, int detail, enum hv_event_type *type, enum hv_event_reason *reason)
{
	*reason = HV_REASON_NONE;
	switch (event) {
	case VIR_DOMAIN_EVENT_DEFINED:
		*type = HV_EVENT_DEFINED;
		return true;
	case VIR_DOMAIN_EVENT_UNDEFINED:
		*type = HV_EVENT_UNDEFINED;
		return true;
	case VIR_DOMAIN_EVENT_STARTED:
		*type = HV_EVENT_STARTED;
		*reason = started_reason(detail);
		return true;
	case VIR_DOMAIN_EVENT_SUSPENDED:
		*type = HV_EVENT_PAUSED;
		*reason = suspended_reason(detail);
		return true;
	case VIR_DOMAIN_EVENT_PMSUSPENDED:
		*type = HV_EVENT_PAUSED;
		*reason = HV_REASON_OTHER;
		return true;
	case VIR_DOMAIN_EVENT_RESUMED:
		*type = HV_EVENT_RESUMED;
		*reason = resumed_reason(detail);
		return true;
	case VIR_DOMAIN_EVENT_STOPPED:
		*reason = stopped_reason(detail);
		/* QEMU dying under the guest is a crash as far as HA cares. */
		*type = *reason == HV_REASON_CRASHED || *reason == HV_REASON_FAILED
			? HV_EVENT_CRASHED : HV_EVENT_STOPPED;
		return true;
	case VIR_DOMAIN_EVENT_CRASHED:
		*type = HV_EVENT_CRASHED;
		*reason = HV_REASON_CRASHED;
		return true;
	default:
		return false;   /* SHUTDOWN (a STOPPED follows) and anything newer */
	}
}
