/* VMs in the cluster state: spec checks, the VM operations, placement. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cluster/vm.h"
#include "unit.h"

static int64_t clock_ms = 1000;

static int apply(cluster_state *st, Vireo__Op *op, uint32_t origin)
{
	op->origin = origin;
	op->time_ms = ++clock_ms;
	return cluster_apply(st, op);
}

static void add_node(cluster_state *st, uint32_t id, uint32_t cpus, uint64_t mem, bool online)
{
	Vireo__Op op = VIREO__OP__INIT;
	Vireo__NodeAnnounce a = VIREO__NODE_ANNOUNCE__INIT;
	Vireo__NodeMembership m = VIREO__NODE_MEMBERSHIP__INIT;
	char name[16];

	snprintf(name, sizeof(name), "n%u", id);
	a.id = id;
	a.name = name;
	a.cpus = cpus;
	a.memory_mib = mem;
	op.body_case = VIREO__OP__BODY_NODE_ANNOUNCE;
	op.node_announce = &a;
	ck_assert_int_eq(apply(st, &op, id), 0);
	if (online) {
		m.id = id;
		m.online = true;
		op.body_case = VIREO__OP__BODY_NODE_MEMBERSHIP;
		op.node_membership = &m;
		ck_assert_int_eq(apply(st, &op, 1), 0);
	}
}

static cluster_state *cluster3(void)
{
	cluster_state *st = cluster_state_new("c");

	add_node(st, 1, 2, 4096, true);
	add_node(st, 2, 2, 4096, true);
	add_node(st, 3, 2, 4096, true);
	return st;
}

struct spec_buf {
	Vireo__VmSpec spec;
	char name[80], uuid[40];
};

static Vireo__VmSpec *spec(struct spec_buf *b, const char *name, int n, uint64_t mem)
{
	vireo__vm_spec__init(&b->spec);
	snprintf(b->name, sizeof(b->name), "%s", name);
	snprintf(b->uuid, sizeof(b->uuid), "00000000-0000-4000-8000-%012d", n);
	b->spec.name = b->name;
	b->spec.uuid = b->uuid;
	b->spec.vcpus = 1;
	b->spec.memory_mib = mem;
	b->spec.kernel = "/var/cache/vireo/guest/vmlinux";
	return &b->spec;
}

static int create(cluster_state *st, Vireo__VmSpec *s, bool start)
{
	Vireo__Op op = VIREO__OP__INIT;
	Vireo__VmCreate c = VIREO__VM_CREATE__INIT;

	c.spec = s;
	c.start = start;
	op.body_case = VIREO__OP__BODY_VM_CREATE;
	op.vm_create = &c;
	return apply(st, &op, 1);
}

static int assign(cluster_state *st, const char *name, uint32_t owner, uint64_t gen)
{
	Vireo__Op op = VIREO__OP__INIT;
	Vireo__VmAssign a = VIREO__VM_ASSIGN__INIT;

	a.name = (char *)name;
	a.owner = owner;
	a.generation = gen;
	op.body_case = VIREO__OP__BODY_VM_ASSIGN;
	op.vm_assign = &a;
	return apply(st, &op, 1);
}

static int report(cluster_state *st, uint32_t from, const char *name, uint64_t gen, Vireo__VmState s)
{
	Vireo__Op op = VIREO__OP__INIT;
	Vireo__VmReport r = VIREO__VM_REPORT__INIT;

	r.name = (char *)name;
	r.generation = gen;
	r.state = s;
	op.body_case = VIREO__OP__BODY_VM_REPORT;
	op.vm_report = &r;
	return apply(st, &op, from);
}

START_TEST(bad_specs_are_refused_with_reasons)
{
	cluster_state *st = cluster3();
	struct spec_buf b;
	char err[256];
	Vireo__VmSpec *s;

	ck_assert_int_eq(cluster_vm_spec_check(st, spec(&b, "ok-1", 1, 256), err, sizeof(err)), 0);
	ck_assert_int_eq(cluster_vm_spec_check(st, spec(&b, "a/b", 1, 256), err, sizeof(err)), -EINVAL);
	ck_assert_int_eq(cluster_vm_spec_check(st, spec(&b, "a<b", 1, 256), err, sizeof(err)), -EINVAL);
	ck_assert_int_eq(cluster_vm_spec_check(st, spec(&b, "a b", 1, 256), err, sizeof(err)), -EINVAL);
	ck_assert_int_eq(cluster_vm_spec_check(st, spec(&b,
		"x1234567890123456789012345678901234567890123456789012345678901234", 1, 256), err,
		sizeof(err)), -EINVAL);
	ck_assert_int_eq(cluster_vm_spec_check(st, spec(&b, "zero", 1, 0), err, sizeof(err)), -EINVAL);
	ck_assert_int_eq(cluster_vm_spec_check(st, spec(&b, "huge", 1, 1u << 30), err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "the most any node of this cluster has"));
	s = spec(&b, "cpus", 1, 256);
	s->vcpus = 3;
	ck_assert_int_eq(cluster_vm_spec_check(st, s, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "3 vCPUs"));
	s = spec(&b, "pinned", 1, 256);
	s->pinned_node = 9;
	ck_assert_int_eq(cluster_vm_spec_check(st, s, err, sizeof(err)), -EINVAL);
	s = spec(&b, "noboot", 1, 256);
	s->kernel = "";
	ck_assert_int_eq(cluster_vm_spec_check(st, s, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "exactly one"));
	{
		static const struct { const char *bridge, *mac; int rc; } nics[] = {
			{ "br0", "", 0 },
			{ "br0", "52:54:00:12:34:56", 0 },
			{ "br0", "52:54:00:AB:cd:EF", 0 },
			{ "br0", "01:00:5e:00:00:01", -EINVAL },   /* multicast */
			{ "br0", "0B:00:5e:00:00:01", -EINVAL },   /* multicast, upper case */
			{ "br0", "52:54:00:12:34", -EINVAL },
			{ "br0", "52-54-00-12-34-56", -EINVAL },
			{ "br0", " 2:54:00:12:34:56", -EINVAL },
			{ "", "", -EINVAL },
			{ "a-bridge-name-16", "", -EINVAL },
			{ "br/0", "", -EINVAL },
		};
		Vireo__VmNic nic = VIREO__VM_NIC__INIT, *np = &nic;

		for (size_t i = 0; i < sizeof(nics) / sizeof(nics[0]); i++) {
			s = spec(&b, "nic", 1, 256);
			nic.bridge = (char *)nics[i].bridge;
			nic.mac = (char *)nics[i].mac;
			s->nics = &np;
			s->n_nics = 1;
			ck_assert_msg(cluster_vm_spec_check(st, s, err, sizeof(err)) == nics[i].rc,
				      "bridge '%s' mac '%s'", nics[i].bridge, nics[i].mac);
			s->nics = NULL;
			s->n_nics = 0;
		}
	}

	ck_assert_int_eq(create(st, spec(&b, "vm1", 1, 256), false), 0);
	ck_assert_int_eq(cluster_vm_spec_check(st, spec(&b, "vm1", 2, 256), err, sizeof(err)), -EEXIST);
	ck_assert_int_eq(cluster_vm_spec_check(st, spec(&b, "vm2", 1, 256), err, sizeof(err)), -EEXIST);
	/* apply() refuses what the check refuses, and the state stays as it was */
	ck_assert_int_eq(create(st, spec(&b, "vm1", 3, 256), false), -EINVAL);
	ck_assert_uint_eq(st->n_vms, 1);
	cluster_state_free(st);
}
END_TEST

