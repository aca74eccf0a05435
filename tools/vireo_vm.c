/* vireo vm ...: define, start, stop, restart, delete, list, show VMs and
 * read their serial console logs. vireod checks what it is given; this file
 * only turns the command line into a request and the answer into text. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cluster/vm.h"
#include "cluster/vm_migrate.h"
#include "tools/vireo_cli.h"

/* Start, stop and restart wait for the outcome: vireod gives each phase
 * 45 corosync tokens (45 s with the default token), a restart two phases. */
#define VM_ACTION_TIMEOUT_MS 180000
#define VM_CHANGE_TIMEOUT_MS 60000
#define VM_SIZE_MAX_MIB (16ull << 20)         /* 16 TiB */
#define CONSOLE_CHUNK (64u * 1024u)
#define CONSOLE_POLL_NS 200000000L
/* vireod's bounds (node/vm_requests.h), checked here to say so early. */
#define VM_MAX_PREFERRED 32u
#define VM_MAX_RELOCATIONS 100u

/* "512M", "2G", "1T", "2GiB", "1024" (MiB): whole MiB, 1 MiB to 16 TiB. */
static int parse_mib(const char *s, uint64_t *mib)
{
	static const struct { const char *unit; unsigned shift; } units[] = {
		{ "", 0 }, { "M", 0 }, { "MiB", 0 }, { "G", 10 }, { "GiB", 10 },
		{ "T", 20 }, { "TiB", 20 },
	};
	char *end;
	unsigned long long v;

	if (s[0] < '0' || s[0] > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -ERANGE;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcasecmp(end, units[i].unit) != 0)
			continue;
		if (v == 0)
			return -EINVAL;
		if (v > (VM_SIZE_MAX_MIB >> units[i].shift))
			return -ERANGE;
		*mib = (uint64_t)v << units[i].shift;
		return 0;
	}
	return -EINVAL;
}

static int size_error(const char *opt, const char *text, int rc)
{
	if (rc == -ERANGE)
		return vireo_usage_error("%s %s is more than 16 TiB", opt, text);
	return vireo_usage_error("%s takes a size of at least 1 MiB such as 512M, 2G or 1T (a plain "
				 "number is MiB), not '%s'", opt, text);
}

/* vireod checks the file on its host, which is this host: send the path as
 * it resolves here, or made absolute so vireod can say what is missing. */
static char *absolute_path(const char *path)
{
	char cwd[PATH_MAX];
	char *out = realpath(path, NULL);

	if (out || path[0] == '/')
		return out ? out : strdup(path);
	if (!getcwd(cwd, sizeof(cwd)) || asprintf(&out, "%s/%s", cwd, path) < 0)
		return NULL;
	return out;
}

/* ---------------------------------------------------------------- output */

/* "running" for VM_RUNNING: the names state_name() gives, taken
 * from the schema (linking cluster/vm.c would pull the whole state in). */
static const char *state_name(Vireo__VmState s)
{
	static char names[16][24];
	const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(&vireo__vm_state__descriptor,
									   (int)s);
	char *out;

	if (!v || (unsigned)s >= sizeof(names) / sizeof(names[0]) || strncmp(v->name, "VM_", 3) ||
	    strlen(v->name) - 3 >= sizeof(names[0]))
		return "unknown";
	out = names[s];
	for (size_t i = 3; i <= strlen(v->name); i++)
		out[i - 3] = (char)tolower((unsigned char)v->name[i]);
	return out;
}

static const Vireo__NodeInfo *find_node(const Vireo__VmListReply *lr, uint32_t id)
{
	for (size_t i = 0; i < lr->n_nodes; i++)
		if (lr->nodes[i]->id == id)
			return lr->nodes[i];
	return NULL;
}

static json_object *node_name_json(const Vireo__VmListReply *lr, uint32_t id)
{
	const Vireo__NodeInfo *n = find_node(lr, id);

	if (!id)
		return NULL;
	return json_object_new_string(n ? n->name : "?");
}

static json_object *string_or_null(const char *s)
{
	return s[0] ? json_object_new_string(s) : NULL;
}

static void add_u64(json_object *o, const char *key, uint64_t v)
{
	json_object_object_add(o, key, json_object_new_int64((int64_t)v));
}

static json_object *migration_json(const Vireo__VmListReply *lr, const Vireo__VmMigration *m)
{
	json_object *o = json_object_new_object();

	add_u64(o, "id", m->id);
	json_object_object_add(o, "kind", json_object_new_string(cluster_migration_kind_name(m->kind)));
	json_object_object_add(o, "source", node_name_json(lr, m->source));
	json_object_object_add(o, "target", node_name_json(lr, m->target));
	json_object_object_add(o, "phase", json_object_new_string(
		cluster_migration_phase_name(m->phase)));
	json_object_object_add(o, "cancel", json_object_new_boolean(m->cancel));
	add_u64(o, "bytes_raw", m->bytes_raw);
	add_u64(o, "bytes_sent", m->bytes_sent);
	add_u64(o, "memory_total", m->memory_total);
	add_u64(o, "memory_remaining", m->memory_remaining);
	add_u64(o, "rate_mibps", m->rate_mibps);
	json_object_object_add(o, "started_ms", json_object_new_int64(m->started_ms));
	return o;
}

