/* vireo vm list, show and console: answered from this node's copy of the
 * state, the console from the shared pool (in a pool worker). */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <qb/qblog.h>

#include "cluster/vm.h"
#include "node/daemon.h"
#include "node/pool_io.h"
#include "node/vm_requests.h"
#include "sharedstore/images.h"

void node_vm_handle_list(struct node_daemon *d, struct node_ipc_call *call, const char *name)
{
	Vireo__Response resp = VIREO__RESPONSE__INIT;
	Vireo__VmListReply lr = VIREO__VM_LIST_REPLY__INIT;
	const cluster_state *cs;
	Vireo__Vm *vm;

	if (!d->engine) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_NOT_QUORATE, NODE_NEVER_CONNECTED_MSG);
		return;
	}
	cs = cluster_engine_state(d->engine);
	if (name[0]) {
		if (!(vm = cluster_vm_find(cs, name))) {
			node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_INVALID,
					       "no VM named %s; see vireo vm list", name);
			return;
		}
		lr.vms = &vm;
		lr.n_vms = 1;
	} else {
		lr.vms = cs->vms;
		lr.n_vms = cs->n_vms;
	}
	lr.nodes = cs->nodes;
	lr.n_nodes = cs->n_nodes;
	resp.body_case = VIREO__RESPONSE__BODY_VM_LIST;
	resp.vm_list = &lr;
	node_ipc_reply(call, &resp);
}

/* A read of a guest's serial log, made in a pool worker. */
struct console_read {
	struct node_ipc_call *call;
	char path[512];
	int64_t offset;            /* the request's: < 0 counts from the end */
	uint32_t max;
	/* Out. */
	int rc;                    /* -errno: open, fstat or pread failed */
	bool missing;              /* no log: never started */
	uint64_t size, start;
	uint8_t *buf;
	size_t len;
};

static void console_work(struct store *st, void *arg)
{
	struct console_read *c = arg;
	struct stat sb;
	int fd;

	(void)st;
	if ((fd = open(c->path, O_RDONLY | O_CLOEXEC)) < 0) {
		c->missing = errno == ENOENT;
		c->rc = -errno;
		return;
	}
	if (fstat(fd, &sb) < 0) {
		c->rc = -errno;
		goto out;
	}
	c->size = (uint64_t)sb.st_size;
	if (c->offset >= 0)
		c->start = (uint64_t)c->offset < c->size ? (uint64_t)c->offset : c->size;
	else if (c->offset > INT64_MIN && (uint64_t)-c->offset < c->size)
		c->start = c->size - (uint64_t)-c->offset;
	else
		c->start = 0;
	c->len = c->size - c->start < c->max ? c->size - c->start : c->max;
	if (!(c->buf = malloc(c->len ? c->len : 1))) {
		c->rc = -ENOMEM;
		goto out;
	}
	for (size_t got = 0; got < c->len;) {
		ssize_t r = pread(fd, c->buf + got, c->len - got, (off_t)(c->start + got));

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			c->rc = -errno;
			goto out;
		}
		if (r == 0) {
			c->len = got;       /* truncated while we read */
			break;
		}
		got += (size_t)r;
	}
out:
	close(fd);
}

static void console_done(struct node_daemon *d, void *arg, int rc)
{
	struct console_read *c = arg;
	Vireo__Response resp = VIREO__RESPONSE__INIT;
	Vireo__VmConsoleReply cr = VIREO__VM_CONSOLE_REPLY__INIT;

	(void)d;
	resp.body_case = VIREO__RESPONSE__BODY_VM_CONSOLE;
	resp.vm_console = &cr;
	if (rc < 0)
		node_ipc_reply_outcome(c->call, VIREO__OUTCOME__OUTCOME_FAILED, "vireod is stopping");
	else if (c->missing)
		node_ipc_reply(c->call, &resp);     /* never started: an empty log */
	else if (c->rc < 0)
		node_ipc_reply_outcome(c->call, VIREO__OUTCOME__OUTCOME_FAILED,
				       "cannot read the console log %s on this node: %s", c->path,
				       strerror(-c->rc));
	else {
		cr.size = c->size;
		cr.offset = c->start;
		cr.data.data = c->buf;
		cr.data.len = c->len;
		node_ipc_reply(c->call, &resp);
	}
	free(c->buf);
	free(c);
}

/* The guest's serial log on the shared pool, which every node can read;
 * read in a pool worker, beside the pool's qemu-img runs. */
void node_vm_handle_console(struct node_daemon *d, struct node_ipc_call *call,
			   const Vireo__VmConsoleRequest *req)
{
	struct console_read *c;
	int rc;

	if (!d->engine) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_NOT_QUORATE, NODE_NEVER_CONNECTED_MSG);
		return;
	}
	if (!cluster_vm_find(cluster_engine_state(d->engine), req->name)) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_INVALID,
				       "no VM named %s; see vireo vm list", req->name);
		return;
	}
	if (!(c = calloc(1, sizeof(*c)))) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_FAILED, "vireod is out of memory");
		return;
	}
	c->call = call;
	c->offset = req->offset;
	c->max = req->max_bytes && req->max_bytes < NODE_VM_CONSOLE_MAX_BYTES ? req->max_bytes :
		 NODE_VM_CONSOLE_MAX_BYTES;
	snprintf(c->path, sizeof(c->path), "%s/%s.log", d->cfg.console_dir, req->name);
	if ((rc = node_pool_io_submit(d, NODE_POOL_FILES, "reading a console log", console_work,
				      console_done, c)) < 0) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_FAILED, "cannot read the console "
				       "log: %s", rc == -ENOMEM ? "vireod is out of memory" :
				       "vireod is stopping");
		free(c);
	}
}
