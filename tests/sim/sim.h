/* vireo-sim: the manager (cluster/manager.h) replayed against a simulated
 * cluster with simulated time. See tests/sim/README.md for the scenario
 * format and what the simulated world does.
 *
 * Three parts:
 *   sim_parse.c  reads a scenario's `events` into struct sim_scenario
 *   sim_world.c  the hosts: membership as corosync would report it, quorum,
 *                self-fencing, the guests that really run, and each host's
 *                local resource manager (like node/vm_local.c, vm_migrate.c)
 *   vireo-sim.c  the cluster state, the manager loop and simulated time
 *   sim_log.c    the log lines that expect files hold */
#ifndef VIREO_TESTS_SIM_H
#define VIREO_TESTS_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cluster/state.h"

#define SIM_MAX_NODES 16
#define SIM_MAX_VMS 64
#define SIM_MAX_GROUPS 16
#define SIM_MAX_EVENTS 512
#define SIM_MAX_ARGS 16
#define SIM_NAME_MAX 32
/* Operations at one instant beyond this are a loop (a manager that never
 * settles, or hosts and manager undoing each other). */
#define SIM_MAX_OPS_PER_INSTANT 1000

/* ---------------------------------------------------------------- scenario */

enum sim_action {
	SIM_START, SIM_STOP, SIM_KILL, SIM_PARTITION, SIM_HEAL, SIM_PAUSE, SIM_RESUME,
	SIM_REJOIN, SIM_HANG, SIM_KILL_VIREOD, SIM_LEAVE, SIM_MAINTENANCE, SIM_EVACUATE, SIM_ACTIVE,
	SIM_MIGRATE, SIM_FAIL_MIGRATION, SIM_LEASE,
};

enum sim_lease { SIM_LEASE_AUTO, SIM_LEASE_HELD, SIM_LEASE_FREE };

struct sim_event {
	int64_t time_ms;
	int line;
	enum sim_action action;
	char text[160];                 /* the line as written, for the log */
	uint32_t nodes[SIM_MAX_ARGS];   /* node arguments */
	size_t n_nodes;
	int vms[SIM_MAX_ARGS];          /* VM arguments: indexes into scenario.vms */
	size_t n_vms;
	bool live, force;
	enum sim_lease lease;
	uint64_t grace_ms;
};

struct sim_vm_def {
	char name[SIM_NAME_MAX];
	bool ha;
	int32_t priority;
	uint64_t memory_mib;
	uint32_t vcpus;
	uint32_t prefer[SIM_MAX_NODES];
	size_t n_prefer;
	uint32_t pin;
	uint32_t max_relocations;
	int line;
};

struct sim_group_def {
	char name[SIM_NAME_MAX];
	bool affinity, strict;
	int vms[SIM_MAX_VMS];
	size_t n_vms;
	int line;
};

struct sim_scenario {
	char path[512];                 /* of the events file, for messages */
	uint32_t token_ms;
	uint32_t start_ms;              /* a host defines and starts a guest */
	uint32_t stop_ms;               /* a guest powers off */
	uint32_t migrate_ms;            /* migration begun -> committed */
	uint32_t resume_ms;             /* committed -> resumed on the target */
	size_t n_nodes;
	uint32_t cpus[SIM_MAX_NODES + 1];
	uint64_t memory_mib[SIM_MAX_NODES + 1];
	struct sim_vm_def vms[SIM_MAX_VMS];
	size_t n_vms;
	struct sim_group_def groups[SIM_MAX_GROUPS];
	size_t n_groups;
	struct sim_event events[SIM_MAX_EVENTS];
	size_t n_events;
	int64_t run_ms;
};

/* Reads path; 0, or -EINVAL after printing "path:line: what is wrong" to
 * stderr, or -errno when the file cannot be read. */
int sim_parse(const char *path, struct sim_scenario *sc);

/* ---------------------------------------------------------------- log */

struct sim_log {
	FILE *out;
	bool failed;                    /* an invariant broke or the run could not go on */
};

void sim_logf(struct sim_log *log, int64_t t, const char *who, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* One applied (or refused) operation: what it asked for and, for a VM,
 * the state it left the VM in. */
void sim_log_op(struct sim_log *log, const cluster_state *st, const Vireo__Op *op, int rc);
/* The end of the run: every node and VM as the cluster state has them. */
void sim_log_summary(struct sim_log *log, const cluster_state *st);
const char *sim_node_name(const cluster_state *st, uint32_t id);

/* ---------------------------------------------------------------- world */

struct sim;

/* The cluster state and the log, for the world. */
struct sim_cluster {
	cluster_state *st;
	struct sim_log log;
	int64_t now_ms;
	uint64_t ops_now;               /* applied at this instant */
	bool stop;                      /* the run cannot go on */
};

/* Applies op as origin at the current time and logs it; the cluster's rc. */
int sim_apply(struct sim_cluster *c, Vireo__Op *op, uint32_t origin);

struct sim_world;

int sim_world_new(const struct sim_scenario *sc, struct sim_cluster *c, struct sim_world **out);
void sim_world_free(struct sim_world *w);

/* The quorate membership as the cluster sees it (sorted), and its manager:
 * the lowest id in it, 0 when no partition is quorate. */
size_t sim_world_members(const struct sim_world *w, uint32_t *out);
/* The manager when it can act (its vireod is not hung), else 0. */
uint32_t sim_world_manager(const struct sim_world *w);
/* The node a user's command goes through: a quorate member whose vireod
 * answers, 0 when there is none. */
uint32_t sim_world_cli_node(const struct sim_world *w);

/* The manager's environment (manager.h), seen from node mgr. */
uint64_t sim_world_absent_ms(const struct sim_world *w, uint32_t mgr, uint32_t node);
int sim_world_leases_free(const struct sim_world *w, const Vireo__Vm *vm);

/* Time of the next scheduled thing in the world, or -1. */
int64_t sim_world_next_ms(const struct sim_world *w);
/* Runs what is due at c->now_ms (membership changes, host actions,
 * guest deaths). */
void sim_world_fire(struct sim_world *w);
/* One scripted event, at c->now_ms. */
void sim_world_event(struct sim_world *w, const struct sim_event *ev);
/* Every acting host looks at the state once (vm_local.c's pass); true
 * when something changed (an op applied, a guest started or died). */
bool sim_world_pass(struct sim_world *w);
/* Where guests really run, for the summary. */
void sim_world_summary(const struct sim_world *w);

#endif
