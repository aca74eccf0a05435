/* The manager's question "are the disk leases of VM X free?", answered off
 * the main loop: reading a lock on the shared pool may hang as long as the
 * storage does, and the manager (and the watchdog's feed) must not.
 *
 * One check runs at a time, in a thread of its own, over the lease files of
 * the disks (sharedstore/leases.h) of the VM asked about and of every other
 * VM that is fencing; the answers come back through a pipe polled by the
 * loop. A disk is free when neither its lease nor its image is locked: a
 * guest paused on an I/O error (a full pool) has let its lease go, but its
 * QEMU still has the disk open and would write again once resumed.
 * An answer is good for VIREO_LEASE_RECHECK_MS: "held" is looked at again
 * after that, and "free" is only trusted that long too, since the VM's
 * guest could be started again meanwhile. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <qb/qblog.h>

#include "cluster/timeouts.h"
#include "cluster/vm.h"
#include "hypervisor/hv.h"
#include "node/daemon.h"
#include "sharedstore/images.h"
#include "sharedstore/leases.h"

#define LEASE_PATH_MAX 320

/* One VM's disks, checked together. */
struct lease_vm {
	char name[CLUSTER_NAME_MAX + 1];
	uint64_t generation;
	char paths[CLUSTER_VM_MAX_DISKS][LEASE_PATH_MAX];
	size_t n_paths;
	int result;                  /* 1 free, 0 held, -errno */
};

/* A batch: every VM that is fencing when the manager first asks, so that
 * the fences of a host with many VMs are confirmed together. */
struct lease_check {
	char pool[256];
	struct lease_vm *vms;
	size_t n_vms;
	int write_fd;
};

struct lease_answer {
	struct lease_answer *next;
	char name[CLUSTER_NAME_MAX + 1];
	uint64_t generation;
	int result;
	uint64_t at_ms;
};

struct node_leases {
	int pipe[2];
	bool busy;
	uint64_t busy_since_ms;
	bool warned;
	struct lease_answer *answers;
};

static void *check_thread(void *arg)
{
	struct lease_check *c = arg;

	for (size_t v = 0; v < c->n_vms; v++) {
		struct lease_vm *lv = &c->vms[v];

		lv->result = 1;
		for (size_t i = 0; i < lv->n_paths && lv->result == 1; i++) {
			int rc = store_disk_in_use(c->pool, lv->paths[i]);
			lv->result = rc == 1 ? 0 : rc == 0 ? 1 : rc;
		}
	}
	/* The pointer itself goes through the pipe: PIPE_BUF makes it atomic. */
	if (write(c->write_fd, &c, sizeof(c)) != sizeof(c)) {
		free(c->vms);
		free(c);
	}
	return NULL;
}

static struct lease_answer *answer(struct node_leases *l, const char *name, bool create)
{
	struct lease_answer *a;

	for (a = l->answers; a; a = a->next)
		if (strcmp(a->name, name) == 0)
			return a;
	if (!create || !(a = calloc(1, sizeof(*a))))
		return NULL;
	snprintf(a->name, sizeof(a->name), "%s", name);
	a->result = -EAGAIN;
	a->next = l->answers;
	l->answers = a;
	return a;
}

static int32_t answer_ready(int32_t fd, int32_t revents, void *data)
{
	struct node_daemon *d = data;
	struct node_leases *l = d->leases;
	struct lease_check *c;
	struct lease_answer *a;

	(void)revents;
	if (read(fd, &c, sizeof(c)) != sizeof(c))
		return 0;
	l->busy = false;
	for (size_t v = 0; v < c->n_vms; v++) {
		const struct lease_vm *lv = &c->vms[v];

		if (!(a = answer(l, lv->name, true)))
			continue;
		a->generation = lv->generation;
		a->result = lv->result;
		a->at_ms = node_now_mono_ms();
		if (lv->result < 0)
			qb_log(LOG_WARNING, "cannot tell whether the disks of VM %s are in use: %s; "
			       "its fence waits",
			       lv->name, strerror(-lv->result));
		else
			qb_log(LOG_INFO, "disks of VM %s: %s", lv->name,
			       lv->result ? "free (no lease held, no image locked)" :
			       "in use (a lease held or an image locked)");
	}
	free(c->vms);
	free(c);
	if (d->engine)
		cluster_engine_kick(d->engine);
	return 0;
}

