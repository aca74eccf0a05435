# Build rules for sharedstore/, included by the top-level Makefile.am.
# The shared pool, disk images (qemu-img) and disk leases (libvirt lockd).

noinst_LIBRARIES += libvireo-store.a
libvireo_store_a_SOURCES = \
	sharedstore/run.c sharedstore/run.h \
	sharedstore/pool.c sharedstore/pool.h \
	sharedstore/images.c sharedstore/images.h \
	sharedstore/leases.c sharedstore/leases.h
libvireo_store_a_CFLAGS = $(AM_CFLAGS) $(JSONC_CFLAGS) $(NETTLE_CFLAGS)
STORE_LIBS = libvireo-store.a $(JSONC_LIBS) $(NETTLE_LIBS) $(UTIL_LIBS)

# vireo-store-tool: the library from the command line, for the integration
# tests (run inside lab hosts) and for trying a pool by hand.
check_PROGRAMS += tests/store/vireo-store-tool
tests_store_vireo_store_tool_SOURCES = tests/store/vireo-store-tool.c
tests_store_vireo_store_tool_CFLAGS = $(AM_CFLAGS) $(JSONC_CFLAGS)
tests_store_vireo_store_tool_LDADD = $(STORE_LIBS)

STORE_UNIT_TESTS = \
	tests/unit/test_store_names \
	tests/unit/test_store_pool \
	tests/unit/test_store_images
UNIT_TESTS += $(STORE_UNIT_TESTS)
check_PROGRAMS += $(STORE_UNIT_TESTS)
STORE_UNIT_CFLAGS = $(AM_CFLAGS) $(CHECK_CFLAGS) $(JSONC_CFLAGS)
STORE_UNIT_LDADD = $(STORE_LIBS) $(CHECK_LIBS)
tests_unit_test_store_names_SOURCES = tests/unit/test_store_names.c tests/unit/unit.h
tests_unit_test_store_names_CFLAGS = $(STORE_UNIT_CFLAGS)
tests_unit_test_store_names_LDADD = $(STORE_UNIT_LDADD)
tests_unit_test_store_pool_SOURCES = tests/unit/test_store_pool.c tests/unit/unit.h
tests_unit_test_store_pool_CFLAGS = $(STORE_UNIT_CFLAGS)
tests_unit_test_store_pool_LDADD = $(STORE_UNIT_LDADD)
tests_unit_test_store_images_SOURCES = tests/unit/test_store_images.c tests/unit/unit.h
tests_unit_test_store_images_CFLAGS = $(STORE_UNIT_CFLAGS)
tests_unit_test_store_images_LDADD = $(STORE_UNIT_LDADD)

INTEGRATION_TESTS += tests/integration/test_store_leases.py
EXTRA_DIST += sharedstore/README.md doc/sharedstore.md