START_TEST(lifecycle_through_operations)
{
	cluster_state *st = cluster3();
	struct spec_buf b;
	Vireo__Vm *vm;
	Vireo__Op op = VIREO__OP__INIT;
	Vireo__VmDesired d = VIREO__VM_DESIRED__INIT;
	Vireo__VmName del = VIREO__VM_NAME__INIT;

	ck_assert_int_eq(create(st, spec(&b, "web", 1, 512), true), 0);
	vm = cluster_vm_find(st, "web");
	ck_assert_int_eq(vm->state, VIREO__VM_STATE__VM_PENDING);
	ck_assert_int_eq(assign(st, "web", 2, 5), -EINVAL);        /* wrong generation */
	ck_assert_int_eq(assign(st, "web", 2, 1), 0);
	ck_assert_int_eq(vm->state, VIREO__VM_STATE__VM_STARTING);
	ck_assert_int_eq(report(st, 3, "web", 1, VIREO__VM_STATE__VM_RUNNING), -EINVAL);  /* not the owner */
	ck_assert_int_eq(report(st, 2, "web", 0, VIREO__VM_STATE__VM_RUNNING), -EINVAL);  /* stale */
	ck_assert_int_eq(report(st, 2, "web", 1, VIREO__VM_STATE__VM_RUNNING), 0);
	ck_assert_int_eq(vm->state, VIREO__VM_STATE__VM_RUNNING);

	del.name = "web";
	op.body_case = VIREO__OP__BODY_VM_DELETE;
	op.vm_delete = &del;
	ck_assert_int_eq(apply(st, &op, 1), -EBUSY);               /* running */

	d.name = "web";
	d.running = false;
	d.force = true;
	op.body_case = VIREO__OP__BODY_VM_DESIRED;
	op.vm_desired = &d;
	ck_assert_int_eq(apply(st, &op, 1), 0);
	ck_assert_int_eq(vm->state, VIREO__VM_STATE__VM_STOPPING);
	ck_assert(vm->force_stop);      /* the owner destroys instead of powering off */
	d.running = true;               /* started again while still stopping */
	ck_assert_int_eq(apply(st, &op, 1), 0);
	ck_assert_int_eq(vm->state, VIREO__VM_STATE__VM_STOPPING);
	ck_assert(vm->want_running);
	d.running = false;
	d.force = false;
	ck_assert_int_eq(apply(st, &op, 1), 0);
	d.force = true;                 /* a forced stop overtakes the graceful one */
	ck_assert(!vm->force_stop);
	ck_assert_int_eq(apply(st, &op, 1), 0);
	ck_assert(vm->force_stop);
	ck_assert_int_eq(apply(st, &op, 1), -EALREADY);
	ck_assert_int_eq(report(st, 2, "web", 1, VIREO__VM_STATE__VM_STOPPED), 0);
	ck_assert_int_eq(vm->state, VIREO__VM_STATE__VM_STOPPED);

	op.body_case = VIREO__OP__BODY_VM_DELETE;
	op.vm_delete = &del;
	ck_assert_int_eq(apply(st, &op, 1), 0);
	ck_assert_ptr_null(cluster_vm_find(st, "web"));
	cluster_state_free(st);
}
END_TEST

