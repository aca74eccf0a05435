/* A VM's disk images in the shared pool, made and deleted in a pool worker
 * (node/pool_io.h): qemu-img may take minutes on a slow pool, and the main
 * loop must not wait for it.
 *
 * vm create: the boot image's size and format are read, the VM's own disks
 * are checked not to exist and are made; what happened comes back to the
 * loop, which checks the request again against the state as it is then
 * (another request may have taken the name meanwhile) and proposes, or
 * deletes what was made. vm delete --purge and a refused create delete
 * images the same way. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <qb/qblog.h>

#include "cluster/vm.h"
#include "node/daemon.h"
#include "node/pool_io.h"
#include "node/vm_requests.h"
#include "sharedstore/images.h"

#define ERR_MAX 640

struct owned_disk {
	char image[STORE_IMAGE_NAME_MAX + 1];
	uint64_t bytes;
	enum store_format format;
};

struct prepare_job {
	/* In. */
	char boot[STORE_IMAGE_NAME_MAX + 1];    /* "" without a boot disk */
	struct owned_disk owned[CLUSTER_VM_MAX_DISKS];
	size_t n_owned;
	/* Out. */
	Vireo__Outcome outcome;                 /* OK, or why nothing was made */
	char message[ERR_MAX];
	uint64_t boot_mib;
	enum store_format boot_format;
	size_t n_made;                          /* owned[0..n_made) exist now */
	/* The loop's. */
	struct node_ipc_call *call;
	Vireo__VmCreateRequest *request;        /* a copy: the IPC one is gone */
	node_vm_disks_ready_fn ready;
};

struct delete_job {
	char vm[CLUSTER_NAME_MAX + 1];
	char **images;
	size_t n_images;
	int *rc;
	char (*error)[ERR_MAX];
	char console[512];                      /* a log to remove too, or "" */
	int console_rc;
	struct node_ipc_call *call;             /* answered with the result, or NULL */
	const char *why;                        /* for the log when call is NULL */
};