static void add_vm(struct node_daemon *d, struct lease_check *c, const Vireo__Vm *vm)
{
	struct lease_vm *lv = &c->vms[c->n_vms++];

	snprintf(lv->name, sizeof(lv->name), "%s", vm->spec->name);
	lv->generation = vm->generation;
	for (size_t i = 0; i < vm->spec->n_disks && i < CLUSTER_VM_MAX_DISKS; i++) {
		const Vireo__VmDisk *disk = vm->spec->disks[i];
		enum store_format f = strcmp(disk->format, "raw") == 0 ? STORE_FMT_RAW : STORE_FMT_QCOW2;

		if (store_image_path(d->store, disk->image, f, lv->paths[lv->n_paths],
				     LEASE_PATH_MAX) == 0)
			lv->n_paths++;
	}
}

static int start_check(struct node_daemon *d, const Vireo__Vm *asked)
{
	struct node_leases *l = d->leases;
	const cluster_state *st = cluster_engine_state(d->engine);
	struct lease_check *c = calloc(1, sizeof(*c));
	pthread_attr_t attr;
	pthread_t t;
	int rc = -ENOMEM;

	if (!c || !(c->vms = calloc(st->n_vms + 1, sizeof(*c->vms))))
		goto fail;
	snprintf(c->pool, sizeof(c->pool), "%s", d->cfg.pool_dir);
	c->write_fd = l->pipe[1];
	add_vm(d, c, asked);
	for (size_t i = 0; i < st->n_vms; i++)
		if (st->vms[i]->state == VIREO__VM_STATE__VM_FENCING && st->vms[i] != asked)
			add_vm(d, c, st->vms[i]);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = -pthread_create(&t, &attr, check_thread, c);
	pthread_attr_destroy(&attr);
	if (rc < 0)
		goto fail;
	l->busy = true;
	l->busy_since_ms = node_now_mono_ms();
	return 0;
fail:
	if (c)
		free(c->vms);
	free(c);
	return rc;
}

int node_leases_free(struct node_daemon *d, const Vireo__Vm *vm)
{
	struct node_leases *l = d->leases;
	struct lease_answer *a;
	uint64_t now = node_now_mono_ms();

	if (!l || !d->store || !d->engine)
		return -EAGAIN;
	a = answer(l, vm->spec->name, false);
	if (a && a->generation == vm->generation && a->result >= 0 &&
	    now - a->at_ms < VIREO_LEASE_RECHECK_MS(d->token_ms))
		return a->result;
	if (l->busy) {
		/* A check stuck this long means the pool hangs: say it once. */
		if (!l->warned && now - l->busy_since_ms > VIREO_POOL_CHECK_MS(d->token_ms)) {
			qb_log(LOG_ERR, "a disk lease check has not returned for %llu ms: the shared "
			       "pool hangs; lost nodes cannot be fenced until it answers",
			       (unsigned long long)(now - l->busy_since_ms));
			l->warned = true;
		}
		return -EAGAIN;
	}
	l->warned = false;
	if (start_check(d, vm) < 0)
		qb_log(LOG_ERR, "cannot start a disk lease check for VM %s", vm->spec->name);
	return -EAGAIN;
}

int node_leases_start(struct node_daemon *d)
{
	struct node_leases *l = calloc(1, sizeof(*l));

	if (!l)
		return -ENOMEM;
	if (pipe2(l->pipe, O_CLOEXEC) < 0) {
		int rc = -errno;
		free(l);
		return rc;
	}
	d->leases = l;
	qb_loop_poll_add(d->loop, QB_LOOP_HIGH, l->pipe[0], POLLIN, d, answer_ready);
	return 0;
}

void node_leases_stop(struct node_daemon *d)
{
	struct node_leases *l = d->leases;

	if (!l)
		return;
	qb_loop_poll_del(d->loop, l->pipe[0]);
	while (l->answers) {
		struct lease_answer *next = l->answers->next;
		free(l->answers);
		l->answers = next;
	}
	/* A check still running writes to a pipe nobody reads; the write
	 * end stays open so it fails nowhere worse than EPIPE at exit. */
	close(l->pipe[0]);
	free(l);
	d->leases = NULL;
}
