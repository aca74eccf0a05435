/* vireo vm create's checks and disks: what vireod verifies before it
 * changes anything (boot files, the pool, the images), and the owned disks
 * it creates (and deletes again when the create fails). */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <qb/qblog.h>

#include "cluster/group.h"
#include "cluster/vm.h"
#include "node/daemon.h"
#include "node/vm_requests.h"
#include "sharedstore/images.h"

void node_vm_free_images(char **images, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(images[i]);
	free(images);
}

int node_vm_new_uuid(char *out, size_t len)
{
	FILE *f = fopen("/proc/sys/kernel/random/uuid", "re");
	int rc = -EIO;

	if (!f)
		return -errno;
	if (fgets(out, (int)len, f) && strlen(out) >= 36) {
		out[36] = '\0';
		for (char *p = out; *p; p++)
			if (*p >= 'A' && *p <= 'F')
				*p = (char)(*p - 'A' + 'a');
		rc = 0;
	}
	fclose(f);
	return rc;
}

/* A kernel or initrd must be a readable file here: every node is expected
 * to have the same files (the guest starts wherever the manager places it). */
bool node_vm_boot_file_ok(struct node_daemon *d, struct node_ipc_call *call, const char *what,
			 const char *path)
{
	struct stat sb;

	if (path[0] != '/') {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_INVALID,
				       "the %s must be an absolute path, not %s", what, path);
		return false;
	}
	if (stat(path, &sb) < 0) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_INVALID,
				       errno == ENOENT ? "%s file %s does not exist on node %s" :
				       "%s file %s cannot be read on node %s", what, path,
				       d->cfg.node_name);
		return false;
	}
	if (!S_ISREG(sb.st_mode) || access(path, R_OK) < 0) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_INVALID,
				       "%s file %s on node %s is not a readable regular file", what,
				       path, d->cfg.node_name);
		return false;
	}
	return true;
}

static const Vireo__Vm *image_user(const cluster_state *cs, const char *image)
{
	for (size_t i = 0; i < cs->n_vms; i++)
		for (size_t j = 0; j < cs->vms[i]->spec->n_disks; j++)
			if (strcmp(cs->vms[i]->spec->disks[j]->image, image) == 0)
				return cs->vms[i];
	return NULL;
}

/* The pool must be there for a VM with disks. */
bool node_vm_store_ready(struct node_daemon *d, struct node_ipc_call *call)
{
	const char *why = "";

	if (!d->store) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_FAILED,
				       "vireod could not open the shared pool at %s on this node; see "
				       "its log, or create the VM from another node", d->cfg.pool_dir);
		return false;
	}
	if (!node_pool_ok(d, &why)) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_FAILED,
				       "the shared pool at %s is not usable on this node: %s; fix it "
				       "or create the VM from another node", d->cfg.pool_dir, why);
		return false;
	}
	return true;
}

/* The boot image becomes disk 1, not owned: it outlives the VM. */
bool node_vm_fill_boot_disk(struct node_daemon *d, struct node_ipc_call *call,
			   const cluster_state *cs, Vireo__VmDisk *disk, const char *image)
{
	struct store_image_info info;
	const Vireo__Vm *user;
	int rc;

	if ((rc = store_image_info(d->store, image, &info)) < 0) {
		node_ipc_reply_outcome(call, rc == -ENOENT || rc == -EINVAL ?
				       VIREO__OUTCOME__OUTCOME_INVALID : VIREO__OUTCOME__OUTCOME_FAILED,
				       "%s", store_error(d->store));
		return false;
	}
	if ((user = image_user(cs, image))) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_INVALID,
				       "image %s is a disk of VM %s already; an image belongs to one VM",
				       image, user->spec->name);
		return false;
	}
	disk->size_mib = info.virtual_bytes >> 20;
	if (!disk->size_mib)
		disk->size_mib = 1;
	disk->format = (char *)store_format_name(info.format);
	return true;
}

/* The VM's own disks must not exist yet: vireod never adopts or deletes
 * an image it did not make for this VM. */
bool node_vm_owned_disks_free(struct node_daemon *d, struct node_ipc_call *call,
			     const Vireo__VmSpec *spec)
{
	struct store_image_info info;
	char err[256];
	int rc;

	for (size_t i = 0; i < spec->n_disks; i++) {
		const Vireo__VmDisk *disk = spec->disks[i];

		if (!disk->owned)
			continue;
		uint64_t bytes = disk->size_mib > (UINT64_MAX >> 20) ? UINT64_MAX : disk->size_mib << 20;

		if (store_image_size_check(bytes, err, sizeof(err)) < 0) {
			node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_INVALID, "disk %zu: %s",
					       i + 1, err);
			return false;
		}
		rc = store_image_info(d->store, disk->image, &info);
		if (rc == 0) {
			node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_INVALID,
					       "an image named %s exists already in the shared pool; "
					       "a VM's disks are named NAME-diskN, so choose another "
					       "VM name or remove that image", disk->image);
			return false;
		}
		if (rc != -ENOENT) {
			node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_FAILED, "%s",
					       store_error(d->store));
			return false;
		}
	}
	return true;
}

