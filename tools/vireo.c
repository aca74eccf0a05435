/* vireo: the command-line client. It talks to the local vireod over libqb
 * IPC and prints what it answers, for people or (--json) for programs.
 *
 * Exit codes: 0 success, 1 the operation failed or its outcome is unknown,
 * 2 usage error, 3 not quorate or vireod unreachable (nothing was changed). */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "build-config.h"
#include "node/client.h"
#include "node/ipc.h"
#include "tools/vireo_cli.h"

static const char usage_text[] =
	"usage: vireo [--json] COMMAND [ARGS]\n"
	"\n"
	"commands:\n"
	"  status                       the cluster as this node sees it\n"
	"  node list                    the nodes of the cluster\n"
	"  node maintenance enter NODE [--no-wait]\n"
	"                               take no new VMs there and move its VMs away (live,\n"
	"                               else quick); follows the moves until done\n"
	"  node maintenance exit NODE   the node takes VMs again\n"
	"  node evacuate NODE [--no-wait]\n"
	"                               move its VMs away once; it stays active\n"
	"  event list [--limit N]       the cluster's event log (newest last)\n"
	"  event add TEXT               add an entry to the event log\n"
	"  cluster bench COUNT [--payload BYTES]\n"
	"                               propose COUNT no-op operations and time them\n"
	"  version                      the client's version\n"
	"\n"
	"  vm create NAME --vcpus N --memory SIZE [--disk SIZE[,SIZE...]]\n"
	"            (--kernel FILE [--initrd FILE] [--cmdline TEXT] | --boot-disk IMAGE)\n"
	"            [--nic BRIDGE[=MAC]]... [--ha] [--priority P] [--node NODE] [--start]\n"
	"            [--prefer NODE[,NODE...]] [--group GROUP] [--max-relocations N]\n"
	"                               define a VM (SIZE: 512M, 2G, 1T; a plain number is MiB)\n"
	"  vm start NAME                start it and wait until it runs or cannot\n"
	"  vm stop NAME [--force]       stop it (power off; --force: at once) and wait\n"
	"  vm restart NAME [--force]    stop, then start (possibly on another node)\n"
	"  vm delete NAME [--purge]     remove a stopped VM (--purge: and the disks made\n"
	"                               for it, and its console log)\n"
	"  vm migrate NAME [--to NODE] [--live] [--max-downtime MS] [--bandwidth MIBPS]\n"
	"             [--wait|--no-wait]\n"
	"                               move a running VM to another node (default: quick,\n"
	"                               paused while its state moves; --live: pre-copy);\n"
	"                               without --to the manager picks the node\n"
	"  vm migrate --cancel NAME     abort the migration under way (the VM stays)\n"
	"  vm list                      every VM, its state and node\n"
	"  vm show NAME                 one VM in detail\n"
	"  vm console NAME [--follow]   the guest's serial log (--follow: keep printing)\n"
	"\n"
	"  group create NAME (--affinity|--anti-affinity) [--strict|--soft]\n"
	"                               VMs that run on one node (affinity) or on distinct\n"
	"                               nodes (anti-affinity); soft (the default) gives way\n"
	"                               when nothing else fits, strict keeps VMs pending\n"
	"  group delete NAME            drop the rule (its VMs stay)\n"
	"  group add NAME VM...         make VMs members (a VM is in at most one group)\n"
	"  group remove NAME VM...      take VMs out\n"
	"  group list                   every group, its members and where they run\n"
	"\n"
	"options (anywhere on the line):\n"
	"  --json                       print JSON for programs\n"
	"  --timeout SECONDS            how long to wait for vireod (default 30; vm start,\n"
	"                               stop, restart and create --start: 180; vm create\n"
	"                               and delete: 60)\n"
	"\n"
	"exit codes: 0 ok, 1 failed, 2 usage error, 3 not quorate or vireod unreachable\n";

int vireo_usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "vireo: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "; see 'vireo --help'\n");
	return EXIT_USAGE;
}