static void fail(struct prepare_job *j, Vireo__Outcome outcome, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void fail(struct prepare_job *j, Vireo__Outcome outcome, const char *fmt, ...)
{
	va_list ap;

	j->outcome = outcome;
	va_start(ap, fmt);
	vsnprintf(j->message, sizeof(j->message), fmt, ap);
	va_end(ap);
}

/* In the worker: what node_vm_prepare_disks promises. */
static void prepare_work(struct store *st, void *arg)
{
	struct prepare_job *j = arg;
	struct store_image_info info;
	int rc;

	j->outcome = VIREO__OUTCOME__OUTCOME_OK;
	if (!st) {
		fail(j, VIREO__OUTCOME__OUTCOME_FAILED, "%s", "vireod has no handle on the shared pool");
		return;
	}
	if (j->boot[0]) {
		if ((rc = store_image_info(st, j->boot, &info)) < 0) {
			fail(j, rc == -ENOENT || rc == -EINVAL ? VIREO__OUTCOME__OUTCOME_INVALID :
			     VIREO__OUTCOME__OUTCOME_FAILED, "%s", store_error(st));
			return;
		}
		j->boot_mib = info.virtual_bytes >> 20 ? info.virtual_bytes >> 20 : 1;
		j->boot_format = info.format;
	}
	/* vireod never adopts or deletes an image it did not make for this VM. */
	for (size_t i = 0; i < j->n_owned; i++) {
		rc = store_image_info(st, j->owned[i].image, &info);
		if (rc == 0) {
			fail(j, VIREO__OUTCOME__OUTCOME_INVALID, "an image named %s exists already in "
			     "the shared pool; a VM's disks are named NAME-diskN, so choose another VM "
			     "name or remove that image", j->owned[i].image);
			return;
		}
		if (rc != -ENOENT) {
			fail(j, VIREO__OUTCOME__OUTCOME_FAILED, "%s", store_error(st));
			return;
		}
	}
	for (; j->n_made < j->n_owned; j->n_made++) {
		const struct owned_disk *o = &j->owned[j->n_made];

		if (store_image_create(st, o->image, o->bytes, o->format, 0) == 0)
			continue;
		j->outcome = VIREO__OUTCOME__OUTCOME_FAILED;
		snprintf(j->message, sizeof(j->message), "cannot create disk image %s: %s; nothing "
			 "was changed", o->image, store_error(st));
		while (j->n_made > 0) {
			o = &j->owned[--j->n_made];
			if (store_image_delete(st, o->image) < 0)
				qb_log(LOG_WARNING, "cannot delete image %s after a failed create: %s",
				       o->image, store_error(st));
		}
		return;
	}
}

static void prepare_free(struct prepare_job *j)
{
	vireo__vm_create_request__free_unpacked(j->request, NULL);
	free(j);
}

static char **made_names(const struct prepare_job *j)
{
	char **names = calloc(j->n_made + 1, sizeof(*names));

	for (size_t i = 0; names && i < j->n_made; i++)
		if (!(names[i] = strdup(j->owned[i].image))) {
			node_vm_free_images(names, i);
			return NULL;
		}
	return names;
}

static void prepare_done(struct node_daemon *d, void *arg, int rc)
{
	struct prepare_job *j = arg;
	struct node_vm_disks dk = { .boot_mib = j->boot_mib };
	char **names;

	if (rc < 0) {
		node_ipc_reply_outcome(j->call, VIREO__OUTCOME__OUTCOME_FAILED, "vireod is stopping; "
				       "the VM was not created");
		goto out;
	}
	if (j->outcome != VIREO__OUTCOME__OUTCOME_OK) {
		node_ipc_reply_outcome(j->call, j->outcome, "%s", j->message);
		goto out;
	}
	if (!(names = made_names(j))) {
		node_ipc_reply_outcome(j->call, VIREO__OUTCOME__OUTCOME_FAILED, "vireod is out of memory");
		/* Out of memory for a delete job too: say what is left. */
		for (size_t i = 0; i < j->n_made; i++)
			qb_log(LOG_WARNING, "image %s was made for a VM that was not created; delete it "
			       "with vireo-store-tool", j->owned[i].image);
		goto out;
	}
	dk.images = names;
	dk.n_images = j->n_made;
	dk.boot_format = store_format_name(j->boot_format);
	j->ready(d, j->call, j->request, &dk);
out:
	prepare_free(j);
}

int node_vm_prepare_disks(struct node_daemon *d, struct node_ipc_call *call,
			  const Vireo__VmCreateRequest *r, const Vireo__VmSpec *spec,
			  node_vm_disks_ready_fn ready)
{
	struct prepare_job *j = calloc(1, sizeof(*j));
	size_t len = vireo__vm_create_request__get_packed_size(r);
	uint8_t *buf = malloc(len ? len : 1);
	int rc = -ENOMEM;

	if (!j || !buf)
		goto fail;
	vireo__vm_create_request__pack(r, buf);
	if (!(j->request = vireo__vm_create_request__unpack(NULL, len, buf)))
		goto fail;
	snprintf(j->boot, sizeof(j->boot), "%s", spec->boot_disk);
	for (size_t i = 0; i < spec->n_disks; i++) {
		const Vireo__VmDisk *disk = spec->disks[i];
		struct owned_disk *o = &j->owned[j->n_owned];

		if (!disk->owned)
			continue;
		snprintf(o->image, sizeof(o->image), "%s", disk->image);
		o->bytes = disk->size_mib << 20;
		store_format_parse(disk->format, &o->format);
		j->n_owned++;
	}
	j->call = call;
	j->ready = ready;
	if ((rc = node_pool_io_submit(d, NODE_POOL_STORE, "making a VM's disks", prepare_work,
				      prepare_done, j)) < 0)
		goto fail;
	free(buf);
	return 0;
fail:
	free(buf);
	if (j && j->request)
		vireo__vm_create_request__free_unpacked(j->request, NULL);
	free(j);
	node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_FAILED, "cannot make the VM's disks: %s",
			       rc == -ENOMEM ? "vireod is out of memory" : "vireod is stopping");
	return rc;
}

/* ---------------------------------------------------------------- delete */

