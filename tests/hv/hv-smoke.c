/* hv-smoke: drives the libvirt driver (hypervisor/hv.h) against a real
 * libvirt daemon with vireo's test guest, inside a lab host.
 *
 *   hv-smoke [options] lifecycle        define, start, HEARTBEAT, pause,
 *                                       resume, save, restore, destroy,
 *                                       start, graceful shutdown, undefine
 *   hv-smoke [options] boottime         start -> first HEARTBEAT, --runs times
 *   hv-smoke [options] accel            resolve --accel (default auto)
 *   hv-smoke [options] start-undefined  start a VM nobody defined: -ENOENT
 *   hv-smoke [options] reconnect        run a VM, print READY, wait for the
 *                                       daemon to go and come back, re-read
 *   hv-smoke [options] --dest URI migrate
 *                                       live-migrate a running VM to URI and
 *                                       check it goes on there
 *
 * Options: --guest DIR (test guest, default /var/cache/vireo/guest),
 * --dir DIR (serial logs, save files, disk; default
 * /var/lib/vireo/pool/hv-smoke), --name NAME, --uri URI, --machine pc|q35,
 * --accel kvm|tcg|auto, --disk, --bridge BR, --ip A.B.C.D/LEN, --runs N,
 * --dest URI, --verbose.
 *
 * Prints what it sees as lines a test can grep: EVENT <type> <vm> <reason>,
 * STEP <what> <ms>, BOOT-MS <run> <ms>, ACCEL <accel> <reason>, RC <errno>,
 * STATE <state>, READY, and finally OK; on failure FAIL <file>:<line>: why,
 * exit 1. Exit 77 (skipped) when the test guest is not built. */
#include "smoke.h"

/* ---- the commands */