static int exit_for(Vireo__Outcome o)
{
	switch (o) {
	case VIREO__OUTCOME__OUTCOME_OK: return EXIT_OK;
	case VIREO__OUTCOME__OUTCOME_INVALID: return EXIT_USAGE;
	case VIREO__OUTCOME__OUTCOME_NOT_QUORATE: return EXIT_UNAVAILABLE;
	default: return EXIT_FAILED;
	}
}

int vireo_call(const struct cli *cli, const Vireo__Request *req, Vireo__Response **resp,
	       bool keep_failed)
{
	struct vireo_client *c = NULL;
	int rc = vireo_client_connect(cli->ipc_name, &c);

	*resp = NULL;
	if (rc == -EACCES || rc == -EPERM) {
		fprintf(stderr, "vireo: permission denied: only root and members of group %s may "
			"use vireod\n", NODE_IPC_ADMIN_GROUP);
		return EXIT_UNAVAILABLE;
	}
	if (rc < 0) {
		fprintf(stderr, "vireo: cannot reach vireod on this host (%s); is it running?\n",
			strerror(-rc));
		return EXIT_UNAVAILABLE;
	}
	rc = vireo_client_call(c, req, cli->timeout_ms, resp);
	vireo_client_close(c);
	if (rc < 0) {
		/* The request may have been carried out: not "nothing changed" (3). */
		fprintf(stderr, "vireo: vireod did not answer (%s); the outcome is unknown, check "
			"vireo status and vireo event list before retrying\n",
			rc == -ETIMEDOUT ? "timed out" : rc == -EPROTO ?
			"its answer could not be decoded" : "connection lost");
		return EXIT_FAILED;
	}
	if ((*resp)->outcome != VIREO__OUTCOME__OUTCOME_OK) {
		fprintf(stderr, "vireo: %s\n", (*resp)->message[0] ? (*resp)->message :
			"the operation failed");
		rc = exit_for((*resp)->outcome);
		if (!keep_failed) {
			vireo__response__free_unpacked(*resp, NULL);
			*resp = NULL;
		}
		return rc;
	}
	return EXIT_OK;
}

void vireo_print_json(json_object *o)
{
	puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
}

static const char *node_name(const Vireo__StatusReply *st, uint32_t id)
{
	for (size_t i = 0; i < st->n_nodes; i++)
		if (st->nodes[i]->id == id)
			return st->nodes[i]->name;
	return "?";
}

static json_object *node_json(const Vireo__NodeStatus *n)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "id", json_object_new_int64(n->id));
	json_object_object_add(o, "name", json_object_new_string(n->name));
	json_object_object_add(o, "address", json_object_new_string(n->address));
	json_object_object_add(o, "state", json_object_new_string(n->online ? "online" : "offline"));
	json_object_object_add(o, "digest", n->digest[0] ? json_object_new_string(n->digest) : NULL);
	json_object_object_add(o, "version", json_object_new_int64((int64_t)n->version));
	json_object_object_add(o, "cpus", json_object_new_int64(n->cpus));
	json_object_object_add(o, "memory_mib", json_object_new_int64((int64_t)n->memory_mib));
	json_object_object_add(o, "vireod_version", json_object_new_string(n->vireod_version));
	json_object_object_add(o, "pool_ok", json_object_new_boolean(n->pool_ok));
	json_object_object_add(o, "pool_message", json_object_new_string(n->pool_message));
	json_object_object_add(o, "accel", n->accel[0] ? json_object_new_string(n->accel) : NULL);
	json_object_object_add(o, "vms", json_object_new_int64(n->vms));
	json_object_object_add(o, "vm_memory_mib", json_object_new_int64((int64_t)n->vm_memory_mib));
	json_object_object_add(o, "mode", json_object_new_string(vireo_node_mode_name(n->mode)));
	json_object_object_add(o, "hypervisor", json_object_new_string(n->hv_stalled ? "stalled" : "ok"));
	json_object_object_add(o, "hypervisor_message", json_object_new_string(n->hv_message));
	return o;
}

