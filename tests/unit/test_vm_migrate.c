/* Migration in the cluster state: who may migrate where, and the life of a
 * migration through its operations (cluster/vm_migrate.c). */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cluster/vm.h"
#include "cluster/vm_migrate.h"
#include "unit.h"

static int64_t clock_ms = 1000;

static int apply(cluster_state *st, Vireo__Op *op, uint32_t origin)
{
	op->origin = origin;
	op->time_ms = ++clock_ms;
	return cluster_apply(st, op);
}

static void add_node(cluster_state *st, uint32_t id, uint64_t mem, const char *accel, bool online)
{
	Vireo__Op op = VIREO__OP__INIT;
	Vireo__NodeAnnounce a = VIREO__NODE_ANNOUNCE__INIT;
	Vireo__NodeMembership m = VIREO__NODE_MEMBERSHIP__INIT;
	char name[16];

	snprintf(name, sizeof(name), "n%u", id);
	a.id = id;
	a.name = name;
	a.cpus = 2;
	a.memory_mib = mem;
	a.pool_ok = true;
	a.pool_id = "pool-1";
	a.accel = (char *)accel;
	op.body_case = VIREO__OP__BODY_NODE_ANNOUNCE;
	op.node_announce = &a;
	ck_assert_int_eq(apply(st, &op, id), 0);
	m.id = id;
	m.online = online;
	op.body_case = VIREO__OP__BODY_NODE_MEMBERSHIP;
	op.node_membership = &m;
	if (online)
		ck_assert_int_eq(apply(st, &op, 1), 0);
}

static void set_online(cluster_state *st, uint32_t id, bool online)
{
	Vireo__Op op = VIREO__OP__INIT;
	Vireo__NodeMembership m = VIREO__NODE_MEMBERSHIP__INIT;

	m.id = id;
	m.online = online;
	op.body_case = VIREO__OP__BODY_NODE_MEMBERSHIP;
	op.node_membership = &m;
	ck_assert_int_eq(apply(st, &op, 1), 0);
}

/* A VM of mem MiB running on node owner (generation 1). */
static void running_vm(cluster_state *st, const char *name, int n, uint64_t mem, uint32_t owner)
{
	Vireo__Op op = VIREO__OP__INIT;
	Vireo__VmCreate c = VIREO__VM_CREATE__INIT;
	Vireo__VmAssign a = VIREO__VM_ASSIGN__INIT;
	Vireo__VmReport r = VIREO__VM_REPORT__INIT;
	Vireo__VmSpec s = VIREO__VM_SPEC__INIT;
	char uuid[40];

	snprintf(uuid, sizeof(uuid), "00000000-0000-4000-8000-%012d", n);
	s.name = (char *)name;
	s.uuid = uuid;
	s.vcpus = 1;
	s.memory_mib = mem;
	s.kernel = "/k";
	c.spec = &s;
	c.start = true;
	op.body_case = VIREO__OP__BODY_VM_CREATE;
	op.vm_create = &c;
	ck_assert_int_eq(apply(st, &op, 1), 0);
	a.name = (char *)name;
	a.owner = owner;
	a.generation = 1;
	op.body_case = VIREO__OP__BODY_VM_ASSIGN;
	op.vm_assign = &a;
	ck_assert_int_eq(apply(st, &op, 1), 0);
	r.name = (char *)name;
	r.generation = 1;
	r.state = VIREO__VM_STATE__VM_RUNNING;
	r.message = "";
	op.body_case = VIREO__OP__BODY_VM_REPORT;
	op.vm_report = &r;
	ck_assert_int_eq(apply(st, &op, owner), 0);
}

static int migrate(cluster_state *st, const char *name, uint32_t target, uint32_t origin)
{
	Vireo__Op op = VIREO__OP__INIT;
	Vireo__VmMigrate m = VIREO__VM_MIGRATE__INIT;

	m.name = (char *)name;
	m.target = target;
	op.body_case = VIREO__OP__BODY_VM_MIGRATE;
	op.vm_migrate = &m;
	return apply(st, &op, origin);
}

