/* VM groups in the cluster state: each group operation, every refusal, the
 * order kept, determinism, and a deleted VM leaving its group. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cluster/group.h"
#include "cluster/vm.h"
#include "unit.h"

static int64_t clock_ms = 1000;

static int apply(cluster_state *st, Vireo__Op *op)
{
	op->origin = 1;
	op->time_ms = ++clock_ms;
	return cluster_apply(st, op);
}

static void add_node(cluster_state *st, uint32_t id)
{
	Vireo__Op op = VIREO__OP__INIT;
	Vireo__NodeAnnounce a = VIREO__NODE_ANNOUNCE__INIT;
	char name[16];

	snprintf(name, sizeof(name), "n%u", id);
	a.id = id;
	a.name = name;
	a.cpus = 4;
	a.memory_mib = 4096;
	op.body_case = VIREO__OP__BODY_NODE_ANNOUNCE;
	op.node_announce = &a;
	ck_assert_int_eq(apply(st, &op), 0);
}

static void add_vm(cluster_state *st, const char *name, int n)
{
	Vireo__Op op = VIREO__OP__INIT;
	Vireo__VmCreate c = VIREO__VM_CREATE__INIT;
	Vireo__VmSpec spec = VIREO__VM_SPEC__INIT;
	char uuid[40];

	snprintf(uuid, sizeof(uuid), "00000000-0000-4000-8000-%012d", n);
	spec.name = (char *)name;
	spec.uuid = uuid;
	spec.vcpus = 1;
	spec.memory_mib = 128;
	spec.kernel = "/boot/vmlinux";
	c.spec = &spec;
	op.body_case = VIREO__OP__BODY_VM_CREATE;
	op.vm_create = &c;
	ck_assert_int_eq(apply(st, &op), 0);
}

/* Two nodes and the VMs a, b, c, d. */
static cluster_state *cluster(void)
{
	cluster_state *st = cluster_state_new("c");

	add_node(st, 1);
	add_node(st, 2);
	add_vm(st, "c", 3);
	add_vm(st, "a", 1);
	add_vm(st, "d", 4);
	add_vm(st, "b", 2);
	return st;
}

static int create(cluster_state *st, const char *name, bool affinity, bool strict)
{
	Vireo__Op op = VIREO__OP__INIT;
	Vireo__GroupCreate c = VIREO__GROUP_CREATE__INIT;

	c.name = (char *)name;
	c.affinity = affinity;
	c.strict = strict;
	op.body_case = VIREO__OP__BODY_GROUP_CREATE;
	op.group_create = &c;
	return apply(st, &op);
}

static int delete(cluster_state *st, const char *name)
{
	Vireo__Op op = VIREO__OP__INIT;
	Vireo__VmName d = VIREO__VM_NAME__INIT;

	d.name = (char *)name;
	op.body_case = VIREO__OP__BODY_GROUP_DELETE;
	op.group_delete = &d;
	return apply(st, &op);
}

static void members_op(Vireo__Op *op, Vireo__GroupMembers *m, const char *name, char **add,
		       size_t n_add, char **remove, size_t n_remove)
{
	vireo__op__init(op);
	vireo__group_members__init(m);
	m->name = (char *)name;
	m->add = add;
	m->n_add = n_add;
	m->remove = remove;
	m->n_remove = n_remove;
	op->body_case = VIREO__OP__BODY_GROUP_MEMBERS;
	op->group_members = m;
}

static int members(cluster_state *st, const char *name, char **add, size_t n_add, char **remove,
		   size_t n_remove)
{
	Vireo__Op op;
	Vireo__GroupMembers m;

	members_op(&op, &m, name, add, n_add, remove, n_remove);
	return apply(st, &op);
}

/* What the check says about op, and that apply() says the same and leaves
 * the state as it was when refusing. */
