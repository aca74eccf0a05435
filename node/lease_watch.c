/* The manager's question "are the disk leases of VM X free?", answered off
 * the main loop: reading a lock on the shared pool may hang as long as the
 * storage does, and the manager (and the watchdog's feed) must not.
 *
 * One check runs at a time, in a thread of its own, over the lease files of
 * the VM's disks (sharedstore/leases.h); its answer comes back through a
 * pipe polled by the loop. An answer is good for VIREO_LEASE_RECHECK_MS:
 * "held" is looked at again after that, and "free" is only trusted that
 * long too, since the VM's guest could be started again meanwhile. */
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

struct lease_check {
	char name[CLUSTER_NAME_MAX + 1];
	uint64_t generation;
	char pool[256];
	char paths[CLUSTER_VM_MAX_DISKS][LEASE_PATH_MAX];
	size_t n_paths;
	int result;                  /* 1 free, 0 held, -errno */
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

	c->result = 1;
	for (size_t i = 0; i < c->n_paths && c->result == 1; i++) {
		int rc = store_lease_held(c->pool, c->paths[i]);
		c->result = rc == 1 ? 0 : rc == 0 ? 1 : rc;
	}
	/* The pointer itself goes through the pipe: PIPE_BUF makes it atomic. */
	if (write(c->write_fd, &c, sizeof(c)) != sizeof(c))
		free(c);
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
	if ((a = answer(l, c->name, true))) {
		a->generation = c->generation;
		a->result = c->result;
		a->at_ms = node_now_mono_ms();
		if (c->result < 0)
			qb_log(LOG_WARNING, "cannot read the disk leases of VM %s: %s; its fence waits",
			       c->name, strerror(-c->result));
		else
			qb_log(LOG_INFO, "disk leases of VM %s: %s", c->name, c->result ? "free" : "held");
	}
	free(c);
	if (d->engine)
		cluster_engine_kick(d->engine);
	return 0;
}

static int start_check(struct node_daemon *d, const Vireo__Vm *vm)
{
	struct node_leases *l = d->leases;
	struct lease_check *c = calloc(1, sizeof(*c));
	pthread_attr_t attr;
	pthread_t t;
	int rc;

	if (!c)
		return -ENOMEM;
	snprintf(c->name, sizeof(c->name), "%s", vm->spec->name);
	snprintf(c->pool, sizeof(c->pool), "%s", d->cfg.pool_dir);
	c->generation = vm->generation;
	c->write_fd = l->pipe[1];
	for (size_t i = 0; i < vm->spec->n_disks && i < CLUSTER_VM_MAX_DISKS; i++) {
		const Vireo__VmDisk *disk = vm->spec->disks[i];
		enum store_format f = strcmp(disk->format, "raw") == 0 ? STORE_FMT_RAW : STORE_FMT_QCOW2;

		if (store_image_path(d->store, disk->image, f, c->paths[c->n_paths],
				     LEASE_PATH_MAX) == 0)
			c->n_paths++;
	}
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	rc = -pthread_create(&t, &attr, check_thread, c);
	pthread_attr_destroy(&attr);
	if (rc < 0) {
		free(c);
		return rc;
	}
	l->busy = true;
	l->busy_since_ms = node_now_mono_ms();
	return 0;
}

int node_leases_free(struct node_daemon *d, const Vireo__Vm *vm)
{
	struct node_leases *l = d->leases;
	struct lease_answer *a;
	uint64_t now = node_now_mono_ms();

	if (!l || !d->store)
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
