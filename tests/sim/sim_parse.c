/* Reads a scenario's `events` file (format: tests/sim/README.md). A line
 * that is wrong stops the run with "file:line: what is wrong": a scenario
 * that silently means something else would test nothing. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/timeouts.h"
#include "tests/sim/sim.h"

struct parser {
	struct sim_scenario *sc;
	int line;
	char *words[SIM_MAX_ARGS + 8];
	size_t n_words;
};

static int fail(const struct parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(const struct parser *p, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s:%d: ", p->sc->path, p->line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return -EINVAL;
}

static int number(const struct parser *p, const char *s, const char *what, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (!*s || *end || errno || s[0] == '-' || v > max)
		return fail(p, "%s must be a whole number from 0 to %llu, not '%s'", what,
			    (unsigned long long)max, s);
	*out = v;
	return 0;
}

/* "n3" -> 3, for a node the scenario declared. */
static int node_id(const struct parser *p, const char *s, uint32_t *out)
{
	uint64_t id;
	char *end;

	if (s[0] != 'n' || !s[1])
		return fail(p, "'%s' is not a node name (n1 .. n%zu)", s, p->sc->n_nodes);
	id = strtoull(s + 1, &end, 10);
	if (*end || id == 0 || id > p->sc->n_nodes)
		return fail(p, "'%s' is not a node of this scenario (n1 .. n%zu; declare them "
			    "first with 'nodes N')", s, p->sc->n_nodes);
	*out = (uint32_t)id;
	return 0;
}

/* "n2,n1" -> ids in order. */
static int node_list(const struct parser *p, const char *s, uint32_t *out, size_t max, size_t *n)
{
	char buf[256], *save = NULL, *tok;
	int rc;

	snprintf(buf, sizeof(buf), "%s", s);
	*n = 0;
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (*n == max)
			return fail(p, "too many nodes in '%s'", s);
		if ((rc = node_id(p, tok, &out[(*n)++])) < 0)
			return rc;
	}
	return *n ? 0 : fail(p, "'%s' names no node", s);
}

static int vm_index(const struct parser *p, const char *name)
{
	for (size_t i = 0; i < p->sc->n_vms; i++)
		if (strcmp(p->sc->vms[i].name, name) == 0)
			return (int)i;
	return fail(p, "no VM named '%s' (declare it first with 'vm %s ...')", name, name);
}

/* "key=value": the value when word starts with key=, else NULL. */
static const char *option(const char *word, const char *key)
{
	size_t n = strlen(key);

	return strncmp(word, key, n) == 0 && word[n] == '=' ? word + n + 1 : NULL;
}

static int parse_nodes(struct parser *p)
{
	struct sim_scenario *sc = p->sc;
	uint64_t n, v;
	int rc;

	if (sc->n_nodes)
		return fail(p, "'nodes' given twice");
	if (p->n_words < 2 || (rc = number(p, p->words[1], "the number of nodes", SIM_MAX_NODES, &n)) < 0)
		return p->n_words < 2 ? fail(p, "usage: nodes N [cpus=C] [memory=MiB]") : rc;
	if (n == 0)
		return fail(p, "a cluster needs at least one node");
	sc->n_nodes = n;
	for (size_t i = 1; i <= n; i++) {
		sc->cpus[i] = 4;
		sc->memory_mib[i] = 4096;
	}
	for (size_t w = 2; w < p->n_words; w++) {
		const char *val;
		if ((val = option(p->words[w], "cpus"))) {
			if ((rc = number(p, val, "cpus", 1024, &v)) < 0)
				return rc;
			for (size_t i = 1; i <= n; i++)
				sc->cpus[i] = (uint32_t)v;
		} else if ((val = option(p->words[w], "memory"))) {
			if ((rc = number(p, val, "memory", UINT32_MAX, &v)) < 0)
				return rc;
			for (size_t i = 1; i <= n; i++)
				sc->memory_mib[i] = v;
		} else {
			return fail(p, "unknown option '%s' (cpus=, memory=)", p->words[w]);
		}
	}
	return 0;
}