static json_object *result_json(const Vireo__VmListReply *lr, const Vireo__MigrationResult *r)
{
	json_object *o = json_object_new_object();

	add_u64(o, "id", r->id);
	json_object_object_add(o, "ok", json_object_new_boolean(r->ok));
	json_object_object_add(o, "kind", json_object_new_string(cluster_migration_kind_name(r->kind)));
	json_object_object_add(o, "source", node_name_json(lr, r->source));
	json_object_object_add(o, "target", node_name_json(lr, r->target));
	add_u64(o, "downtime_ms", r->downtime_ms);
	add_u64(o, "total_ms", r->total_ms);
	add_u64(o, "bytes_raw", r->bytes_raw);
	add_u64(o, "bytes_sent", r->bytes_sent);
	json_object_object_add(o, "ended_ms", json_object_new_int64(r->ended_ms));
	json_object_object_add(o, "message", json_object_new_string(r->message));
	return o;
}

static uint32_t max_relocations(const Vireo__VmSpec *sp)
{
	return sp->max_relocations ? sp->max_relocations : CLUSTER_VM_DEFAULT_MAX_RELOCATIONS;
}

static const char *group_rule(const Vireo__VmGroup *g)
{
	if (g->affinity)
		return g->strict ? "affinity, strict" : "affinity, soft";
	return g->strict ? "anti-affinity, strict" : "anti-affinity, soft";
}

/* Placement: preferred nodes, group, failovers counted against the limit. */
static void placement_json(json_object *o, const Vireo__VmListReply *lr,
			   const Vireo__GroupListReply *gl, const Vireo__Vm *vm)
{
	const Vireo__VmSpec *sp = vm->spec;
	const Vireo__VmGroup *g = vireo_group_of(gl, sp->name);
	json_object *pref = json_object_new_array();

	for (size_t i = 0; i < sp->n_preferred_nodes; i++)
		json_object_array_add(pref, node_name_json(lr, sp->preferred_nodes[i]));
	json_object_object_add(o, "preferred_nodes", pref);
	json_object_object_add(o, "group", g ? json_object_new_string(g->name) : NULL);
	json_object_object_add(o, "relocations", json_object_new_int64(vm->relocations));
	json_object_object_add(o, "max_relocations", json_object_new_int64(max_relocations(sp)));
	json_object_object_add(o, "relocated_ms", vm->relocated_ms ?
			       json_object_new_int64(vm->relocated_ms) : NULL);
	json_object_object_add(o, "lost_node", node_name_json(lr, vm->lost_node));
}

static json_object *vm_json(const Vireo__VmListReply *lr, const Vireo__GroupListReply *gl,
			    const Vireo__Vm *vm)
{
	const Vireo__VmSpec *sp = vm->spec;
	json_object *o = json_object_new_object();
	json_object *disks = json_object_new_array();
	json_object *nics = json_object_new_array();

	json_object_object_add(o, "name", json_object_new_string(sp->name));
	json_object_object_add(o, "uuid", json_object_new_string(sp->uuid));
	json_object_object_add(o, "state", json_object_new_string(state_name(vm->state)));
	json_object_object_add(o, "node", node_name_json(lr, vm->owner));
	json_object_object_add(o, "ha", json_object_new_boolean(sp->ha));
	json_object_object_add(o, "memory_mib", json_object_new_int64((int64_t)sp->memory_mib));
	json_object_object_add(o, "vcpus", json_object_new_int64(sp->vcpus));
	json_object_object_add(o, "priority", json_object_new_int(sp->priority));
	json_object_object_add(o, "want_running", json_object_new_boolean(vm->want_running));
	json_object_object_add(o, "message", json_object_new_string(vm->message));
	json_object_object_add(o, "generation", json_object_new_int64((int64_t)vm->generation));
	json_object_object_add(o, "restarts", json_object_new_int64(vm->restarts));
	json_object_object_add(o, "state_since_ms", json_object_new_int64(vm->state_since_ms));
	json_object_object_add(o, "force_stop", json_object_new_boolean(vm->force_stop));
	json_object_object_add(o, "pinned_node", node_name_json(lr, sp->pinned_node));
	placement_json(o, lr, gl, vm);
	json_object_object_add(o, "kernel", string_or_null(sp->kernel));
	json_object_object_add(o, "initrd", string_or_null(sp->initrd));
	json_object_object_add(o, "cmdline", string_or_null(sp->cmdline));
	json_object_object_add(o, "boot_disk", string_or_null(sp->boot_disk));
	for (size_t i = 0; i < sp->n_disks; i++) {
		json_object *d = json_object_new_object();

		json_object_object_add(d, "image", json_object_new_string(sp->disks[i]->image));
		json_object_object_add(d, "size_mib", json_object_new_int64((int64_t)sp->disks[i]->size_mib));
		json_object_object_add(d, "format", json_object_new_string(sp->disks[i]->format));
		json_object_object_add(d, "owned", json_object_new_boolean(sp->disks[i]->owned));
		json_object_array_add(disks, d);
	}
	json_object_object_add(o, "disks", disks);
	for (size_t i = 0; i < sp->n_nics; i++) {
		json_object *n = json_object_new_object();

		json_object_object_add(n, "bridge", json_object_new_string(sp->nics[i]->bridge));
		json_object_object_add(n, "mac", string_or_null(sp->nics[i]->mac));
		json_object_array_add(nics, n);
	}
	json_object_object_add(o, "nics", nics);
	json_object_object_add(o, "migration", vm->migration ? migration_json(lr, vm->migration) : NULL);
	json_object_object_add(o, "last_migration", vm->last_migration ?
			       result_json(lr, vm->last_migration) : NULL);
	return o;
}

