/* /etc/vireo/vireo.conf: "key = value" lines, '#' comments. */
#ifndef VIREO_NODE_CONFIG_H
#define VIREO_NODE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NODE_CONFIG_DEFAULT_PATH "/etc/vireo/vireo.conf"

struct node_config {
	char node_name[65];
	char state_dir[256];
	char log_file[256];
	int log_level;            /* syslog priority: LOG_ERR .. LOG_DEBUG */
	char cpg_group[128];      /* CPG group name; "vireo" unless several clusters share corosync */
	char ipc_name[64];        /* libqb IPC service name the CLI connects to */
	uint32_t token_ms;        /* 0 = read corosync's token from cmap */
	char pool_dir[256];       /* the shared pool's mount point, the same on every host */
	bool pool_any_fs;         /* pool_dir need not be a mount point (single-host trials) */
	char console_dir[256];    /* guests' serial logs; "" = <pool_dir>/console */
	char libvirt_uri[256];
	int accel;                /* enum hv_accel */
	char probe_kernel[256];   /* the test guest that auto acceleration boots */
	char probe_initrd[256];
	uint32_t restart_limit;   /* local restarts of a failing guest before 'error' */
	/* A hypervisor stalled this long gets an error in the log (once per
	 * cause) telling the operator what to do; 0 = never. Vireo itself
	 * never kills guests it cannot see (doc/failover.md). */
	uint32_t hv_hang_limit_ms;
	/* Migration (node/vm_migrate.c, migration/stream.h) */
	uint16_t migration_port;          /* where vireod receives guests' state */
	char migration_key_file[256];     /* the cluster's secret: corosync's authkey */
	char migration_dir[256];          /* the unix sockets QEMU streams through */
	char migration_peer_uri[256];     /* libvirtd of a target; %s = its address */
	uint64_t migration_bandwidth_mibps;   /* 0 = unlimited */
	uint32_t migration_max_downtime_ms;   /* live, when the CLI gives none; 0 = QEMU's */
	/* Fencing (node/fence.c, node/watchdog.c, doc/failover.md) */
	char watchdog_socket[108];        /* where vireo-watchdog listens; "" = no watchdog */
	char watchdog_device[256];        /* hardware watchdog it arms; "" = none */
	char watchdog_log_file[256];      /* vireo-watchdog's log */
	bool nonha_stop;                  /* nonha_on_quorum_loss = stop: non-HA guests go too */
};

void node_config_defaults(struct node_config *cfg);

/* Parses text (from a file named path, for messages). On error returns
 * -EINVAL and writes one sentence naming the line to err. */
int node_config_parse(const char *path, const char *text, struct node_config *cfg,
		      char *err, size_t errlen);

/* Reads and parses the file; -errno when it cannot be read (with err set). */
int node_config_load(const char *path, struct node_config *cfg, char *err, size_t errlen);

#endif
