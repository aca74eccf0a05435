/* Cluster state: construction, snapshots, digest and apply(). Pure. */
#include "cluster/state.h"
#include "cluster/group.h"
#include "cluster/vm.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <nettle/sha2.h>

static char *dup_str(const char *s)
{
	return strdup(s ? s : "");
}

/* Replaces a string field; proto3 defaults point at a shared empty string
 * that must never be freed. */
static int set_str(char **field, const char *value)
{
	char *copy = dup_str(value);

	if (!copy)
		return -ENOMEM;
	if (*field && *field != protobuf_c_empty_string)
		free(*field);
	*field = copy;
	return 0;
}

cluster_state *cluster_state_new(const char *cluster_name)
{
	cluster_state *st = calloc(1, sizeof(*st));

	if (!st)
		return NULL;
	vireo__cluster_state__init(st);
	if (set_str(&st->cluster_name, cluster_name) < 0) {
		free(st);
		return NULL;
	}
	st->next_event_seq = 1;
	return st;
}

void cluster_state_free(cluster_state *st)
{
	if (st)
		protobuf_c_message_free_unpacked(&st->base, NULL);
}

int cluster_state_pack(const cluster_state *st, uint8_t **buf, size_t *len)
{
	size_t n = vireo__cluster_state__get_packed_size(st);
	uint8_t *b = malloc(n ? n : 1);

	if (!b)
		return -ENOMEM;
	*len = vireo__cluster_state__pack(st, b);
	*buf = b;
	return 0;
}

int cluster_state_unpack(const uint8_t *buf, size_t len, cluster_state **out)
{
	cluster_state *st = vireo__cluster_state__unpack(NULL, len, buf);

	if (!st)
		return -EINVAL;
	*out = st;
	return 0;
}

int cluster_state_copy(const cluster_state *st, cluster_state **out)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int rc = cluster_state_pack(st, &buf, &len);

	if (rc < 0)
		return rc;
	rc = cluster_state_unpack(buf, len, out);
	free(buf);
	return rc == -EINVAL ? -ENOMEM : rc;
}

int cluster_state_digest(const cluster_state *st, struct cluster_digest *d)
{
	struct sha256_ctx ctx;
	uint8_t *buf = NULL;
	size_t len = 0;
	int rc = cluster_state_pack(st, &buf, &len);

	if (rc < 0)
		return rc;
	sha256_init(&ctx);
	sha256_update(&ctx, len, buf);
	sha256_digest(&ctx, sizeof(d->bytes), d->bytes);
	free(buf);
	return 0;
}

void cluster_digest_hex(const struct cluster_digest *d, char out[2 * CLUSTER_DIGEST_LEN + 1])
{
	for (size_t i = 0; i < CLUSTER_DIGEST_LEN; i++)
		snprintf(out + 2 * i, 3, "%02x", d->bytes[i]);
}

Vireo__NodeInfo *cluster_state_node(const cluster_state *st, uint32_t id)
{
	for (size_t i = 0; i < st->n_nodes; i++)
		if (st->nodes[i]->id == id)
			return st->nodes[i];
	return NULL;
}

Vireo__NodeInfo *cluster_state_node_by_name(const cluster_state *st, const char *name)
{
	for (size_t i = 0; i < st->n_nodes; i++)
		if (strcmp(st->nodes[i]->name, name) == 0)
			return st->nodes[i];
	return NULL;
}

/* Inserts keeping nodes sorted by id, so equal states pack to equal bytes. */
static int node_insert(cluster_state *st, uint32_t id, Vireo__NodeInfo **out)
{
	Vireo__NodeInfo **nodes;
	Vireo__NodeInfo *n;
	size_t pos = 0;

	nodes = realloc(st->nodes, (st->n_nodes + 1) * sizeof(*nodes));
	if (!nodes)
		return -ENOMEM;
	st->nodes = nodes;
	if (!(n = calloc(1, sizeof(*n))))
		return -ENOMEM;
	vireo__node_info__init(n);
	n->id = id;
	while (pos < st->n_nodes && st->nodes[pos]->id < id)
		pos++;
	memmove(&st->nodes[pos + 1], &st->nodes[pos], (st->n_nodes - pos) * sizeof(*nodes));
	st->nodes[pos] = n;
	st->n_nodes++;
	*out = n;
	return 0;
}