static void format_mib(uint64_t mib, char *buf, size_t len)
{
	if (mib >= (1u << 20) && mib % (1u << 20) == 0)
		snprintf(buf, len, "%" PRIu64 "T", mib >> 20);
	else if (mib >= 1024 && mib % 1024 == 0)
		snprintf(buf, len, "%" PRIu64 "G", mib >> 10);
	else
		snprintf(buf, len, "%" PRIu64 "M", mib);
}

static const char *owner_name(const Vireo__VmListReply *lr, uint32_t id)
{
	const Vireo__NodeInfo *n = find_node(lr, id);

	return !id ? "-" : n ? n->name : "?";
}

/* "vm1: running on n2", "vm1: created, stopped", "vm1: pending (no online
 * node has ...)", with vireod's note ("already running") last. */
static void print_vm_line(const Vireo__VmListReply *lr, const Vireo__Vm *vm, const char *verb,
			  const char *note)
{
	bool placed = vm->owner && vm->state != VIREO__VM_STATE__VM_STOPPED &&
		      vm->state != VIREO__VM_STATE__VM_PENDING;

	printf("%s: %s%s%s%s", vm->spec->name, verb ? verb : "", state_name(vm->state),
	       placed ? " on " : "", placed ? owner_name(lr, vm->owner) : "");
	if (vm->message[0])
		printf(" (%s)", vm->message);
	if (note && note[0])
		printf(" (%s)", note);
	putchar('\n');
}

static void print_table(const Vireo__VmListReply *lr)
{
	printf("%-20s %-10s %-12s %5s %7s %-3s %s\n", "NAME", "STATE", "NODE", "VCPUS", "MEMORY",
	       "HA", "MESSAGE");
	for (size_t i = 0; i < lr->n_vms; i++) {
		const Vireo__Vm *vm = lr->vms[i];
		char mem[32];

		format_mib(vm->spec->memory_mib, mem, sizeof(mem));
		printf("%-20s %-10s %-12s %5u %7s %-3s %s\n", vm->spec->name,
		       state_name(vm->state), owner_name(lr, vm->owner), vm->spec->vcpus,
		       mem, vm->spec->ha ? "yes" : "no", vm->message[0] ? vm->message : "-");
	}
}

static void print_time(const char *label, int64_t ms)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	char when[32];

	localtime_r(&t, &tm);
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
	printf("%-12s %s\n", label, when);
}

static void print_placement(const Vireo__VmListReply *lr, const Vireo__GroupListReply *gl,
			    const Vireo__Vm *vm)
{
	const Vireo__VmSpec *sp = vm->spec;
	const Vireo__VmGroup *g = vireo_group_of(gl, sp->name);

	if (sp->n_preferred_nodes) {
		printf("%-12s ", "preferred:");
		for (size_t i = 0; i < sp->n_preferred_nodes; i++)
			printf("%s%s", i ? ", " : "", owner_name(lr, sp->preferred_nodes[i]));
		putchar('\n');
	}
	if (g)
		printf("%-12s %s (%s)\n", "group:", g->name, group_rule(g));
	else
		printf("%-12s -\n", "group:");
	if (sp->ha)
		printf("%-12s %u of at most %u%s\n", "relocations:", vm->relocations,
		       max_relocations(sp), sp->max_relocations ? "" : " (the default)");
	if (vm->lost_node)
		printf("%-12s %s\n", "lost with:", owner_name(lr, vm->lost_node));
}