static int progress(cluster_state *st, const char *name, uint64_t id, uint64_t raw, uint32_t origin)
{
	Vireo__Op op = VIREO__OP__INIT;
	Vireo__VmMigrateProgress p = VIREO__VM_MIGRATE_PROGRESS__INIT;

	p.name = (char *)name;
	p.id = id;
	p.bytes_raw = raw;
	p.bytes_sent = raw / 4;
	op.body_case = VIREO__OP__BODY_VM_MIGRATE_PROGRESS;
	op.vm_migrate_progress = &p;
	return apply(st, &op, origin);
}

static int cancel(cluster_state *st, const char *name, uint64_t id)
{
	Vireo__Op op = VIREO__OP__INIT;
	Vireo__VmMigrateCancel c = VIREO__VM_MIGRATE_CANCEL__INIT;

	c.name = (char *)name;
	c.id = id;
	op.body_case = VIREO__OP__BODY_VM_MIGRATE_CANCEL;
	op.vm_migrate_cancel = &c;
	return apply(st, &op, 3);
}

static int commit(cluster_state *st, const char *name, uint64_t id, uint32_t origin)
{
	Vireo__Op op = VIREO__OP__INIT;
	Vireo__VmMigrateCommit c = VIREO__VM_MIGRATE_COMMIT__INIT;

	c.name = (char *)name;
	c.id = id;
	c.bytes_raw = 1000;
	c.bytes_sent = 250;
	c.paused_ms = clock_ms;
	c.transfer_ms = 1;
	op.body_case = VIREO__OP__BODY_VM_MIGRATE_COMMIT;
	op.vm_migrate_commit = &c;
	return apply(st, &op, origin);
}

static int end(cluster_state *st, const char *name, uint64_t id, bool ok, uint32_t origin)
{
	Vireo__Op op = VIREO__OP__INIT;
	Vireo__VmMigrateEnd e = VIREO__VM_MIGRATE_END__INIT;

	e.name = (char *)name;
	e.id = id;
	e.ok = ok;
	e.message = ok ? "" : "the stream was cut";
	e.downtime_ms = 42;
	e.resumed_ms = ok ? clock_ms + 1 : 0;
	op.body_case = VIREO__OP__BODY_VM_MIGRATE_END;
	op.vm_migrate_end = &e;
	return apply(st, &op, origin);
}

static cluster_state *cluster3(void)
{
	cluster_state *st = cluster_state_new("c");

	add_node(st, 1, 4096, "tcg", true);
	add_node(st, 2, 4096, "tcg", true);
	add_node(st, 3, 4096, "tcg", true);
	return st;
}

/* A refused op changes nothing: the digest before equals the digest after. */
static void digest(const cluster_state *st, struct cluster_digest *d)
{
	ck_assert_int_eq(cluster_state_digest(st, d), 0);
}

START_TEST(refusals_say_why_and_change_nothing)
{
	cluster_state *st = cluster_state_new("c");
	struct cluster_digest before, after;
	uint32_t chosen;
	char err[256];

	add_node(st, 1, 4096, "tcg", true);
	add_node(st, 2, 4096, "tcg", true);
	add_node(st, 3, 4096, "kvm", true);
	add_node(st, 4, 512, "tcg", true);
	add_node(st, 5, 4096, "tcg", false);
	running_vm(st, "web", 1, 1024, 1);

	ck_assert_int_eq(cluster_vm_migrate_check(st, "nope", 2, &chosen, err, sizeof(err)), -ENOENT);
	ck_assert_str_eq(err, "no VM named nope");
	ck_assert_int_eq(cluster_vm_migrate_check(st, "web", 1, &chosen, err, sizeof(err)), -EINVAL);
	ck_assert_str_eq(err, "VM web runs on n1 already");
	ck_assert_int_eq(cluster_vm_migrate_check(st, "web", 9, &chosen, err, sizeof(err)), -EINVAL);
	ck_assert_int_eq(cluster_vm_migrate_check(st, "web", 5, &chosen, err, sizeof(err)), -EHOSTDOWN);
	ck_assert_str_eq(err, "node n5 is offline");
	ck_assert_int_eq(cluster_vm_migrate_check(st, "web", 3, &chosen, err, sizeof(err)),
			 -EMEDIUMTYPE);
	ck_assert_ptr_nonnull(strstr(err, "kvm"));
	ck_assert_int_eq(cluster_vm_migrate_check(st, "web", 4, &chosen, err, sizeof(err)), -ENOSPC);
	ck_assert_ptr_nonnull(strstr(err, "needs 1024 MiB"));
	ck_assert_int_eq(cluster_vm_migrate_check(st, "web", 2, &chosen, err, sizeof(err)), 0);
	ck_assert_uint_eq(chosen, 2);

	digest(st, &before);
	ck_assert_int_eq(migrate(st, "web", 4, 1), -EINVAL);
	ck_assert_int_eq(migrate(st, "web", 1, 1), -EINVAL);
	ck_assert_int_eq(migrate(st, "nope", 2, 1), -EINVAL);
	ck_assert_int_eq(progress(st, "web", 7, 10, 1), -EINVAL);       /* no migration */
	ck_assert_int_eq(commit(st, "web", 7, 1), -EINVAL);
	ck_assert_int_eq(cancel(st, "web", 0), -EINVAL);
	ck_assert_int_eq(end(st, "web", 7, false, 1), -EINVAL);
	digest(st, &after);
	ck_assert_mem_eq(before.bytes, after.bytes, sizeof(before.bytes));
	cluster_state_free(st);
}
END_TEST

