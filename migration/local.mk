# Build rules for migration/, included by the top-level Makefile.am.
# libvireo-mig.a: the migration data path (stream.h). The protobuf-c code it
# uses lives in libvireo-cluster.a: link $(MIG_LIBS) before $(CLUSTER_LIBS).

noinst_LIBRARIES += libvireo-mig.a
libvireo_mig_a_SOURCES = \
	migration/stream.h \
	migration/stream_int.h \
	migration/io.c \
	migration/key.c \
	migration/frame.c \
	migration/session.c \
	migration/relay.c \
	migration/source.c \
	migration/target.c
MIG_CFLAGS = $(AM_CFLAGS) $(PROTOBUF_C_CFLAGS) $(QB_CFLAGS) $(NETTLE_CFLAGS) $(LZ4_CFLAGS) -pthread
libvireo_mig_a_CFLAGS = $(MIG_CFLAGS)
MIG_LIBS = libvireo-mig.a $(LZ4_LIBS) $(NETTLE_LIBS) $(UTIL_LIBS)

# ------------------------------------------------------------------ tests
MIG_UNIT_TESTS = tests/unit/test_mig_stream
UNIT_TESTS += $(MIG_UNIT_TESTS)
check_PROGRAMS += $(MIG_UNIT_TESTS)
tests_unit_test_mig_stream_SOURCES = tests/unit/test_mig_stream.c tests/unit/unit.h
tests_unit_test_mig_stream_CFLAGS = $(MIG_CFLAGS) $(CHECK_CFLAGS)
tests_unit_test_mig_stream_LDADD = $(MIG_LIBS) $(CLUSTER_LIBS) $(CHECK_LIBS)

# Throughput of the data path on loopback (zeros, random, text-like data).
noinst_PROGRAMS += tools/bench/mig-stream-bench
tools_bench_mig_stream_bench_SOURCES = tools/bench/mig-stream-bench.c
tools_bench_mig_stream_bench_CFLAGS = $(MIG_CFLAGS)
tools_bench_mig_stream_bench_LDADD = $(MIG_LIBS) $(CLUSTER_LIBS)

EXTRA_DIST += migration/README.md