static void print_show(const Vireo__VmListReply *lr, const Vireo__GroupListReply *gl,
		       const Vireo__Vm *vm)
{
	const Vireo__VmSpec *sp = vm->spec;
	char mem[32];

	format_mib(sp->memory_mib, mem, sizeof(mem));
	printf("%-12s %s\n", "name:", sp->name);
	printf("%-12s %s\n", "uuid:", sp->uuid);
	printf("%-12s %s\n", "state:", state_name(vm->state));
	print_time("since:", vm->state_since_ms);
	printf("%-12s %s\n", "wanted:", vm->want_running ? "running" : "stopped");
	printf("%-12s %s\n", "node:", owner_name(lr, vm->owner));
	if (vm->message[0])
		printf("%-12s %s\n", "message:", vm->message);
	printf("%-12s %u\n", "vcpus:", sp->vcpus);
	printf("%-12s %" PRIu64 " MiB\n", "memory:", sp->memory_mib);
	printf("%-12s %s\n", "ha:", sp->ha ? "yes" : "no");
	printf("%-12s %d\n", "priority:", sp->priority);
	printf("%-12s %s\n", "pinned to:", sp->pinned_node ? owner_name(lr, sp->pinned_node) :
	       "- (the manager chooses)");
	print_placement(lr, gl, vm);
	if (sp->kernel[0]) {
		printf("%-12s kernel %s\n", "boot:", sp->kernel);
		if (sp->initrd[0])
			printf("%-12s %s\n", "initrd:", sp->initrd);
		if (sp->cmdline[0])
			printf("%-12s %s\n", "cmdline:", sp->cmdline);
	} else {
		printf("%-12s disk %s\n", "boot:", sp->boot_disk);
	}
	printf("%s\n", sp->n_disks ? "disks:" : "disks:       none");
	for (size_t i = 0; i < sp->n_disks; i++) {
		format_mib(sp->disks[i]->size_mib, mem, sizeof(mem));
		printf("  %-24s %7s %-6s %s\n", sp->disks[i]->image, mem, sp->disks[i]->format,
		       sp->disks[i]->owned ? "made for it (vm delete --purge deletes it)" :
		       "boot image (kept)");
	}
	for (size_t i = 0; i < sp->n_nics; i++)
		printf("%-12s bridge %s%s%s\n", i ? "" : "nics:", sp->nics[i]->bridge,
		       sp->nics[i]->mac[0] ? ", mac " : "", sp->nics[i]->mac);
	printf("%-12s %" PRIu64 "\n", "generation:", vm->generation);
	printf("%-12s %u\n", "restarts:", vm->restarts);
	if (vm->migration)
		printf("%-12s %s to %s, %s, %.1f MiB of state sent as %.1f MiB%s\n", "migrating:",
		       cluster_migration_kind_name(vm->migration->kind), owner_name(lr, vm->migration->target),
		       cluster_migration_phase_name(vm->migration->phase), (double)vm->migration->bytes_raw / 1048576.0,
		       (double)vm->migration->bytes_sent / 1048576.0,
		       vm->migration->cancel ? " (cancel requested)" : "");
	if (vm->last_migration)
		printf("%-12s %s %s -> %s: %s (downtime %" PRIu64 " ms, total %" PRIu64 " ms)%s%s\n",
		       "migrated:", cluster_migration_kind_name(vm->last_migration->kind),
		       owner_name(lr, vm->last_migration->source),
		       owner_name(lr, vm->last_migration->target),
		       vm->last_migration->ok ? "ok" : "failed", vm->last_migration->downtime_ms,
		       vm->last_migration->total_ms, vm->last_migration->message[0] ? ": " : "",
		       vm->last_migration->message);
	if (vm->force_stop)
		printf("%-12s yes\n", "force stop:");
}

/* Prints the answer to create or an action: the VM as it is now. A failed
 * one already said why on stderr; with --json the VM is printed anyway. */
static int print_outcome(const struct cli *cli, int rc, Vireo__Response *resp, const char *verb)
{
	const Vireo__VmListReply *lr;
	const Vireo__Vm *vm;

	if (!resp)
		return rc;
	lr = resp->body_case == VIREO__RESPONSE__BODY_VM_LIST ? resp->vm_list : NULL;
	vm = lr && lr->n_vms ? lr->vms[0] : NULL;
	if (cli->json && vm) {
		Vireo__Response *groups = NULL;

		vireo_fetch_groups(cli, &groups);
		vireo_print_json(vm_json(lr, groups ? groups->groups : NULL, vm));
		if (groups)
			vireo__response__free_unpacked(groups, NULL);
	}
	else if (!cli->json && rc == EXIT_OK && vm)
		print_vm_line(lr, vm, verb, resp->message);
	vireo__response__free_unpacked(resp, NULL);
	return rc;
}

