/* vireo vm list, show and console: answered at once from this node's copy
 * of the state and from the shared pool (and the console log's removal by
 * vm delete --purge). */
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

/* The guest's serial log on the shared pool, which every node can read. */
void node_vm_handle_console(struct node_daemon *d, struct node_ipc_call *call,
			   const Vireo__VmConsoleRequest *c)
{
	Vireo__Response resp = VIREO__RESPONSE__INIT;
	Vireo__VmConsoleReply cr = VIREO__VM_CONSOLE_REPLY__INIT;
	uint32_t max = c->max_bytes && c->max_bytes < NODE_VM_CONSOLE_MAX_BYTES ? c->max_bytes :
		       NODE_VM_CONSOLE_MAX_BYTES;
	uint8_t *buf = NULL;
	char path[512];
	struct stat sb;
	uint64_t start, len = 0;
	int fd = -1;

	if (!d->engine) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_NOT_QUORATE, NODE_NEVER_CONNECTED_MSG);
		return;
	}
	if (!cluster_vm_find(cluster_engine_state(d->engine), c->name)) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_INVALID,
				       "no VM named %s; see vireo vm list", c->name);
		return;
	}
	snprintf(path, sizeof(path), "%s/%s.log", d->cfg.console_dir, c->name);
	resp.body_case = VIREO__RESPONSE__BODY_VM_CONSOLE;
	resp.vm_console = &cr;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 && errno == ENOENT) {
		node_ipc_reply(call, &resp);     /* never started: an empty log */
		return;
	}
	if (fd < 0 || fstat(fd, &sb) < 0) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_FAILED,
				       "cannot read the console log %s on this node: %s", path,
				       strerror(errno));
		goto cleanup;
	}
	cr.size = (uint64_t)sb.st_size;
	if (c->offset >= 0)
		start = (uint64_t)c->offset < cr.size ? (uint64_t)c->offset : cr.size;
	else if (c->offset > INT64_MIN && (uint64_t)-c->offset < cr.size)
		start = cr.size - (uint64_t)-c->offset;
	else
		start = 0;
	len = cr.size - start < max ? cr.size - start : max;
	if (!(buf = malloc(len ? len : 1))) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_FAILED, "vireod is out of memory");
		goto cleanup;
	}
	for (uint64_t got = 0; got < len;) {
		ssize_t r = pread(fd, buf + got, len - got, (off_t)(start + got));

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_FAILED,
					       "cannot read the console log %s on this node: %s", path,
					       strerror(errno));
			goto cleanup;
		}
		if (r == 0) {
			len = got;       /* truncated while we read */
			break;
		}
		got += (uint64_t)r;
	}
	cr.data.data = buf;
	cr.data.len = len;
	cr.offset = start;
	node_ipc_reply(call, &resp);
cleanup:
	free(buf);
	if (fd >= 0)
		close(fd);
}

int node_vm_remove_console(struct node_daemon *d, const char *name)
{
	char path[512];

	if ((size_t)snprintf(path, sizeof(path), "%s/%s.log", d->cfg.console_dir, name) >=
	    sizeof(path))
		return -ENAMETOOLONG;
	if (unlink(path) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}
