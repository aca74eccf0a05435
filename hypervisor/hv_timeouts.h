/* Every timeout of hypervisor/, derived from the same clock as the rest of
 * vireo (cluster/timeouts.h): the corosync token T, in ms (lab: 1000). The
 * driver gets T in hv_connect_params.token_ms; 0 means
 * VIREO_DEFAULT_TOKEN_MS.
 *
 * Timeline of a libvirt daemon that dies at t=0 (token T):
 *
 *   t = 0        the daemon's socket closes; libvirt's client sees EOF at
 *                once and calls our close callback from the main loop
 *   t ~ 0        HV_EVENT_CONNECTION_LOST; calls answer -ENOTCONN
 *   t + T/10     first reconnect attempt, then doubling up to T apart:
 *                a daemon that is back at time R is reconnected by R + T
 *   t + R..R+T   HV_EVENT_CONNECTION_RESTORED: the user re-reads states
 *
 * A daemon that hangs instead (SIGSTOP, deadlock) keeps its socket open;
 * libvirt's keepalive notices after interval x (count + 1):
 * VIREO_HV_KEEPALIVE_S(T) x (VIREO_HV_KEEPALIVE_COUNT + 1) = 8 s at T = 1 s.
 *
 * Accel probe (auto): a KVM guest of vireo's test kernel prints its first
 * serial line ~0.3 s after start; VIREO_HV_ACCEL_PROBE_MS gives a loaded
 * host 5 T before falling back to TCG.
 *
 * All macros take T in ms and give ms unless the name says otherwise. */
#ifndef VIREO_HYPERVISOR_HV_TIMEOUTS_H
#define VIREO_HYPERVISOR_HV_TIMEOUTS_H

#include <stdint.h>

#include "util/token.h"        /* VIREO_DEFAULT_TOKEN_MS */

#define VIREO_HV_TOKEN_MS(t)          ((t) ? (t) : VIREO_DEFAULT_TOKEN_MS)

/* Reconnecting to a restarted libvirt daemon: fast first, then once a token. */
#define VIREO_HV_RECONNECT_MIN_MS(t)  ((t) / 10u ? (t) / 10u : 1u)
#define VIREO_HV_RECONNECT_MAX_MS(t)  (t)

/* libvirt's keepalive (seconds, as virConnectSetKeepAlive takes them). */
#define VIREO_HV_KEEPALIVE_S(t)       ((t) / 500u ? (int)((t) / 500u) : 1)
#define VIREO_HV_KEEPALIVE_COUNT      3u

/* How long auto accel waits for the KVM probe guest's first serial line,
 * and how often it looks at the serial log meanwhile. */
#define VIREO_HV_ACCEL_PROBE_MS(t)    (5u * (t))
#define VIREO_HV_SERIAL_POLL_MS(t)    ((t) / 20u ? (t) / 20u : 1u)

/* hv_shutdown_graceful: default grace for an ACPI power-off, and how often
 * the VM's state is looked at meanwhile (events may be lost across a
 * reconnect, so it polls too). */
#define VIREO_HV_SHUTDOWN_MS(t)       (30u * (t))
#define VIREO_HV_STATE_POLL_MS(t)     ((t) / 4u ? (t) / 4u : 1u)

#endif