static int cmd_lifecycle(struct smoke *s)
{
	struct serial a, b;
	struct hv_vm_info info, *vms = NULL;
	size_t n = 0;
	bool listed = false;
	int before, rc;
	uint64_t t0;
	struct hv_vm_spec bad;

	connect_driver(s);
	resolve_accel(s, s->o.accel_set ? s->o.accel : HV_ACCEL_TCG);

	bad = s->spec;
	bad.memory_mib = 0;
	CHECK(s->drv->define(s->c, &bad) == -EINVAL, "a spec with 0 MiB was accepted");

	define_vm(s);
	CHECK(vm_state(s) == HV_STATE_SHUTOFF, "a new VM is %s", hv_state_name(vm_state(s)));
	CHECK(s->drv->pause(s->c, s->o.name) == -ESRCH, "pausing a stopped VM did not say -ESRCH");

	say("BOOT-MS 1 %" PRIu64, start_and_boot(s));
	read_serial(s->serial, &a);
	CHECK(a.starts == 1, "%d VIREO-GUEST-START lines", a.starts);
	CHECK(vm_state(s) == HV_STATE_RUNNING, "VM is %s", hv_state_name(vm_state(s)));
	CHECK(s->drv->start(s->c, s->o.name, 0) == -EEXIST, "starting it twice did not say -EEXIST");
	CHECK(s->drv->undefine(s->c, s->o.name) == -EBUSY, "undefining it running did not say -EBUSY");

	rc = s->drv->list(s->c, &vms, &n);
	CHECK(rc == 0, "list: %s", strerror(-rc));
	for (size_t i = 0; i < n; i++) {
		if (strcmp(vms[i].name, s->o.name) == 0)
			listed = vms[i].state == HV_STATE_RUNNING && vms[i].persistent;
	}
	free(vms);
	CHECK(listed, "list does not show %s running and persistent", s->o.name);
	rc = s->drv->stats(s->c, s->o.name, &info);
	CHECK(rc == 0, "stats: %s", strerror(-rc));
	CHECK(info.cpu_time_ns > 0 && info.memory_kib == s->spec.memory_mib * 1024 && info.vcpus == 1,
	      "stats: cpu %" PRIu64 " ns, %" PRIu64 " KiB, %u vCPUs", info.cpu_time_ns,
	      info.memory_kib, info.vcpus);
	say("STATS cpu_time_ns=%" PRIu64 " memory_kib=%" PRIu64, info.cpu_time_ns, info.memory_kib);

	/* Pause: the heartbeats stop. */
	before = s->seen[HV_EVENT_PAUSED];
	t0 = now_ms();
	CHECK((rc = s->drv->pause(s->c, s->o.name)) == 0, "pause: %s", strerror(-rc));
	say("STEP pause %" PRIu64, now_ms() - t0);
	CHECK(wait_event(s, HV_EVENT_PAUSED, before, 5000), "no PAUSED event");
	CHECK(vm_state(s) == HV_STATE_PAUSED, "paused VM is %s", hv_state_name(vm_state(s)));
	wait_for(s, NULL, 200);             /* a line QEMU had not written out yet */
	read_serial(s->serial, &a);
	wait_for(s, NULL, 1000);
	read_serial(s->serial, &b);
	CHECK(b.heartbeats == a.heartbeats, "%d heartbeats while paused", b.heartbeats - a.heartbeats);
	say("PAUSED-HEARTBEATS 0");

	/* Resume: the same boot goes on. */
	before = s->seen[HV_EVENT_RESUMED];
	mark = b;
	CHECK((rc = s->drv->resume(s->c, s->o.name)) == 0, "resume: %s", strerror(-rc));
	CHECK(wait_event(s, HV_EVENT_RESUMED, before, 5000), "no RESUMED event");
	CHECK(wait_for(s, heartbeat_after_mark, 5000), "no HEARTBEAT after resume");
	read_serial(s->serial, &a);
	CHECK(strcmp(a.boot_id, b.boot_id) == 0 && a.starts == 1,
	      "resume rebooted: boot %s -> %s", b.boot_id, a.boot_id);
	CHECK(a.last_n > b.last_n, "heartbeat n went from %" PRIu64 " to %" PRIu64, b.last_n, a.last_n);
	say("RESUMED boot_id=%s n=%" PRIu64 "->%" PRIu64, a.boot_id, b.last_n, a.last_n);

	/* Save and restore: the same boot goes on again. */
	unlink(s->save);
	before = s->seen[HV_EVENT_STOPPED];
	t0 = now_ms();
	CHECK((rc = s->drv->save(s->c, s->o.name, s->save, HV_SAVE_BYPASS_CACHE)) == 0, "save: %s",
	      strerror(-rc));
	say("STEP save %" PRIu64, now_ms() - t0);
	CHECK(wait_event(s, HV_EVENT_STOPPED, before, 5000), "no STOPPED event after save");
	CHECK(s->last_reason[HV_EVENT_STOPPED] == HV_REASON_SAVED, "STOPPED reason %s",
	      hv_reason_name(s->last_reason[HV_EVENT_STOPPED]));
	CHECK(vm_state(s) == HV_STATE_SHUTOFF, "saved VM is %s", hv_state_name(vm_state(s)));
	read_serial(s->serial, &b);
	mark = b;
	before = s->seen[HV_EVENT_STARTED];
	t0 = now_ms();
	CHECK((rc = s->drv->restore(s->c, s->save, HV_SAVE_BYPASS_CACHE)) == 0, "restore: %s",
	      strerror(-rc));
	say("STEP restore %" PRIu64, now_ms() - t0);
	CHECK(wait_event(s, HV_EVENT_STARTED, before, 5000), "no STARTED event after restore");
	CHECK(s->last_reason[HV_EVENT_STARTED] == HV_REASON_RESTORED, "STARTED reason %s",
	      hv_reason_name(s->last_reason[HV_EVENT_STARTED]));
	CHECK(wait_for(s, heartbeat_after_mark, 5000), "no HEARTBEAT after restore");
	read_serial(s->serial, &a);
	CHECK(strcmp(a.boot_id, b.boot_id) == 0 && a.starts == 1,
	      "restore rebooted: boot %s -> %s", b.boot_id, a.boot_id);
	say("RESTORED boot_id=%s n=%" PRIu64 "->%" PRIu64, a.boot_id, b.last_n, a.last_n);
	unlink(s->save);
	if (s->o.disk) {
		CHECK(a.disk_last && a.acked > 0, "the disk did not work: DISK-LAST %s, %d ACKED",
		      a.disk_last ? "seen" : "missing", a.acked);
		say("DISK acked=%d", a.acked);
	}
	if (s->o.ip)
		CHECK(a.net_up, "no NET-UP line with vireo.ip=%s", s->o.ip);

	/* Destroy. */
	before = s->seen[HV_EVENT_STOPPED];
	CHECK((rc = s->drv->destroy(s->c, s->o.name)) == 0, "destroy: %s", strerror(-rc));
	CHECK(wait_event(s, HV_EVENT_STOPPED, before, 5000), "no STOPPED event after destroy");
	CHECK(s->last_reason[HV_EVENT_STOPPED] == HV_REASON_DESTROYED, "STOPPED reason %s",
	      hv_reason_name(s->last_reason[HV_EVENT_STOPPED]));
	CHECK(s->drv->destroy(s->c, s->o.name) == -ESRCH, "destroying twice did not say -ESRCH");

	/* A new boot, then a graceful shutdown that the guest obeys. */
	say("BOOT-MS 2 %" PRIu64, start_and_boot(s));
	read_serial(s->serial, &a);
	CHECK(a.starts == 2 && strcmp(a.boot_id, b.boot_id) != 0, "no new boot after destroy");
	before = s->seen[HV_EVENT_STOPPED];
	t0 = now_ms();
	CHECK((rc = hv_shutdown_graceful(s->drv, s->c, s->loop, s->o.name, 10000, 0, on_shutdown, s,
					 NULL)) == 0, "hv_shutdown_graceful: %s", strerror(-rc));
	CHECK(wait_for(s, shutdown_answered, 15000), "graceful shutdown never answered");
	CHECK(s->shutdown_rc == 0 && !s->shutdown_forced, "graceful shutdown: rc %d, forced %d",
	      s->shutdown_rc, s->shutdown_forced);
	say("STEP graceful-shutdown %" PRIu64, now_ms() - t0);
	CHECK(wait_event(s, HV_EVENT_STOPPED, before, 5000), "no STOPPED event after shutdown");
	CHECK(s->last_reason[HV_EVENT_STOPPED] == HV_REASON_SHUTDOWN, "STOPPED reason %s",
	      hv_reason_name(s->last_reason[HV_EVENT_STOPPED]));
	CHECK(poweroff_seen(s), "the guest did not print POWEROFF");

	CHECK(hv_shutdown_graceful(s->drv, s->c, s->loop, s->o.name, 500, 0, on_shutdown, s,
				   NULL) == -ESRCH, "shutting down a stopped VM: not -ESRCH");

	/* A guest without ACPI ignores the power button: destroyed after the
	 * grace. Redefining a stopped VM takes the new command line. */
	{
		size_t len = strlen(s->cmdline);

		snprintf(s->cmdline + len, sizeof(s->cmdline) - len, " acpi=off");
		define_vm(s);
	}
	start_and_boot(s);
	s->shutdown_done = false;
	t0 = now_ms();
	CHECK((rc = hv_shutdown_graceful(s->drv, s->c, s->loop, s->o.name, 1000, 0, on_shutdown, s,
					 NULL)) == 0, "hv_shutdown_graceful: %s", strerror(-rc));
	CHECK(wait_for(s, shutdown_answered, 5000), "forced shutdown never answered");
	CHECK(s->shutdown_rc == 0 && s->shutdown_forced, "forced shutdown: rc %d, forced %d",
	      s->shutdown_rc, s->shutdown_forced);
	CHECK(now_ms() - t0 >= 1000, "destroyed before the grace was over");
	say("STEP forced-shutdown %" PRIu64, now_ms() - t0);

	/* A paused guest cannot hear the button: destroyed at once. */
	start_and_boot(s);
	s->shutdown_done = false;
	CHECK((rc = s->drv->pause(s->c, s->o.name)) == 0, "pause: %s", strerror(-rc));
	t0 = now_ms();
	CHECK((rc = hv_shutdown_graceful(s->drv, s->c, s->loop, s->o.name, 10000, 0, on_shutdown, s,
					 NULL)) == 0, "hv_shutdown_graceful: %s", strerror(-rc));
	CHECK(wait_for(s, shutdown_answered, 5000), "paused shutdown never answered");
	CHECK(s->shutdown_rc == 0 && s->shutdown_forced && now_ms() - t0 < 5000,
	      "paused shutdown: rc %d, forced %d", s->shutdown_rc, s->shutdown_forced);
	say("STEP paused-shutdown %" PRIu64, now_ms() - t0);

	before = s->seen[HV_EVENT_UNDEFINED];
	CHECK((rc = s->drv->undefine(s->c, s->o.name)) == 0, "undefine: %s", strerror(-rc));
	s->defined = false;
	CHECK(wait_event(s, HV_EVENT_UNDEFINED, before, 5000), "no UNDEFINED event");
	CHECK(s->drv->start(s->c, s->o.name, 0) == -ENOENT, "starting an undefined VM: not -ENOENT");
	say("EVENTS started=%d paused=%d resumed=%d stopped=%d defined=%d undefined=%d",
	    s->seen[HV_EVENT_STARTED], s->seen[HV_EVENT_PAUSED], s->seen[HV_EVENT_RESUMED],
	    s->seen[HV_EVENT_STOPPED], s->seen[HV_EVENT_DEFINED], s->seen[HV_EVENT_UNDEFINED]);
	unlink(s->serial);
	if (s->o.disk)
		unlink(s->disk_path);
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int cmd_boottime(struct smoke *s)
{
	uint64_t ms[MAX_RUNS];
	int runs = s->o.runs;

	connect_driver(s);
	resolve_accel(s, s->o.accel_set ? s->o.accel : HV_ACCEL_TCG);
	define_vm(s);
	for (int i = 0; i < runs; i++) {
		int before;

		struct serial now;

		ms[i] = start_and_boot(s);
		read_serial(s->serial, &now);
		say("BOOT-MS %d %" PRIu64 " guest-uptime %" PRIu64, i + 1, ms[i], now.first_uptime_ms);
		before = s->seen[HV_EVENT_STOPPED];
		CHECK(s->drv->destroy(s->c, s->o.name) == 0, "destroy failed");
		CHECK(wait_event(s, HV_EVENT_STOPPED, before, 5000), "no STOPPED event");
	}
	qsort(ms, (size_t)runs, sizeof(ms[0]), cmp_u64);
	say("BOOT-MEDIAN %s %" PRIu64, hv_machine_name(s->o.machine), ms[runs / 2]);
	cleanup_vm();
	unlink(s->serial);
	return 0;
}

static int cmd_accel(struct smoke *s)
{
	connect_driver(s);
	resolve_accel(s, s->o.accel_set ? s->o.accel : HV_ACCEL_AUTO);
	return 0;
}

static int cmd_start_undefined(struct smoke *s)
{
	int rc;

	connect_driver(s);
	rc = s->drv->start(s->c, s->o.name, 0);
	say("RC %d %s", rc, rc < 0 ? strerror(-rc) : "ok");
	CHECK(rc == -ENOENT, "starting undefined VM %s gave %d, not -ENOENT", s->o.name, rc);
	return 0;
}

static int cmd_reconnect(struct smoke *s)
{
	struct serial a, b;
	int before;
	uint64_t t0;

	connect_driver(s);
	resolve_accel(s, s->o.accel_set ? s->o.accel : HV_ACCEL_TCG);
	define_vm(s);
	start_and_boot(s);
	say("READY");
	CHECK(wait_for(s, disconnected, 60000), "the connection was never lost");
	t0 = now_ms();
	{
		enum hv_vm_state st;

		CHECK(s->drv->state(s->c, s->o.name, &st) == -ENOTCONN,
		      "a call while disconnected did not say -ENOTCONN");
		CHECK(!s->drv->connected(s->c), "connected() says yes while disconnected");
	}
	CHECK(wait_for(s, reconnected, 60000), "the connection was never restored");
	say("STEP reconnect %" PRIu64, now_ms() - t0);
	CHECK(s->drv->connected(s->c), "connected() says no after CONNECTION_RESTORED");
	say("STATE %s", hv_state_name(vm_state(s)));
	CHECK(vm_state(s) == HV_STATE_RUNNING, "after the restart the VM is %s",
	      hv_state_name(vm_state(s)));
	read_serial(s->serial, &b);
	mark = b;
	CHECK(wait_for(s, heartbeat_after_mark, 5000), "no HEARTBEAT after the daemon came back");
	read_serial(s->serial, &a);
	CHECK(strcmp(a.boot_id, b.boot_id) == 0 && a.starts == 1, "the guest rebooted");
	/* Events flow on the new connection. */
	before = s->seen[HV_EVENT_STOPPED];
	CHECK(s->drv->destroy(s->c, s->o.name) == 0, "destroy after reconnect failed");
	CHECK(wait_event(s, HV_EVENT_STOPPED, before, 5000), "no STOPPED event after reconnect");
	cleanup_vm();
	unlink(s->serial);
	return 0;
}

/* Events of the target's connection. */
static int dest_seen[HV_EVENT_MIGRATION_DONE + 1];

static void on_dest_event(void *ctx, const struct hv_event *ev)
{
	if (ev->type <= HV_EVENT_MIGRATION_DONE)
		dest_seen[ev->type]++;
	if (ev->name)
		say("EVENT-DEST %s %s %s", hv_event_name(ev->type), ev->name,
		    hv_reason_name(ev->reason));
}

static int migration_rc;

static void on_migrate_event(void *ctx, const struct hv_event *ev)
{
	if (ev->type == HV_EVENT_MIGRATION_DONE) {
		migration_rc = ev->rc;
		say("MIGRATION rc=%d %s", ev->rc, ev->message ? ev->message : "");
	}
	on_event(ctx, ev);
}

static int cmd_migrate(struct smoke *s)
{
	struct hv_connect_params dp = {
		.loop = s->loop,
		.uri = s->o.dest,
		.cb = { .ctx = s, .event = on_dest_event },
	};
	/* The disk is on the lab's pool: shared, but not in a way libvirt sees. */
	struct hv_migrate_params mp = {
		.dest_uri = s->o.dest,
		.live = true,
		.max_downtime_ms = 300,
		.trust_shared_disks = true,
	};
	struct hv_connect_params sp = {
		.loop = s->loop,
		.uri = s->o.uri,
		.cb = { .ctx = s, .event = on_migrate_event },
	};
	struct hv_conn *dc = NULL;
	struct serial a, b;
	enum hv_vm_state st;
	int before, rc;
	uint64_t t0;

	CHECK(s->o.dest, "migrate needs --dest URI");
	rc = s->drv->connect(&sp, &s->c);
	CHECK(rc == 0, "connect: %s", strerror(-rc));
	rc = s->drv->connect(&dp, &dc);
	CHECK(rc == 0, "connect to %s: %s", s->o.dest, strerror(-rc));
	resolve_accel(s, s->o.accel_set ? s->o.accel : HV_ACCEL_TCG);
	define_vm(s);
	start_and_boot(s);
	CHECK(s->drv->migrate(s->c, s->o.name, &(struct hv_migrate_params){ .dest_uri = "" })
	      == -EINVAL, "a migration without a target was accepted");

	read_serial(s->serial, &b);
	before = s->seen[HV_EVENT_MIGRATION_DONE];
	t0 = now_ms();
	rc = s->drv->migrate(s->c, s->o.name, &mp);
	CHECK(rc == 0, "migrate_live: %s", strerror(-rc));
	CHECK(s->drv->migrate(s->c, s->o.name, &mp) == -EBUSY, "a second migration was accepted");
	CHECK(wait_event(s, HV_EVENT_MIGRATION_DONE, before, 120000), "the migration never ended");
	say("STEP migrate %" PRIu64, now_ms() - t0);
	CHECK(migration_rc == 0, "the migration failed: %s", strerror(-migration_rc));
	/* Gone here (undefined at the source), running there, same boot. */
	rc = s->drv->state(s->c, s->o.name, &st);
	CHECK(rc == -ENOENT, "the source still has the VM (state rc %d, %s)", rc, hv_state_name(st));
	s->defined = false;
	rc = s->drv->state(dc, s->o.name, &st);
	CHECK(rc == 0 && st == HV_STATE_RUNNING, "at the target the VM is %s (rc %d)",
	      hv_state_name(st), rc);
	read_serial(s->serial, &mark);
	CHECK(wait_for(s, heartbeat_after_mark, 5000), "no HEARTBEAT after the migration");
	read_serial(s->serial, &a);
	CHECK(strcmp(a.boot_id, b.boot_id) == 0 && a.starts == 1, "the guest rebooted: %s -> %s",
	      b.boot_id, a.boot_id);
	say("MIGRATED boot_id=%s n=%" PRIu64 "->%" PRIu64, a.boot_id, b.last_n, a.last_n);
	wait_for(s, NULL, 200);
	CHECK(dest_seen[HV_EVENT_STARTED] > 0 || dest_seen[HV_EVENT_RESUMED] > 0,
	      "the target reported neither STARTED nor RESUMED");
	CHECK(s->drv->destroy(dc, s->o.name) == 0, "destroy at the target failed");
	CHECK(s->drv->undefine(dc, s->o.name) == 0, "undefine at the target failed");
	s->drv->disconnect(dc);
	unlink(s->serial);
	if (s->o.disk)
		unlink(s->disk_path);
	return 0;
}

static void __attribute__((noreturn)) usage(void)
{
	fprintf(stderr, "usage: hv-smoke [--guest DIR] [--dir DIR] [--name NAME] [--uri URI] "
		"[--machine pc|q35] [--accel kvm|tcg|auto] [--disk] [--bridge BR] [--ip A.B.C.D/LEN] "
		"[--runs N] [--dest URI] [--verbose] "
		"lifecycle|boottime|accel|start-undefined|reconnect|migrate\n");
	exit(2);
}

static void parse(int argc, char **argv, struct opts *o, const char **cmd)
{
	static const struct option longopts[] = {
		{ "guest", required_argument, NULL, 'g' },
		{ "dir", required_argument, NULL, 'd' },
		{ "name", required_argument, NULL, 'n' },
		{ "uri", required_argument, NULL, 'u' },
		{ "machine", required_argument, NULL, 'm' },
		{ "accel", required_argument, NULL, 'a' },
		{ "disk", no_argument, NULL, 'D' },
		{ "bridge", required_argument, NULL, 'b' },
		{ "ip", required_argument, NULL, 'i' },
		{ "runs", required_argument, NULL, 'r' },
		{ "dest", required_argument, NULL, 'T' },
		{ "verbose", no_argument, NULL, 'v' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	o->guest = "/var/cache/vireo/guest";
	o->dir = "/var/lib/vireo/pool/hv-smoke";
	o->runs = 3;
	snprintf(o->name, sizeof(o->name), "hv-smoke-%ld", (long)getpid());
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'g': o->guest = optarg; break;
		case 'd': o->dir = optarg; break;
		case 'n': snprintf(o->name, sizeof(o->name), "%s", optarg); break;
		case 'u': o->uri = optarg; break;
		case 'm':
			if (strcmp(optarg, "pc") && strcmp(optarg, "q35"))
				usage();
			o->machine = strcmp(optarg, "q35") ? HV_MACHINE_PC : HV_MACHINE_Q35;
			break;
		case 'a':
			if (hv_accel_parse(optarg, &o->accel) < 0)
				usage();
			o->accel_set = true;
			break;
		case 'D': o->disk = true; break;
		case 'b': o->bridge = optarg; break;
		case 'i': o->ip = optarg; break;
		case 'r':
			o->runs = atoi(optarg);
			if (o->runs < 1 || o->runs > MAX_RUNS)
				usage();
			break;
		case 'v': o->verbose = true; break;
		case 'T': o->dest = optarg; break;
		default: usage();
		}
	}
	if (optind != argc - 1)
		usage();
	*cmd = argv[optind];
}

int main(int argc, char **argv)
{
	static struct smoke s;
	const char *cmd;
	char path[600];
	int rc;

	parse(argc, argv, &s.o, &cmd);
	setvbuf(stdout, NULL, _IOLBF, 0);
	qb_log_init("hv-smoke", LOG_USER, LOG_INFO);
	qb_log_ctl(QB_LOG_SYSLOG, QB_LOG_CONF_ENABLED, QB_FALSE);
	qb_log_filter_ctl(QB_LOG_STDERR, QB_LOG_FILTER_ADD, QB_LOG_FILTER_FILE, "*",
			  s.o.verbose ? LOG_DEBUG : LOG_INFO);
	qb_log_ctl(QB_LOG_STDERR, QB_LOG_CONF_ENABLED, QB_TRUE);

	snprintf(path, sizeof(path), "%s/vmlinux", s.o.guest);
	if (access(path, R_OK) < 0 || read_manifest_cmdline(&s) < 0) {
		printf("skipped: no test guest in %s; build it with tools/guest/build-guest\n",
		       s.o.guest);
		return 77;
	}
	if (mkdir(s.o.dir, 0755) < 0 && errno != EEXIST) {
		printf("FAIL cannot create %s: %s\n", s.o.dir, strerror(errno));
		return 1;
	}
	S = &s;
	s.loop = qb_loop_create();
	s.drv = &hv_libvirt_driver;
	make_spec(&s);
	if (strcmp(cmd, "lifecycle") == 0)
		rc = cmd_lifecycle(&s);
	else if (strcmp(cmd, "boottime") == 0)
		rc = cmd_boottime(&s);
	else if (strcmp(cmd, "accel") == 0)
		rc = cmd_accel(&s);
	else if (strcmp(cmd, "start-undefined") == 0)
		rc = cmd_start_undefined(&s);
	else if (strcmp(cmd, "reconnect") == 0)
		rc = cmd_reconnect(&s);
	else if (strcmp(cmd, "migrate") == 0)
		rc = cmd_migrate(&s);
	else
		usage();
	s.drv->disconnect(s.c);
	qb_loop_destroy(s.loop);
	if (rc == 0)
		say("OK");
	qb_log_fini();
	return rc;
}
