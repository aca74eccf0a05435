"""Every bound the chaos checks use, derived from the lab's token: vireod's
own timeouts come from cluster/timeouts.h through tests/integration/timeouts.py,
the margins are multiples of the token."""
from timeouts import T

TOKEN_S = T.TOKEN                     # the lab's corosync token (tools/lab/labconf.py)
DETECTION_S = T.DETECTION             # VIREO_DETECTION_MS: token loss to a new membership
FENCE_DELAY_S = T.FENCE_DELAY         # VIREO_FENCE_DELAY_MS
SELF_FENCE_S = T.SELF_FENCE           # VIREO_SELF_FENCE_MS
WATCHDOG_S = T.WATCHDOG_TIMEOUT       # VIREO_WATCHDOG_TIMEOUT_MS: a hung vireod's guests die
# Define, start and the test guest's boot to its first heartbeat take ~2 s on
# an idle machine; the lab runs every host, guest and this observer on two
# cores, so the bounds carry a generous margin for scheduling noise.
MARGIN_S = 10.0 * TOKEN_S
# Invariant 2: an HA guest is back within this after its host is lost,
# counted from when a quorate partition with capacity exists (again).
FAILOVER_BOUND_S = DETECTION_S + FENCE_DELAY_S + MARGIN_S
# Invariant 5: a host cut off stops its HA guests within this after the cut.
SELF_FENCE_BOUND_S = DETECTION_S + SELF_FENCE_S + 0.5 * MARGIN_S
# Invariant 5: a start already under way when a host is cut off may finish;
# a QEMU appearing on an inquorate host later than this after the cut is a start.
INQUORATE_START_GRACE_S = DETECTION_S + 1.0 * TOKEN_S
# A healed host counts as able (its daemons back in the cluster) only after this.
SETTLE_S = 3.0 * TOKEN_S
# Invariant 4: membership stable this long, the quorate members' digests must agree...
DIGEST_STABLE_S = 5.0 * TOKEN_S
# ...and they must have converged within this much stable time.
DIGEST_CONVERGE_S = 30.0 * TOKEN_S
# A migration's two QEMUs (the target's waits paused) are no double run
# while the migration runs and this long after its command returned.
MIGRATION_TAIL_S = 3.0 * TOKEN_S
# A migrate command that failed or gave up (vireod gone mid-request, no
# quorum, no answer) may leave the migration to the cluster; the observer
# keeps excusing its two QEMUs until the cluster shows no migration of the
# guest, at most this.
MIGRATION_SETTLE_S = 60.0 * TOKEN_S
# Pauses shorter than the token must change nothing; longer ones must be survived.
SHORT_PAUSE_S = (0.2 * TOKEN_S, 0.7 * TOKEN_S)
LONG_PAUSE_S = (2.0 * TOKEN_S, 8.0 * TOKEN_S)
