/* VMs in the cluster state: validation, apply() for the VM operations, and
 * placement. Pure: no clock, no I/O. */
#include "cluster/vm.h"
#include "cluster/group.h"
#include "cluster/vm_migrate.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

Vireo__Vm *cluster_vm_find(const cluster_state *st, const char *name)
{
	for (size_t i = 0; i < st->n_vms; i++)
		if (strcmp(st->vms[i]->spec->name, name) == 0)
			return st->vms[i];
	return NULL;
}

/* VM and image names also become file names: no leading '.' or '-'. */
static bool valid_vm_name(const char *s)
{
	return cluster_name_valid(s) && s[0] != '.' && s[0] != '-';
}

static bool valid_uuid(const char *s)
{
	if (strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;
		char c = s[i];
		if (dash ? c != '-' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false;
	}
	return true;
}

/* A Linux interface name (IFNAMSIZ - 1) that is also a safe file name. */
static bool valid_bridge(const char *s)
{
	return strlen(s) <= 15 && cluster_name_valid(s) && s[0] != '.' && s[0] != '-';
}

static bool valid_mac(const char *s)
{
	static const char hex[] = "0123456789abcdefABCDEF";

	if (strlen(s) != 17)
		return false;
	for (int i = 0; i < 17; i++)
		if (i % 3 == 2 ? s[i] != ':' : !strchr(hex, s[i]))
			return false;
	/* The first octet's low bit set is a multicast address; "A".."F" sit
	 * 6 places after "a".."f" in hex[]. */
	long digit = strchr(hex, s[1]) - hex;
	if (digit >= 16)
		digit -= 6;
	return !(digit & 1);
}

int cluster_vm_spec_check(const cluster_state *st, const Vireo__VmSpec *spec, char *err, size_t errlen)
{
	uint64_t max_mem = 0;
	uint32_t max_cpus = 0;

	for (size_t i = 0; i < st->n_nodes; i++) {
		if (st->nodes[i]->memory_mib > max_mem)
			max_mem = st->nodes[i]->memory_mib;
		if (st->nodes[i]->cpus > max_cpus)
			max_cpus = st->nodes[i]->cpus;
	}
	if (!valid_vm_name(spec->name)) {
		snprintf(err, errlen, "a VM name must be 1-%d letters, digits, '-', '_' or '.', not "
			 "starting with '.' or '-'", CLUSTER_NAME_MAX);
		return -EINVAL;
	}
	if (cluster_vm_find(st, spec->name)) {
		snprintf(err, errlen, "a VM named %s exists already", spec->name);
		return -EEXIST;
	}
	if (!valid_uuid(spec->uuid)) {
		snprintf(err, errlen, "the VM's uuid must be 36 lower-case hex digits and dashes");
		return -EINVAL;
	}
	for (size_t i = 0; i < st->n_vms; i++) {
		if (strcmp(st->vms[i]->spec->uuid, spec->uuid) == 0) {
			snprintf(err, errlen, "VM %s has the uuid %s already", st->vms[i]->spec->name,
				 spec->uuid);
			return -EEXIST;
		}
	}
	if (spec->vcpus == 0 || (max_cpus && spec->vcpus > max_cpus)) {
		snprintf(err, errlen, "%u vCPUs: a VM needs at least 1 and at most %u, the most any "
			 "node of this cluster has", spec->vcpus, max_cpus);
		return -EINVAL;
	}
	if (spec->memory_mib < CLUSTER_VM_MIN_MEMORY_MIB || (max_mem && spec->memory_mib > max_mem)) {
		snprintf(err, errlen, "%llu MiB of memory: a VM needs at least %u MiB and at most "
			 "%llu MiB, the most any node of this cluster has",
			 (unsigned long long)spec->memory_mib, CLUSTER_VM_MIN_MEMORY_MIB,
			 (unsigned long long)max_mem);
		return -EINVAL;
	}
	if (spec->n_disks > CLUSTER_VM_MAX_DISKS || spec->n_nics > CLUSTER_VM_MAX_NICS) {
		snprintf(err, errlen, "a VM has at most %u disks and %u NICs", CLUSTER_VM_MAX_DISKS,
			 CLUSTER_VM_MAX_NICS);
		return -EINVAL;
	}
	for (size_t i = 0; i < spec->n_disks; i++) {
		const Vireo__VmDisk *d = spec->disks[i];
		if (!valid_vm_name(d->image) || d->size_mib == 0 ||
		    (strcmp(d->format, "qcow2") && strcmp(d->format, "raw"))) {
			snprintf(err, errlen, "disk %zu: needs an image name like a VM name, a size of at "
				 "least 1 MiB and the format qcow2 or raw", i + 1);
			return -EINVAL;
		}
	}
	for (size_t i = 0; i < spec->n_nics; i++) {
		const Vireo__VmNic *n = spec->nics[i];
		if (!valid_bridge(n->bridge) || (n->mac[0] && !valid_mac(n->mac))) {
			snprintf(err, errlen, "NIC %zu: needs a bridge name of 1-15 letters, digits, "
				 "'-', '_' or '.' and, if given, a unicast MAC like 52:54:00:12:34:56",
				 i + 1);
			return -EINVAL;
		}
	}
	if (!spec->kernel[0] == !spec->boot_disk[0]) {
		snprintf(err, errlen, "a VM boots either a kernel (--kernel) or a disk (--boot-disk), "
			 "exactly one of them");
		return -EINVAL;
	}
	if (spec->kernel[0] && spec->kernel[0] != '/') {
		snprintf(err, errlen, "the kernel must be an absolute path, not %s", spec->kernel);
		return -EINVAL;
	}
	if (spec->pinned_node && !cluster_state_node(st, spec->pinned_node)) {
		snprintf(err, errlen, "the VM is pinned to node id %u, which is not in the cluster",
			 spec->pinned_node);
		return -EINVAL;
	}
	return 0;
}

int cluster_vm_set_message(Vireo__Vm *vm, const char *text)
{
	char *copy = strdup(text ? text : "");

	if (!copy)
		return -ENOMEM;
	if (vm->message && vm->message != protobuf_c_empty_string)
		free(vm->message);
	vm->message = copy;
	return 0;
}

void cluster_vm_set_state(Vireo__Vm *vm, Vireo__VmState s, int64_t time_ms)
{
	if (vm->state != s)
		vm->state_since_ms = time_ms;
	vm->state = s;
}

/* Deep copy of a spec through its packed form (all fields owned by malloc). */
static Vireo__VmSpec *copy_spec(const Vireo__VmSpec *spec)
{
	size_t len = vireo__vm_spec__get_packed_size(spec);
	uint8_t *buf = malloc(len ? len : 1);
	Vireo__VmSpec *copy;

	if (!buf)
		return NULL;
	vireo__vm_spec__pack(spec, buf);
	copy = vireo__vm_spec__unpack(NULL, len, buf);
	free(buf);
	return copy;
}

static int apply_create(cluster_state *st, const Vireo__Op *op)
{
	const Vireo__VmCreate *c = op->vm_create;
	char err[256];
	Vireo__Vm **vms, *vm;
	size_t pos = 0;

	if (!c->spec || cluster_vm_spec_check(st, c->spec, err, sizeof(err)) < 0)
		return -EINVAL;
	if (!(vm = calloc(1, sizeof(*vm))))
		return -ENOMEM;
	vireo__vm__init(vm);
	if (!(vm->spec = copy_spec(c->spec)) ||
	    !(vms = realloc(st->vms, (st->n_vms + 1) * sizeof(*vms)))) {
		protobuf_c_message_free_unpacked(&vm->base, NULL);
		return -ENOMEM;
	}
	st->vms = vms;
	vm->want_running = c->start;
	vm->state = c->start ? VIREO__VM_STATE__VM_PENDING : VIREO__VM_STATE__VM_STOPPED;
	vm->state_since_ms = op->time_ms;
	while (pos < st->n_vms && strcmp(st->vms[pos]->spec->name, vm->spec->name) < 0)
		pos++;
	memmove(&st->vms[pos + 1], &st->vms[pos], (st->n_vms - pos) * sizeof(*vms));
	st->vms[pos] = vm;
	st->n_vms++;
	return 0;
}

bool cluster_vm_state_active(Vireo__VmState s)
{
	return s == VIREO__VM_STATE__VM_STARTING || s == VIREO__VM_STATE__VM_RUNNING ||
	       s == VIREO__VM_STATE__VM_STOPPING || s == VIREO__VM_STATE__VM_MIGRATING ||
	       s == VIREO__VM_STATE__VM_FENCING || s == VIREO__VM_STATE__VM_RECOVERING;
}

static int apply_delete(cluster_state *st, const Vireo__Op *op)
{
	Vireo__Vm *vm = cluster_vm_find(st, op->vm_delete->name);
	size_t i;

	if (!vm)
		return -ENOENT;
	if (vm->want_running || cluster_vm_state_active(vm->state))
		return -EBUSY;
	for (i = 0; st->vms[i] != vm; i++)
		;
	cluster_group_forget_vm(st, vm->spec->name);
	protobuf_c_message_free_unpacked(&vm->base, NULL);
	memmove(&st->vms[i], &st->vms[i + 1], (st->n_vms - i - 1) * sizeof(vm));
	st->n_vms--;
	return 0;
}

static int apply_desired(cluster_state *st, const Vireo__Op *op)
{
	const Vireo__VmDesired *d = op->vm_desired;
	Vireo__Vm *vm = cluster_vm_find(st, d->name);

	if (!vm)
		return -ENOENT;
	/* A forced stop overtakes a graceful one that is under way. */
	if (!d->running && !vm->want_running && d->force && !vm->force_stop &&
	    vm->state == VIREO__VM_STATE__VM_STOPPING) {
		vm->force_stop = true;
		return 0;
	}
	if (vm->want_running == d->running)
		return -EALREADY;
	vm->want_running = d->running;
	vm->force_stop = !d->running && d->force;
	/* Its node is lost: the fence decides (VmFenced: recovering if it
	 * should run, stopped if not). */
	if (vm->state == VIREO__VM_STATE__VM_FENCING)
		return cluster_vm_set_message(vm, d->running ? "waiting until its lost node is "
					      "proven stopped" : "stopped once its lost node is "
					      "proven stopped");
	if (vm->state == VIREO__VM_STATE__VM_RECOVERING && !d->running) {
		vm->lost_node = 0;
		cluster_vm_set_state(vm, VIREO__VM_STATE__VM_STOPPED, op->time_ms);
		return cluster_vm_set_message(vm, "");
	}
	/* A migration finishes first (or rolls back); its end turns the VM
	 * stopping if it should no longer run (cluster_vm_migrate_apply). */
	if (vm->state == VIREO__VM_STATE__VM_MIGRATING)
		return cluster_vm_set_message(vm, d->running ? "" : "stopping once the migration ends");
	if (d->running && vm->state == VIREO__VM_STATE__VM_STOPPING)
		/* The old guest may still run: it stops first, and its owner's
		 * report turns the VM pending (apply_report). */
		return cluster_vm_set_message(vm, "stopping before it starts again");
	if (d->running) {
		vm->restarts = 0;
		vm->relocations = 0;
		cluster_vm_set_state(vm, VIREO__VM_STATE__VM_PENDING, op->time_ms);
		return cluster_vm_set_message(vm, "waiting for the manager to place it");
	}
	if (vm->state == VIREO__VM_STATE__VM_PENDING || vm->state == VIREO__VM_STATE__VM_ERROR)
		cluster_vm_set_state(vm, VIREO__VM_STATE__VM_STOPPED, op->time_ms);
	else if (cluster_vm_state_active(vm->state))
		cluster_vm_set_state(vm, VIREO__VM_STATE__VM_STOPPING, op->time_ms);
	return cluster_vm_set_message(vm, "");
}

static int apply_assign(cluster_state *st, const Vireo__Op *op)
{
	const Vireo__VmAssign *a = op->vm_assign;
	Vireo__Vm *vm = cluster_vm_find(st, a->name);
	const Vireo__NodeInfo *n = cluster_state_node(st, a->owner);

	/* Only a placement made on the current generation counts: two managers
	 * racing across a membership change cannot both assign. */
	if (!vm || !n || !n->online || !vm->want_running || a->generation != vm->generation + 1 ||
	    (vm->state != VIREO__VM_STATE__VM_PENDING && vm->state != VIREO__VM_STATE__VM_RECOVERING))
		return -EINVAL;
	vm->owner = a->owner;
	vm->generation = a->generation;
	vm->restarts = 0;
	vm->lost_node = 0;
	cluster_vm_set_state(vm, VIREO__VM_STATE__VM_STARTING, op->time_ms);
	return cluster_vm_set_message(vm, "");
}

static int apply_pending(cluster_state *st, const Vireo__Op *op)
{
	Vireo__Vm *vm = cluster_vm_find(st, op->vm_pending->name);

	if (!vm || !op->vm_pending->reason[0] || (vm->state != VIREO__VM_STATE__VM_PENDING &&
						   vm->state != VIREO__VM_STATE__VM_RECOVERING))
		return -EINVAL;
	if (vm->state == VIREO__VM_STATE__VM_PENDING && strcmp(vm->message, op->vm_pending->reason) == 0)
		return -EALREADY;
	/* A recovering VM that cannot be placed waits like any other. */
	vm->lost_node = 0;
	cluster_vm_set_state(vm, VIREO__VM_STATE__VM_PENDING, op->time_ms);
	return cluster_vm_set_message(vm, op->vm_pending->reason);
}

static int apply_report(cluster_state *st, const Vireo__Op *op)
{
	const Vireo__VmReport *r = op->vm_report;
	Vireo__Vm *vm = cluster_vm_find(st, r->name);
	Vireo__VmState s = r->state;

	/* Only the owner of the current generation speaks for a VM, and a
	 * migrating VM is the migration's (VmMigrateEnd). */
	if (!vm || op->origin != vm->owner || r->generation != vm->generation ||
	    vm->state == VIREO__VM_STATE__VM_MIGRATING || vm->state == VIREO__VM_STATE__VM_FENCING ||
	    vm->state == VIREO__VM_STATE__VM_RECOVERING)
		return -EINVAL;
	if (s != VIREO__VM_STATE__VM_RUNNING && s != VIREO__VM_STATE__VM_STOPPED &&
	    s != VIREO__VM_STATE__VM_ERROR && s != VIREO__VM_STATE__VM_STARTING)
		return -EINVAL;
	if (vm->state == s && vm->restarts == r->restarts && strcmp(vm->message, r->message) == 0)
		return -EALREADY;
	/* A guest that stopped while it should run is placed again. */
	if (s == VIREO__VM_STATE__VM_STOPPED && vm->want_running)
		s = VIREO__VM_STATE__VM_PENDING;
	vm->restarts = r->restarts;
	cluster_vm_set_state(vm, s, op->time_ms);
	return cluster_vm_set_message(vm, r->message);
}

int cluster_vm_apply(cluster_state *st, const Vireo__Op *op)
{
	switch (op->body_case) {
	case VIREO__OP__BODY_VM_CREATE: return apply_create(st, op);
	case VIREO__OP__BODY_VM_DELETE: return apply_delete(st, op);
	case VIREO__OP__BODY_VM_DESIRED: return apply_desired(st, op);
	case VIREO__OP__BODY_VM_ASSIGN: return apply_assign(st, op);
	case VIREO__OP__BODY_VM_PENDING: return apply_pending(st, op);
	case VIREO__OP__BODY_VM_REPORT: return apply_report(st, op);
	case VIREO__OP__BODY_VM_MIGRATE:
	case VIREO__OP__BODY_VM_MIGRATE_PROGRESS:
	case VIREO__OP__BODY_VM_MIGRATE_CANCEL:
	case VIREO__OP__BODY_VM_MIGRATE_COMMIT:
	case VIREO__OP__BODY_VM_MIGRATE_END:
		return cluster_vm_migrate_apply(st, op);
	case VIREO__OP__BODY_VM_FENCE: return cluster_vm_fence_apply(st, op);
	case VIREO__OP__BODY_VM_FENCED: return cluster_vm_fenced_apply(st, op);
	default: return -EINVAL;
	}
}

const char *cluster_vm_state_name(Vireo__VmState s)
{
	static const char *names[] = {
		"stopped", "pending", "starting", "running", "stopping",
		"migrating", "fencing", "recovering", "error",
	};

	return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "unknown";
}

void cluster_vm_node_usage(const cluster_state *st, uint32_t node, uint64_t *memory_mib,
			   uint32_t *vcpus, uint32_t *count)
{
	*memory_mib = 0;
	*vcpus = 0;
	*count = 0;
	for (size_t i = 0; i < st->n_vms; i++) {
		const Vireo__Vm *vm = st->vms[i];
		/* A VM migrating to node holds its room there too. */
		bool incoming = vm->migration && vm->migration->target == node &&
				vm->state == VIREO__VM_STATE__VM_MIGRATING;

		if ((vm->owner != node || !cluster_vm_state_active(vm->state)) && !incoming)
			continue;
		*memory_mib += vm->spec->memory_mib;
		*vcpus += vm->spec->vcpus;
		(*count)++;
	}
}

bool cluster_vm_fits(const cluster_state *st, const Vireo__NodeInfo *n, const Vireo__VmSpec *spec,
		     uint32_t *count, uint64_t *free_mib)
{
	uint64_t mem;
	uint32_t vcpus;

	cluster_vm_node_usage(st, n->id, &mem, &vcpus, count);
	*free_mib = n->memory_mib > mem ? n->memory_mib - mem : 0;
	return spec->memory_mib <= *free_mib &&
	       vcpus + spec->vcpus <= n->cpus * CLUSTER_VCPU_OVERCOMMIT;
}

static bool is_online(const uint32_t *online, size_t n, uint32_t id)
{
	for (size_t i = 0; i < n; i++)
		if (online[i] == id)
			return true;
	return false;
}

/* Members of group other than vm that run on node (or are about to:
 * starting, migrating there). */
static uint32_t group_members_on(const cluster_state *st, const Vireo__VmGroup *g,
				 const char *vm, uint32_t node)
{
	uint32_t count = 0;

	for (size_t i = 0; g && i < g->n_vms; i++) {
		const Vireo__Vm *m = cluster_vm_find(st, g->vms[i]);
		bool incoming;

		if (!m || strcmp(m->spec->name, vm) == 0)
			continue;
		incoming = m->state == VIREO__VM_STATE__VM_MIGRATING && m->migration &&
			   m->migration->target == node;
		if (incoming || (m->owner == node && cluster_vm_state_active(m->state) &&
				 m->state != VIREO__VM_STATE__VM_FENCING &&
				 m->state != VIREO__VM_STATE__VM_RECOVERING))
			count++;
	}
	return count;
}

/* Where the other members of an affinity group run: the node with most of
 * them, 0 when none runs. */
static uint32_t affinity_home(const cluster_state *st, const Vireo__VmGroup *g, const char *vm)
{
	uint32_t best = 0, best_count = 0;

	for (size_t i = 0; i < st->n_nodes; i++) {
		uint32_t c = group_members_on(st, g, vm, st->nodes[i]->id);
		if (c > best_count) {
			best = st->nodes[i]->id;
			best_count = c;
		}
	}
	return best;
}

static uint32_t preference_rank(const Vireo__VmSpec *spec, uint32_t node)
{
	for (size_t i = 0; i < spec->n_preferred_nodes; i++)
		if (spec->preferred_nodes[i] == node)
			return (uint32_t)i;
	return UINT32_MAX;
}

/* How good node is for the VM, lower first: the group's soft rule, the
 * user's preference, then spreading (fewest VMs, most free memory). */
struct node_score {
	uint32_t group;      /* soft anti-affinity: members there; soft affinity: 0 at home */
	uint32_t preference;
	uint32_t count;
	uint64_t free_mib;
};

static bool better(const struct node_score *a, const struct node_score *b)
{
	if (a->group != b->group)
		return a->group < b->group;
	if (a->preference != b->preference)
		return a->preference < b->preference;
	if (a->count != b->count)
		return a->count < b->count;
	return a->free_mib > b->free_mib;
}

/* The best node for vm among online, 0 when none may take it. The hard
 * rules: pinning, room, a strict group. */
static uint32_t choose_node(const cluster_state *st, const uint32_t *online, size_t n_online,
			    const Vireo__Vm *vm)
{
	const Vireo__VmSpec *spec = vm->spec;
	const Vireo__VmGroup *g = cluster_group_of(st, spec->name);
	uint32_t home = g && g->affinity ? affinity_home(st, g, spec->name) : 0;
	uint32_t best = 0;
	struct node_score best_score = { 0 };

	for (size_t i = 0; i < st->n_nodes; i++) {
		const Vireo__NodeInfo *n = st->nodes[i];
		struct node_score sc = { 0 };
		uint32_t members = g ? group_members_on(st, g, spec->name, n->id) : 0;

		if (!n->online || !is_online(online, n_online, n->id) ||
		    (spec->pinned_node && spec->pinned_node != n->id) ||
		    !cluster_vm_fits(st, n, spec, &sc.count, &sc.free_mib))
			continue;
		if (g && g->strict && ((g->affinity && home && n->id != home) ||
				       (!g->affinity && members)))
			continue;
		if (g && !g->strict)
			sc.group = g->affinity ? (home && n->id != home) : members;
		sc.preference = preference_rank(spec, n->id);
		if (!best || better(&sc, &best_score)) {
			best = n->id;
			best_score = sc;
		}
	}
	return best;
}

static int by_priority(const void *a, const void *b)
{
	const Vireo__Vm *x = *(const Vireo__Vm *const *)a, *y = *(const Vireo__Vm *const *)b;

	if (x->spec->priority != y->spec->priority)
		return x->spec->priority > y->spec->priority ? -1 : 1;
	return strcmp(x->spec->name, y->spec->name);
}

void cluster_vm_why_waiting(const cluster_state *st, const Vireo__Vm *vm, char *reason, size_t reasonlen)
{
	const Vireo__VmSpec *spec = vm->spec;
	const Vireo__VmGroup *g = cluster_group_of(st, spec->name);
	uint32_t home = g && g->affinity ? affinity_home(st, g, spec->name) : 0;
	const Vireo__NodeInfo *h = home ? cluster_state_node(st, home) : NULL;

	if (spec->pinned_node)
		snprintf(reason, reasonlen, "its node (id %u) is offline, unavailable or lacks %llu MiB "
			 "of memory or %u vCPUs", spec->pinned_node,
			 (unsigned long long)spec->memory_mib, spec->vcpus);
	else if (g && g->strict && g->affinity && h)
		snprintf(reason, reasonlen, "strict affinity group %s runs on %s, which is unavailable "
			 "or lacks %llu MiB of memory or %u vCPUs", g->name, h->name,
			 (unsigned long long)spec->memory_mib, spec->vcpus);
	else if (g && g->strict && !g->affinity)
		snprintf(reason, reasonlen, "strict anti-affinity group %s: every available node with "
			 "%llu MiB of memory and %u vCPUs free runs a member already", g->name,
			 (unsigned long long)spec->memory_mib, spec->vcpus);
	else
		snprintf(reason, reasonlen, "no available node has %llu MiB of memory and %u vCPUs free",
			 (unsigned long long)spec->memory_mib, spec->vcpus);
}

static bool wants_node(const Vireo__Vm *vm)
{
	return vm->want_running && (vm->state == VIREO__VM_STATE__VM_PENDING ||
				    vm->state == VIREO__VM_STATE__VM_RECOVERING);
}

uint32_t cluster_vm_choose_node(const cluster_state *st, const uint32_t *online, size_t n_online,
				const Vireo__Vm *vm)
{
	return choose_node(st, online, n_online, vm);
}

int cluster_vm_place_next(const cluster_state *st, const uint32_t *online, size_t n_online,
			  const Vireo__Vm **vm_out, uint32_t *node, char *reason, size_t reasonlen)
{
	const Vireo__Vm **pending = calloc(st->n_vms + 1, sizeof(*pending));
	size_t n = 0;
	int found = 0;

	if (!pending)
		return -ENOMEM;
	for (size_t i = 0; i < st->n_vms; i++)
		if (wants_node(st->vms[i]))
			pending[n++] = st->vms[i];
	qsort(pending, n, sizeof(*pending), by_priority);
	/* Highest priority first; one that cannot be placed and already says
	 * why does not hold up the others (a smaller VM may still fit). */
	for (size_t i = 0; i < n && !found; i++) {
		*node = choose_node(st, online, n_online, pending[i]);
		reason[0] = '\0';
		if (!*node)
			cluster_vm_why_waiting(st, pending[i], reason, reasonlen);
		if (*node || pending[i]->state == VIREO__VM_STATE__VM_RECOVERING ||
		    strcmp(reason, pending[i]->message) != 0) {
			*vm_out = pending[i];
			found = 1;
		}
	}
	free(pending);
	return found;
}
