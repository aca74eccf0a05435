/* VM groups in the cluster state: the checks and apply() of GroupCreate,
 * group_delete and GroupMembers. Groups are kept sorted by name and their
 * members sorted too, so equal states pack to equal bytes. Pure. */
#include "cluster/group.h"
#include "cluster/vm.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An event line names the members changed; a long list is cut, not the line. */
#define EVENT_NAMES_MAX 256

static const char *kind_name(bool affinity, bool strict)
{
	if (affinity)
		return strict ? "affinity, strict" : "affinity, soft";
	return strict ? "anti-affinity, strict" : "anti-affinity, soft";
}

static size_t group_index(const cluster_state *st, const char *name, bool *found)
{
	size_t pos = 0;

	while (pos < st->n_groups && strcmp(st->groups[pos]->name, name) < 0)
		pos++;
	*found = pos < st->n_groups && strcmp(st->groups[pos]->name, name) == 0;
	return pos;
}

const Vireo__VmGroup *cluster_group_find(const cluster_state *st, const char *name)
{
	bool found;
	size_t pos = group_index(st, name, &found);

	return found ? st->groups[pos] : NULL;
}

static bool is_member(const Vireo__VmGroup *g, const char *vm)
{
	for (size_t i = 0; i < g->n_vms; i++)
		if (strcmp(g->vms[i], vm) == 0)
			return true;
	return false;
}

const Vireo__VmGroup *cluster_group_of(const cluster_state *st, const char *vm_name)
{
	for (size_t i = 0; i < st->n_groups; i++)
		if (is_member(st->groups[i], vm_name))
			return st->groups[i];
	return NULL;
}

static bool named_before(char *const *names, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(names[i], name) == 0)
			return true;
	return false;
}

/* ---------------------------------------------------------------- checks */

static int check_create(const cluster_state *st, const Vireo__GroupCreate *c, char *err,
			size_t errlen)
{
	if (!cluster_name_valid(c->name)) {
		snprintf(err, errlen, "a group name must be 1-%d letters, digits, '-', '_' or '.'",
			 CLUSTER_NAME_MAX);
		return -EINVAL;
	}
	if (cluster_group_find(st, c->name)) {
		snprintf(err, errlen, "a group named %s exists already; see vireo group list",
			 c->name);
		return -EEXIST;
	}
	return 0;
}

static int check_delete(const cluster_state *st, const Vireo__VmName *d, char *err, size_t errlen)
{
	if (!cluster_group_find(st, d->name)) {
		snprintf(err, errlen, "no group named %s; see vireo group list", d->name);
		return -ENOENT;
	}
	return 0;
}

static int check_members(const cluster_state *st, const Vireo__GroupMembers *m, char *err,
			 size_t errlen)
{
	const Vireo__VmGroup *g = cluster_group_find(st, m->name);
	bool changes = m->n_remove > 0;

	if (!g) {
		snprintf(err, errlen, "no group named %s; see vireo group list", m->name);
		return -ENOENT;
	}
	if (!m->n_add && !m->n_remove) {
		snprintf(err, errlen, "name at least one VM to add to or remove from group %s",
			 m->name);
		return -EINVAL;
	}
	for (size_t i = 0; i < m->n_add; i++) {
		const char *vm = m->add[i];
		const Vireo__VmGroup *other;

		if (named_before(m->add, i, vm) || named_before(m->remove, m->n_remove, vm)) {
			snprintf(err, errlen, "VM %s is named twice; name each VM once", vm);
			return -EINVAL;
		}
		if (!cluster_vm_find(st, vm)) {
			snprintf(err, errlen, "no VM named %s; see vireo vm list", vm);
			return -ENOENT;
		}
		other = cluster_group_of(st, vm);
		if (other && other != g) {
			snprintf(err, errlen, "VM %s is in group %s already and a VM is in at most one "
				 "group; remove it there first (vireo group remove %s %s)", vm,
				 other->name, other->name, vm);
			return -EBUSY;
		}
		changes |= !other;
	}
	for (size_t i = 0; i < m->n_remove; i++) {
		const char *vm = m->remove[i];

		if (named_before(m->remove, i, vm)) {
			snprintf(err, errlen, "VM %s is named twice; name each VM once", vm);
			return -EINVAL;
		}
		if (!is_member(g, vm)) {
			snprintf(err, errlen, "VM %s is not a member of group %s; see vireo group list",
				 vm, m->name);
			return -ENOENT;
		}
	}
	if (!changes) {
		snprintf(err, errlen, "every VM named is a member of group %s already", m->name);
		return -EALREADY;
	}
	return 0;
}

int cluster_group_check(const cluster_state *st, const Vireo__Op *op, char *err, size_t errlen)
{
	switch (op->body_case) {
	case VIREO__OP__BODY_GROUP_CREATE:
		if (op->group_create)
			return check_create(st, op->group_create, err, errlen);
		break;
	case VIREO__OP__BODY_GROUP_DELETE:
		if (op->group_delete)
			return check_delete(st, op->group_delete, err, errlen);
		break;
	case VIREO__OP__BODY_GROUP_MEMBERS:
		if (op->group_members)
			return check_members(st, op->group_members, err, errlen);
		break;
	default:
		break;
	}
	snprintf(err, errlen, "not a group operation");
	return -EINVAL;
}

/* ---------------------------------------------------------------- apply */