static void print_node_table(const Vireo__StatusReply *st)
{
	printf("%-4s %-16s %-16s %-8s %-11s %5s %9s %4s %6s %-5s %-7s  %s\n", "ID", "NAME", "ADDRESS",
	       "STATE", "MODE", "CPUS", "MEM(MiB)", "VMS", "ACCEL", "POOL", "HV", "DIGEST@VERSION");
	for (size_t i = 0; i < st->n_nodes; i++) {
		const Vireo__NodeStatus *n = st->nodes[i];
		char dg[64] = "-";

		if (n->digest[0])
			snprintf(dg, sizeof(dg), "%.12s@%" PRIu64, n->digest, n->version);
		printf("%-4u %-16s %-16s %-8s %-11s %5u %9" PRIu64 " %4u %6s %-5s %-7s  %s\n", n->id,
		       n->name, n->address, n->online ? "online" : "offline",
		       vireo_node_mode_name(n->mode), n->cpus, n->memory_mib, n->vms,
		       n->accel[0] ? n->accel : "-", !n->online ? "-" : n->pool_ok ? "ok" : "ERROR",
		       !n->online ? "-" : n->hv_stalled ? "STALLED" : "ok", dg);
	}
	/* Why a pool is not usable does not fit a column: one line per node. */
	for (size_t i = 0; i < st->n_nodes; i++)
		if (st->nodes[i]->online && !st->nodes[i]->pool_ok && st->nodes[i]->pool_message[0])
			printf("%s: pool: %s\n", st->nodes[i]->name, st->nodes[i]->pool_message);
	for (size_t i = 0; i < st->n_nodes; i++)
		if (st->nodes[i]->online && st->nodes[i]->hv_stalled)
			printf("%s: hypervisor: %s\n", st->nodes[i]->name, st->nodes[i]->hv_message);
}

static int cmd_status(const struct cli *cli, bool nodes_only)
{
	Vireo__Request req = VIREO__REQUEST__INIT;
	Vireo__StatusRequest sr = VIREO__STATUS_REQUEST__INIT;
	Vireo__Response *resp;
	const Vireo__StatusReply *st;
	int rc;

	req.body_case = VIREO__REQUEST__BODY_STATUS;
	req.status = &sr;
	if ((rc = vireo_call(cli, &req, &resp, false)) != EXIT_OK)
		return rc;
	st = resp->status;
	if (cli->json) {
		json_object *o = json_object_new_object();
		json_object *arr = json_object_new_array();

		for (size_t i = 0; i < st->n_nodes; i++)
			json_object_array_add(arr, node_json(st->nodes[i]));
		if (nodes_only) {
			json_object_put(o);
			vireo_print_json(arr);
		} else {
			json_object_object_add(o, "cluster", json_object_new_string(st->cluster));
			json_object_object_add(o, "quorate", json_object_new_boolean(st->quorate));
			json_object_object_add(o, "manager", json_object_new_int64(st->manager));
			json_object_object_add(o, "local_node", json_object_new_int64(st->local_node));
			json_object_object_add(o, "version", json_object_new_int64((int64_t)st->version));
			json_object_object_add(o, "digest", json_object_new_string(st->digest));
			json_object_object_add(o, "synced", json_object_new_boolean(st->synced));
			json_object_object_add(o, "corosync_connected",
					       json_object_new_boolean(st->corosync_connected));
			json_object_object_add(o, "loop_stall_max_ms",
					       json_object_new_int64((int64_t)st->loop_stall_max_ms));
			json_object_object_add(o, "loop_stall_cause",
					       json_object_new_string(st->loop_stall_cause));
			json_object_object_add(o, "nodes", arr);
			vireo_print_json(o);
		}
	} else {
		if (!nodes_only) {
			printf("cluster:  %s\n", st->cluster[0] ? st->cluster : "(unnamed)");
			printf("quorate:  %s%s\n", st->quorate ? "yes" : "no",
			       st->corosync_connected ? "" : " (vireod is not connected to corosync)");
			if (st->manager)
				printf("manager:  %s (id %u)\n", node_name(st, st->manager), st->manager);
			else
				printf("manager:  none\n");
			printf("local:    %s (id %u)\n", node_name(st, st->local_node), st->local_node);
			printf("state:    version %" PRIu64 ", digest %.16s%s\n", st->version,
			       st->digest, st->synced ? "" : " (syncing)");
			printf("\n");
		}
		print_node_table(st);
	}
	vireo__response__free_unpacked(resp, NULL);
	return EXIT_OK;
}

