/* Translations between libvirt's codes and hv.h's: errors to errno,
 * domain states, lifecycle events. Pure functions, unit-tested. */
#ifndef VIREO_HYPERVISOR_LIBVIRT_MAP_H
#define VIREO_HYPERVISOR_LIBVIRT_MAP_H

#include <stdbool.h>
#include <stddef.h>

#include "hypervisor/hv.h"

/* What was being done: the same libvirt error means different things. */
enum hv_op {
	HV_OP_CONNECT,
	HV_OP_LOOKUP,
	HV_OP_DEFINE,
	HV_OP_UNDEFINE,
	HV_OP_START,
	HV_OP_SHUTDOWN,
	HV_OP_DESTROY,
	HV_OP_PAUSE,
	HV_OP_RESUME,
	HV_OP_STATE,
	HV_OP_LIST,
	HV_OP_STATS,
	HV_OP_SAVE,
	HV_OP_RESTORE,
	HV_OP_MIGRATE,
	HV_OP_PROBE,
};

/* code: virErrorNumber; int1: virError.int1 (the errno of a
 * VIR_ERR_SYSTEM_ERROR); alive: virConnectIsAlive() after the failure. A
 * dead connection is -ENOTCONN whatever the code says. */
int hv_libvirt_errno(enum hv_op op, int code, int int1, bool alive);

/* The whole sentence logged when op on subject (a VM name, a path, the
 * URI) failed with err; detail is libvirt's own message. */
void hv_libvirt_op_message(enum hv_op op, int err, const char *subject, const char *detail,
			   char *buf, size_t len);

/* virDomainState to hv_vm_state. */
enum hv_vm_state hv_libvirt_state(int state);

/* virDomainEventType + detail to an hv event; false for events vireo does
 * not report (e.g. SHUTDOWN, which a STOPPED follows). */
bool hv_libvirt_event(int event, int detail, enum hv_event_type *type, enum hv_event_reason *reason);

#endif