static int check_then_apply(cluster_state *st, Vireo__Op *op, char *err, size_t errlen)
{
	struct cluster_digest before, after;
	uint64_t version = st->version;
	int checked, applied;

	cluster_state_digest(st, &before);
	err[0] = '\0';
	checked = cluster_group_check(st, op, err, errlen);
	applied = apply(st, op);
	ck_assert_int_eq(checked, applied);
	if (applied < 0) {
		cluster_state_digest(st, &after);
		ck_assert_int_eq(memcmp(before.bytes, after.bytes, sizeof(before.bytes)), 0);
		ck_assert_uint_eq(st->version, version);
		ck_assert_msg(err[0], "a refusal says why");
	} else {
		ck_assert_uint_eq(st->version, version + 1);
	}
	return applied;
}

static const char *last_event(const cluster_state *st)
{
	return st->n_events ? st->events[st->n_events - 1]->text : "";
}

START_TEST(create_keeps_groups_sorted_and_refuses_bad_names)
{
	cluster_state *st = cluster();
	Vireo__Op op = VIREO__OP__INIT;
	Vireo__GroupCreate c = VIREO__GROUP_CREATE__INIT;
	char err[256];

	ck_assert_int_eq(create(st, "web", false, true), 0);
	ck_assert_str_eq(last_event(st), "group web created (anti-affinity, strict)");
	ck_assert_int_eq(create(st, "db", true, false), 0);
	ck_assert_str_eq(last_event(st), "group db created (affinity, soft)");
	ck_assert_int_eq(create(st, "mid", true, true), 0);
	ck_assert_uint_eq(st->n_groups, 3);
	ck_assert_str_eq(st->groups[0]->name, "db");
	ck_assert_str_eq(st->groups[1]->name, "mid");
	ck_assert_str_eq(st->groups[2]->name, "web");
	ck_assert(!st->groups[2]->affinity && st->groups[2]->strict);
	ck_assert(st->groups[0]->affinity && !st->groups[0]->strict);
	ck_assert_ptr_eq(cluster_group_find(st, "mid"), st->groups[1]);
	ck_assert_ptr_null(cluster_group_find(st, "nope"));

	op.body_case = VIREO__OP__BODY_GROUP_CREATE;
	op.group_create = &c;
	c.name = "web";
	ck_assert_int_eq(check_then_apply(st, &op, err, sizeof(err)), -EEXIST);
	ck_assert_ptr_nonnull(strstr(err, "exists already"));
	c.name = "";
	ck_assert_int_eq(check_then_apply(st, &op, err, sizeof(err)), -EINVAL);
	c.name = "a b";
	ck_assert_int_eq(check_then_apply(st, &op, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "a group name must be"));
	c.name = "x1234567890123456789012345678901234567890123456789012345678901234";
	ck_assert_int_eq(check_then_apply(st, &op, err, sizeof(err)), -EINVAL);
	ck_assert_uint_eq(st->n_groups, 3);
	cluster_state_free(st);
}
END_TEST

START_TEST(delete_removes_the_group_not_its_vms)
{
	cluster_state *st = cluster();
	char *ab[] = { "a", "b" };
	Vireo__Op op = VIREO__OP__INIT;
	Vireo__VmName d = VIREO__VM_NAME__INIT;
	char err[256];

	ck_assert_int_eq(create(st, "g1", true, false), 0);
	ck_assert_int_eq(create(st, "g2", false, false), 0);
	ck_assert_int_eq(members(st, "g1", ab, 2, NULL, 0), 0);
	ck_assert_int_eq(delete(st, "g1"), 0);
	ck_assert_ptr_nonnull(strstr(last_event(st), "2 members, now in no group"));
	ck_assert_uint_eq(st->n_groups, 1);
	ck_assert_str_eq(st->groups[0]->name, "g2");
	ck_assert_ptr_null(cluster_group_of(st, "a"));
	ck_assert_ptr_nonnull(cluster_vm_find(st, "a"));
	ck_assert_int_eq(delete(st, "g2"), 0);
	ck_assert_str_eq(last_event(st), "group g2 deleted");
	ck_assert_uint_eq(st->n_groups, 0);

	d.name = "g2";
	op.body_case = VIREO__OP__BODY_GROUP_DELETE;
	op.group_delete = &d;
	ck_assert_int_eq(check_then_apply(st, &op, err, sizeof(err)), -ENOENT);
	ck_assert_ptr_nonnull(strstr(err, "no group named g2"));
	cluster_state_free(st);
}
END_TEST