static void delete_work(struct store *st, void *arg)
{
	struct delete_job *j = arg;

	for (size_t i = 0; i < j->n_images; i++) {
		j->rc[i] = st ? store_image_delete(st, j->images[i]) : -ENODEV;
		if (j->rc[i] < 0)
			snprintf(j->error[i], ERR_MAX, "%s", st ? store_error(st) :
				 "vireod has no handle on the shared pool");
	}
	if (j->console[0] && unlink(j->console) < 0 && errno != ENOENT)
		j->console_rc = -errno;
}

static void delete_free(struct delete_job *j)
{
	node_vm_free_images(j->images, j->n_images);
	free(j->rc);
	free(j->error);
	free(j);
}

/* The answer of vm delete: which images remain, if any. */
static void reply_deleted(struct node_daemon *d, struct delete_job *j)
{
	char kept[256] = "", msg[512];
	size_t len = 0, failed = 0;

	for (size_t i = 0; i < j->n_images; i++) {
		if (j->rc[i] == 0)
			continue;
		if (len < sizeof(kept))
			len += (size_t)snprintf(kept + len, sizeof(kept) - len, "%s%s (%s)",
						failed ? ", " : "", j->images[i], j->error[i]);
		failed++;
	}
	if (failed)
		snprintf(msg, sizeof(msg), "VM %s is deleted, but %zu of its disk images remain in "
			 "the pool: %s", j->vm, failed, kept);
	else
		snprintf(msg, sizeof(msg), "VM %s is deleted", j->vm);
	node_vm_reply(d, j->call, VIREO__OUTCOME__OUTCOME_OK, NULL, msg);
}

static void delete_done(struct node_daemon *d, void *arg, int rc)
{
	struct delete_job *j = arg;

	for (size_t i = 0; i < j->n_images; i++) {
		if (rc < 0) {
			j->rc[i] = rc;
			snprintf(j->error[i], ERR_MAX, "vireod stopped before it deleted it");
		}
		if (j->rc[i] < 0)
			qb_log(LOG_WARNING, "VM %s: image %s (%s) was not deleted: %s", j->vm,
			       j->images[i], j->why, j->error[i]);
	}
	if (j->console_rc < 0)
		qb_log(LOG_WARNING, "VM %s deleted, but not its console log %s: %s", j->vm,
		       j->console, strerror(-j->console_rc));
	if (j->call)
		reply_deleted(d, j);
	delete_free(j);
}

int node_vm_delete_images(struct node_daemon *d, const char *vm, char **images, size_t n,
			  bool console, struct node_ipc_call *call, const char *why)
{
	struct delete_job *j = calloc(1, sizeof(*j));
	int rc = -ENOMEM;

	if (!j)
		goto fail;
	snprintf(j->vm, sizeof(j->vm), "%s", vm);
	j->images = images;
	j->n_images = n;
	images = NULL;
	j->call = call;
	j->why = why;
	if (!(j->rc = calloc(n + 1, sizeof(*j->rc))) || !(j->error = calloc(n + 1, ERR_MAX)))
		goto fail;
	if (console && (size_t)snprintf(j->console, sizeof(j->console), "%s/%s.log",
					d->cfg.console_dir, vm) >= sizeof(j->console))
		j->console[0] = '\0';
	if ((rc = node_pool_io_submit(d, NODE_POOL_STORE, "deleting a VM's disks", delete_work,
				      delete_done, j)) < 0)
		goto fail;
	return 0;
fail:
	if (j) {
		for (size_t i = 0; i < j->n_images; i++)
			qb_log(LOG_WARNING, "VM %s: image %s (%s) was not deleted: %s", vm, j->images[i],
			       why, rc == -ENOMEM ? "vireod is out of memory" : "vireod is stopping");
		if (call)
			node_vm_reply(d, call, VIREO__OUTCOME__OUTCOME_OK, NULL, "the VM is deleted, "
				      "but vireod could not delete its disk images; see its log");
		delete_free(j);
	} else {
		node_vm_free_images(images, n);
		if (call)
			node_vm_reply(d, call, VIREO__OUTCOME__OUTCOME_OK, NULL, "the VM is deleted, "
				      "but vireod ran out of memory and did not delete its disk images");
	}
	return rc;
}
