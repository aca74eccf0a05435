#include "cluster/send_queue.h"

#include <errno.h>
#include <stdlib.h>

void cluster_send_queue_init(struct cluster_send_queue *q)
{
	q->head = q->tail = NULL;
	q->count = 0;
}

int cluster_send_queue_push(struct cluster_send_queue *q, uint8_t *buf, size_t len)
{
	struct cluster_send_item *it = malloc(sizeof(*it));

	if (!it)
		return -ENOMEM;
	it->next = NULL;
	it->buf = buf;
	it->len = len;
	if (q->tail)
		q->tail->next = it;
	else
		q->head = it;
	q->tail = it;
	q->count++;
	return 0;
}

static void pop(struct cluster_send_queue *q)
{
	struct cluster_send_item *it = q->head;

	q->head = it->next;
	if (!q->head)
		q->tail = NULL;
	q->count--;
	free(it->buf);
	free(it);
}

int cluster_send_queue_flush(struct cluster_send_queue *q, cluster_send_fn send, void *ctx)
{
	int rc;

	while (q->head) {
		if ((rc = send(ctx, q->head->buf, q->head->len)) < 0)
			return rc;
		pop(q);
	}
	return 0;
}

void cluster_send_queue_clear(struct cluster_send_queue *q)
{
	while (q->head)
		pop(q);
}
