/* Inside vireod's VM requests: vm_requests.c (create, actions, waiters)
 * uses the create checks of vm_create.c and the reads of vm_reads.c. Every
 * function that returns false (or < 0 with a call) has answered the call. */
#ifndef VIREO_NODE_VM_REQUESTS_H
#define VIREO_NODE_VM_REQUESTS_H

#include <stdbool.h>
#include <stddef.h>
#include "node/daemon.h"

#define NODE_VM_CONSOLE_MAX_BYTES (64u * 1024u)

/* vm_create.c */
int node_vm_new_uuid(char *out, size_t len);
/* A kernel or initrd must be a readable regular file on this node. */
bool node_vm_boot_file_ok(struct node_daemon *d, struct node_ipc_call *call, const char *what,
			  const char *path);
/* The pool is open and its last check passed. */
bool node_vm_store_ready(struct node_daemon *d, struct node_ipc_call *call);
/* What can be checked of the disks without the pool: the boot image is no
 * other VM's disk, the owned disks' sizes are valid. */
bool node_vm_disks_fit(struct node_ipc_call *call, const cluster_state *cs,
		       const Vireo__VmSpec *spec);
void node_vm_free_images(char **images, size_t n);

/* vm_disks.c: the pool's part of create and delete, in a pool worker. */
struct node_vm_disks {
	char **images;              /* the owned disks made; ready() takes them */
	size_t n_images;
	uint64_t boot_mib;          /* the boot disk's size and format, read from the pool */
	const char *boot_format;
};
/* Runs on the loop once the disks are made; r is a copy of the request,
 * valid during the call. Must propose, or delete dk->images again. */
typedef void (*node_vm_disks_ready_fn)(struct node_daemon *d, struct node_ipc_call *call,
				       const Vireo__VmCreateRequest *r, struct node_vm_disks *dk);
/* Reads the boot image, checks that spec's owned disks do not exist yet,
 * makes them (deleting them again if one fails), then calls ready; or
 * answers the call with why not. 0, or < 0 (answered). */
int node_vm_prepare_disks(struct node_daemon *d, struct node_ipc_call *call,
			  const Vireo__VmCreateRequest *r, const Vireo__VmSpec *spec,
			  node_vm_disks_ready_fn ready);
/* Deletes images (taking them) and, with console, vm's console log. With a
 * call, answers it as vm delete --purge does; without, logs what failed
 * with why ("made for the VM, which the cluster refused"). 0 or < 0. */
int node_vm_delete_images(struct node_daemon *d, const char *vm, char **images, size_t n,
			  bool console, struct node_ipc_call *call, const char *why);
/* --prefer (names to ids in spec), --group (must exist), --max-relocations. */
#define NODE_VM_MAX_PREFERRED 32u
#define NODE_VM_MAX_RELOCATIONS 100u
bool node_vm_fill_placement(struct node_ipc_call *call, const cluster_state *cs,
			    const Vireo__VmCreateRequest *r, Vireo__VmSpec *spec, uint32_t *ids);

/* vm_reads.c */
void node_vm_handle_list(struct node_daemon *d, struct node_ipc_call *call, const char *name);
void node_vm_handle_console(struct node_daemon *d, struct node_ipc_call *call,
			    const Vireo__VmConsoleRequest *c);

/* vm_requests.c, for the other request files: proposes op and answers
 * with the VM once it is applied here (or refused). */
void node_vm_propose_and_reply(struct node_daemon *d, struct node_ipc_call *call, const char *name,
			       Vireo__Op *op);
/* Answers with the VM as it is now and message. */
void node_vm_reply(struct node_daemon *d, struct node_ipc_call *call, Vireo__Outcome outcome,
		   const char *name, const char *message);

/* vm_migrate_requests.c: vireo vm migrate [--cancel]. */
void node_vm_handle_migrate(struct node_daemon *d, struct node_ipc_call *call,
			    const Vireo__VmMigrateRequest *r);

#endif