/* A guest that stops on its own while it should run goes back to pending. */
START_TEST(unexpected_stop_is_placed_again)
{
	cluster_state *st = cluster3();
	struct spec_buf b;

	create(st, spec(&b, "db", 1, 512), true);
	assign(st, "db", 1, 1);
	report(st, 1, "db", 1, VIREO__VM_STATE__VM_RUNNING);
	ck_assert_int_eq(report(st, 1, "db", 1, VIREO__VM_STATE__VM_STOPPED), 0);
	ck_assert_int_eq(cluster_vm_find(st, "db")->state, VIREO__VM_STATE__VM_PENDING);
	cluster_state_free(st);
}
END_TEST

static uint32_t place(cluster_state *st, const uint32_t *online, size_t n, const char **name,
		      char *reason)
{
	const Vireo__Vm *vm = NULL;
	uint32_t node = 0;

	if (cluster_vm_place_next(st, online, n, &vm, &node, reason, 256) != 1)
		return (uint32_t)-1;
	*name = vm->spec->name;
	return node;
}

START_TEST(placement_spreads_and_respects_priority)
{
	static const uint32_t all[] = { 1, 2, 3 };
	cluster_state *st = cluster3();
	struct spec_buf b;
	const char *name;
	char reason[256];
	uint32_t node;

	create(st, spec(&b, "a", 1, 256), true);
	create(st, spec(&b, "b", 2, 256), true);
	create(st, spec(&b, "c", 3, 256), true);
	cluster_vm_find(st, "c")->spec->priority = 10;
	/* c first (priority), then a, b (name); each on a different node */
	node = place(st, all, 3, &name, reason);
	ck_assert_str_eq(name, "c");
	ck_assert_uint_eq(node, 1);
	ck_assert_int_eq(assign(st, name, node, 1), 0);
	node = place(st, all, 3, &name, reason);
	ck_assert_str_eq(name, "a");
	ck_assert_uint_eq(node, 2);
	ck_assert_int_eq(assign(st, name, node, 1), 0);
	node = place(st, all, 3, &name, reason);
	ck_assert_str_eq(name, "b");
	ck_assert_uint_eq(node, 3);
	ck_assert_int_eq(assign(st, name, node, 1), 0);
	ck_assert_uint_eq(place(st, all, 3, &name, reason), (uint32_t)-1);
	cluster_state_free(st);
}
END_TEST

