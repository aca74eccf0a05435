/* What vireod asks of a hypervisor: one driver table, filled by the
 * libvirt/QEMU/KVM driver (hv_libvirt_driver) and by any test double.
 *
 * Every call returns 0 or a negative errno and has already logged the
 * hypervisor's own message through qb_log, so a caller only decides what to
 * do. The errors every implementation uses:
 *
 *   -ENOENT    no VM of that name is defined on this host
 *   -EEXIST    start: the VM is already running; define: the name or the
 *              UUID belongs to another VM
 *   -ESRCH     the VM is not running (pause, resume, shutdown, destroy, save,
 *              migrate)
 *   -EBUSY     the VM is in a state that forbids it (undefine while running)
 *              or another job holds it
 *   -EINVAL    the spec or an argument is invalid (see hv_vm_spec_check)
 *   -ENOTCONN  the connection to the hypervisor is down; the driver is
 *              reconnecting and says HV_EVENT_CONNECTION_RESTORED when back
 *   -ETIMEDOUT the hypervisor gave up waiting (e.g. for a job lock)
 *   -EOPNOTSUPP, -EACCES, -ENOMEM, -EIO (anything else)
 *
 * Events (VM lifecycle, connection lost/restored, migration done) arrive
 * through hv_callbacks.event from the one libqb main loop given to connect.
 * The calls are synchronous RPCs (a few ms; start ~0.1 s, save/restore up to
 * a few seconds) made from the loop's thread; only live migration runs in a
 * worker thread and reports its end as an event. */
#ifndef VIREO_HYPERVISOR_HV_H
#define VIREO_HYPERVISOR_HV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <qb/qbloop.h>

#define HV_NAME_MAX 64          /* letters, digits, '-', '_', '.' */
#define HV_UUID_STRLEN 36       /* 8-4-4-4-12 hex digits */
#define HV_MAC_STRLEN 17        /* aa:bb:cc:dd:ee:ff */
#define HV_BRIDGE_MAX 15        /* IFNAMSIZ - 1 */
#define HV_MAX_DISKS 16
#define HV_MAX_NICS 8
#define HV_MAX_VCPUS 1024
/* The namespace of the metadata element that marks a domain as vireo's, so
 * that vireo never undefines a domain someone else made on the host. */
#define HV_VIREO_XMLNS "https://vireo.dev/xmlns/domain/1"
#define HV_VIREO_XMLNS_PREFIX "vireo"

enum hv_accel {
	HV_ACCEL_AUTO = 0,      /* KVM if a probe guest runs under it, else TCG */
	HV_ACCEL_KVM,
	HV_ACCEL_TCG,
};

enum hv_machine {
	HV_MACHINE_DEFAULT = 0, /* pc: measured faster to boot under TCG, doc/hypervisor.md */
	HV_MACHINE_PC,
	HV_MACHINE_Q35,
};

enum hv_disk_format { HV_DISK_RAW = 0, HV_DISK_QCOW2 };

struct hv_disk {
	const char *path;       /* absolute */
	enum hv_disk_format format;
	bool readonly;
};

struct hv_nic {
	const char *bridge;     /* an existing Linux bridge on the host */
	const char *mac;        /* unicast aa:bb:cc:dd:ee:ff, or NULL: libvirt picks */
};

enum hv_boot { HV_BOOT_KERNEL = 0, HV_BOOT_DISK };

/* A VM as vireo defines it. The strings belong to the caller. */
struct hv_vm_spec {
	const char *name;
	const char *uuid;       /* NULL: the hypervisor makes one up */
	unsigned int vcpus;     /* 1..HV_MAX_VCPUS */
	uint64_t memory_mib;    /* > 0 */
	const struct hv_disk *disks;    /* virtio, in this order: vda, vdb, ... */
	size_t n_disks;
	const struct hv_nic *nics;      /* virtio, in this order */
	size_t n_nics;
	enum hv_boot boot;
	const char *kernel;     /* HV_BOOT_KERNEL: absolute paths, cmdline free text */
	const char *initrd;     /* may be NULL */
	const char *cmdline;    /* may be NULL */
	size_t boot_disk;       /* HV_BOOT_DISK: index into disks */
	const char *serial_log; /* absolute path the first serial port appends to, or NULL */
	enum hv_accel accel;    /* AUTO: what resolve_accel found (TCG until then) */
	enum hv_machine machine;
};

enum hv_vm_state {
	HV_STATE_UNKNOWN = 0,
	HV_STATE_SHUTOFF,
	HV_STATE_RUNNING,
	HV_STATE_PAUSED,
	HV_STATE_SHUTTING_DOWN,
	HV_STATE_CRASHED,
};

struct hv_vm_info {
	char name[HV_NAME_MAX + 1];
	char uuid[HV_UUID_STRLEN + 1];
	enum hv_vm_state state;
	bool persistent;        /* defined, not only running */
	bool vireo;             /* defined by vireo (its metadata element) */
	unsigned int vcpus;
	uint64_t cpu_time_ns;
	uint64_t memory_kib;    /* current allocation */
	uint64_t max_memory_kib;
};

