/* vireo vm migrate NAME [--to NODE] [--live] [--max-downtime MS]
 *                       [--bandwidth MIBPS] [--wait|--no-wait]
 * vireo vm migrate --cancel NAME
 *
 * vireod answers once the migration is in the cluster log; from then on
 * this follows the VM through vm show requests: progress while its
 * migration runs, and the outcome (last_migration) once it ended. On a
 * terminal it draws a progress line; with --json it prints one JSON object
 * per line ("progress" events, then one "result"). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cluster/vm_migrate.h"
#include "tools/vireo_cli.h"

#define POLL_NS 100000000L      /* 0.1 s: progress is reported every T/4 */
#define MIB (1024.0 * 1024.0)

struct migrate_opts {
	const char *name;
	const char *to;
	bool live, cancel, wait;
	uint32_t max_downtime_ms;
	uint32_t bandwidth_mibps;
};

static const char *node_name(const Vireo__VmListReply *lr, uint32_t id)
{
	for (size_t i = 0; i < lr->n_nodes; i++)
		if (lr->nodes[i]->id == id)
			return lr->nodes[i]->name;
	return "?";
}

static void print_line(json_object *o)
{
	printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	fflush(stdout);
	json_object_put(o);
}

static double ratio(uint64_t raw, uint64_t sent)
{
	return sent ? (double)raw / (double)sent : 0.0;
}

static void show_progress(const struct cli *cli, const Vireo__VmListReply *lr, const Vireo__Vm *vm,
			  bool tty)
{
	const Vireo__VmMigration *m = vm->migration;

	if (cli->json) {
		json_object *o = json_object_new_object();

		json_object_object_add(o, "event", json_object_new_string("progress"));
		json_object_object_add(o, "name", json_object_new_string(vm->spec->name));
		json_object_object_add(o, "id", json_object_new_int64((int64_t)m->id));
		json_object_object_add(o, "phase", json_object_new_string(cluster_migration_phase_name(m->phase)));
		json_object_object_add(o, "bytes_raw", json_object_new_int64((int64_t)m->bytes_raw));
		json_object_object_add(o, "bytes_sent", json_object_new_int64((int64_t)m->bytes_sent));
		json_object_object_add(o, "rate_mibps", json_object_new_int64(m->rate_mibps));
		json_object_object_add(o, "memory_total", json_object_new_int64((int64_t)m->memory_total));
		json_object_object_add(o, "memory_remaining",
				       json_object_new_int64((int64_t)m->memory_remaining));
		print_line(o);
		return;
	}
	if (!tty)
		return;
	/* The bar: live migration knows how much memory is left; quick only
	 * how much has gone (the guest's memory size bounds it). */
	{
		uint64_t total = m->memory_total ? m->memory_total : vm->spec->memory_mib << 20;
		uint64_t done = m->memory_total ? m->memory_total - m->memory_remaining : m->bytes_raw;
		int filled = total ? (int)(20.0 * (double)(done > total ? total : done) / (double)total) : 0;
		char bar[21];

		memset(bar, '#', (size_t)filled);
		memset(bar + filled, '.', (size_t)(20 - filled));
		bar[20] = '\0';
		fprintf(stderr, "\r%s -> %s [%s] %-9s %8.1f MiB state, %7.1f MiB sent (%4.1fx) %5u MiB/s ",
			node_name(lr, m->source), node_name(lr, m->target), bar, cluster_migration_phase_name(m->phase),
			(double)m->bytes_raw / MIB, (double)m->bytes_sent / MIB,
			ratio(m->bytes_raw, m->bytes_sent), m->rate_mibps);
	}
}

