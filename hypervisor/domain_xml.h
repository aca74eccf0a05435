/* The libvirt domain XML of a VM spec, written with libxml2's xmlTextWriter
 * so that every name, path and command line is escaped. */
#ifndef VIREO_HYPERVISOR_DOMAIN_XML_H
#define VIREO_HYPERVISOR_DOMAIN_XML_H

#include "hypervisor/hv.h"

/* accel must be HV_ACCEL_KVM or HV_ACCEL_TCG (spec->accel is ignored: the
 * caller resolves AUTO). *xml is malloc'd. 0, -EINVAL (*why says why), or
 * -ENOMEM. */
int hv_domain_xml(const struct hv_vm_spec *spec, enum hv_accel accel, char **xml, const char **why);

#endif