enum hv_event_type {
	HV_EVENT_DEFINED,
	HV_EVENT_UNDEFINED,
	HV_EVENT_STARTED,
	HV_EVENT_STOPPED,       /* no longer running, not because of a crash */
	HV_EVENT_CRASHED,       /* no longer running: the guest or QEMU crashed */
	HV_EVENT_PAUSED,
	HV_EVENT_RESUMED,
	HV_EVENT_CONNECTION_LOST,       /* calls answer -ENOTCONN until... */
	HV_EVENT_CONNECTION_RESTORED,   /* ...this: re-read every VM's state */
	HV_EVENT_MIGRATION_DONE,        /* hv_event.rc says how it ended */
};

/* Why, where the hypervisor says. */
enum hv_event_reason {
	HV_REASON_NONE = 0,
	HV_REASON_BOOTED,       /* started */
	HV_REASON_RESTORED,     /* started or paused from a saved state */
	HV_REASON_MIGRATED,     /* started/paused here or stopped there by migration */
	HV_REASON_USER,         /* paused or resumed on request */
	HV_REASON_IO_ERROR,     /* paused: a disk failed */
	HV_REASON_SHUTDOWN,     /* stopped: the guest powered off */
	HV_REASON_DESTROYED,    /* stopped: killed on request */
	HV_REASON_SAVED,        /* stopped: its state went to a file */
	HV_REASON_FAILED,       /* stopped: QEMU died or could not start */
	HV_REASON_CRASHED,      /* crashed */
	HV_REASON_OTHER,
};

struct hv_event {
	enum hv_event_type type;
	enum hv_event_reason reason;
	const char *name;       /* the VM, or NULL for connection events */
	const char *uuid;
	int rc;                 /* HV_EVENT_MIGRATION_DONE: 0 or -errno */
	const char *message;    /* connection and migration events: what happened */
};

struct hv_callbacks {
	void *ctx;
	/* From the main loop. The strings live until it returns. */
	void (*event)(void *ctx, const struct hv_event *ev);
};

struct hv_connect_params {
	qb_loop_t *loop;        /* the one main loop; all calls from its thread */
	const char *uri;        /* NULL: qemu:///system */
	uint32_t token_ms;      /* the clock hv_timeouts.h derives from; 0: default */
	bool wait;              /* hypervisor not reachable yet: keep trying, say
				 * CONNECTION_RESTORED when it is, instead of failing */
	struct hv_callbacks cb;
};

#define HV_START_PAUSED      (1u << 0)
#define HV_SAVE_BYPASS_CACHE (1u << 0) /* O_DIRECT: not on tmpfs */
#define HV_RESTORE_PAUSED    (1u << 1)

struct hv_migrate_params {
	const char *dest_uri;       /* the target host's daemon, e.g. qemu+tcp://n2/system */
	bool live;                  /* pre-copy while the guest runs; false: the guest is
				     * paused for the whole transfer (quick migration) */
	/* Where the source QEMU sends its state, the target QEMU listening on
	 * the same: e.g. unix:///run/vireo/migration/UUID.sock, which vireo
	 * relays between the hosts (migration/stream.h). NULL: the
	 * hypervisor's own channel (a TCP port on the target). */
	const char *data_uri;
	bool leave_paused;          /* the guest stays paused on the target until resumed */
	uint32_t max_downtime_ms;   /* live: 0 = the hypervisor's default */
	uint64_t bandwidth_mibps;   /* 0: unlimited */
	/* The disks are on storage the target shares although libvirt cannot
	 * tell (it trusts only NFS, cluster file systems and the like; the lab's
	 * pool is one ext4 mounted in every host): migrate anyway. */
	bool trust_shared_disks;
};

/* A migration under way, as the hypervisor sees it (bytes). */
struct hv_migrate_progress {
	bool active;
	uint64_t elapsed_ms;
	uint64_t data_total, data_processed, data_remaining;
	uint64_t memory_total, memory_remaining;
	uint64_t memory_iteration;  /* live: pre-copy passes so far */
};

/* What resolve_accel needs to boot its probe guest: the test guest, whose
 * first serial line proves the guest runs. */
struct hv_accel_probe {
	const char *kernel;
	const char *initrd;
	const char *cmdline;    /* NULL: "console=ttyS0 quiet panic=-1" */
	const char *serial_dir; /* where the probe's serial log goes (removed after) */
	uint32_t timeout_ms;    /* 0: VIREO_HV_ACCEL_PROBE_MS */
};

typedef void (*hv_accel_done_fn)(void *ctx, enum hv_accel accel, const char *reason);

struct hv_conn;

struct hv_driver {
	const char *name;
	int (*connect)(const struct hv_connect_params *p, struct hv_conn **out);
	void (*disconnect)(struct hv_conn *c);
	bool (*connected)(const struct hv_conn *c);