static int apply_create(cluster_state *st, const Vireo__Op *op)
{
	const Vireo__GroupCreate *c = op->group_create;
	Vireo__VmGroup **groups, *g = NULL;
	bool found;
	size_t pos = group_index(st, c->name, &found);
	int rc = -ENOMEM;

	if (!(g = calloc(1, sizeof(*g))))
		goto cleanup;
	vireo__vm_group__init(g);
	if (!(g->name = strdup(c->name)))
		goto cleanup;
	g->affinity = c->affinity;
	g->strict = c->strict;
	if (!(groups = realloc(st->groups, (st->n_groups + 1) * sizeof(*groups))))
		goto cleanup;
	st->groups = groups;
	memmove(&st->groups[pos + 1], &st->groups[pos], (st->n_groups - pos) * sizeof(*groups));
	st->groups[pos] = g;
	st->n_groups++;
	g = NULL;
	rc = cluster_event_addf(st, op->time_ms, op->origin, "group %s created (%s)", c->name,
				kind_name(c->affinity, c->strict));
cleanup:
	if (g)
		protobuf_c_message_free_unpacked(&g->base, NULL);
	return rc;
}

static int apply_delete(cluster_state *st, const Vireo__Op *op)
{
	const char *name = op->group_delete->name;
	bool found;
	size_t pos = group_index(st, name, &found);
	size_t members = st->groups[pos]->n_vms;

	protobuf_c_message_free_unpacked(&st->groups[pos]->base, NULL);
	memmove(&st->groups[pos], &st->groups[pos + 1],
		(st->n_groups - pos - 1) * sizeof(*st->groups));
	st->n_groups--;
	/* Deleting a group drops a placement rule, not its VMs: say so. */
	if (members)
		return cluster_event_addf(st, op->time_ms, op->origin, "group %s deleted (%zu "
					  "member%s, now in no group)", name, members,
					  members == 1 ? "" : "s");
	return cluster_event_addf(st, op->time_ms, op->origin, "group %s deleted", name);
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* "a, b, c" into buf, cut with "..." when it does not fit. */
static void join_names(char *const *names, size_t n, char *buf, size_t len)
{
	size_t used = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < n && used < len; i++)
		used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? ", " : "", names[i]);
	if (used >= len && len > 4)
		strcpy(buf + len - 4, "...");
}

static int apply_members(cluster_state *st, const Vireo__Op *op)
{
	const Vireo__GroupMembers *m = op->group_members;
	bool found;
	Vireo__VmGroup *g = st->groups[group_index(st, m->name, &found)];
	char **next = calloc(g->n_vms + m->n_add + 1, sizeof(*next));
	char **added = calloc(m->n_add + 1, sizeof(*added));
	size_t n = 0, n_added = 0;
	char added_text[EVENT_NAMES_MAX], removed_text[EVENT_NAMES_MAX];
	int rc = -ENOMEM;

	if (!next || !added)
		goto cleanup;
	for (size_t i = 0; i < m->n_add; i++) {
		if (is_member(g, m->add[i]))
			continue;
		if (!(added[n_added] = strdup(m->add[i])))
			goto cleanup;
		n_added++;
	}
	/* Nothing can fail from here: the old list is split into kept and freed. */
	for (size_t i = 0; i < g->n_vms; i++) {
		if (named_before(m->remove, m->n_remove, g->vms[i]))
			free(g->vms[i]);
		else
			next[n++] = g->vms[i];
	}
	memcpy(&next[n], added, n_added * sizeof(*added));
	n += n_added;
	qsort(next, n, sizeof(*next), by_name);
	free(g->vms);
	g->vms = next;
	g->n_vms = n;
	next = NULL;
	join_names(added, n_added, added_text, sizeof(added_text));
	n_added = 0;            /* the group holds them now */
	join_names(m->remove, m->n_remove, removed_text, sizeof(removed_text));
	if (added_text[0] && removed_text[0])
		rc = cluster_event_addf(st, op->time_ms, op->origin, "group %s: added %s; removed %s",
					m->name, added_text, removed_text);
	else
		rc = cluster_event_addf(st, op->time_ms, op->origin, "group %s: %s %s", m->name,
					added_text[0] ? "added" : "removed",
					added_text[0] ? added_text : removed_text);
cleanup:
	for (size_t i = 0; i < n_added; i++)
		free(added[i]);
	free(added);
	free(next);
	return rc;
}

int cluster_group_apply(cluster_state *st, const Vireo__Op *op)
{
	char err[CLUSTER_TEXT_MAX];
	int rc = cluster_group_check(st, op, err, sizeof(err));

	if (rc < 0)
		return rc;
	switch (op->body_case) {
	case VIREO__OP__BODY_GROUP_CREATE: return apply_create(st, op);
	case VIREO__OP__BODY_GROUP_DELETE: return apply_delete(st, op);
	case VIREO__OP__BODY_GROUP_MEMBERS: return apply_members(st, op);
	default: return -EINVAL;
	}
}

int cluster_group_forget_vm(cluster_state *st, const char *vm)
{
	for (size_t i = 0; i < st->n_groups; i++) {
		Vireo__VmGroup *g = st->groups[i];

		for (size_t j = 0; j < g->n_vms; j++) {
			if (strcmp(g->vms[j], vm) != 0)
				continue;
			free(g->vms[j]);
			memmove(&g->vms[j], &g->vms[j + 1], (g->n_vms - j - 1) * sizeof(*g->vms));
			g->n_vms--;
			return 0;
		}
	}
	return 0;
}