/* ---------------------------------------------------------------- commands */

/* --prefer NODE[,NODE...], also given more than once: the names in order
 * (vireod knows the nodes and says which one it does not know). */
static int add_preferred(Vireo__VmCreateRequest *cr, char **slots, const char *val)
{
	const char *p = val;

	if (!val[0] || val[0] == ',' || val[strlen(val) - 1] == ',' || strstr(val, ",,"))
		return vireo_usage_error("--prefer takes node names separated by commas, not '%s'",
					 val);
	cr->prefer = slots;
	while (*p) {
		size_t len = strcspn(p, ",");

		if (cr->n_prefer == VM_MAX_PREFERRED)
			return vireo_usage_error("a VM has at most %u preferred nodes", VM_MAX_PREFERRED);
		if (!(slots[cr->n_prefer] = strndup(p, len))) {
			fprintf(stderr, "vireo: out of memory\n");
			return EXIT_FAILED;
		}
		cr->n_prefer++;
		p += len + (p[len] == ',');
	}
	return EXIT_OK;
}

static int cmd_create(const struct cli *cli, int argc, char **argv)
{
	struct cli c = *cli;
	Vireo__Request req = VIREO__REQUEST__INIT;
	Vireo__VmCreateRequest cr = VIREO__VM_CREATE_REQUEST__INIT;
	Vireo__VmSpec spec = VIREO__VM_SPEC__INIT;
	Vireo__VmDisk disks[CLUSTER_VM_MAX_DISKS];
	Vireo__VmDisk *ptrs[CLUSTER_VM_MAX_DISKS];
	Vireo__VmNic nics[CLUSTER_VM_MAX_NICS];
	Vireo__VmNic *nic_ptrs[CLUSTER_VM_MAX_NICS];
	char *prefer[VM_MAX_PREFERRED];
	char *kernel = NULL, *initrd = NULL;
	Vireo__Response *resp = NULL;
	bool have_vcpus = false, have_memory = false;
	int rc = EXIT_USAGE;

	if (argc < 3 || argv[2][0] == '-')
		return vireo_usage_error("'vm create' takes the VM's NAME first");
	spec.name = argv[2];
	for (int i = 3; i < argc; i++) {
		const char *opt = argv[i];
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;
		static const char *const with_value[] = {
			"--vcpus", "--memory", "--disk", "--kernel", "--initrd", "--cmdline",
			"--boot-disk", "--node", "--priority", "--nic", "--prefer", "--group",
			"--max-relocations",
		};
		bool takes_value = false;

		for (size_t k = 0; k < sizeof(with_value) / sizeof(with_value[0]); k++)
			takes_value |= strcmp(opt, with_value[k]) == 0;
		if (!takes_value && strcmp(opt, "--ha") && strcmp(opt, "--start")) {
			rc = vireo_usage_error("'vm create' does not know '%s'", opt);
			goto cleanup;
		}
		if (takes_value && !val) {
			rc = vireo_usage_error("%s needs a value", opt);
			goto cleanup;
		}
		if (strcmp(opt, "--vcpus") == 0) {
			if (vireo_parse_u32(val, 1, 4096, &spec.vcpus) < 0) {
				rc = vireo_usage_error("--vcpus takes a number from 1 to 4096, not '%s'", val);
				goto cleanup;
			}
			have_vcpus = true;
		} else if (strcmp(opt, "--memory") == 0) {
			if ((rc = parse_mib(val, &spec.memory_mib)) < 0) {
				rc = size_error(opt, val, rc);
				goto cleanup;
			}
			have_memory = true;
		} else if (strcmp(opt, "--disk") == 0) {
			char *list = strdup(val), *save = NULL;

			if (!list) {
				rc = EXIT_FAILED;
				goto cleanup;
			}
			for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
				Vireo__VmDisk *d = &disks[spec.n_disks];

				if (spec.n_disks == CLUSTER_VM_MAX_DISKS) {
					free(list);
					rc = vireo_usage_error("a VM has at most %u disks",
							       CLUSTER_VM_MAX_DISKS);
					goto cleanup;
				}
				vireo__vm_disk__init(d);
				d->format = "qcow2";
				if ((rc = parse_mib(t, &d->size_mib)) < 0) {
					rc = size_error(opt, t, rc);
					free(list);
					goto cleanup;
				}
				ptrs[spec.n_disks++] = d;
			}
			free(list);
			if (!spec.n_disks || val[strlen(val) - 1] == ',' || val[0] == ',' ||
			    strstr(val, ",,")) {
				rc = vireo_usage_error("--disk takes sizes separated by commas, not '%s'",
						       val);
				goto cleanup;
			}
		} else if (strcmp(opt, "--kernel") == 0 || strcmp(opt, "--initrd") == 0) {
			char **slot = opt[2] == 'k' ? &kernel : &initrd;

			free(*slot);
			if (!(*slot = absolute_path(val))) {
				rc = vireo_usage_error("cannot make %s an absolute path", val);
				goto cleanup;
			}
		} else if (strcmp(opt, "--nic") == 0) {
			/* BRIDGE or BRIDGE=MAC; vireod checks both. */
			Vireo__VmNic *n = &nics[spec.n_nics];
			char *eq;

			if (spec.n_nics == CLUSTER_VM_MAX_NICS) {
				rc = vireo_usage_error("a VM has at most %u NICs", CLUSTER_VM_MAX_NICS);
				goto cleanup;
			}
			vireo__vm_nic__init(n);
			n->bridge = argv[i + 1];
			if ((eq = strchr(argv[i + 1], '='))) {
				*eq = '\0';
				n->mac = eq + 1;
			}
			nic_ptrs[spec.n_nics++] = n;
		} else if (strcmp(opt, "--cmdline") == 0) {
			spec.cmdline = (char *)val;
		} else if (strcmp(opt, "--boot-disk") == 0) {
			spec.boot_disk = (char *)val;
		} else if (strcmp(opt, "--node") == 0) {
			cr.node = (char *)val;
		} else if (strcmp(opt, "--prefer") == 0) {
			if ((rc = add_preferred(&cr, prefer, val)) != EXIT_OK)
				goto cleanup;
		} else if (strcmp(opt, "--group") == 0) {
			cr.group = (char *)val;
		} else if (strcmp(opt, "--max-relocations") == 0) {
			if (vireo_parse_u32(val, 1, VM_MAX_RELOCATIONS, &spec.max_relocations) < 0) {
				rc = vireo_usage_error("--max-relocations takes a number from 1 to %u, not "
						       "'%s'", VM_MAX_RELOCATIONS, val);
				goto cleanup;
			}
		} else if (strcmp(opt, "--priority") == 0) {
			char *end;
			long p;

			errno = 0;
			p = strtol(val, &end, 10);
			if (errno || end == val || *end || p < -1000000 || p > 1000000) {
				rc = vireo_usage_error("--priority takes a whole number from -1000000 to "
						       "1000000, not '%s'", val);
				goto cleanup;
			}
			spec.priority = (int32_t)p;
		} else if (strcmp(opt, "--ha") == 0) {
			spec.ha = true;
			continue;
		} else {
			cr.start = true;         /* --start */
			continue;
		}
		i++;
	}
	rc = EXIT_USAGE;
	if (!have_vcpus || !have_memory) {
		rc = vireo_usage_error("'vm create' needs --vcpus N and --memory SIZE");
		goto cleanup;
	}
	if (!kernel == !spec.boot_disk[0]) {
		rc = vireo_usage_error("a VM boots either a kernel (--kernel FILE) or a disk image "
				       "(--boot-disk IMAGE): give exactly one");
		goto cleanup;
	}
	if (!kernel && (initrd || spec.cmdline[0])) {
		rc = vireo_usage_error("--initrd and --cmdline go with --kernel, not with --boot-disk");
		goto cleanup;
	}
	if (cr.n_prefer && cr.node[0]) {
		rc = vireo_usage_error("a VM pinned to a node (--node) runs only there; --prefer does "
				       "not go with --node");
		goto cleanup;
	}
	if (spec.max_relocations && !spec.ha) {
		rc = vireo_usage_error("--max-relocations bounds how often an HA VM is restarted on "
				       "another node after a failure; it goes with --ha");
		goto cleanup;
	}
	spec.kernel = kernel ? kernel : "";
	spec.initrd = initrd ? initrd : "";
	spec.disks = ptrs;
	spec.nics = nic_ptrs;
	cr.spec = &spec;
	req.body_case = VIREO__REQUEST__BODY_VM_CREATE;
	req.vm_create = &cr;
	if (!c.timeout_set)
		c.timeout_ms = cr.start ? VM_ACTION_TIMEOUT_MS : VM_CHANGE_TIMEOUT_MS;
	rc = vireo_call(&c, &req, &resp, true);
	rc = print_outcome(&c, rc, resp, "created, ");
