/* The corosync token T every timeout of vireo derives from (cluster/timeouts.h,
 * hypervisor/hv_timeouts.h): here, at the bottom of the layering, so that
 * the folders below cluster/ need not include it. */
#ifndef VIREO_UTIL_TOKEN_H
#define VIREO_UTIL_TOKEN_H

/* Used when cmap cannot tell us (corosync's own default). */
#define VIREO_DEFAULT_TOKEN_MS 1000u

#endif
