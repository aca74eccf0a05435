/* The client side of vireod's IPC, used by the vireo CLI and by tests. */
#ifndef VIREO_NODE_CLIENT_H
#define VIREO_NODE_CLIENT_H

#include "proto/vireo.pb-c.h"

struct vireo_client;

/* Connects to the local vireod. -ECONNREFUSED when no vireod runs here,
 * -EACCES when this user is not admitted, other negative errnos. */
int vireo_client_connect(const char *name, struct vireo_client **out);
void vireo_client_close(struct vireo_client *c);

/* Sends one request and waits up to timeout_ms (-1: forever) for its
 * response, which the caller frees with vireo__response__free_unpacked.
 * -ETIMEDOUT, -ENOTCONN (vireod went away), -EPROTO (undecodable answer). */
int vireo_client_call(struct vireo_client *c, const Vireo__Request *req, int timeout_ms,
		      Vireo__Response **resp);

#endif
