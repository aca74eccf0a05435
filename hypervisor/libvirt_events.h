/* libvirt's event loop implemented on the one libqb main loop, so that
 * libvirt's sockets, keepalive and domain events are served by qb_loop
 * like every other vireo subsystem (virEventRegisterImpl).
 *
 * libvirt may call the implementation from any thread (a call made in a
 * worker thread updates the socket's watch); changes made off the loop's
 * thread are queued and applied by the loop thread after a wake-up through
 * a pipe, as libvirt's own poll loop does. qb_loop itself is only ever
 * touched from the loop's thread. */
#ifndef VIREO_HYPERVISOR_LIBVIRT_EVENTS_H
#define VIREO_HYPERVISOR_LIBVIRT_EVENTS_H

#include <stdbool.h>
#include <qb/qbloop.h>

/* Registers the implementation on loop, whose thread is the caller's. Call
 * before opening any libvirt connection. Idempotent for the same loop;
 * -EBUSY for another loop (libvirt has one event implementation per
 * process), -errno if the wake-up pipe cannot be made. */
int hv_libvirt_events_init(qb_loop_t *loop);

/* Runs fn(data) on the loop's thread soon. Callable from any thread.
 * 0 or -ENOMEM; -ENOTCONN before init. */
int hv_libvirt_events_post(void (*fn)(void *data), void *data);

/* Whether the caller runs on the loop's thread. */
bool hv_libvirt_events_on_loop(void);

/* Counts for tests: watches and timeouts libvirt has registered. */
void hv_libvirt_events_counts(int *watches, int *timeouts);

#endif