/* Appends to the bounded event log, dropping the oldest entry when full. */
static int event_add(cluster_state *st, int64_t time_ms, uint32_t node, const char *text)
{
	Vireo__Event *ev = calloc(1, sizeof(*ev));
	int rc = -ENOMEM;

	if (!ev)
		goto cleanup;
	vireo__event__init(ev);
	if (set_str(&ev->text, text) < 0)
		goto cleanup;
	ev->seq = st->next_event_seq;
	ev->time_ms = time_ms;
	ev->node = node;
	if (st->n_events == CLUSTER_EVENT_LOG_MAX) {
		protobuf_c_message_free_unpacked(&st->events[0]->base, NULL);
		memmove(&st->events[0], &st->events[1], (st->n_events - 1) * sizeof(ev));
		st->n_events--;
	} else {
		Vireo__Event **events = realloc(st->events, (st->n_events + 1) * sizeof(ev));
		if (!events)
			goto cleanup;
		st->events = events;
	}
	st->events[st->n_events++] = ev;
	st->next_event_seq++;
	ev = NULL;
	rc = 0;
cleanup:
	if (ev)
		protobuf_c_message_free_unpacked(&ev->base, NULL);
	return rc;
}

int cluster_event_addf(cluster_state *st, int64_t time_ms, uint32_t node, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

int cluster_event_addf(cluster_state *st, int64_t time_ms, uint32_t node, const char *fmt, ...)
{
	char text[CLUSTER_TEXT_MAX + 128];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	return event_add(st, time_ms, node, text);
}

bool cluster_name_valid(const char *s)
{
	size_t len = s ? strlen(s) : 0;

	if (len == 0 || len > CLUSTER_NAME_MAX)
		return false;
	for (const char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.'))
			return false;
	return true;
}

static int apply_announce(cluster_state *st, const Vireo__Op *op)
{
	const Vireo__NodeAnnounce *a = op->node_announce;
	const Vireo__NodeInfo *same_name;
	Vireo__NodeInfo *n;
	int is_new = 0;
	int rc;

	if (a->id == 0 || !cluster_name_valid(a->name) || strlen(a->address) > CLUSTER_NAME_MAX ||
	    strlen(a->version) > CLUSTER_NAME_MAX || strlen(a->pool_message) > CLUSTER_TEXT_MAX ||
	    strlen(a->accel) > CLUSTER_NAME_MAX || strlen(a->pool_id) > CLUSTER_NAME_MAX)
		return -EINVAL;
	same_name = cluster_state_node_by_name(st, a->name);
	if (same_name && same_name->id != a->id)
		return -EINVAL;
	if (!(n = cluster_state_node(st, a->id))) {
		if ((rc = node_insert(st, a->id, &n)) < 0)
			return rc;
		is_new = 1;
	}
	if ((rc = set_str(&n->name, a->name)) < 0 || (rc = set_str(&n->address, a->address)) < 0 ||
	    (rc = set_str(&n->version, a->version)) < 0 ||
	    (rc = set_str(&n->pool_message, a->pool_message)) < 0 ||
	    (rc = set_str(&n->accel, a->accel)) < 0 ||
	    (rc = set_str(&n->pool_id, a->pool_id)) < 0 ||
	    (rc = set_str(&n->hv_message, a->hv_message)) < 0)
		return rc;
	if (!st->pool_id[0] && a->pool_id[0]) {
		if ((rc = set_str(&st->pool_id, a->pool_id)) < 0 ||
		    (rc = cluster_event_addf(st, op->time_ms, a->id, "the cluster's shared pool is %s "
				     "(first reported by node %s)", a->pool_id, a->name)) < 0)
			return rc;
	}
	n->cpus = a->cpus;
	n->memory_mib = a->memory_mib;
	if (!is_new && n->pool_ok != a->pool_ok && a->pool_ok)
		rc = cluster_event_addf(st, op->time_ms, a->id, "node %s: the shared pool is usable again",
				a->name);
	else if (!is_new && n->pool_ok != a->pool_ok)
		rc = cluster_event_addf(st, op->time_ms, a->id, "node %s: the shared pool is not usable: %s",
				a->name, a->pool_message);
	n->pool_ok = a->pool_ok;
	if (rc < 0)
		return rc;
	if (!is_new && n->hv_stalled != a->hv_stalled && a->hv_stalled)
		rc = cluster_event_addf(st, op->time_ms, a->id, "node %s: its hypervisor does not answer "
				"(%s); its guests run on, nothing new is placed there", a->name,
				a->hv_message);
	else if (!is_new && n->hv_stalled != a->hv_stalled)
		rc = cluster_event_addf(st, op->time_ms, a->id, "node %s: its hypervisor answers again",
				a->name);
	n->hv_stalled = a->hv_stalled;
	if (rc < 0)
		return rc;
	if (is_new)
		return cluster_event_addf(st, op->time_ms, a->id, "node %s (id %u, %s) joined the cluster",
				  a->name, a->id, a->address);
	return 0;
}

static int apply_membership(cluster_state *st, const Vireo__Op *op)
{
	const Vireo__NodeMembership *m = op->node_membership;
	Vireo__NodeInfo *n = cluster_state_node(st, m->id);

	if (!n)
		return -EINVAL;
	if (n->online == m->online)
		return -EALREADY;
	n->online = m->online;
	if (m->online) {
		n->joined_at_ms = op->time_ms;
		n->leave_grace_ms = 0;   /* that of the stop it came back from */
	}
	else
		n->left_at_ms = op->time_ms;
	return cluster_event_addf(st, op->time_ms, m->id, "node %s (id %u) is %s", n->name, n->id,
			  m->online ? "online" : "offline");
}

static const char *mode_name(Vireo__NodeMode m)
{
	switch (m) {
	case VIREO__NODE_MODE__NODE_MAINTENANCE: return "maintenance";
	case VIREO__NODE_MODE__NODE_EVACUATE: return "evacuation";
	default: return "active";
	}
}

static int apply_mode(cluster_state *st, const Vireo__Op *op)
{
	const Vireo__NodeModeChange *m = op->node_mode;
	Vireo__NodeInfo *n = cluster_state_node(st, m->node);

	if (!n || (m->mode != VIREO__NODE_MODE__NODE_ACTIVE &&
		   m->mode != VIREO__NODE_MODE__NODE_MAINTENANCE &&
		   m->mode != VIREO__NODE_MODE__NODE_EVACUATE))
		return -EINVAL;
	if (n->mode == m->mode)
		return -EALREADY;
	n->mode = m->mode;
	n->mode_since_ms = op->time_ms;
	if (m->mode == VIREO__NODE_MODE__NODE_ACTIVE)
		return cluster_event_addf(st, op->time_ms, n->id, "node %s is active again%s%s",
					  n->name, m->reason[0] ? ": " : "", m->reason);
	return cluster_event_addf(st, op->time_ms, n->id, "node %s enters %s%s%s: its VMs move "
				  "away", n->name, mode_name(m->mode), m->reason[0] ? ": " : "",
				  m->reason);
}

/* Only the node itself says it leaves cleanly, while it is online. */
static int apply_leaving(cluster_state *st, const Vireo__Op *op)
{
	const Vireo__NodeLeaving *l = op->node_leaving;
	Vireo__NodeInfo *n = cluster_state_node(st, l->node);

	if (!n || !n->online || op->origin != l->node)
		return -EINVAL;
	if (n->leave_grace_ms == l->grace_ms)
		return -EALREADY;
	n->leave_grace_ms = l->grace_ms;
	return cluster_event_addf(st, op->time_ms, n->id, "vireod on node %s stops cleanly; its "
				  "guests keep running for %llu ms for the next vireod", n->name,
				  (unsigned long long)l->grace_ms);
}

static int apply_manager(cluster_state *st, const Vireo__Op *op)
{
	uint32_t id = op->manager_change->manager;
	const Vireo__NodeInfo *n = cluster_state_node(st, id);

	if (!n)
		return -EINVAL;
	if (st->manager == id)
		return -EALREADY;
	st->manager = id;
	return cluster_event_addf(st, op->time_ms, id, "node %s (id %u) is now the manager", n->name, id);
}

static int apply_note(cluster_state *st, const Vireo__Op *op)
{
	const char *text = op->event_note->text;
	size_t len = strlen(text);

	if (len == 0 || len > CLUSTER_TEXT_MAX)
		return -EINVAL;
	return event_add(st, op->time_ms, op->origin, text);
}

static int apply_config(cluster_state *st, const Vireo__Op *op)
{
	const char *name = op->cluster_config->cluster_name;
	int rc;

	if (!cluster_name_valid(name))
		return -EINVAL;
	if ((rc = set_str(&st->cluster_name, name)) < 0)
		return rc;
	st->config_version++;
	return cluster_event_addf(st, op->time_ms, op->origin, "cluster name set to %s", name);
}

int cluster_apply(cluster_state *st, const Vireo__Op *op)
{
	int rc;

	switch (op->body_case) {
	case VIREO__OP__BODY_NODE_ANNOUNCE:
		rc = apply_announce(st, op);
		break;
	case VIREO__OP__BODY_NODE_MEMBERSHIP:
		rc = apply_membership(st, op);
		break;
	case VIREO__OP__BODY_MANAGER_CHANGE:
		rc = apply_manager(st, op);
		break;
	case VIREO__OP__BODY_EVENT_NOTE:
		rc = apply_note(st, op);
		break;
	case VIREO__OP__BODY_NOOP:
		rc = 0;
		break;
	case VIREO__OP__BODY_CLUSTER_CONFIG:
		rc = apply_config(st, op);
		break;
	case VIREO__OP__BODY_NODE_MODE:
		rc = apply_mode(st, op);
		break;
	case VIREO__OP__BODY_NODE_LEAVING:
		rc = apply_leaving(st, op);
		break;
	case VIREO__OP__BODY_VM_CREATE:
	case VIREO__OP__BODY_VM_DELETE:
	case VIREO__OP__BODY_VM_DESIRED:
	case VIREO__OP__BODY_VM_ASSIGN:
	case VIREO__OP__BODY_VM_PENDING:
	case VIREO__OP__BODY_VM_REPORT:
	case VIREO__OP__BODY_VM_MIGRATE:
	case VIREO__OP__BODY_VM_MIGRATE_PROGRESS:
	case VIREO__OP__BODY_VM_MIGRATE_CANCEL:
	case VIREO__OP__BODY_VM_MIGRATE_COMMIT:
	case VIREO__OP__BODY_VM_MIGRATE_END:
	case VIREO__OP__BODY_VM_FENCE:
	case VIREO__OP__BODY_VM_FENCED:
		rc = cluster_vm_apply(st, op);
		break;
	case VIREO__OP__BODY_GROUP_CREATE:
	case VIREO__OP__BODY_GROUP_DELETE:
	case VIREO__OP__BODY_GROUP_MEMBERS:
		rc = cluster_group_apply(st, op);
		break;
	default:
		rc = -EINVAL;
		break;
	}
	if (rc == 0)
		st->version++;
	return rc;
}

const char *cluster_op_name(const Vireo__Op *op)
{
	switch (op->body_case) {
	case VIREO__OP__BODY_NODE_ANNOUNCE: return "node-announce";
	case VIREO__OP__BODY_NODE_MEMBERSHIP: return "node-membership";
	case VIREO__OP__BODY_MANAGER_CHANGE: return "manager-change";
	case VIREO__OP__BODY_EVENT_NOTE: return "event-note";
	case VIREO__OP__BODY_NOOP: return "noop";
	case VIREO__OP__BODY_CLUSTER_CONFIG: return "cluster-config";
	case VIREO__OP__BODY_VM_CREATE: return "vm-create";
	case VIREO__OP__BODY_VM_DELETE: return "vm-delete";
	case VIREO__OP__BODY_VM_DESIRED: return "vm-desired";
	case VIREO__OP__BODY_VM_ASSIGN: return "vm-assign";
	case VIREO__OP__BODY_VM_PENDING: return "vm-pending";
	case VIREO__OP__BODY_VM_REPORT: return "vm-report";
	case VIREO__OP__BODY_VM_MIGRATE: return "vm-migrate";
	case VIREO__OP__BODY_VM_MIGRATE_PROGRESS: return "vm-migrate-progress";
	case VIREO__OP__BODY_VM_MIGRATE_CANCEL: return "vm-migrate-cancel";
	case VIREO__OP__BODY_VM_MIGRATE_COMMIT: return "vm-migrate-commit";
	case VIREO__OP__BODY_VM_MIGRATE_END: return "vm-migrate-end";
	case VIREO__OP__BODY_VM_FENCE: return "vm-fence";
	case VIREO__OP__BODY_VM_FENCED: return "vm-fenced";
	case VIREO__OP__BODY_NODE_MODE: return "node-mode";
	case VIREO__OP__BODY_NODE_LEAVING: return "node-leaving";
	case VIREO__OP__BODY_GROUP_CREATE: return "group-create";
	case VIREO__OP__BODY_GROUP_DELETE: return "group-delete";
	case VIREO__OP__BODY_GROUP_MEMBERS: return "group-members";
	default: return "unknown";
	}
}
