/* hv-smoke's shared parts (smoke.c): see hv-smoke.c. */
#ifndef VIREO_TESTS_HV_SMOKE_H
#define VIREO_TESTS_HV_SMOKE_H

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <qb/qbloop.h>
#include <qb/qblog.h>

#include "hypervisor/hv.h"

#define NS_PER_MS 1000000ull
#define POLL_MS 20
#define BOOT_TIMEOUT_MS 30000
#define DISK_MIB 16
#define MAX_RUNS 20

struct opts {
	const char *guest;
	const char *dir;
	const char *uri;
	const char *bridge;
	const char *ip;
	const char *dest;
	char name[HV_NAME_MAX + 1];
	enum hv_machine machine;
	enum hv_accel accel;
	bool accel_set;
	bool disk;
	int runs;
	bool verbose;
};

struct smoke {
	struct opts o;
	qb_loop_t *loop;
	const struct hv_driver *drv;
	struct hv_conn *c;
	char kernel[512], initrd[512], cmdline[1024];
	char serial[512], save[512], disk_path[512];
	struct hv_disk disk;
	struct hv_nic nic;
	struct hv_vm_spec spec;
	bool defined;
	/* events seen, by type */
	int seen[HV_EVENT_MIGRATION_DONE + 1];
	enum hv_event_reason last_reason[HV_EVENT_MIGRATION_DONE + 1];
	/* async answers */
	bool accel_done;
	enum hv_accel accel_result;
	char accel_reason[512];
	bool shutdown_done;
	int shutdown_rc;
	bool shutdown_forced;
};

/* What the serial log says so far. */
struct serial {
	int heartbeats;
	uint64_t last_n;
	uint64_t first_uptime_ms;   /* of the latest boot's first HEARTBEAT */
	char boot_id[64];
	int starts;
	bool poweroff;
	bool disk_last;
	int acked;
	bool net_up;
};

#define CHECK(cond, ...) do {                                                     \
		if (!(cond)) {                                                    \
			printf("FAIL %s:%d: ", __FILE__, __LINE__);               \
			printf(__VA_ARGS__);                                       \
			printf("\n");                                              \
			fflush(stdout);                                            \
			cleanup_vm();                                              \
			exit(1);                                                   \
		}                                                                 \
	} while (0)

extern struct smoke *S;
extern struct serial mark;

uint64_t now_ms(void);
void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Runs the loop until pred(s) or timeout_ms; pred NULL just runs it. */
bool wait_for(struct smoke *s, bool (*pred)(struct smoke *s), uint64_t timeout_ms);
void read_serial(const char *path, struct serial *out);
bool heartbeat_after_mark(struct smoke *s);
bool poweroff_seen(struct smoke *s);
/* Waits for one more event of type t than the `before` seen earlier. */
bool wait_event(struct smoke *s, enum hv_event_type t, int before, uint64_t timeout_ms);
void on_event(void *ctx, const struct hv_event *ev);
void on_accel(void *ctx, enum hv_accel accel, const char *reason);
void on_shutdown(void *ctx, const char *name, int rc, bool forced);
bool shutdown_answered(struct smoke *s);
bool reconnected(struct smoke *s);
bool disconnected(struct smoke *s);
int read_manifest_cmdline(struct smoke *s);
void make_spec(struct smoke *s);
void connect_driver(struct smoke *s);
/* Resolves the acceleration (auto probes KVM); prints ACCEL. */
void resolve_accel(struct smoke *s, enum hv_accel want);
void define_vm(struct smoke *s);
enum hv_vm_state vm_state(struct smoke *s);
/* Starts the VM and waits for the first HEARTBEAT of a new boot; returns
 * the ms from the start call to it. */
uint64_t start_and_boot(struct smoke *s);
/* Destroys and undefines the VM if it is still defined. */
void cleanup_vm(void);

#endif