	/* Persistent definition. Redefining an existing VM (same name and UUID)
	 * replaces its configuration from the next start on. */
	int (*define)(struct hv_conn *c, const struct hv_vm_spec *spec);
	int (*undefine)(struct hv_conn *c, const char *name);

	int (*start)(struct hv_conn *c, const char *name, unsigned int flags);
	/* Asks the guest to power off (ACPI) and returns at once; see
	 * hv_shutdown_graceful for the bounded version. */
	int (*shutdown)(struct hv_conn *c, const char *name);
	int (*destroy)(struct hv_conn *c, const char *name);
	int (*pause)(struct hv_conn *c, const char *name);
	int (*resume)(struct hv_conn *c, const char *name);

	int (*state)(struct hv_conn *c, const char *name, enum hv_vm_state *state);
	/* Every VM the hypervisor knows; *vms is malloc'd, free() it. */
	int (*list)(struct hv_conn *c, struct hv_vm_info **vms, size_t *n);
	int (*stats)(struct hv_conn *c, const char *name, struct hv_vm_info *info);

	/* Stops the VM and writes its whole state to path; the VM stays defined. */
	int (*save)(struct hv_conn *c, const char *name, const char *path, unsigned int flags);
	/* Runs (or with HV_RESTORE_PAUSED, holds paused) the VM saved in path. */
	int (*restore)(struct hv_conn *c, const char *path, unsigned int flags);

	/* Starts a migration and returns; HV_EVENT_MIGRATION_DONE reports its
	 * end. The VM is defined on the target and undefined here once it is
	 * there. If it fails, the guest runs on here as before. */
	int (*migrate)(struct hv_conn *c, const char *name, const struct hv_migrate_params *p);
	int (*migrate_abort)(struct hv_conn *c, const char *name);
	/* -ESRCH if no migration of name runs. */
	int (*migrate_progress)(struct hv_conn *c, const char *name, struct hv_migrate_progress *out);
	/* Whether the hypervisor runs a job on the VM (a migration in or out,
	 * a save): another migration would be refused meanwhile. */
	int (*job_active)(struct hv_conn *c, const char *name, bool *active);

	/* AUTO: boots a probe guest under KVM (without blocking the loop) and
	 * answers KVM if it prints, TCG if not; KVM, TCG: answers that at once.
	 * done is called exactly once, from the loop, unless this returns < 0.
	 * The answer becomes what HV_ACCEL_AUTO specs use on this connection. */
	int (*resolve_accel)(struct hv_conn *c, enum hv_accel want, const struct hv_accel_probe *probe,
			     hv_accel_done_fn done, void *ctx);
	enum hv_accel (*accel)(const struct hv_conn *c);
	/* The sentence logged for the last failed call on c ("" if none): what
	 * a VM's error message tells the user. */
	const char *(*last_error)(const struct hv_conn *c);
};

extern const struct hv_driver hv_libvirt_driver;

/* hv_spec.c: 0, or -EINVAL with *why set to a sentence saying what is wrong. */
int hv_vm_spec_check(const struct hv_vm_spec *spec, const char **why);
bool hv_name_valid(const char *name);
bool hv_uuid_valid(const char *uuid);
bool hv_mac_valid(const char *mac);

const char *hv_accel_name(enum hv_accel a);
/* "kvm", "tcg", "auto": 0, or -EINVAL. */
int hv_accel_parse(const char *s, enum hv_accel *out);
const char *hv_machine_name(enum hv_machine m);   /* "pc", "q35" */
const char *hv_state_name(enum hv_vm_state s);
const char *hv_event_name(enum hv_event_type t);
const char *hv_reason_name(enum hv_event_reason r);

/* hv_shutdown.c: asks the guest to power off; if it is still running after
 * timeout_ms (0: VIREO_HV_SHUTDOWN_MS), destroys it. A paused guest cannot
 * hear the request and is destroyed at once. Never blocks: a loop timer
 * polls the state. done(ctx, name, rc, forced) is called once, from the
 * loop: rc 0 when the VM is off (forced says it had to be destroyed), else
 * the error of the destroy that failed. -ENOENT (not defined) and -ESRCH
 * (not running) are returned at once and done is not called. *out (may be NULL) is
 * valid until done runs or hv_shutdown_cancel. */
struct hv_shutdown;
typedef void (*hv_shutdown_done_fn)(void *ctx, const char *name, int rc, bool forced);
int hv_shutdown_graceful(const struct hv_driver *drv, struct hv_conn *c, qb_loop_t *loop,
			 const char *name, uint32_t timeout_ms, uint32_t token_ms,
			 hv_shutdown_done_fn done, void *ctx, struct hv_shutdown **out);
/* Stops watching (the guest may still power off); done is not called. */
void hv_shutdown_cancel(struct hv_shutdown *s);

#endif