/* Creates the owned disks; on failure deletes those made so far and
 * answers. The names made are handed to the waiter. */
bool node_vm_make_disks(struct node_daemon *d, struct node_ipc_call *call, const Vireo__VmSpec *spec,
		       char ***images, size_t *n_images)
{
	char **made = calloc(spec->n_disks + 1, sizeof(*made));
	size_t n = 0;

	if (!made) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_FAILED, "vireod is out of memory");
		return false;
	}
	for (size_t i = 0; i < spec->n_disks; i++) {
		const Vireo__VmDisk *disk = spec->disks[i];
		enum store_format fmt;
		int rc;

		if (!disk->owned)
			continue;
		store_format_parse(disk->format, &fmt);
		if (!(made[n] = strdup(disk->image))) {
			node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_FAILED,
					       "vireod is out of memory");
			goto fail;
		}
		rc = store_image_create(d->store, disk->image, disk->size_mib << 20, fmt, 0);
		if (rc < 0) {
			node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_FAILED,
					       "cannot create disk image %s: %s; nothing was changed",
					       disk->image, store_error(d->store));
			free(made[n]);
			made[n] = NULL;
			goto fail;
		}
		n++;
	}
	*images = made;
	*n_images = n;
	return true;
fail:
	for (size_t i = 0; i < n; i++)
		if (store_image_delete(d->store, made[i]) < 0)
			qb_log(LOG_WARNING, "cannot delete image %s after a failed create: %s",
			       made[i], store_error(d->store));
	node_vm_free_images(made, n);
	return false;
}

/* Where the VM may go and what it belongs to: --prefer names become node
 * ids in spec->preferred_nodes (ids has room for NODE_VM_MAX_PREFERRED),
 * --group must exist before the VM is made, --max-relocations is for HA
 * VMs and bounded. */
bool node_vm_fill_placement(struct node_ipc_call *call, const cluster_state *cs,
			    const Vireo__VmCreateRequest *r, Vireo__VmSpec *spec, uint32_t *ids)
{
	if (r->n_prefer > NODE_VM_MAX_PREFERRED) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_INVALID,
				       "a VM has at most %u preferred nodes", NODE_VM_MAX_PREFERRED);
		return false;
	}
	if (r->n_prefer) {
		for (size_t i = 0; i < r->n_prefer; i++) {
			const Vireo__NodeInfo *n = cluster_state_node_by_name(cs, r->prefer[i]);

			if (!n) {
				node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_INVALID,
						       "--prefer names node %s, which is not in this "
						       "cluster; see vireo node list", r->prefer[i]);
				return false;
			}
			ids[i] = n->id;
		}
		spec->preferred_nodes = ids;
		spec->n_preferred_nodes = r->n_prefer;
	}
	for (size_t i = 0; i < spec->n_preferred_nodes; i++) {
		const Vireo__NodeInfo *n = cluster_state_node(cs, spec->preferred_nodes[i]);

		if (!n) {
			node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_INVALID,
					       "preferred node id %u is not in this cluster; see vireo "
					       "node list", spec->preferred_nodes[i]);
			return false;
		}
		for (size_t j = 0; j < i; j++)
			if (spec->preferred_nodes[j] == n->id) {
				node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_INVALID,
						       "--prefer names node %s twice; name each node "
						       "once, in the order of preference", n->name);
				return false;
			}
	}
	if (spec->n_preferred_nodes && spec->pinned_node) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_INVALID,
				       "a VM pinned to a node (--node) runs only there; --prefer does "
				       "not go with --node");
		return false;
	}
	if (r->group[0] && !cluster_group_find(cs, r->group)) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_INVALID,
				       "no group named %s; create it first (vireo group create %s "
				       "--affinity|--anti-affinity) or see vireo group list",
				       r->group, r->group);
		return false;
	}
	if (spec->max_relocations && !spec->ha) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_INVALID,
				       "--max-relocations bounds how often an HA VM is restarted on "
				       "another node after a failure; it goes with --ha");
		return false;
	}
	if (spec->max_relocations > NODE_VM_MAX_RELOCATIONS) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_INVALID,
				       "--max-relocations takes 1 to %u", NODE_VM_MAX_RELOCATIONS);
		return false;
	}
	return true;
}