/* node nX cpus=C memory=M: one node unlike the others. */
static int parse_node(struct parser *p)
{
	uint32_t id;
	uint64_t v;
	int rc;

	if (p->n_words < 3)
		return fail(p, "usage: node nX [cpus=C] [memory=MiB]");
	if ((rc = node_id(p, p->words[1], &id)) < 0)
		return rc;
	for (size_t w = 2; w < p->n_words; w++) {
		const char *val;
		if ((val = option(p->words[w], "cpus"))) {
			if ((rc = number(p, val, "cpus", 1024, &v)) < 0)
				return rc;
			p->sc->cpus[id] = (uint32_t)v;
		} else if ((val = option(p->words[w], "memory"))) {
			if ((rc = number(p, val, "memory", UINT32_MAX, &v)) < 0)
				return rc;
			p->sc->memory_mib[id] = v;
		} else {
			return fail(p, "unknown option '%s' (cpus=, memory=)", p->words[w]);
		}
	}
	return 0;
}

static int parse_vm(struct parser *p)
{
	struct sim_scenario *sc = p->sc;
	struct sim_vm_def *vm;
	uint64_t v;
	int rc;

	if (!sc->n_nodes)
		return fail(p, "declare the nodes ('nodes N') before the VMs");
	if (p->n_words < 2)
		return fail(p, "usage: vm NAME [ha] [priority=N] [memory=MiB] [vcpus=N] "
			    "[prefer=nA,nB] [pin=nX] [max_relocations=N]");
	if (sc->n_vms == SIM_MAX_VMS)
		return fail(p, "at most %d VMs", SIM_MAX_VMS);
	if (strlen(p->words[1]) >= SIM_NAME_MAX || !cluster_name_valid(p->words[1]))
		return fail(p, "'%s' is not a valid VM name", p->words[1]);
	for (size_t i = 0; i < sc->n_vms; i++)
		if (strcmp(sc->vms[i].name, p->words[1]) == 0)
			return fail(p, "VM %s is declared twice", p->words[1]);
	vm = &sc->vms[sc->n_vms];
	memset(vm, 0, sizeof(*vm));
	snprintf(vm->name, sizeof(vm->name), "%s", p->words[1]);
	vm->memory_mib = 512;
	vm->vcpus = 1;
	vm->line = p->line;
	for (size_t w = 2; w < p->n_words; w++) {
		const char *s = p->words[w], *val;

		if (strcmp(s, "ha") == 0) {
			vm->ha = true;
		} else if ((val = option(s, "priority"))) {
			char *end;
			long pr = strtol(val, &end, 10);
			if (!*val || *end || pr < -1000000 || pr > 1000000)
				return fail(p, "priority must be a whole number, not '%s'", val);
			vm->priority = (int32_t)pr;
		} else if ((val = option(s, "memory"))) {
			if ((rc = number(p, val, "memory", UINT32_MAX, &vm->memory_mib)) < 0)
				return rc;
		} else if ((val = option(s, "vcpus"))) {
			if ((rc = number(p, val, "vcpus", 1024, &v)) < 0)
				return rc;
			vm->vcpus = (uint32_t)v;
		} else if ((val = option(s, "prefer"))) {
			if ((rc = node_list(p, val, vm->prefer, SIM_MAX_NODES, &vm->n_prefer)) < 0)
				return rc;
		} else if ((val = option(s, "pin"))) {
			if ((rc = node_id(p, val, &vm->pin)) < 0)
				return rc;
		} else if ((val = option(s, "max_relocations"))) {
			if ((rc = number(p, val, "max_relocations", 1000, &v)) < 0)
				return rc;
			vm->max_relocations = (uint32_t)v;
		} else {
			return fail(p, "unknown VM option '%s' (ha, priority=, memory=, vcpus=, prefer=, "
				    "pin=, max_relocations=)", s);
		}
	}
	sc->n_vms++;
	return 0;
}