START_TEST(members_are_added_and_removed_sorted)
{
	cluster_state *st = cluster();
	char *dca[] = { "d", "c", "a" };
	char *b[] = { "b" };
	char *c[] = { "c" };
	const Vireo__VmGroup *g;

	ck_assert_int_eq(create(st, "g", false, true), 0);
	ck_assert_int_eq(members(st, "g", dca, 3, NULL, 0), 0);
	ck_assert_str_eq(last_event(st), "group g: added d, c, a");
	g = cluster_group_find(st, "g");
	ck_assert_uint_eq(g->n_vms, 3);
	ck_assert_str_eq(g->vms[0], "a");
	ck_assert_str_eq(g->vms[1], "c");
	ck_assert_str_eq(g->vms[2], "d");
	ck_assert_ptr_eq(cluster_group_of(st, "c"), g);
	ck_assert_ptr_null(cluster_group_of(st, "b"));

	/* add and remove in one op; an add of a member already is no change */
	ck_assert_int_eq(members(st, "g", b, 1, c, 1), 0);
	ck_assert_str_eq(last_event(st), "group g: added b; removed c");
	ck_assert_uint_eq(g->n_vms, 3);
	ck_assert_str_eq(g->vms[0], "a");
	ck_assert_str_eq(g->vms[1], "b");
	ck_assert_str_eq(g->vms[2], "d");
	ck_assert_int_eq(members(st, "g", dca + 2, 1, b, 1), 0);   /* a again, b out */
	ck_assert_str_eq(last_event(st), "group g: removed b");
	ck_assert_uint_eq(g->n_vms, 2);
	ck_assert_int_eq(members(st, "g", NULL, 0, dca, 1), 0);
	ck_assert_int_eq(members(st, "g", NULL, 0, dca + 2, 1), 0);
	ck_assert_uint_eq(g->n_vms, 0);
	cluster_state_free(st);
}
END_TEST

START_TEST(members_refusals)
{
	cluster_state *st = cluster();
	char *a[] = { "a" }, *b[] = { "b" }, *aa[] = { "a", "a" }, *bb[] = { "b", "b" };
	char *ghost[] = { "ghost" };
	char err[256];
	Vireo__Op op;
	Vireo__GroupMembers m;

	ck_assert_int_eq(create(st, "g", true, false), 0);
	ck_assert_int_eq(create(st, "h", false, false), 0);
	ck_assert_int_eq(members(st, "g", a, 1, NULL, 0), 0);

	members_op(&op, &m, "nope", a, 1, NULL, 0);
	ck_assert_int_eq(check_then_apply(st, &op, err, sizeof(err)), -ENOENT);
	ck_assert_ptr_nonnull(strstr(err, "no group named nope"));
	members_op(&op, &m, "g", NULL, 0, NULL, 0);
	ck_assert_int_eq(check_then_apply(st, &op, err, sizeof(err)), -EINVAL);
	members_op(&op, &m, "g", ghost, 1, NULL, 0);
	ck_assert_int_eq(check_then_apply(st, &op, err, sizeof(err)), -ENOENT);
	ck_assert_ptr_nonnull(strstr(err, "no VM named ghost"));
	/* in another group already */
	members_op(&op, &m, "h", a, 1, NULL, 0);
	ck_assert_int_eq(check_then_apply(st, &op, err, sizeof(err)), -EBUSY);
	ck_assert_ptr_nonnull(strstr(err, "vireo group remove g a"));
	/* not a member */
	members_op(&op, &m, "g", NULL, 0, b, 1);
	ck_assert_int_eq(check_then_apply(st, &op, err, sizeof(err)), -ENOENT);
	ck_assert_ptr_nonnull(strstr(err, "not a member of group g"));
	members_op(&op, &m, "h", NULL, 0, ghost, 1);
	ck_assert_int_eq(check_then_apply(st, &op, err, sizeof(err)), -ENOENT);
	/* named twice, in one list or both */
	members_op(&op, &m, "h", b, 1, b, 1);
	ck_assert_int_eq(check_then_apply(st, &op, err, sizeof(err)), -EINVAL);
	members_op(&op, &m, "g", NULL, 0, aa, 2);
	ck_assert_int_eq(check_then_apply(st, &op, err, sizeof(err)), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "named twice"));
	members_op(&op, &m, "h", bb, 2, NULL, 0);
	ck_assert_int_eq(check_then_apply(st, &op, err, sizeof(err)), -EINVAL);
	/* nothing changes */
	members_op(&op, &m, "g", a, 1, NULL, 0);
	ck_assert_int_eq(check_then_apply(st, &op, err, sizeof(err)), -EALREADY);
	/* a refusal of one name refuses the whole op */
	{
		char *b_ghost[] = { "b", "ghost" };

		members_op(&op, &m, "g", b_ghost, 2, NULL, 0);
		ck_assert_int_eq(check_then_apply(st, &op, err, sizeof(err)), -ENOENT);
		ck_assert_uint_eq(cluster_group_find(st, "g")->n_vms, 1);
	}
	/* not a group op at all */
	vireo__op__init(&op);
	op.body_case = VIREO__OP__BODY_NOOP;
	ck_assert_int_eq(cluster_group_check(st, &op, err, sizeof(err)), -EINVAL);
	cluster_state_free(st);
}
END_TEST

