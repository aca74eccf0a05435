/* Messages waiting for the transport: CPG pushes back with
 * CS_ERR_TRY_AGAIN under load, and order must be kept, so everything goes
 * through one FIFO that is flushed as far as the transport allows. */
#ifndef VIREO_CLUSTER_SEND_QUEUE_H
#define VIREO_CLUSTER_SEND_QUEUE_H

#include <stddef.h>
#include <stdint.h>

struct cluster_send_item {
	struct cluster_send_item *next;
	uint8_t *buf;
	size_t len;
};

struct cluster_send_queue {
	struct cluster_send_item *head, *tail;
	size_t count;
};

typedef int (*cluster_send_fn)(void *ctx, const uint8_t *buf, size_t len);

void cluster_send_queue_init(struct cluster_send_queue *q);
/* Takes ownership of buf on success. */
int cluster_send_queue_push(struct cluster_send_queue *q, uint8_t *buf, size_t len);
/* Sends from the head until the queue is empty or send() fails; returns the
 * first failure (-EAGAIN under flow control) or 0. */
int cluster_send_queue_flush(struct cluster_send_queue *q, cluster_send_fn send, void *ctx);
void cluster_send_queue_clear(struct cluster_send_queue *q);

#endif