START_TEST(a_stopped_vm_or_a_migrating_one_is_refused)
{
	cluster_state *st = cluster3();
	uint32_t chosen;
	char err[256];
	Vireo__Op op = VIREO__OP__INIT;
	Vireo__VmDesired d = VIREO__VM_DESIRED__INIT;

	running_vm(st, "web", 1, 256, 1);
	ck_assert_int_eq(migrate(st, "web", 2, 1), 0);
	ck_assert_int_eq(cluster_vm_migrate_check(st, "web", 3, &chosen, err, sizeof(err)), -EBUSY);
	ck_assert_ptr_nonnull(strstr(err, "--cancel"));
	ck_assert_int_eq(migrate(st, "web", 3, 1), -EINVAL);

	running_vm(st, "db", 2, 256, 2);
	d.name = "db";
	d.running = false;
	op.body_case = VIREO__OP__BODY_VM_DESIRED;
	op.vm_desired = &d;
	ck_assert_int_eq(apply(st, &op, 1), 0);
	ck_assert_int_eq(cluster_vm_migrate_check(st, "db", 3, &chosen, err, sizeof(err)), -ESRCH);
	ck_assert_str_eq(err, "VM db is stopping; only a running VM can be migrated");
	cluster_state_free(st);
}
END_TEST