static int cmd_event_list(const struct cli *cli, uint32_t limit)
{
	Vireo__Request req = VIREO__REQUEST__INIT;
	Vireo__EventsRequest er = VIREO__EVENTS_REQUEST__INIT;
	Vireo__Response *resp;
	json_object *arr = NULL;
	int rc;

	er.limit = limit;
	req.body_case = VIREO__REQUEST__BODY_EVENTS;
	req.events = &er;
	if ((rc = vireo_call(cli, &req, &resp, false)) != EXIT_OK)
		return rc;
	if (cli->json)
		arr = json_object_new_array();
	for (size_t i = 0; i < resp->events->n_events; i++) {
		const Vireo__Event *ev = resp->events->events[i];

		if (cli->json) {
			json_object *o = json_object_new_object();
			json_object_object_add(o, "seq", json_object_new_int64((int64_t)ev->seq));
			json_object_object_add(o, "time_ms", json_object_new_int64(ev->time_ms));
			json_object_object_add(o, "node", json_object_new_int64(ev->node));
			json_object_object_add(o, "text", json_object_new_string(ev->text));
			json_object_array_add(arr, o);
		} else {
			time_t t = (time_t)(ev->time_ms / 1000);
			struct tm tm;
			char when[32];

			localtime_r(&t, &tm);
			strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
			printf("%6" PRIu64 "  %s.%03d  %s\n", ev->seq, when, (int)(ev->time_ms % 1000),
			       ev->text);
		}
	}
	if (cli->json)
		vireo_print_json(arr);
	vireo__response__free_unpacked(resp, NULL);
	return EXIT_OK;
}

static int cmd_event_add(const struct cli *cli, const char *text)
{
	Vireo__Request req = VIREO__REQUEST__INIT;
	Vireo__NoteRequest nr = VIREO__NOTE_REQUEST__INIT;
	Vireo__Response *resp;
	int rc;

	nr.text = (char *)text;
	req.body_case = VIREO__REQUEST__BODY_NOTE;
	req.note = &nr;
	if ((rc = vireo_call(cli, &req, &resp, false)) != EXIT_OK)
		return rc;
	if (cli->json) {
		json_object *o = json_object_new_object();
		json_object_object_add(o, "ok", json_object_new_boolean(1));
		vireo_print_json(o);
	}
	vireo__response__free_unpacked(resp, NULL);
	return EXIT_OK;
}

static int cmd_bench(const struct cli *cli, uint32_t count, uint32_t payload)
{
	Vireo__Request req = VIREO__REQUEST__INIT;
	Vireo__BenchRequest br = VIREO__BENCH_REQUEST__INIT;
	Vireo__Response *resp;
	const Vireo__BenchReply *b;
	double secs;
	int rc;

	br.count = count;
	br.payload_bytes = payload;
	req.body_case = VIREO__REQUEST__BODY_BENCH;
	req.bench = &br;
	if ((rc = vireo_call(cli, &req, &resp, false)) != EXIT_OK)
		return rc;
	b = resp->bench;
	secs = (double)b->elapsed_us / 1e6;
	if (cli->json) {
		json_object *o = json_object_new_object();
		json_object_object_add(o, "count", json_object_new_int64(b->count));
		json_object_object_add(o, "elapsed_s", json_object_new_double(secs));
		json_object_object_add(o, "ops_per_s", json_object_new_double(b->count / secs));
		json_object_object_add(o, "first_version", json_object_new_int64((int64_t)b->first_version));
		json_object_object_add(o, "last_version", json_object_new_int64((int64_t)b->last_version));
		vireo_print_json(o);
	} else {
		printf("%u operations applied here in %.3f s: %.0f ops/s (state version %" PRIu64
		       " -> %" PRIu64 ")\n", b->count, secs, b->count / secs, b->first_version,
		       b->last_version);
	}
	vireo__response__free_unpacked(resp, NULL);
	return EXIT_OK;
}