START_TEST(placement_waits_for_capacity_with_a_reason)
{
	static const uint32_t only1[] = { 1 };
	cluster_state *st = cluster_state_new("c");
	struct spec_buf b;
	const char *name;
	char reason[256];
	Vireo__Op op = VIREO__OP__INIT;
	Vireo__VmPending p = VIREO__VM_PENDING__INIT;

	add_node(st, 1, 2, 1024, true);
	create(st, spec(&b, "big", 1, 800), true);
	create(st, spec(&b, "small", 2, 800), true);
	ck_assert_uint_eq(place(st, only1, 1, &name, reason), 1);
	assign(st, name, 1, 1);                               /* big on n1 */
	ck_assert_uint_eq(place(st, only1, 1, &name, reason), 0);
	ck_assert_str_eq(name, "small");
	ck_assert_ptr_nonnull(strstr(reason, "no available node has 800 MiB"));
	p.name = "small";
	p.reason = reason;
	op.body_case = VIREO__OP__BODY_VM_PENDING;
	op.vm_pending = &p;
	ck_assert_int_eq(apply(st, &op, 1), 0);
	/* once the reason is recorded nothing more is to do until capacity returns */
	ck_assert_uint_eq(place(st, only1, 1, &name, reason), (uint32_t)-1);
	report(st, 1, "big", 1, VIREO__VM_STATE__VM_ERROR);   /* frees its memory */
	ck_assert_uint_eq(place(st, only1, 1, &name, reason), 1);
	ck_assert_str_eq(name, "small");
	cluster_state_free(st);
}
END_TEST

START_TEST(pinned_vm_goes_only_to_its_node)
{
	static const uint32_t all[] = { 1, 2, 3 };
	static const uint32_t not3[] = { 1, 2 };
	cluster_state *st = cluster3();
	struct spec_buf b;
	const char *name;
	char reason[256];
	Vireo__VmSpec *s = spec(&b, "pinned", 1, 256);

	s->pinned_node = 3;
	create(st, s, true);
	ck_assert_uint_eq(place(st, all, 3, &name, reason), 3);
	ck_assert_uint_eq(place(st, not3, 2, &name, reason), 0);
	ck_assert_ptr_nonnull(strstr(reason, "its node (id 3)"));
	cluster_state_free(st);
}
END_TEST

static int announce_pool(cluster_state *st, uint32_t id, bool ok, const char *why,
			 const char *pool_id)
{
	Vireo__Op op = VIREO__OP__INIT;
	Vireo__NodeAnnounce a = VIREO__NODE_ANNOUNCE__INIT;
	char name[16];

	snprintf(name, sizeof(name), "n%u", id);
	a.id = id;
	a.name = name;
	a.cpus = 4;
	a.memory_mib = 8192;
	a.pool_ok = ok;
	a.pool_message = (char *)why;
	a.pool_id = (char *)pool_id;
	a.accel = "tcg";
	op.body_case = VIREO__OP__BODY_NODE_ANNOUNCE;
	op.node_announce = &a;
	return apply(st, &op, id);
}

/* The first pool id announced becomes the cluster's; a node losing its pool
 * leaves an event. */
START_TEST(pool_id_is_recorded_once_and_pool_loss_logged)
{
	cluster_state *st = cluster3();
	size_t events;

	ck_assert_str_eq(st->pool_id, "");
	ck_assert_int_eq(announce_pool(st, 2, true, "", "11111111-2222-3333-4444-555555555555"), 0);
	ck_assert_str_eq(st->pool_id, "11111111-2222-3333-4444-555555555555");
	ck_assert_int_eq(announce_pool(st, 3, true, "", "99999999-2222-3333-4444-555555555555"), 0);
	ck_assert_str_eq(st->pool_id, "11111111-2222-3333-4444-555555555555");
	ck_assert_str_eq(cluster_state_node(st, 3)->pool_id, "99999999-2222-3333-4444-555555555555");
	events = st->n_events;
	ck_assert_int_eq(announce_pool(st, 2, false, "shared store gone", "11111111-2222-3333-4444-555555555555"), 0);
	ck_assert_uint_eq(st->n_events, events + 1);
	ck_assert_msg(strstr(st->events[st->n_events - 1]->text, "shared store gone"), "%s",
		      st->events[st->n_events - 1]->text);
	ck_assert(!cluster_state_node(st, 2)->pool_ok);
	cluster_state_free(st);
}
END_TEST

static Suite *vm_suite(void)
{
	Suite *s = suite_create("vm");
	TCase *tc = tcase_create("vm");

	tcase_add_test(tc, bad_specs_are_refused_with_reasons);
	tcase_add_test(tc, lifecycle_through_operations);
	tcase_add_test(tc, unexpected_stop_is_placed_again);
	tcase_add_test(tc, placement_spreads_and_respects_priority);
	tcase_add_test(tc, placement_waits_for_capacity_with_a_reason);
	tcase_add_test(tc, pinned_vm_goes_only_to_its_node);
	tcase_add_test(tc, pool_id_is_recorded_once_and_pool_loss_logged);
	suite_add_tcase(s, tc);
	return s;
}

UNIT_MAIN(vm_suite)
