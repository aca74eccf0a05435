/* hv-smoke's harness: the main loop run until a condition holds, the
 * test guest's serial log, the driver's events, and the steps every command
 * shares (connect, resolve the acceleration, define, boot). */
#include "smoke.h"

struct smoke *S;          /* for FAIL's cleanup */

uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / NS_PER_MS;
}

void say(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

/* ---- the main loop, run until a condition holds */

struct wait {
	bool (*pred)(struct smoke *s);
	struct smoke *s;
	uint64_t deadline;
	bool met;
	qb_loop_timer_handle th;
};

static void wait_tick(void *data)
{
	struct wait *w = data;

	if (w->pred && w->pred(w->s)) {
		w->met = true;
		qb_loop_stop(w->s->loop);
		return;
	}
	if (now_ms() >= w->deadline) {
		qb_loop_stop(w->s->loop);
		return;
	}
	qb_loop_timer_add(w->s->loop, QB_LOOP_LOW, POLL_MS * NS_PER_MS, w, wait_tick, &w->th);
}

/* Runs the loop until pred(s) or timeout_ms; pred NULL just runs it. */
bool wait_for(struct smoke *s, bool (*pred)(struct smoke *s), uint64_t timeout_ms)
{
	struct wait w = { .pred = pred, .s = s, .deadline = now_ms() + timeout_ms };

	if (pred && pred(s))
		return true;
	qb_loop_timer_add(s->loop, QB_LOOP_LOW, POLL_MS * NS_PER_MS, &w, wait_tick, &w.th);
	qb_loop_run(s->loop);
	return w.met;
}

/* ---- the serial log */

void read_serial(const char *path, struct serial *out)
{
	FILE *f = fopen(path, "r");
	char line[512];

	memset(out, 0, sizeof(*out));
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		uint64_t n, up;
		char id[64];

		if (sscanf(line, "HEARTBEAT %" SCNu64 " %63s %" SCNu64, &n, id, &up) == 3) {
			out->heartbeats++;
			out->last_n = n;
			if (!out->first_uptime_ms)
				out->first_uptime_ms = up;
			snprintf(out->boot_id, sizeof(out->boot_id), "%s", id);
		} else if (strncmp(line, "VIREO-GUEST-START ", 18) == 0) {
			out->starts++;
			out->first_uptime_ms = 0;
		} else if (strncmp(line, "POWEROFF", 8) == 0) {
			out->poweroff = true;
		} else if (strncmp(line, "DISK-LAST ", 10) == 0) {
			out->disk_last = true;
		} else if (strncmp(line, "ACKED ", 6) == 0) {
			out->acked++;
		} else if (strncmp(line, "NET-UP ", 7) == 0) {
			out->net_up = true;
		}
	}
	fclose(f);
}

struct serial mark;            /* what a predicate compares against */

bool heartbeat_after_mark(struct smoke *s)
{
	struct serial now;

	read_serial(s->serial, &now);
	return now.heartbeats > mark.heartbeats;
}

bool poweroff_seen(struct smoke *s)
{
	struct serial now;

	read_serial(s->serial, &now);
	return now.poweroff;
}

/* ---- events and async answers */

static enum hv_event_type want_event;
static int want_count;

static bool event_seen(struct smoke *s)
{
	return s->seen[want_event] >= want_count;
}

/* Waits for one more event of type t than seen before the action. */
bool wait_event(struct smoke *s, enum hv_event_type t, int before, uint64_t timeout_ms)
{
	want_event = t;
	want_count = before + 1;
	return wait_for(s, event_seen, timeout_ms);
}

void on_event(void *ctx, const struct hv_event *ev)
{
	struct smoke *s = ctx;

	if (ev->type <= HV_EVENT_MIGRATION_DONE) {
		s->seen[ev->type]++;
		s->last_reason[ev->type] = ev->reason;
	}
	if (ev->type == HV_EVENT_CONNECTION_LOST || ev->type == HV_EVENT_CONNECTION_RESTORED)
		say("EVENT %s - %s", hv_event_name(ev->type), ev->message ? ev->message : "");
	else if (ev->name)
		say("EVENT %s %s %s", hv_event_name(ev->type), ev->name, hv_reason_name(ev->reason));
}

void on_accel(void *ctx, enum hv_accel accel, const char *reason)
{
	struct smoke *s = ctx;

	s->accel_done = true;
	s->accel_result = accel;
	snprintf(s->accel_reason, sizeof(s->accel_reason), "%s", reason);
}

static bool accel_answered(struct smoke *s)
{
	return s->accel_done;
}

void on_shutdown(void *ctx, const char *name, int rc, bool forced)
{
	struct smoke *s = ctx;

	s->shutdown_done = true;
	s->shutdown_rc = rc;
	s->shutdown_forced = forced;
}

bool shutdown_answered(struct smoke *s)
{
	return s->shutdown_done;
}

bool reconnected(struct smoke *s)
{
	return s->seen[HV_EVENT_CONNECTION_RESTORED] > 0;
}

bool disconnected(struct smoke *s)
{
	return s->seen[HV_EVENT_CONNECTION_LOST] > 0;
}

/* ---- setup */

int read_manifest_cmdline(struct smoke *s)
{
	char path[600], line[1024];
	FILE *f;

	snprintf(path, sizeof(path), "%s/manifest", s->o.guest);
	if (!(f = fopen(path, "r")))
		return -errno;
	snprintf(s->cmdline, sizeof(s->cmdline), "console=ttyS0 quiet panic=-1");
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "cmdline=", 8) == 0) {
			line[strcspn(line, "\n")] = '\0';
			snprintf(s->cmdline, sizeof(s->cmdline), "%s", line + 8);
		}
	}
	fclose(f);
	return 0;
}