int vireo_parse_u32(const char *s, uint32_t min, uint32_t max, uint32_t *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v < min || v > max)
		return -EINVAL;
	*out = (uint32_t)v;
	return 0;
}

/* Pulls global options out of argv, wherever they stand; returns the new argc. */
static int take_global_options(struct cli *cli, int argc, char **argv, int *rc)
{
	int n = 0;

	*rc = -1;
	for (int i = 0; i < argc; i++) {
		uint32_t secs;

		if (strcmp(argv[i], "--json") == 0) {
			cli->json = true;
		} else if (strcmp(argv[i], "--timeout") == 0) {
			if (i + 1 >= argc || vireo_parse_u32(argv[i + 1], 1, 86400, &secs) < 0) {
				*rc = vireo_usage_error("--timeout takes a number of seconds from 1 to 86400");
				return 0;
			}
			cli->timeout_ms = (int)secs * 1000;
			cli->timeout_set = true;
			i++;
		} else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			fputs(usage_text, stdout);
			*rc = EXIT_OK;
			return 0;
		} else {
			argv[n++] = argv[i];
		}
	}
	return n;
}

int main(int argc, char **argv)
{
	struct cli cli = { .json = false, .timeout_ms = 30000 };
	const char *cmd, *sub;
	uint32_t n, payload = 0;
	int rc;

	cli.ipc_name = getenv("VIREO_IPC_NAME");
	argc = take_global_options(&cli, argc - 1, argv + 1, &rc);
	argv++;
	if (rc >= 0)
		return rc;
	if (argc < 1)
		return vireo_usage_error("no command given");
	cmd = argv[0];
	sub = argc > 1 ? argv[1] : NULL;

	if (strcmp(cmd, "status") == 0 && argc == 1)
		return cmd_status(&cli, false);
	if (strcmp(cmd, "version") == 0 && argc == 1) {
		printf("vireo %s\n", PACKAGE_VERSION);
		return EXIT_OK;
	}
	if (strcmp(cmd, "node") == 0 && sub && strcmp(sub, "list") == 0) {
		if (argc != 2)
			return vireo_usage_error("'node list' takes no arguments");
		return cmd_status(&cli, true);
	}
	if (strcmp(cmd, "node") == 0)
		return vireo_node_main(&cli, argc, argv);
	if (strcmp(cmd, "group") == 0)
		return vireo_group_main(&cli, argc, argv);
	if (strcmp(cmd, "event") == 0 && sub && strcmp(sub, "add") == 0) {
		if (argc != 3)
			return vireo_usage_error("'event add' takes exactly one TEXT argument (quote it)");
		return cmd_event_add(&cli, argv[2]);
	}
	if (strcmp(cmd, "event") == 0 && sub && strcmp(sub, "list") == 0) {
		n = 0;
		if (argc == 4 && strcmp(argv[2], "--limit") == 0) {
			if (vireo_parse_u32(argv[3], 1, 100000, &n) < 0)
				return vireo_usage_error("--limit takes a number from 1 to 100000, not '%s'", argv[3]);
		} else if (argc != 2) {
			return vireo_usage_error("'event list' takes only --limit N");
		}
		return cmd_event_list(&cli, n);
	}
	if (strcmp(cmd, "cluster") == 0 && sub && strcmp(sub, "bench") == 0) {
		if (argc != 3 && !(argc == 5 && strcmp(argv[3], "--payload") == 0))
			return vireo_usage_error("'cluster bench' takes COUNT and optionally --payload BYTES");
		if (vireo_parse_u32(argv[2], 1, 1000000, &n) < 0)
			return vireo_usage_error("COUNT must be a number from 1 to 1000000, not '%s'", argv[2]);
		if (argc == 5 && vireo_parse_u32(argv[4], 0, 4096, &payload) < 0)
			return vireo_usage_error("--payload takes 0 to 4096 bytes, not '%s'", argv[4]);
		return cmd_bench(&cli, n, payload);
	}
	if (strcmp(cmd, "vm") == 0)
		return vireo_vm_main(&cli, argc, argv);
	return vireo_usage_error("unknown command or wrong arguments: '%s'", cmd);
}