cleanup:
	free(kernel);
	free(initrd);
	for (size_t i = 0; i < cr.n_prefer; i++)
		free(cr.prefer[i]);
	return rc;
}

static int cmd_action(const struct cli *cli, Vireo__VmAction action, int argc, char **argv)
{
	struct cli c = *cli;
	Vireo__Request req = VIREO__REQUEST__INIT;
	Vireo__VmActionRequest ar = VIREO__VM_ACTION_REQUEST__INIT;
	Vireo__Response *resp = NULL;
	const char *verb = argv[1];
	char *name = NULL;
	int rc;

	ar.action = action;
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--force") == 0 && (action == VIREO__VM_ACTION__VM_ACTION_STOP ||
							action == VIREO__VM_ACTION__VM_ACTION_RESTART))
			ar.force = true;
		else if (strcmp(argv[i], "--purge") == 0 &&
			 action == VIREO__VM_ACTION__VM_ACTION_DELETE)
			ar.purge = true;
		else if (argv[i][0] != '-' && !name)
			name = argv[i];
		else
			return vireo_usage_error("'vm %s' does not take '%s'", verb, argv[i]);
	}
	if (!name)
		return vireo_usage_error("'vm %s' takes the VM's NAME", verb);
	ar.name = name;
	req.body_case = VIREO__REQUEST__BODY_VM_ACTION;
	req.vm_action = &ar;
	if (!c.timeout_set)
		c.timeout_ms = action == VIREO__VM_ACTION__VM_ACTION_DELETE ? VM_CHANGE_TIMEOUT_MS :
			       VM_ACTION_TIMEOUT_MS;
	rc = vireo_call(&c, &req, &resp, true);
	if (action != VIREO__VM_ACTION__VM_ACTION_DELETE)
		return print_outcome(&c, rc, resp, NULL);
	/* The VM is gone: the message says what happened to its disks. */
	if (rc == EXIT_OK && c.json) {
		json_object *o = json_object_new_object();

		json_object_object_add(o, "name", json_object_new_string(ar.name));
		json_object_object_add(o, "deleted", json_object_new_boolean(1));
		json_object_object_add(o, "message", json_object_new_string(resp->message));
		vireo_print_json(o);
	} else if (rc == EXIT_OK) {
		printf("%s\n", resp->message[0] ? resp->message : "deleted");
	}
	if (resp)
		vireo__response__free_unpacked(resp, NULL);
	return rc;
}

