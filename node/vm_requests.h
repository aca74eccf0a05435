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
/* The boot image exists, belongs to no VM; fills disk (not owned). */
bool node_vm_fill_boot_disk(struct node_daemon *d, struct node_ipc_call *call,
			    const cluster_state *cs, Vireo__VmDisk *disk, const char *image);
/* None of the VM's owned disk images exists yet. */
bool node_vm_owned_disks_free(struct node_daemon *d, struct node_ipc_call *call,
			      const Vireo__VmSpec *spec);
/* Creates the owned disks; *images (free with node_vm_free_images) names
 * those made. On failure deletes what it made. */
bool node_vm_make_disks(struct node_daemon *d, struct node_ipc_call *call,
			const Vireo__VmSpec *spec, char ***images, size_t *n_images);
void node_vm_free_images(char **images, size_t n);
/* --prefer (names to ids in spec), --group (must exist), --max-relocations. */
#define NODE_VM_MAX_PREFERRED 32u
#define NODE_VM_MAX_RELOCATIONS 100u
bool node_vm_fill_placement(struct node_ipc_call *call, const cluster_state *cs,
			    const Vireo__VmCreateRequest *r, Vireo__VmSpec *spec, uint32_t *ids);

/* vm_reads.c */
void node_vm_handle_list(struct node_daemon *d, struct node_ipc_call *call, const char *name);
void node_vm_handle_console(struct node_daemon *d, struct node_ipc_call *call,
			    const Vireo__VmConsoleRequest *c);
/* Deletes the VM's console log (a missing one is fine). 0 or -errno. */
int node_vm_remove_console(struct node_daemon *d, const char *name);

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
