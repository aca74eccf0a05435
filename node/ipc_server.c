#include "node/ipc_server.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <qb/qbipcs.h>
#include <qb/qblog.h>

#include "node/ipc.h"

struct node_ipc_server {
	qb_ipcs_service_t *svc;
	qb_loop_t *loop;
	node_ipc_handler handler;
	void *ctx;
	gid_t admin_gid;     /* (gid_t)-1 when the group does not exist */
};

struct node_ipc_call {
	qb_ipcs_connection_t *conn;
	int32_t id;
};

/* libqb's poll handlers take no loop argument; vireod has exactly one loop. */
static qb_loop_t *the_loop;

static int32_t job_add(enum qb_loop_priority p, void *data, qb_loop_job_dispatch_fn fn)
{
	return qb_loop_job_add(the_loop, p, data, fn);
}

static int32_t poll_add(enum qb_loop_priority p, int32_t fd, int32_t events, void *data,
			qb_ipcs_dispatch_fn_t fn)
{
	return qb_loop_poll_add(the_loop, p, fd, events, data, fn);
}

static int32_t poll_mod(enum qb_loop_priority p, int32_t fd, int32_t events, void *data,
			qb_ipcs_dispatch_fn_t fn)
{
	return qb_loop_poll_mod(the_loop, p, fd, events, data, fn);
}

static int32_t poll_del(int32_t fd)
{
	return qb_loop_poll_del(the_loop, fd);
}

int node_ipc_admitted(uid_t uid, gid_t gid, gid_t admin_gid)
{
	struct passwd pw, *found = NULL;
	char buf[4096];
	gid_t groups[256];
	int n = 256;

	if (uid == 0)
		return 1;
	if (admin_gid == (gid_t)-1)
		return 0;
	if (gid == admin_gid)
		return 1;
	if (getpwuid_r(uid, &pw, buf, sizeof(buf), &found) != 0 || !found)
		return 0;
	if (getgrouplist(pw.pw_name, pw.pw_gid, groups, &n) < 0)
		return 0;
	for (int i = 0; i < n; i++)
		if (groups[i] == admin_gid)
			return 1;
	return 0;
}

static int32_t on_accept(qb_ipcs_connection_t *c, uid_t uid, gid_t gid)
{
	struct node_ipc_server *srv = qb_ipcs_connection_service_context_get(c);

	if (!node_ipc_admitted(uid, gid, srv->admin_gid)) {
		qb_log(LOG_WARNING, "refused an IPC client with uid %u gid %u: only root and "
		       "members of group %s may use vireod", (unsigned)uid, (unsigned)gid,
		       NODE_IPC_ADMIN_GROUP);
		return -EACCES;
	}
	/* The client side of the connection (its shm files) must be usable by
	 * the admitted, possibly non-root, user. */
	if (uid != 0)
		qb_ipcs_connection_auth_set(c, uid, srv->admin_gid, 0660);
	return 0;
}

static int32_t on_message(qb_ipcs_connection_t *c, void *data, size_t size)
{
	struct node_ipc_server *srv = qb_ipcs_connection_service_context_get(c);
	const struct qb_ipc_request_header *hdr = data;
	struct node_ipc_call *call;
	Vireo__Request *req = NULL;

	if (!(call = calloc(1, sizeof(*call))))
		return 0;
	qb_ipcs_connection_ref(c);
	call->conn = c;
	call->id = NODE_IPC_MSG_RESPONSE;
	if (size < sizeof(*hdr) || (size_t)hdr->size != size || hdr->id != NODE_IPC_MSG_REQUEST ||
	    !(req = vireo__request__unpack(NULL, size - sizeof(*hdr), (const uint8_t *)(hdr + 1)))) {
		qb_log(LOG_WARNING, "malformed IPC request (%zu bytes) refused", size);
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_INVALID,
				       "vireod could not decode the request; is the vireo client "
				       "the same version as vireod?");
		return 0;
	}
	if (req->body_case == VIREO__REQUEST__BODY__NOT_SET)
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_INVALID,
				       "the request names no command this vireod knows");
	else
		srv->handler(srv->ctx, call, req);
	vireo__request__free_unpacked(req, NULL);
	return 0;
}

static int32_t on_closed(qb_ipcs_connection_t *c)
{
	return 0;
}

static void on_destroyed(qb_ipcs_connection_t *c)
{
}

void node_ipc_reply(struct node_ipc_call *call, const Vireo__Response *resp)
{
	size_t len = vireo__response__get_packed_size(resp);
	struct qb_ipc_response_header *hdr = malloc(sizeof(*hdr) + len);

	if (hdr) {
		hdr->id = call->id;
		hdr->size = (int32_t)(sizeof(*hdr) + len);
		hdr->error = 0;
		vireo__response__pack(resp, (uint8_t *)(hdr + 1));
		if (qb_ipcs_response_send(call->conn, hdr, (size_t)hdr->size) < 0)
			qb_log(LOG_DEBUG, "an IPC client left before its answer was ready");
		free(hdr);
	} else {
		qb_log(LOG_ERR, "out of memory answering an IPC request");
	}
	qb_ipcs_connection_unref(call->conn);
	free(call);
}

void node_ipc_reply_outcome(struct node_ipc_call *call, Vireo__Outcome outcome, const char *fmt, ...)
{
	Vireo__Response resp = VIREO__RESPONSE__INIT;
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	resp.outcome = outcome;
	resp.message = msg;
	node_ipc_reply(call, &resp);
}

int node_ipc_server_start(qb_loop_t *loop, const char *name, node_ipc_handler handler, void *ctx,
			  struct node_ipc_server **out)
{
	struct qb_ipcs_service_handlers handlers = {
		.connection_accept = on_accept,
		.msg_process = on_message,
		.connection_closed = on_closed,
		.connection_destroyed = on_destroyed,
	};
	struct qb_ipcs_poll_handlers poll = {
		.job_add = job_add,
		.dispatch_add = poll_add,
		.dispatch_mod = poll_mod,
		.dispatch_del = poll_del,
	};
	struct node_ipc_server *srv = calloc(1, sizeof(*srv));
	struct group *grp;
	int rc;

	if (!srv)
		return -ENOMEM;
	the_loop = loop;
	srv->loop = loop;
	srv->handler = handler;
	srv->ctx = ctx;
	grp = getgrnam(NODE_IPC_ADMIN_GROUP);
	srv->admin_gid = grp ? grp->gr_gid : (gid_t)-1;
	if (!grp)
		qb_log(LOG_WARNING, "group %s does not exist: only root may use vireod",
		       NODE_IPC_ADMIN_GROUP);
	srv->svc = qb_ipcs_create(name, 0, QB_IPC_NATIVE, &handlers);
	if (!srv->svc) {
		rc = errno ? -errno : -ENOMEM;
		free(srv);
		return rc;
	}
	qb_ipcs_service_context_set(srv->svc, srv);
	qb_ipcs_poll_handlers_set(srv->svc, &poll);
	if ((rc = qb_ipcs_run(srv->svc)) < 0) {
		qb_log(LOG_ERR, "cannot serve IPC as '%s': %s (is another vireod running in this "
		       "network namespace?)", name, strerror(-rc));
		qb_ipcs_destroy(srv->svc);
		free(srv);
		return rc;
	}
	*out = srv;
	return 0;
}

void node_ipc_server_stop(struct node_ipc_server *srv)
{
	if (!srv)
		return;
	qb_ipcs_destroy(srv->svc);
	free(srv);
}