START_TEST(quick_migration_commits_then_the_target_ends_it)
{
	cluster_state *st = cluster3();
	Vireo__Vm *vm;
	uint64_t id, mem;
	uint32_t vcpus, count;

	running_vm(st, "web", 1, 1024, 1);
	ck_assert_int_eq(migrate(st, "web", 2, 3), 0);
	vm = cluster_vm_find(st, "web");
	ck_assert_int_eq(vm->state, VIREO__VM_STATE__VM_MIGRATING);
	ck_assert_ptr_nonnull(vm->migration);
	id = vm->migration->id;
	ck_assert_uint_eq(id, st->version);
	ck_assert_uint_eq(vm->migration->source, 1);
	ck_assert_uint_eq(vm->migration->target, 2);
	ck_assert_uint_eq(vm->migration->origin, 3);
	ck_assert_str_eq(vm->message, "quick migration to n2");
	/* The target's room is held while the guest moves. */
	cluster_vm_node_usage(st, 2, &mem, &vcpus, &count);
	ck_assert_uint_eq(mem, 1024);
	cluster_vm_node_usage(st, 1, &mem, &vcpus, &count);
	ck_assert_uint_eq(mem, 1024);

	/* Only the source reports progress and commits; the owner's plain
	 * reports do not apply to a migrating VM. */
	ck_assert_int_eq(progress(st, "web", id, 4096, 2), -EINVAL);
	ck_assert_int_eq(progress(st, "web", id + 1, 4096, 1), -EINVAL);
	ck_assert_int_eq(progress(st, "web", id, 4096, 1), 0);
	ck_assert_int_eq(progress(st, "web", id, 4096, 1), -EALREADY);
	ck_assert_int_eq(vm->migration->phase, VIREO__MIGRATION_PHASE__MIGRATION_STREAMING);
	ck_assert_uint_eq(vm->migration->bytes_raw, 4096);
	ck_assert_int_eq(end(st, "web", id, true, 1), -EINVAL);    /* no success before the commit */
	ck_assert_int_eq(commit(st, "web", id, 3), -EINVAL);         /* not involved */
	ck_assert_int_eq(commit(st, "web", id, 1), 0);
	ck_assert_uint_eq(vm->owner, 2);
	ck_assert_uint_eq(vm->generation, 2);
	ck_assert_int_eq(vm->migration->phase, VIREO__MIGRATION_PHASE__MIGRATION_COMMITTED);
	ck_assert_int_eq(commit(st, "web", id, 1), -EINVAL);
	ck_assert_int_eq(cancel(st, "web", id), -EINVAL);           /* too late */
	ck_assert_int_eq(end(st, "web", id, true, 1), -EINVAL);     /* the target speaks now */

	ck_assert_int_eq(end(st, "web", id, true, 2), 0);
	ck_assert_int_eq(vm->state, VIREO__VM_STATE__VM_RUNNING);
	ck_assert_ptr_null(vm->migration);
	ck_assert_ptr_nonnull(vm->last_migration);
	ck_assert(vm->last_migration->ok);
	ck_assert_uint_eq(vm->last_migration->id, id);
	ck_assert_uint_eq(vm->last_migration->downtime_ms, 42);
	ck_assert_uint_eq(vm->last_migration->bytes_raw, 1000);
	ck_assert_uint_gt(vm->last_migration->total_ms, 0);
	ck_assert_ptr_nonnull(strstr(st->events[st->n_events - 1]->text, "migrated from n1 to n2"));
	cluster_vm_node_usage(st, 1, &mem, &vcpus, &count);
	ck_assert_uint_eq(mem, 0);
	cluster_state_free(st);
}
END_TEST

START_TEST(failure_before_the_commit_leaves_it_on_the_source)
{
	cluster_state *st = cluster3();
	Vireo__Vm *vm;
	uint64_t id, gen;

	running_vm(st, "web", 1, 256, 1);
	vm = cluster_vm_find(st, "web");
	gen = vm->generation;
	ck_assert_int_eq(migrate(st, "web", 0, 1), 0);      /* the manager chooses */
	ck_assert_uint_eq(vm->migration->target, 2);        /* fewest VMs, then lowest id */
	id = vm->migration->id;
	ck_assert_int_eq(cancel(st, "web", id + 5), -EINVAL);
	ck_assert_int_eq(cancel(st, "web", 0), 0);
	ck_assert(vm->migration->cancel);
	ck_assert_int_eq(cancel(st, "web", id), -EALREADY);
	ck_assert_int_eq(end(st, "web", id, false, 2), -EINVAL);    /* not the source */
	ck_assert_int_eq(end(st, "web", id, false, 1), 0);
	ck_assert_int_eq(vm->state, VIREO__VM_STATE__VM_RUNNING);
	ck_assert_uint_eq(vm->owner, 1);
	ck_assert_uint_eq(vm->generation, gen);
	ck_assert(!vm->last_migration->ok);
	ck_assert_ptr_nonnull(strstr(vm->message, "failed, it runs on n1: the stream was cut"));
	cluster_state_free(st);
}
END_TEST

START_TEST(the_manager_picks_the_least_loaded_node_or_says_none_fits)
{
	cluster_state *st = cluster3();
	uint32_t chosen;
	char err[256];

	running_vm(st, "a", 1, 256, 1);
	running_vm(st, "b", 2, 256, 2);
	ck_assert_int_eq(cluster_vm_migrate_check(st, "a", 0, &chosen, err, sizeof(err)), 0);
	ck_assert_uint_eq(chosen, 3);
	running_vm(st, "big", 3, 3900, 3);
	ck_assert_int_eq(cluster_vm_migrate_check(st, "big", 0, &chosen, err, sizeof(err)), -ENOSPC);
	ck_assert_ptr_nonnull(strstr(err, "no node can take VM big"));
	set_online(st, 2, false);
	set_online(st, 3, false);
	ck_assert_int_eq(cluster_vm_migrate_check(st, "a", 0, &chosen, err, sizeof(err)), -EHOSTDOWN);
	cluster_state_free(st);
}
END_TEST

