/* Every cluster timeout of vireo, derived from one number: the corosync
 * token timeout (runtime.config.totem.token, read from cmap at start).
 *
 * Timeline of a host that dies at t=0, with token T (lab: T = 1000 ms,
 * token_coefficient 0, measured in shared/feasibility):
 *
 *   t = 0            host dies; its token stops circulating
 *   t ~ T            token lost: corosync starts forming a new ring
 *   t ~ T + consensus (1.2 T)  new ring, CPG confchg delivered:
 *                    detection = VIREO_DETECTION_MS(T), ~2.2 T (2.2 s measured)
 *   t + sync         survivors exchange SyncHello; with equal digests the
 *                    round ends after one multicast round trip
 *   t + report       the manager (lowest quorate node id) records the host
 *                    offline in the cluster log
 *
 * A node that loses corosync altogether reconnects with backoff between
 * VIREO_RECONNECT_MIN_MS(T) and VIREO_RECONNECT_MAX_MS(T).
 *
 * Failover of the HA VMs of a host lost at t=0 (doc/failover.md):
 *
 *   t = D = 2.2 T    detection: the survivors' membership no longer has it;
 *                    the manager marks its VMs 'fencing' (VmFence) and starts
 *                    counting, on its own monotonic clock
 *   cut-off side     at D (+ at most VIREO_FENCE_SKEW_MS) it learns from
 *                    votequorum that it lost quorum; vireod destroys its HA
 *                    guests, and if vireod does not confirm that within
 *                    VIREO_SELF_FENCE_MS the watchdog (which watches quorum
 *                    itself) kills them; SIGKILL and reaping take at most
 *                    VIREO_FENCE_KILL_MS
 *   t = D + F        F = VIREO_FENCE_DELAY_MS = skew + self-fence + kill:
 *                    past this deadline no guest of the lost host runs.
 *                    Fence confirmed when it has passed AND the VMs' disk
 *                    leases are free (the last line: a frozen host still
 *                    holds them); a host that said it stops cleanly
 *                    (NodeLeaving) adds its grace
 *   t = D + F + p    VmFenced: 'recovering'; the manager places each VM on a
 *                    survivor by policy (VmAssign): p is one log round trip
 *   + start + boot   the new owner defines and starts it from the shared disk
 *
 * A quorate vireod feeds its watchdog every VIREO_WATCHDOG_FEED_MS; one that
 * is silent for VIREO_WATCHDOG_TIMEOUT_MS is hung: the watchdog kills its
 * guests and vireod itself, so the cluster sees the node leave and fails it
 * over; a vireod that dies outright is noticed at once (the socket closes).
 *
 * All macros take the token in milliseconds and give milliseconds.
 * tools/vireo-timeouts prints them all for a token (--token MS, --json):
 * the Python tests and the chaos bounds read them from it, so this file is
 * their one source; tests/unit/check-timeouts-listed fails when a macro
 * here is missing from it. */
#ifndef VIREO_CLUSTER_TIMEOUTS_H
#define VIREO_CLUSTER_TIMEOUTS_H

#include <stdint.h>

#include "util/token.h"        /* VIREO_DEFAULT_TOKEN_MS */

/* corosync's consensus defaults to 1.2 x token; detection is token + consensus. */
#define VIREO_CONSENSUS_MS(t)      ((uint32_t)((t) * 12u / 10u))
#define VIREO_DETECTION_MS(t)      ((t) + VIREO_CONSENSUS_MS(t))

/* A sync round that has not finished in one detection time is stuck (a
 * member died mid-round without corosync noticing yet); it is restarted. */
#define VIREO_SYNC_STUCK_MS(t)     VIREO_DETECTION_MS(t)

/* How often a member reports its digest while its state is changing; at most
 * this stale, so vireo status converges well inside one token. */
#define VIREO_DIGEST_REPORT_MS(t)  ((t) / 5u)

/* Reconnecting to a restarted corosync: start fast, back off to one token. */
#define VIREO_RECONNECT_MIN_MS(t)  ((t) / 10u)
#define VIREO_RECONNECT_MAX_MS(t)  (t)

/* CPG flow control (CS_ERR_TRY_AGAIN): retry queued sends after this. */
#define VIREO_SEND_RETRY_MS(t)     ((t) / 100u ? (t) / 100u : 1u)

/* Persisting state is coalesced: at most this long after a change. */
#define VIREO_PERSIST_DELAY_MS(t)  ((t) / 20u)
/* The write runs in a worker (a slow disk must not hold the loop); at stop
 * vireod waits this long for one in flight before it writes the last state. */
#define VIREO_PERSIST_STOP_WAIT_MS(t) (t)

/* A client request that proposes operations gives up after this long
 * without them being applied (e.g. membership churn). */
#define VIREO_REQUEST_TIMEOUT_MS(t) (10u * (t))

/* VMs. The local resource manager looks at every VM it owns this often
 * even without an event (events can be lost across a libvirtd restart). */
#define VIREO_VM_RECONCILE_MS(t)   (3u * (t))
/* A guest that crashed is restarted at once; restarts closer together than
 * this window count towards vm_restart_limit, older ones are forgiven. */
#define VIREO_VM_RESTART_WINDOW_MS(t) (60u * (t))
/* A guest found off waits this long for libvirt's event saying why (QEMU
 * died, the guest powered off), so that the restart or error message says it. */
#define VIREO_VM_STOP_EVENT_WAIT_MS(t) ((t) / 2u)
/* A start that failed (QEMU could not open its disk: a full pool, a lock
 * not yet let go) is tried again this long after, each try counting
 * towards vm_restart_limit; past the limit the VM is 'error'. */
