# Build rules for sharedstore/, included by the top-level Makefile.am.
# The shared pool, disk images (qemu-img) and disk leases (libvirt lockd).

noinst_LIBRARIES += libvireo-store.a
libvireo_store_a_SOURCES = \
	sharedstore/run.c sharedstore/run.h \
	sharedstore/pool.c sharedstore/pool.h \
	sharedstore/images.c sharedstore/images.h \
	sharedstore/leases.c sharedstore/leases.h
libvireo_store_a_CFLAGS = $(AM_CFLAGS) $(JSONC_CFLAGS) $(NETTLE_CFLAGS)
STORE_LIBS = libvireo-store.a $(JSONC_LIBS) $(NETTLE_LIBS)