static int cmd_list(const struct cli *cli, const char *name)
{
	Vireo__Response *resp, *groups = NULL;
	const Vireo__VmListReply *lr;
	const Vireo__GroupListReply *gl;
	int rc;

	/* The groups first: a VM's group is in them, not in the VM. */
	if ((name || cli->json) && (rc = vireo_fetch_groups(cli, &groups)) != EXIT_OK)
		return rc;
	gl = groups ? groups->groups : NULL;
	if ((rc = vireo_fetch_vms(cli, name, &resp)) != EXIT_OK)
		goto cleanup;
	lr = resp->vm_list;
	if (name && cli->json) {
		vireo_print_json(vm_json(lr, gl, lr->vms[0]));
	} else if (name) {
		print_show(lr, gl, lr->vms[0]);
	} else if (cli->json) {
		json_object *arr = json_object_new_array();

		for (size_t i = 0; i < lr->n_vms; i++)
			json_object_array_add(arr, vm_json(lr, gl, lr->vms[i]));
		vireo_print_json(arr);
	} else {
		print_table(lr);
	}
	vireo__response__free_unpacked(resp, NULL);
cleanup:
	if (groups)
		vireo__response__free_unpacked(groups, NULL);
	return rc;
}

/* One piece of the log from offset (< 0: the last -offset bytes). */
static int console_read(const struct cli *cli, const char *name, int64_t offset,
			Vireo__Response **resp)
{
	Vireo__Request req = VIREO__REQUEST__INIT;
	Vireo__VmConsoleRequest cq = VIREO__VM_CONSOLE_REQUEST__INIT;
	int rc;

	cq.name = (char *)name;
	cq.offset = offset;
	cq.max_bytes = CONSOLE_CHUNK;
	req.body_case = VIREO__REQUEST__BODY_VM_CONSOLE;
	req.vm_console = &cq;
	if ((rc = vireo_call(cli, &req, resp, false)) != EXIT_OK)
		return rc;
	if ((*resp)->body_case != VIREO__RESPONSE__BODY_VM_CONSOLE) {
		fprintf(stderr, "vireo: vireod answered something else than a console log\n");
		vireo__response__free_unpacked(*resp, NULL);
		*resp = NULL;
		return EXIT_FAILED;
	}
	return EXIT_OK;
}

