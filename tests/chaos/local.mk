# Build rules for tests/chaos/, included by the top-level Makefile.am.
# vireo-chaos runs seeded random faults against the invariants (doc/chaos.md).
# make check runs a short run; make chaos-long the long one (>= 2,000 faults).

CHAOS_TESTS = tests/chaos/test_chaos.py
TESTS += $(CHAOS_TESTS)
EXTRA_DIST += $(CHAOS_TESTS) tests/chaos/vireo-chaos tests/chaos/regressions \
	tests/chaos/chaoslib/__init__.py tests/chaos/chaoslib/bounds.py \
	tests/chaos/chaoslib/schedule.py tests/chaos/chaoslib/nemesis.py \
	tests/chaos/chaoslib/workload.py tests/chaos/chaoslib/observer.py \
	tests/chaos/chaoslib/report.py

# The long run: 5 hosts, then 3, 2,100 faults planned (about 70 minutes); a
# few find their target gone already (a vireod the watchdog ended), so at
# least 2,000 are done.
CHAOS_LONG_SEED ?= 1
.PHONY: check-chaos chaos-long
check-chaos:
	$(MAKE) $(AM_MAKEFLAGS) check TESTS='$(CHAOS_TESTS)'
chaos-long: all
	VIREO_BUILD_DIR='$(abs_top_builddir)' $(srcdir)/tests/chaos/vireo-chaos --seed $(CHAOS_LONG_SEED) \
		--hosts 5 --guests 4 --plain 1 --duration 2100 --faults 1150 \
		--report /tmp/vireo-chaos-long-5
	VIREO_BUILD_DIR='$(abs_top_builddir)' $(srcdir)/tests/chaos/vireo-chaos --seed $(CHAOS_LONG_SEED) \
		--hosts 3 --guests 3 --plain 1 --duration 1700 --faults 950 \
		--report /tmp/vireo-chaos-long-3

# Every seed that once found a bug, with the arguments it ran with.
.PHONY: chaos-regress
chaos-regress: all
	@grep -v '^#' $(srcdir)/tests/chaos/regressions | grep . | while read -r args; do \
		echo "== vireo-chaos $$args"; \
		VIREO_BUILD_DIR='$(abs_top_builddir)' $(srcdir)/tests/chaos/vireo-chaos $$args || exit 1; \
	done
