#include "node/client.h"

#include <errno.h>
#include <stdlib.h>
#include <qb/qbipcc.h>

#include "node/ipc.h"

struct vireo_client {
	qb_ipcc_connection_t *conn;
	uint8_t *buf;
};

int vireo_client_connect(const char *name, struct vireo_client **out)
{
	struct vireo_client *c = calloc(1, sizeof(*c));
	int rc;

	if (!c)
		return -ENOMEM;
	if (!(c->buf = malloc(NODE_IPC_MAX_MSG))) {
		free(c);
		return -ENOMEM;
	}
	errno = 0;
	c->conn = qb_ipcc_connect(name ? name : NODE_IPC_DEFAULT_NAME, NODE_IPC_MAX_MSG);
	if (!c->conn) {
		rc = errno ? -errno : -ECONNREFUSED;
		free(c->buf);
		free(c);
		return rc;
	}
	*out = c;
	return 0;
}

void vireo_client_close(struct vireo_client *c)
{
	if (!c)
		return;
	qb_ipcc_disconnect(c->conn);
	free(c->buf);
	free(c);
}

int vireo_client_call(struct vireo_client *c, const Vireo__Request *req, int timeout_ms,
		      Vireo__Response **resp)
{
	size_t len = vireo__request__get_packed_size(req);
	struct qb_ipc_request_header hdr;
	const struct qb_ipc_response_header *rhdr;
	struct iovec iov[2];
	uint8_t *body;
	ssize_t n;

	if (sizeof(hdr) + len > NODE_IPC_MAX_MSG)
		return -EMSGSIZE;
	if (!(body = malloc(len ? len : 1)))
		return -ENOMEM;
	vireo__request__pack(req, body);
	hdr.id = NODE_IPC_MSG_REQUEST;
	hdr.size = (int32_t)(sizeof(hdr) + len);
	iov[0].iov_base = &hdr;
	iov[0].iov_len = sizeof(hdr);
	iov[1].iov_base = body;
	iov[1].iov_len = len;
	n = qb_ipcc_sendv_recv(c->conn, iov, 2, c->buf, NODE_IPC_MAX_MSG, timeout_ms);
	free(body);
	if (n < 0)
		return n == -ETIMEDOUT || n == -EAGAIN ? -ETIMEDOUT : -ENOTCONN;
	rhdr = (const struct qb_ipc_response_header *)c->buf;
	if ((size_t)n < sizeof(*rhdr) || rhdr->size != n)
		return -EPROTO;
	*resp = vireo__response__unpack(NULL, (size_t)n - sizeof(*rhdr),
					(const uint8_t *)(rhdr + 1));
	return *resp ? 0 : -EPROTO;
}