/* Prints how the migration ended; returns whether it moved the VM. */
static bool show_result(const struct cli *cli, const Vireo__VmListReply *lr, const Vireo__Vm *vm,
			bool tty, bool cancel)
{
	const Vireo__MigrationResult *r = vm->last_migration;

	if (tty && !cli->json)
		fputc('\n', stderr);
	if (cli->json) {
		json_object *o = json_object_new_object();

		json_object_object_add(o, "event", json_object_new_string("result"));
		json_object_object_add(o, "ok", json_object_new_boolean(r->ok));
		json_object_object_add(o, "name", json_object_new_string(vm->spec->name));
		json_object_object_add(o, "id", json_object_new_int64((int64_t)r->id));
		json_object_object_add(o, "kind", json_object_new_string(cluster_migration_kind_name(r->kind)));
		json_object_object_add(o, "source", json_object_new_string(node_name(lr, r->source)));
		json_object_object_add(o, "target", json_object_new_string(node_name(lr, r->target)));
		json_object_object_add(o, "node", json_object_new_string(node_name(lr, vm->owner)));
		json_object_object_add(o, "state", json_object_new_string(
			vm->state == VIREO__VM_STATE__VM_RUNNING ? "running" :
			vm->state == VIREO__VM_STATE__VM_ERROR ? "error" : "other"));
		json_object_object_add(o, "downtime_ms", json_object_new_int64((int64_t)r->downtime_ms));
		json_object_object_add(o, "total_ms", json_object_new_int64((int64_t)r->total_ms));
		json_object_object_add(o, "bytes_raw", json_object_new_int64((int64_t)r->bytes_raw));
		json_object_object_add(o, "bytes_sent", json_object_new_int64((int64_t)r->bytes_sent));
		json_object_object_add(o, "setup_ms", json_object_new_int64((int64_t)r->setup_ms));
		json_object_object_add(o, "transfer_ms", json_object_new_int64((int64_t)r->transfer_ms));
		json_object_object_add(o, "finish_ms", json_object_new_int64((int64_t)r->finish_ms));
		json_object_object_add(o, "handover_ms", json_object_new_int64((int64_t)r->handover_ms));
		json_object_object_add(o, "message", json_object_new_string(r->message));
		print_line(o);
	} else if (r->ok) {
		printf("%s: migrated %s -> %s (%s) in %" PRIu64 " ms, downtime %" PRIu64 " ms; "
		       "%.1f MiB of state, %.1f MiB sent (%.1fx)\n", vm->spec->name,
		       node_name(lr, r->source), node_name(lr, r->target), cluster_migration_kind_name(r->kind),
		       r->total_ms, r->downtime_ms, (double)r->bytes_raw / MIB,
		       (double)r->bytes_sent / MIB, ratio(r->bytes_raw, r->bytes_sent));
	} else {
		/* For --cancel this is the good news. */
		fprintf(cancel ? stdout : stderr, "%s%s: %s\n", cancel ? "" : "vireo: ", vm->spec->name,
			vm->message[0] ? vm->message : r->message);
	}
	return r->ok;
}

/* Follows migration id of VM name until it ends: EXIT_OK with *moved
 * saying how it ended, or the exit code of why the outcome is unknown. */
static int follow(const struct cli *cli, const char *name, uint64_t id, bool cancel, bool *moved)
{
	struct timespec pause = { 0, POLL_NS };
	bool tty = isatty(STDERR_FILENO) && !cli->json;
	uint64_t last_raw = UINT64_MAX, last_remaining = UINT64_MAX;
	int last_phase = -1;

	for (;;) {
		Vireo__Response *resp;
		const Vireo__VmListReply *lr;
		const Vireo__Vm *vm;
		int rc;

		if ((rc = vireo_fetch_vms(cli, name, &resp)) != EXIT_OK)
			return rc;
		lr = resp->vm_list;
		vm = lr->vms[0];
		if (vm->last_migration && vm->last_migration->id == id) {
			*moved = show_result(cli, lr, vm, tty, cancel);
			vireo__response__free_unpacked(resp, NULL);
			return EXIT_OK;
		}
		if (!vm->migration || vm->migration->id != id) {
			fprintf(stderr, "vireo: the migration of %s is no longer known; the outcome is "
				"unknown, see vireo vm show %s\n", name, name);
			vireo__response__free_unpacked(resp, NULL);
			return EXIT_FAILED;
		}
		if (vm->migration->bytes_raw != last_raw || (int)vm->migration->phase != last_phase ||
		    vm->migration->memory_remaining != last_remaining) {
			show_progress(cli, lr, vm, tty);
			last_raw = vm->migration->bytes_raw;
			last_remaining = vm->migration->memory_remaining;
			last_phase = (int)vm->migration->phase;
		}
		vireo__response__free_unpacked(resp, NULL);
		nanosleep(&pause, NULL);
	}
}