static bool group_bytes_equal(const Vireo__VmGroup *x, const Vireo__VmGroup *y)
{
	uint8_t bx[512], by[512];
	size_t nx = vireo__vm_group__get_packed_size(x), ny = vireo__vm_group__get_packed_size(y);

	ck_assert(nx <= sizeof(bx) && ny <= sizeof(by));
	return nx == ny && vireo__vm_group__pack(x, bx) == nx && vireo__vm_group__pack(y, by) == ny &&
	       memcmp(bx, by, nx) == 0;
}

static void sequence(cluster_state *st, char **add, size_t n)
{
	char *rm[] = { "a" };

	clock_ms = 5000;
	ck_assert_int_eq(create(st, "z", true, true), 0);
	ck_assert_int_eq(create(st, "k", false, false), 0);
	ck_assert_int_eq(members(st, "z", add, n, NULL, 0), 0);
	ck_assert_int_eq(members(st, "z", NULL, 0, rm, 1), 0);
	ck_assert_int_eq(delete(st, "k"), 0);
}

/* The same ops give the same state on every member; the members' order
 * does not depend on the order they were named in. */
START_TEST(apply_is_deterministic)
{
	cluster_state *x, *y, *z;
	char *abc[] = { "a", "b", "c" }, *cba[] = { "c", "b", "a" };
	struct cluster_digest dx, dy;

	clock_ms = 1000;
	x = cluster();
	sequence(x, abc, 3);
	clock_ms = 1000;
	y = cluster();
	sequence(y, abc, 3);
	z = cluster();
	cluster_state_digest(x, &dx);
	cluster_state_digest(y, &dy);
	ck_assert_int_eq(memcmp(dx.bytes, dy.bytes, sizeof(dx.bytes)), 0);
	/* named in another order: the group is the same (the event text differs) */
	sequence(z, cba, 3);
	ck_assert_uint_eq(z->n_groups, 1);
	ck_assert(group_bytes_equal(x->groups[0], z->groups[0]));
	cluster_state_free(x);
	cluster_state_free(y);
	cluster_state_free(z);
}
END_TEST