static int parse_group(struct parser *p)
{
	struct sim_scenario *sc = p->sc;
	struct sim_group_def *g;
	int idx;

	if (p->n_words < 4)
		return fail(p, "usage: group NAME affinity|anti-affinity strict|soft VM...");
	if (sc->n_groups == SIM_MAX_GROUPS)
		return fail(p, "at most %d groups", SIM_MAX_GROUPS);
	g = &sc->groups[sc->n_groups];
	memset(g, 0, sizeof(*g));
	if (strlen(p->words[1]) >= SIM_NAME_MAX)
		return fail(p, "group name '%s' is too long", p->words[1]);
	snprintf(g->name, sizeof(g->name), "%s", p->words[1]);
	if (strcmp(p->words[2], "affinity") == 0)
		g->affinity = true;
	else if (strcmp(p->words[2], "anti-affinity") != 0)
		return fail(p, "a group is 'affinity' or 'anti-affinity', not '%s'", p->words[2]);
	if (strcmp(p->words[3], "strict") == 0)
		g->strict = true;
	else if (strcmp(p->words[3], "soft") != 0)
		return fail(p, "a group is 'strict' or 'soft', not '%s'", p->words[3]);
	for (size_t w = 4; w < p->n_words; w++) {
		if ((idx = vm_index(p, p->words[w])) < 0)
			return idx;
		g->vms[g->n_vms++] = idx;
	}
	g->line = p->line;
	sc->n_groups++;
	return 0;
}

static const struct {
	const char *word;
	enum sim_action action;
	const char *usage;       /* what follows the word */
} actions[] = {
	{ "start", SIM_START, "VM..." },
	{ "stop", SIM_STOP, "VM... [force]" },
	{ "kill", SIM_KILL, "nX..." },
	{ "partition", SIM_PARTITION, "nX[,nY...] (these nodes together, cut off from the rest)" },
	{ "heal", SIM_HEAL, "" },
	{ "pause", SIM_PAUSE, "nX..." },
	{ "resume", SIM_RESUME, "nX..." },
	{ "rejoin", SIM_REJOIN, "nX..." },
	{ "hang", SIM_HANG, "nX..." },
	{ "kill-vireod", SIM_KILL_VIREOD, "nX..." },
	{ "leave", SIM_LEAVE, "nX [grace=MS]" },
	{ "maintenance", SIM_MAINTENANCE, "nX" },
	{ "evacuate", SIM_EVACUATE, "nX" },
	{ "active", SIM_ACTIVE, "nX" },
	{ "migrate", SIM_MIGRATE, "VM nX [live]" },
	{ "fail-migration", SIM_FAIL_MIGRATION, "VM" },
	{ "lease", SIM_LEASE, "VM held|free|auto" },
};