static int cmd_console(const struct cli *cli, const char *name, bool follow)
{
	struct timespec pause = { 0, CONSOLE_POLL_NS };
	uint64_t offset = 0, size = 0;
	char *all = NULL;
	size_t all_len = 0;
	int rc;

	for (;;) {
		Vireo__Response *resp;
		const Vireo__VmConsoleReply *cr;
		size_t n;

		if ((rc = console_read(cli, name, (int64_t)offset, &resp)) != EXIT_OK)
			break;
		cr = resp->vm_console;
		n = cr->data.len;
		size = cr->size;
		if (cr->size < offset) {
			/* The log was started anew (the guest was started again). */
			fprintf(stderr, "vireo: -- the console log of %s started anew --\n", name);
			offset = 0;
		} else if (cli->json && n) {
			char *grown = realloc(all, all_len + n);

			if (!grown) {
				vireo__response__free_unpacked(resp, NULL);
				rc = EXIT_FAILED;
				break;
			}
			all = grown;
			memcpy(all + all_len, cr->data.data, n);
			all_len += n;
		} else if (n) {
			fwrite(cr->data.data, 1, n, stdout);
			fflush(stdout);
		}
		offset = cr->offset + n;
		vireo__response__free_unpacked(resp, NULL);
		if (n == 0 && !follow)
			break;
		if (n == 0)
			nanosleep(&pause, NULL);
	}
	if (rc == EXIT_OK && cli->json) {
		json_object *o = json_object_new_object();

		json_object_object_add(o, "data", json_object_new_string_len(all ? all : "",
									   (int)all_len));
		json_object_object_add(o, "offset", json_object_new_int64(0));
		json_object_object_add(o, "size", json_object_new_int64((int64_t)size));
		vireo_print_json(o);
	}
	free(all);
	return rc;
}

int vireo_fetch_vms(const struct cli *cli, const char *name, Vireo__Response **resp)
{
	Vireo__Request req = VIREO__REQUEST__INIT;
	Vireo__VmListRequest lq = VIREO__VM_LIST_REQUEST__INIT;
	int rc;

	lq.name = (char *)(name ? name : "");
	req.body_case = VIREO__REQUEST__BODY_VM_LIST;
	req.vm_list = &lq;
	if ((rc = vireo_call(cli, &req, resp, false)) != EXIT_OK)
		return rc;
	if ((*resp)->body_case != VIREO__RESPONSE__BODY_VM_LIST ||
	    (name && name[0] && (*resp)->vm_list->n_vms != 1)) {
		if (name && name[0])
			fprintf(stderr, "vireo: VM %s is gone (deleted meanwhile?)\n", name);
		else
			fprintf(stderr, "vireo: vireod answered something else than a VM list\n");
		vireo__response__free_unpacked(*resp, NULL);
		*resp = NULL;
		return EXIT_FAILED;
	}
	return EXIT_OK;
}

int vireo_vm_main(const struct cli *cli, int argc, char **argv)
{
	const char *sub = argc > 1 ? argv[1] : NULL;

	if (!sub)
		return vireo_usage_error("'vm' needs a command: create, start, stop, restart, delete, "
					 "migrate, list, show or console");
	if (strcmp(sub, "create") == 0)
		return cmd_create(cli, argc, argv);
	if (strcmp(sub, "start") == 0)
		return cmd_action(cli, VIREO__VM_ACTION__VM_ACTION_START, argc, argv);
	if (strcmp(sub, "stop") == 0)
		return cmd_action(cli, VIREO__VM_ACTION__VM_ACTION_STOP, argc, argv);
	if (strcmp(sub, "restart") == 0)
		return cmd_action(cli, VIREO__VM_ACTION__VM_ACTION_RESTART, argc, argv);
	if (strcmp(sub, "delete") == 0)
		return cmd_action(cli, VIREO__VM_ACTION__VM_ACTION_DELETE, argc, argv);
	if (strcmp(sub, "migrate") == 0)
		return vireo_vm_migrate(cli, argc, argv);
	if (strcmp(sub, "list") == 0) {
		if (argc != 2)
			return vireo_usage_error("'vm list' takes no arguments");
		return cmd_list(cli, NULL);
	}
	if (strcmp(sub, "show") == 0) {
		if (argc != 3 || argv[2][0] == '-')
			return vireo_usage_error("'vm show' takes the VM's NAME");
		return cmd_list(cli, argv[2]);
	}
	if (strcmp(sub, "console") == 0) {
		bool follow = false;
		const char *name = NULL;

		for (int i = 2; i < argc; i++) {
			if (strcmp(argv[i], "--follow") == 0 || strcmp(argv[i], "-f") == 0)
				follow = true;
			else if (argv[i][0] != '-' && !name)
				name = argv[i];
			else
				return vireo_usage_error("'vm console' does not take '%s'", argv[i]);
		}
		if (!name)
			return vireo_usage_error("'vm console' takes the VM's NAME");
		if (follow && cli->json)
			return vireo_usage_error("--follow prints the log as it grows; it does not go "
						 "with --json");
		return cmd_console(cli, name, follow);
	}
	return vireo_usage_error("unknown vm command '%s'", sub);
}