START_TEST(a_packed_state_keeps_its_groups)
{
	cluster_state *st = cluster(), *copy = NULL;
	char *ab[] = { "b", "a" };

	ck_assert_int_eq(create(st, "g", true, true), 0);
	ck_assert_int_eq(members(st, "g", ab, 2, NULL, 0), 0);
	ck_assert_int_eq(cluster_state_copy(st, &copy), 0);
	ck_assert_uint_eq(copy->n_groups, 1);
	ck_assert(copy->groups[0]->affinity && copy->groups[0]->strict);
	ck_assert_uint_eq(copy->groups[0]->n_vms, 2);
	ck_assert_str_eq(copy->groups[0]->vms[0], "a");
	ck_assert_str_eq(copy->groups[0]->vms[1], "b");
	/* a copy applies group ops like the original */
	ck_assert_int_eq(members(copy, "g", NULL, 0, ab, 2), 0);
	ck_assert_int_eq(delete(copy, "g"), 0);
	cluster_state_free(copy);
	cluster_state_free(st);
}
END_TEST

START_TEST(forget_vm_leaves_its_group)
{
	cluster_state *st = cluster();
	char *abc[] = { "a", "b", "c" };
	const Vireo__VmGroup *g;

	ck_assert_int_eq(create(st, "g", false, false), 0);
	ck_assert_int_eq(members(st, "g", abc, 3, NULL, 0), 0);
	g = cluster_group_find(st, "g");
	ck_assert_int_eq(cluster_group_forget_vm(st, "b"), 0);
	ck_assert_uint_eq(g->n_vms, 2);
	ck_assert_str_eq(g->vms[0], "a");
	ck_assert_str_eq(g->vms[1], "c");
	ck_assert_ptr_null(cluster_group_of(st, "b"));
	/* a VM in no group: nothing to do, not an error */
	ck_assert_int_eq(cluster_group_forget_vm(st, "b"), 0);
	ck_assert_int_eq(cluster_group_forget_vm(st, "d"), 0);
	ck_assert_int_eq(cluster_group_forget_vm(st, "a"), 0);
	ck_assert_int_eq(cluster_group_forget_vm(st, "c"), 0);
	ck_assert_uint_eq(g->n_vms, 0);
	ck_assert_ptr_eq(cluster_group_find(st, "g"), g);     /* the group stays */
	cluster_state_free(st);
}
END_TEST

/* Once vm.c's delete calls cluster_group_forget_vm, deleting a VM through
 * the log takes it out of its group; until then this says what is missing. */
START_TEST(deleting_a_vm_through_the_log_leaves_its_group)
{
	cluster_state *st = cluster();
	char *a[] = { "a" };
	Vireo__Op op = VIREO__OP__INIT;
	Vireo__VmName del = VIREO__VM_NAME__INIT;

	ck_assert_int_eq(create(st, "g", true, false), 0);
	ck_assert_int_eq(members(st, "g", a, 1, NULL, 0), 0);
	del.name = "a";
	op.body_case = VIREO__OP__BODY_VM_DELETE;
	op.vm_delete = &del;
	ck_assert_int_eq(apply(st, &op), 0);
	ck_assert_ptr_null(cluster_vm_find(st, "a"));
	ck_assert_msg(cluster_group_of(st, "a") == NULL,
		      "VM a was deleted but is still a member of group g: vm.c's delete must call "
		      "cluster_group_forget_vm()");
	cluster_state_free(st);
}
END_TEST

static Suite *group_suite(void)
{
	Suite *s = suite_create("group");
	TCase *tc = tcase_create("group");

	tcase_add_test(tc, create_keeps_groups_sorted_and_refuses_bad_names);
	tcase_add_test(tc, delete_removes_the_group_not_its_vms);
	tcase_add_test(tc, members_are_added_and_removed_sorted);
	tcase_add_test(tc, members_refusals);
	tcase_add_test(tc, apply_is_deterministic);
	tcase_add_test(tc, a_packed_state_keeps_its_groups);
	tcase_add_test(tc, forget_vm_leaves_its_group);
	tcase_add_test(tc, deleting_a_vm_through_the_log_leaves_its_group);
	suite_add_tcase(s, tc);
	return s;
}

UNIT_MAIN(group_suite)