static int parse_at(struct parser *p)
{
	struct sim_scenario *sc = p->sc;
	struct sim_event *ev;
	uint64_t t;
	size_t a, w;
	int rc;

	if (!sc->n_nodes)
		return fail(p, "declare the nodes ('nodes N') before the events");
	if (p->n_words < 3)
		return fail(p, "usage: at TIME_MS ACTION ARGS...");
	if ((rc = number(p, p->words[1], "the time", INT32_MAX, &t)) < 0)
		return rc;
	if (sc->n_events && (int64_t)t < sc->events[sc->n_events - 1].time_ms)
		return fail(p, "time %llu is before the previous event's %lld: keep events in order",
			    (unsigned long long)t, (long long)sc->events[sc->n_events - 1].time_ms);
	if (sc->n_events == SIM_MAX_EVENTS)
		return fail(p, "at most %d events", SIM_MAX_EVENTS);
	for (a = 0; a < sizeof(actions) / sizeof(actions[0]); a++)
		if (strcmp(p->words[2], actions[a].word) == 0)
			break;
	if (a == sizeof(actions) / sizeof(actions[0]))
		return fail(p, "unknown action '%s' (start, stop, kill, partition, heal, pause, resume, "
			    "rejoin, hang, kill-vireod, leave, maintenance, evacuate, active, migrate, "
			    "fail-migration, lease)", p->words[2]);
	ev = &sc->events[sc->n_events];
	memset(ev, 0, sizeof(*ev));
	ev->time_ms = (int64_t)t;
	ev->line = p->line;
	ev->action = actions[a].action;
	for (w = 2; w < p->n_words; w++)
		snprintf(ev->text + strlen(ev->text), sizeof(ev->text) - strlen(ev->text), "%s%s",
			 w > 2 ? " " : "", p->words[w]);
	w = 3;
	switch (ev->action) {
	case SIM_START:
	case SIM_STOP:
	case SIM_FAIL_MIGRATION:
		for (; w < p->n_words; w++) {
			if (ev->action == SIM_STOP && strcmp(p->words[w], "force") == 0) {
				ev->force = true;
				continue;
			}
			if ((rc = vm_index(p, p->words[w])) < 0)
				return rc;
			ev->vms[ev->n_vms++] = rc;
		}
		if (!ev->n_vms || (ev->action == SIM_FAIL_MIGRATION && ev->n_vms != 1))
			return fail(p, "usage: at T %s %s", actions[a].word, actions[a].usage);
		break;
	case SIM_HEAL:
		if (p->n_words != 3)
			return fail(p, "usage: at T heal (it takes no arguments)");
		break;
	case SIM_PARTITION:
	case SIM_KILL:
	case SIM_PAUSE:
	case SIM_RESUME:
	case SIM_REJOIN:
	case SIM_HANG:
	case SIM_KILL_VIREOD:
		if (p->n_words < 4)
			return fail(p, "usage: at T %s %s", actions[a].word, actions[a].usage);
		for (; w < p->n_words; w++) {
			size_t n;
			if ((rc = node_list(p, p->words[w], ev->nodes + ev->n_nodes,
					    SIM_MAX_ARGS - ev->n_nodes, &n)) < 0)
				return rc;
			ev->n_nodes += n;
		}
		break;
	case SIM_LEAVE:
	case SIM_MAINTENANCE:
	case SIM_EVACUATE:
	case SIM_ACTIVE:
		if (p->n_words < 4 || (ev->action != SIM_LEAVE && p->n_words != 4))
			return fail(p, "usage: at T %s %s", actions[a].word, actions[a].usage);
		if ((rc = node_id(p, p->words[3], &ev->nodes[0])) < 0)
			return rc;
		ev->n_nodes = 1;
		ev->grace_ms = VIREO_LEAVE_GRACE_MS(sc->token_ms);
		for (w = 4; w < p->n_words; w++) {
			const char *val = option(p->words[w], "grace");
			if (!val)
				return fail(p, "unknown option '%s' (grace=MS)", p->words[w]);
			if ((rc = number(p, val, "grace", INT32_MAX, &ev->grace_ms)) < 0)
				return rc;
		}
		break;
	case SIM_MIGRATE:
		if (p->n_words < 5 || p->n_words > 6 || (p->n_words == 6 && strcmp(p->words[5], "live")))
			return fail(p, "usage: at T migrate VM nX [live]");
		if ((rc = vm_index(p, p->words[3])) < 0)
			return rc;
		ev->vms[ev->n_vms++] = rc;
		if ((rc = node_id(p, p->words[4], &ev->nodes[0])) < 0)
			return rc;
		ev->n_nodes = 1;
		ev->live = p->n_words == 6;
		break;
	case SIM_LEASE:
		if (p->n_words != 5)
			return fail(p, "usage: at T lease VM held|free|auto");
		if ((rc = vm_index(p, p->words[3])) < 0)
			return rc;
		ev->vms[ev->n_vms++] = rc;
		if (strcmp(p->words[4], "held") == 0)
			ev->lease = SIM_LEASE_HELD;
		else if (strcmp(p->words[4], "free") == 0)
			ev->lease = SIM_LEASE_FREE;
		else if (strcmp(p->words[4], "auto") == 0)
			ev->lease = SIM_LEASE_AUTO;
		else
			return fail(p, "a lease is 'held', 'free' or 'auto' (what the guests really "
				    "hold), not '%s'", p->words[4]);
		break;
	}
	sc->n_events++;
	return 0;
}

