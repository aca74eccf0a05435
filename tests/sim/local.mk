# Build rules for tests/sim/, included by the top-level Makefile.am.
# vireo-sim replays the manager's scenarios (tests/sim/README.md); run-sim
# runs them all as one test.

check_PROGRAMS += tests/sim/vireo-sim
tests_sim_vireo_sim_SOURCES = tests/sim/vireo-sim.c tests/sim/sim.h tests/sim/sim_parse.c \
	tests/sim/sim_world.h tests/sim/sim_events.c tests/sim/sim_host.c \
	tests/sim/sim_world.c tests/sim/sim_log.c
tests_sim_vireo_sim_CFLAGS = $(libvireo_cluster_a_CFLAGS)
tests_sim_vireo_sim_LDADD = $(CLUSTER_LIBS)

SIM_TESTS = tests/sim/run-sim
TESTS += $(SIM_TESTS)

# Every scenario directory, for the tarball (run-sim finds them itself).
SIM_SCENARIOS = \
	tests/sim/01-single-host-loss \
	tests/sim/02-two-hosts-lost-in-turn \
	tests/sim/03-partition-minority-holds-vms \
	tests/sim/04-flapping-host \
	tests/sim/05-manager-lost-during-recovery \
	tests/sim/06-capacity-exhausted-then-restored \
	tests/sim/07-strict-anti-affinity-unmet \
	tests/sim/08-soft-anti-affinity-broken \
	tests/sim/09-affinity-group-moves-together \
	tests/sim/10-priorities-order-restarts \
	tests/sim/11-preferred-nodes \
	tests/sim/12-pinned-vm-node-lost \
	tests/sim/13-max-relocations-error \
	tests/sim/14-non-ha-vm-on-lost-host \
	tests/sim/15-migration-source-dies \
	tests/sim/16-migration-target-dies \
	tests/sim/17-rejoin-with-stale-guests \
	tests/sim/18-paused-host-leases-held \
	tests/sim/19-hung-vireod-cut-off \
	tests/sim/20-deadline-without-lease-evidence \
	tests/sim/21-clean-stop-leave-grace \
	tests/sim/22-maintenance-live-then-exit \
	tests/sim/23-evacuate-then-active \
	tests/sim/24-maintenance-live-fails-quick \
	tests/sim/25-stop-while-fencing \
	tests/sim/26-whole-cluster-quorum-loss \
	tests/sim/27-hung-vireod-in-quorum \
	tests/sim/28-even-split-no-quorum \
	tests/sim/29-manager-rejoins-mid-fence \
	tests/sim/30-migration-target-dies-after-commit \
	tests/sim/31-vireod-killed \
	tests/sim/32-evacuate-vm-that-cannot-move
EXTRA_DIST += tests/sim/run-sim tests/sim/README.md $(SIM_SCENARIOS)

.PHONY: check-sim
check-sim:
	$(MAKE) $(AM_MAKEFLAGS) check TESTS='$(SIM_TESTS)'
