/* vireo vm create's checks: what vireod verifies before it changes
 * anything (boot files, the pool's state, the disks, the placement). The
 * disks themselves are made in a pool worker (vm_disks.c). */
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

/* The boot image becomes disk 1, not owned: it outlives the VM, and it
 * belongs to one VM. The owned disks' sizes must be ones qemu-img makes.
 * What the pool holds is read in a worker (vm_disks.c). */
bool node_vm_disks_fit(struct node_ipc_call *call, const cluster_state *cs,
		       const Vireo__VmSpec *spec)
{
	const Vireo__Vm *user;
	char err[256];

	if (spec->boot_disk[0] && (user = image_user(cs, spec->boot_disk))) {
		node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_INVALID,
				       "image %s is a disk of VM %s already; an image belongs to one VM",
				       spec->boot_disk, user->spec->name);
		return false;
	}
	for (size_t i = 0; i < spec->n_disks; i++) {
		const Vireo__VmDisk *disk = spec->disks[i];
		uint64_t bytes;

		if (!disk->owned)
			continue;
		bytes = disk->size_mib > (UINT64_MAX >> 20) ? UINT64_MAX : disk->size_mib << 20;
		if (store_image_size_check(bytes, err, sizeof(err)) < 0) {
			node_ipc_reply_outcome(call, VIREO__OUTCOME__OUTCOME_INVALID, "disk %zu: %s",
					       i + 1, err);
			return false;
		}
	}
	return true;
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