#define VIREO_VM_START_RETRY_MS(t) (2u * (t))
/* A guest found paused again soon after vireod resumed it (QEMU pauses it
 * on every write that fails: a full pool) is resumed again only this long
 * after the last try, not on every pass. */
#define VIREO_VM_RESUME_RETRY_MS(t) (2u * (t))
/* vireo vm start/stop/restart wait this long for the outcome: placement,
 * define and start take ~1 T, a graceful stop up to VIREO_HV_SHUTDOWN_MS
 * (30 T) before the guest is destroyed. */
#define VIREO_VM_ACTION_TIMEOUT_MS(t) (45u * (t))
/* The shared pool is checked this often (each check bounded by
 * STORE_POOL_CHECK_TIMEOUT_MS in sharedstore/pool.h). */
#define VIREO_POOL_CHECK_MS(t)     (5u * (t))

/* Migration (node/vm_migrate.c). The source reports progress this often. */
#define VIREO_MIGRATION_PROGRESS_MS(t) ((t) / 4u)
/* The source keeps trying to reach the target's vireod this long: the
 * target may apply the VmMigrate op a moment after the source. */
#define VIREO_MIGRATION_CONNECT_MS(t)  (5u * (t))
/* A stream with no byte either way this long is dead (a target that
 * vanished without a reset; a target that leaves the membership is noticed
 * sooner, at detection). */
#define VIREO_MIGRATION_STALL_MS(t)    (5u * (t))
/* A new connection must say hello within this. */
#define VIREO_MIGRATION_HANDSHAKE_MS(t) (2u * (t))
/* The target QEMU (started by its libvirtd when the migration begins) must
 * accept the stream within this of its first chunk. */
#define VIREO_MIGRATION_QEMU_CONNECT_MS(t) (10u * (t))
/* After the commit the target waits this long for the guest to appear
 * before it declares the state lost (only after a source restart). */
#define VIREO_MIGRATION_LANDING_MS(t)  (t)

/* The main loop (node/loop_stall.c): a probe timer this often measures how
 * long handlers keep the loop from its other work; a stall this long or
 * longer is logged with its cause (a quarter token: a notice; a token or
 * more, which delays the watchdog's feed and corosync: a warning). */
#define VIREO_STALL_PROBE_MS(t)        ((t) / 10u ? (t) / 10u : 1u)
#define VIREO_STALL_LOG_MS(t)          ((t) / 10u)

/* A hung hypervisor (node/hv_calls.c). vireod's libvirt calls wait in
 * worker threads, never on the loop, so however long libvirtd stalls:
 *
 *   t = 0            libvirtd stops answering (SIGSTOP, slow storage)
 *   every P          the loop looks at its oldest call (P = VIREO_HV_STALL_PROBE_MS)
 *   t = S (+ P)      a call older than S = VIREO_HV_STALL_MS: the host's
 *                    hypervisor is 'stalled', announced; the manager places
 *                    and migrates nothing to it; its guests run on
 *   t ~ K            libvirt's keepalive (VIREO_HV_KEEPALIVE_*, ~8 T) drops
 *                    the connection: calls in flight fail, vireod reconnects
 *                    in a thread; still 'stalled' (not connected)
 *   throughout       the loop feeds the watchdog every VIREO_WATCHDOG_FEED_MS,
 *                    far inside VIREO_WATCHDOG_TIMEOUT_MS: no call waits on it
 *   libvirtd back    reconnected; a pass adopts the guests as they run
 *
 * S is longer than any ordinary call (a start ~1 s under TCG, a destroy of
 * a QEMU slow to die a few s) and shorter than K, so a hang is reported
 * before the connection drops. */
#define VIREO_HV_STALL_MS(t)           (4u * (t))
#define VIREO_HV_STALL_PROBE_MS(t)     ((t) / 4u ? (t) / 4u : 1u)

/* Fencing (node/fence.c, node/watchdog.c, cluster/manager.c); the
 * timeline is at the top of this file. */
#define VIREO_WATCHDOG_FEED_MS(t)      ((t) / 5u)
/* Far above any main-loop stall (no handler waits on libvirt, qemu-img or
 * the pool: node/hv_calls.c, VIREO_HV_STALL_MS), since only a vireod hung
 * while its host stays in the membership waits this long: a cut-off host
 * is fenced on quorum loss, not on silence. */
#define VIREO_WATCHDOG_TIMEOUT_MS(t)   (5u * (t))
#define VIREO_SELF_FENCE_MS(t)         ((t) / 2u)
#define VIREO_FENCE_SKEW_MS(t)         ((t) / 4u)
#define VIREO_FENCE_KILL_MS(t)         ((t) / 4u)
#define VIREO_FENCE_DELAY_MS(t) \
	(VIREO_FENCE_SKEW_MS(t) + VIREO_SELF_FENCE_MS(t) + VIREO_FENCE_KILL_MS(t))
/* A vireod stopping cleanly keeps its guests running this long for the
 * next vireod (an upgrade, a restart) before its watchdog kills them. */
#define VIREO_LEAVE_GRACE_MS(t)        (10u * (t))
/* The manager re-reads a lease it found held this often. */
#define VIREO_LEASE_RECHECK_MS(t)      ((t) / 4u)
/* HA VMs relocated more often than max_relocations within this window
 * are 'error' (a VM that takes down every host it lands on). */
#define VIREO_RELOCATION_WINDOW_MS(t)  (300u * (t))

#endif