static int timing(struct parser *p, uint32_t *field, const char *what, uint64_t min)
{
	uint64_t v;
	int rc;

	if (p->n_words != 2)
		return fail(p, "usage: %s MS", what);
	if ((rc = number(p, p->words[1], what, 600000, &v)) < 0)
		return rc;
	if (v < min)
		return fail(p, "%s must be at least %llu", what, (unsigned long long)min);
	*field = (uint32_t)v;
	return 0;
}

static int parse_line(struct parser *p)
{
	struct sim_scenario *sc = p->sc;
	const char *w0 = p->words[0];
	uint64_t t;
	int rc;

	if (strcmp(w0, "token") == 0) {
		if (sc->n_nodes || sc->n_events)
			return fail(p, "'token' comes first: every delay derives from it");
		return timing(p, &sc->token_ms, "token", 100);
	}
	if (strcmp(w0, "start_ms") == 0)
		return timing(p, &sc->start_ms, "start_ms", 1);
	if (strcmp(w0, "stop_ms") == 0)
		return timing(p, &sc->stop_ms, "stop_ms", 1);
	if (strcmp(w0, "migrate_ms") == 0)
		return timing(p, &sc->migrate_ms, "migrate_ms", 1);
	if (strcmp(w0, "resume_ms") == 0)
		return timing(p, &sc->resume_ms, "resume_ms", 1);
	if (strcmp(w0, "nodes") == 0)
		return parse_nodes(p);
	if (strcmp(w0, "node") == 0)
		return parse_node(p);
	if (strcmp(w0, "vm") == 0)
		return parse_vm(p);
	if (strcmp(w0, "group") == 0)
		return parse_group(p);
	if (strcmp(w0, "at") == 0)
		return parse_at(p);
	if (strcmp(w0, "run") == 0) {
		if (p->n_words != 2 || (rc = number(p, p->words[1], "the end time", INT32_MAX, &t)) < 0)
			return p->n_words != 2 ? fail(p, "usage: run END_MS") : rc;
		if (sc->n_events && (int64_t)t < sc->events[sc->n_events - 1].time_ms)
			return fail(p, "the run ends at %llu, before the last event", (unsigned long long)t);
		sc->run_ms = (int64_t)t;
		return 0;
	}
	return fail(p, "unknown line '%s' (token, nodes, node, vm, group, at, run, start_ms, "
		    "stop_ms, migrate_ms, resume_ms)", w0);
}

int sim_parse(const char *path, struct sim_scenario *sc)
{
	struct parser p = { .sc = sc };
	char buf[1024];
	FILE *f;
	int rc = 0;

	memset(sc, 0, sizeof(*sc));
	snprintf(sc->path, sizeof(sc->path), "%s", path);
	sc->token_ms = VIREO_DEFAULT_TOKEN_MS;
	sc->start_ms = 300;
	sc->stop_ms = 300;
	sc->migrate_ms = 400;
	sc->resume_ms = 50;
	sc->run_ms = -1;
	if (!(f = fopen(path, "r"))) {
		rc = -errno;
		fprintf(stderr, "%s: cannot read it: %s\n", path, strerror(errno));
		return rc;
	}
	while (fgets(buf, sizeof(buf), f)) {
		char *hash = strchr(buf, '#'), *save = NULL, *tok;

		p.line++;
		if (!strchr(buf, '\n') && !feof(f)) {
			rc = fail(&p, "the line is longer than %zu characters", sizeof(buf) - 2);
			break;
		}
		if (hash)
			*hash = '\0';
		p.n_words = 0;
		for (tok = strtok_r(buf, " \t\r\n", &save); tok; tok = strtok_r(NULL, " \t\r\n", &save)) {
			if (p.n_words == sizeof(p.words) / sizeof(p.words[0])) {
				rc = fail(&p, "too many words on one line");
				break;
			}
			p.words[p.n_words++] = tok;
		}
		if (rc < 0)
			break;
		if (p.n_words && (rc = parse_line(&p)) < 0)
			break;
	}
	fclose(f);
	if (rc < 0)
		return rc;
	p.line++;
	if (!sc->n_nodes)
		return fail(&p, "the scenario declares no nodes ('nodes N')");
	if (sc->run_ms < 0)
		return fail(&p, "the scenario does not say how long to run ('run END_MS')");
	return 0;
}
