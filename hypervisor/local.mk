# Build rules for hypervisor/, included by the top-level Makefile.am.
# libvireo-hv.a: the hypervisor interface (hv.h) and its libvirt driver.
# Link it with $(HV_LIBS).

noinst_LIBRARIES += libvireo-hv.a
libvireo_hv_a_SOURCES = \
	hypervisor/hv.h \
	hypervisor/hv_timeouts.h \
	hypervisor/hv_spec.c \
	hypervisor/hv_shutdown.c \
	hypervisor/domain_xml.c hypervisor/domain_xml.h \
	hypervisor/libvirt_map.c hypervisor/libvirt_map.h \
	hypervisor/libvirt_events.c hypervisor/libvirt_events.h \
	hypervisor/libvirt_int.h \
	hypervisor/libvirt_conn.c \
	hypervisor/libvirt_domain.c \
	hypervisor/libvirt_migrate.c \
	hypervisor/accel.c
HV_CFLAGS = $(AM_CFLAGS) $(LIBVIRT_CFLAGS) $(LIBXML_CFLAGS) $(QB_CFLAGS) -pthread
libvireo_hv_a_CFLAGS = $(HV_CFLAGS)
HV_LIBS = libvireo-hv.a $(LIBVIRT_LIBS) $(LIBXML_LIBS) $(UTIL_LIBS)

# ------------------------------------------------------------------ tests
HV_UNIT_CFLAGS = $(HV_CFLAGS) $(CHECK_CFLAGS)
HV_UNIT_LDADD = $(HV_LIBS) $(CHECK_LIBS)
HV_UNIT_TESTS = \
	tests/unit/test_hv_xml \
	tests/unit/test_hv_spec \
	tests/unit/test_hv_events
UNIT_TESTS += $(HV_UNIT_TESTS)
check_PROGRAMS += $(HV_UNIT_TESTS)
tests_unit_test_hv_xml_SOURCES = tests/unit/test_hv_xml.c tests/unit/unit.h
tests_unit_test_hv_xml_CFLAGS = $(HV_UNIT_CFLAGS)
tests_unit_test_hv_xml_LDADD = $(HV_UNIT_LDADD)
tests_unit_test_hv_spec_SOURCES = tests/unit/test_hv_spec.c tests/unit/unit.h
tests_unit_test_hv_spec_CFLAGS = $(HV_UNIT_CFLAGS)
tests_unit_test_hv_spec_LDADD = $(HV_UNIT_LDADD)
tests_unit_test_hv_events_SOURCES = tests/unit/test_hv_events.c tests/unit/unit.h
tests_unit_test_hv_events_CFLAGS = $(HV_UNIT_CFLAGS)
tests_unit_test_hv_events_LDADD = $(HV_UNIT_LDADD)

# The driver against a real libvirt daemon (run inside a lab host by
# tests/integration/test_hv_driver.py); built with everything else so
# the integration test finds it.
noinst_PROGRAMS += tests/hv/hv-smoke
tests_hv_hv_smoke_SOURCES = tests/hv/hv-smoke.c tests/hv/smoke.c tests/hv/smoke.h
tests_hv_hv_smoke_CFLAGS = $(HV_CFLAGS)
tests_hv_hv_smoke_LDADD = $(HV_LIBS)

EXTRA_DIST += doc/hypervisor.md hypervisor/README.md

INTEGRATION_TESTS += tests/integration/test_hv_driver.py tests/integration/test_hv_migrate.py