void make_spec(struct smoke *s)
{
	snprintf(s->kernel, sizeof(s->kernel), "%s/vmlinux", s->o.guest);
	snprintf(s->initrd, sizeof(s->initrd), "%s/initrd.img", s->o.guest);
	snprintf(s->serial, sizeof(s->serial), "%s/%s.serial", s->o.dir, s->o.name);
	snprintf(s->save, sizeof(s->save), "%s/%s.save", s->o.dir, s->o.name);
	if (s->o.ip) {
		size_t n = strlen(s->cmdline);

		snprintf(s->cmdline + n, sizeof(s->cmdline) - n, " vireo.ip=%s", s->o.ip);
	}
	memset(&s->spec, 0, sizeof(s->spec));
	s->spec.name = s->o.name;
	s->spec.vcpus = 1;
	s->spec.memory_mib = 256;
	s->spec.boot = HV_BOOT_KERNEL;
	s->spec.kernel = s->kernel;
	s->spec.initrd = s->initrd;
	s->spec.cmdline = s->cmdline;
	s->spec.serial_log = s->serial;
	s->spec.accel = HV_ACCEL_AUTO;   /* what resolve_accel found */
	s->spec.machine = s->o.machine;
	if (s->o.disk) {
		int fd;

		snprintf(s->disk_path, sizeof(s->disk_path), "%s/%s.raw", s->o.dir, s->o.name);
		fd = open(s->disk_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		CHECK(fd >= 0 && ftruncate(fd, (off_t)DISK_MIB << 20) == 0,
		      "cannot create the disk %s: %s", s->disk_path, strerror(errno));
		close(fd);
		s->disk.path = s->disk_path;
		s->disk.format = HV_DISK_RAW;
		s->spec.disks = &s->disk;
		s->spec.n_disks = 1;
	}
	if (s->o.bridge) {
		s->nic.bridge = s->o.bridge;
		s->spec.nics = &s->nic;
		s->spec.n_nics = 1;
	}
}

void connect_driver(struct smoke *s)
{
	struct hv_connect_params p = {
		.loop = s->loop,
		.uri = s->o.uri,
		.cb = { .ctx = s, .event = on_event },
	};
	int rc = s->drv->connect(&p, &s->c);

	CHECK(rc == 0, "connect: %s", strerror(-rc));
}

/* Resolves the acceleration (auto probes KVM); prints ACCEL. */
void resolve_accel(struct smoke *s, enum hv_accel want)
{
	struct hv_accel_probe probe = {
		.kernel = s->kernel,
		.initrd = s->initrd,
		.cmdline = s->cmdline,
		.serial_dir = s->o.dir,
	};
	uint64_t t0 = now_ms();
	int rc = s->drv->resolve_accel(s->c, want, &probe, on_accel, s);

	CHECK(rc == 0, "resolve_accel(%s): %s", hv_accel_name(want), strerror(-rc));
	CHECK(wait_for(s, accel_answered, 30000), "resolve_accel(%s) never answered",
	      hv_accel_name(want));
	CHECK(s->drv->accel(s->c) == s->accel_result, "the driver kept %s, answered %s",
	      hv_accel_name(s->drv->accel(s->c)), hv_accel_name(s->accel_result));
	say("ACCEL %s %s", hv_accel_name(s->accel_result), s->accel_reason);
	say("STEP accel %" PRIu64, now_ms() - t0);
}

void define_vm(struct smoke *s)
{
	int before = s->seen[HV_EVENT_DEFINED];
	int rc;

	unlink(s->serial);
	rc = s->drv->define(s->c, &s->spec);
	CHECK(rc == 0, "define: %s", strerror(-rc));
	s->defined = true;
	CHECK(wait_event(s, HV_EVENT_DEFINED, before, 5000), "no DEFINED event");
}

enum hv_vm_state vm_state(struct smoke *s)
{
	enum hv_vm_state st = HV_STATE_UNKNOWN;
	int rc = s->drv->state(s->c, s->o.name, &st);

	CHECK(rc == 0, "state: %s", strerror(-rc));
	return st;
}

/* Starts the VM and waits for the first HEARTBEAT of a new boot; returns
 * the ms from the start call to it. */
uint64_t start_and_boot(struct smoke *s)
{
	int before = s->seen[HV_EVENT_STARTED];
	uint64_t t0, t1;
	int rc;

	read_serial(s->serial, &mark);
	t0 = now_ms();
	rc = s->drv->start(s->c, s->o.name, 0);
	t1 = now_ms();
	CHECK(rc == 0, "start: %s", strerror(-rc));
	say("STEP start-call %" PRIu64, t1 - t0);
	CHECK(wait_for(s, heartbeat_after_mark, BOOT_TIMEOUT_MS),
	      "no HEARTBEAT in %d ms after start; see %s", BOOT_TIMEOUT_MS, s->serial);
	t1 = now_ms();
	CHECK(wait_event(s, HV_EVENT_STARTED, before, 5000), "no STARTED event");
	CHECK(s->last_reason[HV_EVENT_STARTED] == HV_REASON_BOOTED, "STARTED reason %s",
	      hv_reason_name(s->last_reason[HV_EVENT_STARTED]));
	return t1 - t0;
}

void cleanup_vm(void)
{
	struct smoke *s = S;
	enum hv_vm_state st;

	if (!s || !s->c || !s->defined)
		return;
	s->defined = false;
	if (s->drv->state(s->c, s->o.name, &st) == 0 && st != HV_STATE_SHUTOFF)
		s->drv->destroy(s->c, s->o.name);
	s->drv->undefine(s->c, s->o.name);
}
