/* The simulated world's insides, shared by sim_world.c (membership,
 * quorum, time), sim_host.c (guests and each host's resource manager) and
 * sim_events.c (the scripted events). Not for vireo-sim.c: it uses sim.h. */
#ifndef VIREO_TESTS_SIM_WORLD_H
#define VIREO_TESTS_SIM_WORLD_H

#include "tests/sim/sim.h"

#define MAX_GUESTS (4 * SIM_MAX_VMS)
#define MAX_ITEMS 2048

enum guest_kind {
	GUEST_RUNNING,    /* runs (or sits paused by libvirt) holding its disk leases */
	GUEST_PAUSED,     /* a migration's target after the commit: holds the leases */
	GUEST_INCOMING,   /* a migration's target before the commit: no leases yet */
};

struct guest {
	bool used;
	int vm;                       /* index into the scenario's VMs */
	uint32_t node;
	enum guest_kind kind;
	uint64_t migration;           /* incoming: the migration it belongs to */
	bool revoked;                 /* its lease was broken while its host was frozen */
};

enum vireod { VIREOD_UP, VIREOD_HUNG, VIREOD_DOWN };

struct host {
	uint32_t id;
	char name[8];
	bool dead, frozen;
	enum vireod vireod;
	int phys_group;               /* its network partition (0: the main one) */
	int view_group;               /* the ring corosync reports it in; -1: none */
	bool in_cpg;                  /* its vireod is a CPG member (a hung one is) */
	int64_t view_due;             /* when its last scheduled ring change happens */
	uint64_t epoch;               /* any change of the host: older timers are void */
	/* votequorum on this host: -1 unknown (dead, frozen, out of every ring) */
	int quorate;
	uint64_t quorum_epoch;
	/* this host's engine (cluster/engine.c), for absent_ms */
	bool engine_quorate;
	int64_t quorate_since;
	int64_t left_seen[SIM_MAX_NODES + 1];
	uint32_t members;             /* bit per node id */
};

enum item_kind {
	ITEM_VIEW,           /* a ring change reaches this host's corosync and its peers */
	ITEM_START,          /* the guest of a STARTING VM is up */
	ITEM_REVIVE,         /* a guest that died while its VM runs is restarted here */
	ITEM_STOP,           /* a STOPPING VM's guest is off */
	ITEM_COMMIT,         /* the source's hypervisor finished the migration */
	ITEM_RESUME,         /* the target resumed the migrated guest */
	ITEM_SELF_FENCE,     /* vireod of a cut-off host destroys its HA guests */
	ITEM_WATCHDOG_QUORUM,/* ...or the watchdog does, if vireod did not */
	ITEM_WATCHDOG_HUNG,  /* a silent vireod: the watchdog kills its guests and it */
	ITEM_LEAVE_GRACE,    /* a cleanly stopped vireod was not replaced in time */
};

struct item {
	bool used;
	int64_t time_ms;
	uint64_t seq;                 /* equal times fire in the order they were made */
	enum item_kind kind;
	uint32_t node;
	int vm;
	uint64_t tag;                 /* generation, migration id, host or quorum epoch */
	int group;                    /* ITEM_VIEW: the new ring, -1 none */
};

struct sim_world {
	const struct sim_scenario *sc;
	struct sim_cluster *c;
	struct host hosts[SIM_MAX_NODES + 1];
	size_t n;
	struct guest guests[MAX_GUESTS];
	struct item items[MAX_ITEMS];
	uint64_t next_seq;
	int next_group;
	int quorum_group;             /* the quorate ring, -1 none */
	uint32_t logged_members;      /* the quorate membership last logged */
	bool logged_any;
	enum sim_lease lease[SIM_MAX_VMS];
	unsigned fail_migration[SIM_MAX_VMS];   /* migrations of the VM still to fail */
	/* A migration whose stream stalled: its source waits for the target
	 * to be recorded offline, then rolls back (vm_migrate.c). */
	uint64_t stalled[SIM_MAX_VMS];
	bool views_changed;           /* ring changes fired, quorum not yet recomputed */
};


/* sim_world.c */
uint32_t world_token(const struct sim_world *w);
int64_t world_now(const struct sim_world *w);
/* A line about the world (not an operation): h's name, or "--". */
void world_fact(struct sim_world *w, const struct host *h, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* The run cannot be trusted any more: logged, and the scenario fails. */
void world_broken(struct sim_world *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int world_vm_index(const struct sim_world *w, const char *name);
const Vireo__Vm *world_state_vm(const struct sim_world *w, int vm);
const char *world_vm_name(const struct sim_world *w, int vm);
void world_schedule(struct sim_world *w, int64_t at, enum item_kind kind, uint32_t node, int vm,
		    uint64_t tag, int group);
bool world_busy(const struct sim_world *w, enum item_kind kind, uint32_t node, int vm);
/* A ring change for h after delay, never before one already on its way. */
void world_schedule_view(struct sim_world *w, struct host *h, uint32_t delay, int group);
bool world_alive(const struct host *h);
bool world_is_member(const struct sim_world *w, const struct host *h);
/* A host whose vireod acts on the state: alive, quorate, not hung. */
bool world_acting(const struct sim_world *w, const struct host *h);
void world_engine_reset(struct host *h);
/* After ring or CPG changes: quorum, departures, self-fencing. */
void world_recompute(struct sim_world *w);
/* Logs the quorate membership when it changed since last logged. */
void world_log_membership(struct sim_world *w);

/* sim_host.c */
struct guest *world_guest_on(struct sim_world *w, int vm, uint32_t node);
bool world_holds_leases(const struct guest *g);
struct guest *world_guest_add(struct sim_world *w, int vm, uint32_t node, enum guest_kind kind);
size_t world_kill_guests(struct sim_world *w, struct host *h, bool ha_only, char *out, size_t len);
/* Applies op as origin; true when the state changed. */
bool world_apply(struct sim_world *w, Vireo__Op *op, uint32_t origin);
/* Kills the HA guests of a host that may not run them any more. */
void world_fence_host(struct sim_world *w, struct host *h, const char *who, const char *why);
/* ITEM_START, ITEM_REVIVE, ITEM_STOP, ITEM_COMMIT, ITEM_RESUME. */
void world_host_timer(struct sim_world *w, const struct item *it);

#endif