START_TEST(stop_during_a_migration_waits_for_its_end)
{
	cluster_state *st = cluster3();
	Vireo__Op op = VIREO__OP__INIT;
	Vireo__VmDesired d = VIREO__VM_DESIRED__INIT;
	Vireo__Vm *vm;
	uint64_t id;

	running_vm(st, "web", 1, 256, 1);
	ck_assert_int_eq(migrate(st, "web", 2, 1), 0);
	vm = cluster_vm_find(st, "web");
	id = vm->migration->id;
	d.name = "web";
	d.running = false;
	op.body_case = VIREO__OP__BODY_VM_DESIRED;
	op.vm_desired = &d;
	ck_assert_int_eq(apply(st, &op, 1), 0);
	ck_assert_int_eq(vm->state, VIREO__VM_STATE__VM_MIGRATING);
	ck_assert(!vm->want_running);
	ck_assert_int_eq(commit(st, "web", id, 1), 0);
	ck_assert_int_eq(end(st, "web", id, true, 2), 0);
	ck_assert_int_eq(vm->state, VIREO__VM_STATE__VM_STOPPING);
	ck_assert_uint_eq(vm->owner, 2);

	/* The same, but the guest did not resume on the target: it is not
	 * started again there, since it should stop. */
	vm->state = VIREO__VM_STATE__VM_RUNNING;     /* as if it had started again */
	vm->want_running = true;
	ck_assert_int_eq(migrate(st, "web", 3, 2), 0);
	id = vm->migration->id;
	ck_assert_int_eq(apply(st, &op, 2), 0);
	ck_assert_int_eq(commit(st, "web", id, 2), 0);
	ck_assert_int_eq(end(st, "web", id, false, 3), 0);
	ck_assert_int_eq(vm->state, VIREO__VM_STATE__VM_STOPPING);
	ck_assert_uint_eq(vm->owner, 3);
	cluster_state_free(st);
}
END_TEST

START_TEST(a_target_that_cannot_resume_boots_it_afresh)
{
	cluster_state *st = cluster3();
	Vireo__Vm *vm;
	uint64_t id;

	running_vm(st, "web", 1, 256, 1);
	ck_assert_int_eq(migrate(st, "web", 3, 1), 0);
	vm = cluster_vm_find(st, "web");
	id = vm->migration->id;
	/* The target may commit too (its libvirt finished the incoming guest). */
	ck_assert_int_eq(commit(st, "web", id, 2), -EINVAL);
	ck_assert_int_eq(commit(st, "web", id, 3), 0);
	ck_assert_uint_eq(vm->owner, 3);
	ck_assert_int_eq(commit(st, "web", id, 1), -EINVAL);         /* once */
	ck_assert_int_eq(end(st, "web", id, false, 3), 0);
	/* Its memory is lost, its disks are not: the target starts it. */
	ck_assert_int_eq(vm->state, VIREO__VM_STATE__VM_STARTING);
	ck_assert_uint_eq(vm->owner, 3);
	ck_assert_ptr_null(vm->migration);
	ck_assert_ptr_nonnull(strstr(vm->message, "migrated to n3 but did not resume there"));
	cluster_state_free(st);
}
END_TEST

static Suite *vm_migrate_suite(void)
{
	Suite *s = suite_create("vm_migrate");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, refusals_say_why_and_change_nothing);
	tcase_add_test(tc, a_stopped_vm_or_a_migrating_one_is_refused);
	tcase_add_test(tc, quick_migration_commits_then_the_target_ends_it);
	tcase_add_test(tc, failure_before_the_commit_leaves_it_on_the_source);
	tcase_add_test(tc, the_manager_picks_the_least_loaded_node_or_says_none_fits);
	tcase_add_test(tc, stop_during_a_migration_waits_for_its_end);
	tcase_add_test(tc, a_target_that_cannot_resume_boots_it_afresh);
	suite_add_tcase(s, tc);
	return s;
}

UNIT_MAIN(vm_migrate_suite)
