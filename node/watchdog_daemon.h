/* vireo-watchdog's own parts (node/watchdog.c: setup, quorum, the loop;
 * node/watchdog_clients.c: the vireods it serves and what it kills).
 * Not for vireod: the protocol is in node/watchdog.h. */
#ifndef VIREO_NODE_WATCHDOG_DAEMON_H
#define VIREO_NODE_WATCHDOG_DAEMON_H

#include <stdbool.h>
#include <stdint.h>
#include <corosync/quorum.h>

#include "cluster/state.h"
#include "node/config.h"
#include "node/watchdog.h"

#define WATCHDOG_MAX_CLIENTS 16          /* one vireod per host; more is somebody else */
#define WATCHDOG_NEVER UINT64_MAX

struct wd_guest {
	char name[CLUSTER_NAME_MAX + 1];
	char uuid[40];
	struct watchdog_qemu seen;      /* pid 0: not found running yet */
};

/* A vireod, connected or (fd -1) gone after a clean stop with guests left. */
struct wd_client {
	struct wd_client *next;
	int fd;
	int pidfd;                      /* the peer pinned at connect, -1 if it was gone */
	pid_t pid;
	struct watchdog_rx rx;
	bool fed, leaving, quorate;
	uint64_t timeout_ms;
	uint64_t deadline_ms;           /* last feed + timeout_ms; WATCHDOG_NEVER once acted on */
	struct wd_guest *guests;
	size_t n_guests;
	bool fence_logged;              /* killed for want of a confirmation, this loss */
	bool confirm_logged;            /* its self-fence confirmation, this loss */
};

struct wd {
	struct node_config cfg;
	uint32_t token_ms;
	int listen_fd, sig_fd, log_fd;
	struct wd_client *clients;
	/* corosync */
	quorum_handle_t qh;
	int q_fd;                       /* -1: not connected */
	bool quorate;
	uint64_t lost_ms;               /* when this host was last seen leaving quorum */
	uint64_t q_retry_ms;
	uint32_t q_backoff_ms, q_failures;
	/* hardware */
	struct watchdog_hw hw;
	uint64_t pet_ms;
	struct watchdog_paths paths;
};

uint64_t watchdog_now_ms(void);

/* watchdog_clients.c */
void watchdog_client_accept(struct wd *wd);
/* Reads what c sent and acts on its feeds; c may be freed. */
void watchdog_client_read(struct wd *wd, struct wd_client *c);
void watchdog_client_free(struct wd *wd, struct wd_client *c);
/* Acts on every deadline that passed: silence, a clean stop's grace, the
 * self-fence bound. */
void watchdog_deadlines_run(struct wd *wd, uint64_t now);
/* The earliest deadline, WATCHDOG_NEVER if none. */
uint64_t watchdog_next_deadline(const struct wd *wd);

/* watchdog.c: reads what corosync said about quorum, now. */
void watchdog_quorum_dispatch(struct wd *wd);

#endif