static int parse(int argc, char **argv, struct migrate_opts *o)
{
	o->wait = true;
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		bool has_value = i + 1 < argc;

		if (strcmp(a, "--live") == 0) {
			o->live = true;
		} else if (strcmp(a, "--cancel") == 0) {
			o->cancel = true;
		} else if (strcmp(a, "--wait") == 0) {
			o->wait = true;
		} else if (strcmp(a, "--no-wait") == 0) {
			o->wait = false;
		} else if (strcmp(a, "--to") == 0 && has_value) {
			o->to = argv[++i];
		} else if (strcmp(a, "--max-downtime") == 0 && has_value) {
			if (vireo_parse_u32(argv[++i], 1, 60000, &o->max_downtime_ms) < 0)
				return vireo_usage_error("--max-downtime takes milliseconds, 1 to 60000, "
							 "not '%s'", argv[i]);
		} else if (strcmp(a, "--bandwidth") == 0 && has_value) {
			if (vireo_parse_u32(argv[++i], 1, 1000000, &o->bandwidth_mibps) < 0)
				return vireo_usage_error("--bandwidth takes MiB/s, 1 to 1000000, not "
							 "'%s'", argv[i]);
		} else if (a[0] != '-' && !o->name) {
			o->name = a;
		} else {
			return vireo_usage_error("'vm migrate' does not take '%s'%s", a,
						 a[0] == '-' && !has_value ? " here (missing value?)" : "");
		}
	}
	if (!o->name)
		return vireo_usage_error("'vm migrate' takes the VM's NAME");
	if (o->cancel && (o->to || o->live || o->max_downtime_ms || o->bandwidth_mibps))
		return vireo_usage_error("'vm migrate --cancel NAME' takes no other option than "
					 "--wait/--no-wait");
	if (o->max_downtime_ms && !o->live)
		return vireo_usage_error("--max-downtime is for live migration (--live)");
	return EXIT_OK;
}

int vireo_vm_migrate(const struct cli *cli, int argc, char **argv)
{
	struct migrate_opts o = { 0 };
	Vireo__Request req = VIREO__REQUEST__INIT;
	Vireo__VmMigrateRequest mr = VIREO__VM_MIGRATE_REQUEST__INIT;
	Vireo__Response *resp = NULL;
	const Vireo__VmListReply *lr;
	const Vireo__Vm *vm;
	uint64_t id;
	bool moved = false;
	int rc;

	if ((rc = parse(argc, argv, &o)) != EXIT_OK)
		return rc;
	mr.name = (char *)o.name;
	mr.target = (char *)(o.to ? o.to : "");
	mr.live = o.live;
	mr.cancel = o.cancel;
	mr.max_downtime_ms = o.max_downtime_ms;
	mr.bandwidth_mibps = o.bandwidth_mibps;
	req.body_case = VIREO__REQUEST__BODY_VM_MIGRATE;
	req.vm_migrate = &mr;
	if ((rc = vireo_call(cli, &req, &resp, false)) != EXIT_OK)
		return rc;
	lr = resp->body_case == VIREO__RESPONSE__BODY_VM_LIST ? resp->vm_list : NULL;
	vm = lr && lr->n_vms ? lr->vms[0] : NULL;
	if (!vm || !(vm->migration || vm->last_migration)) {
		fprintf(stderr, "vireo: vireod did not say which migration it began; see vireo vm "
			"show %s\n", o.name);
		vireo__response__free_unpacked(resp, NULL);
		return EXIT_FAILED;
	}
	/* A cancel may find the migration already over. */
	id = vm->migration ? vm->migration->id : vm->last_migration->id;
	if (!o.wait) {
		if (cli->json) {
			json_object *ev = json_object_new_object();

			json_object_object_add(ev, "event", json_object_new_string(
				o.cancel ? "cancel-requested" : "started"));
			json_object_object_add(ev, "name", json_object_new_string(o.name));
			json_object_object_add(ev, "id", json_object_new_int64((int64_t)id));
			if (vm->migration)
				json_object_object_add(ev, "target", json_object_new_string(
					node_name(lr, vm->migration->target)));
			print_line(ev);
		} else if (o.cancel) {
			printf("%s: cancel requested (migration %" PRIu64 ")\n", o.name, id);
		} else {
			printf("%s: %s migration to %s begun (id %" PRIu64 "); follow it with vireo vm "
			       "show %s\n", o.name, cluster_migration_kind_name(vm->migration->kind),
			       node_name(lr, vm->migration->target), id, o.name);
		}
		vireo__response__free_unpacked(resp, NULL);
		return EXIT_OK;
	}
	vireo__response__free_unpacked(resp, NULL);
	if ((rc = follow(cli, o.name, id, o.cancel, &moved)) != EXIT_OK)
		return rc;
	if (o.cancel && moved)
		fprintf(stderr, "vireo: too late to cancel: %s had moved already\n", o.name);
	/* A cancel succeeded when the migration did not. */
	return moved != o.cancel ? EXIT_OK : EXIT_FAILED;
}
