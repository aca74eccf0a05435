/* vireo group create NAME (--affinity|--anti-affinity) [--strict|--soft]
 * vireo group delete NAME
 * vireo group add NAME VM...
 * vireo group remove NAME VM...
 * vireo group list
 *
 * vireod checks names, members and the one-group-per-VM rule; this file
 * turns the command line into a GroupRequest and the answer into text.
 * list also asks for the VMs, to say where each member runs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/vm.h"
#include "tools/vireo_cli.h"

/* A member list longer than this is cut in the table (--json has all). */
#define MEMBERS_TEXT_MAX 160

static const char *rule_name(const Vireo__VmGroup *g)
{
	if (g->affinity)
		return g->strict ? "affinity, strict" : "affinity, soft";
	return g->strict ? "anti-affinity, strict" : "anti-affinity, soft";
}

int vireo_fetch_groups(const struct cli *cli, Vireo__Response **resp)
{
	Vireo__Request req = VIREO__REQUEST__INIT;
	Vireo__GroupRequest gr = VIREO__GROUP_REQUEST__INIT;
	int rc;

	gr.action = VIREO__GROUP_REQUEST__ACTION__LIST;
	req.body_case = VIREO__REQUEST__BODY_GROUP;
	req.group = &gr;
	if ((rc = vireo_call(cli, &req, resp, false)) != EXIT_OK)
		return rc;
	if ((*resp)->body_case != VIREO__RESPONSE__BODY_GROUPS) {
		fprintf(stderr, "vireo: vireod answered something else than a group list\n");
		vireo__response__free_unpacked(*resp, NULL);
		*resp = NULL;
		return EXIT_FAILED;
	}
	return EXIT_OK;
}

const Vireo__VmGroup *vireo_group_of(const Vireo__GroupListReply *gl, const char *vm)
{
	for (size_t i = 0; gl && i < gl->n_groups; i++)
		for (size_t j = 0; j < gl->groups[i]->n_vms; j++)
			if (strcmp(gl->groups[i]->vms[j], vm) == 0)
				return gl->groups[i];
	return NULL;
}

static const Vireo__Vm *find_vm(const Vireo__VmListReply *lr, const char *name)
{
	for (size_t i = 0; lr && i < lr->n_vms; i++)
		if (strcmp(lr->vms[i]->spec->name, name) == 0)
			return lr->vms[i];
	return NULL;
}

static const char *node_name(const Vireo__VmListReply *lr, uint32_t id)
{
	for (size_t i = 0; lr && i < lr->n_nodes; i++)
		if (lr->nodes[i]->id == id)
			return lr->nodes[i]->name;
	return "?";
}

/* Where a member is: its node while a guest is (or is about to be) there,
 * else its state. */
static bool placed(const Vireo__Vm *vm)
{
	return vm && vm->owner && vm->state != VIREO__VM_STATE__VM_STOPPED &&
	       vm->state != VIREO__VM_STATE__VM_PENDING && vm->state != VIREO__VM_STATE__VM_ERROR;
}

static json_object *group_json(const Vireo__VmGroup *g, const Vireo__VmListReply *lr)
{
	json_object *o = json_object_new_object();
	json_object *vms = json_object_new_array();

	json_object_object_add(o, "name", json_object_new_string(g->name));
	json_object_object_add(o, "rule", json_object_new_string(g->affinity ? "affinity" :
								  "anti-affinity"));
	json_object_object_add(o, "strict", json_object_new_boolean(g->strict));
	for (size_t i = 0; i < g->n_vms; i++) {
		const Vireo__Vm *vm = find_vm(lr, g->vms[i]);
		json_object *m = json_object_new_object();

		json_object_object_add(m, "name", json_object_new_string(g->vms[i]));
		json_object_object_add(m, "state", vm ? json_object_new_string(
			cluster_vm_state_name(vm->state)) : NULL);
		json_object_object_add(m, "node", placed(vm) ? json_object_new_string(
			node_name(lr, vm->owner)) : NULL);
		json_object_array_add(vms, m);
	}
	json_object_object_add(o, "vms", vms);
	return o;
}

/* "web1 on n1, web2 on n2, web3 stopped", cut with "..." when long. */
static void members_text(const Vireo__VmGroup *g, const Vireo__VmListReply *lr, char *buf,
			 size_t len)
{
	size_t used = 0;

	snprintf(buf, len, "-");
	for (size_t i = 0; i < g->n_vms && used < len; i++) {
		const Vireo__Vm *vm = find_vm(lr, g->vms[i]);

		used += (size_t)snprintf(buf + used, len - used, "%s%s %s%s", i ? ", " : "",
					 g->vms[i], placed(vm) ? "on " : "",
					 !lr ? "" : placed(vm) ? node_name(lr, vm->owner) :
					 vm ? cluster_vm_state_name(vm->state) : "?");
	}
	if (used >= len && len > 4)
		strcpy(buf + len - 4, "...");
}

static void print_table(const Vireo__GroupListReply *gl, const Vireo__VmListReply *lr)
{
	char members[MEMBERS_TEXT_MAX];

	if (!gl->n_groups) {
		printf("no groups (vireo group create NAME --affinity|--anti-affinity makes one)\n");
		return;
	}
	printf("%-20s %-22s %s\n", "NAME", "RULE", "MEMBERS");
	for (size_t i = 0; i < gl->n_groups; i++) {
		members_text(gl->groups[i], lr, members, sizeof(members));
		printf("%-20s %-22s %s\n", gl->groups[i]->name, rule_name(gl->groups[i]), members);
	}
}

/* Prints groups (all, or the one a change answered with) with where their
 * members run. */
static int print_groups(const struct cli *cli, const Vireo__GroupListReply *gl, bool one)
{
	Vireo__Response *vms = NULL;
	const Vireo__VmListReply *lr;
	int rc;

	if ((rc = vireo_fetch_vms(cli, "", &vms)) != EXIT_OK)
		return rc;
	lr = vms->vm_list;
	if (cli->json && one) {
		vireo_print_json(gl->n_groups ? group_json(gl->groups[0], lr) : NULL);
	} else if (cli->json) {
		json_object *arr = json_object_new_array();

		for (size_t i = 0; i < gl->n_groups; i++)
			json_object_array_add(arr, group_json(gl->groups[i], lr));
		vireo_print_json(arr);
	} else if (one && gl->n_groups) {
		char members[MEMBERS_TEXT_MAX];

		members_text(gl->groups[0], lr, members, sizeof(members));
		printf("group %s (%s): %s\n", gl->groups[0]->name, rule_name(gl->groups[0]), members);
	} else if (!one) {
		print_table(gl, lr);
	}
	vireo__response__free_unpacked(vms, NULL);
	return EXIT_OK;
}

static int send_change(const struct cli *cli, Vireo__GroupRequest *gr)
{
	Vireo__Request req = VIREO__REQUEST__INIT;
	Vireo__Response *resp;
	int rc;

	req.body_case = VIREO__REQUEST__BODY_GROUP;
	req.group = gr;
	if ((rc = vireo_call(cli, &req, &resp, false)) != EXIT_OK)
		return rc;
	if (gr->action == VIREO__GROUP_REQUEST__ACTION__DELETE) {
		if (cli->json) {
			json_object *o = json_object_new_object();

			json_object_object_add(o, "name", json_object_new_string(gr->name));
			json_object_object_add(o, "deleted", json_object_new_boolean(1));
			vireo_print_json(o);
		} else {
			printf("%s\n", resp->message[0] ? resp->message : "deleted");
		}
	} else if (resp->body_case != VIREO__RESPONSE__BODY_GROUPS) {
		fprintf(stderr, "vireo: vireod answered something else than a group list\n");
		rc = EXIT_FAILED;
	} else {
		/* "every VM named is a member already": said, and still ok */
		if (resp->message[0] && !cli->json)
			printf("%s\n", resp->message);
		rc = print_groups(cli, resp->groups, true);
	}
	vireo__response__free_unpacked(resp, NULL);
	return rc;
}

static int cmd_create(const struct cli *cli, int argc, char **argv)
{
	Vireo__GroupRequest gr = VIREO__GROUP_REQUEST__INIT;
	int rule = -1, strict = -1;

	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		int *slot = NULL, value = 0;

		if (strcmp(a, "--affinity") == 0 || strcmp(a, "--anti-affinity") == 0) {
			slot = &rule;
			value = strcmp(a, "--affinity") == 0;
		} else if (strcmp(a, "--strict") == 0 || strcmp(a, "--soft") == 0) {
			slot = &strict;
			value = strcmp(a, "--strict") == 0;
		} else if (a[0] != '-' && !gr.name[0]) {
			gr.name = (char *)a;
			continue;
		} else {
			return vireo_usage_error("'group create' does not take '%s'", a);
		}
		if (*slot >= 0 && *slot != value)
			return vireo_usage_error("'group create' takes %s, not both", slot == &rule ?
						 "--affinity or --anti-affinity" : "--strict or --soft");
		*slot = value;
	}
	if (!gr.name[0])
		return vireo_usage_error("'group create' takes the group's NAME");
	if (rule < 0)
		return vireo_usage_error("say what group %s is for: --affinity (its VMs run on one "
					 "node) or --anti-affinity (on distinct nodes)", gr.name);
	gr.action = VIREO__GROUP_REQUEST__ACTION__CREATE;
	gr.affinity = rule == 1;
	gr.strict = strict == 1;     /* soft unless --strict */
	return send_change(cli, &gr);
}

static int cmd_members(const struct cli *cli, Vireo__GroupRequest__Action action, int argc,
		       char **argv)
{
	Vireo__GroupRequest gr = VIREO__GROUP_REQUEST__INIT;
	const char *verb = argv[1];

	for (int i = 2; i < argc; i++)
		if (argv[i][0] == '-')
			return vireo_usage_error("'group %s' does not take '%s'", verb, argv[i]);
	if (argc < 4)
		return vireo_usage_error("'group %s' takes the group's NAME and at least one VM",
					 verb);
	gr.action = action;
	gr.name = argv[2];
	gr.vms = argv + 3;
	gr.n_vms = (size_t)(argc - 3);
	return send_change(cli, &gr);
}

int vireo_group_main(const struct cli *cli, int argc, char **argv)
{
	const char *sub = argc > 1 ? argv[1] : NULL;
	Vireo__GroupRequest gr = VIREO__GROUP_REQUEST__INIT;

	if (!sub)
		return vireo_usage_error("'group' needs a command: create, delete, add, remove or list");
	if (strcmp(sub, "create") == 0)
		return cmd_create(cli, argc, argv);
	if (strcmp(sub, "add") == 0)
		return cmd_members(cli, VIREO__GROUP_REQUEST__ACTION__ADD, argc, argv);
	if (strcmp(sub, "remove") == 0)
		return cmd_members(cli, VIREO__GROUP_REQUEST__ACTION__REMOVE, argc, argv);
	if (strcmp(sub, "delete") == 0) {
		if (argc != 3 || argv[2][0] == '-')
			return vireo_usage_error("'group delete' takes the group's NAME");
		gr.action = VIREO__GROUP_REQUEST__ACTION__DELETE;
		gr.name = argv[2];
		return send_change(cli, &gr);
	}
	if (strcmp(sub, "list") == 0) {
		Vireo__Response *resp;
		int rc;

		if (argc != 2)
			return vireo_usage_error("'group list' takes no arguments");
		if ((rc = vireo_fetch_groups(cli, &resp)) != EXIT_OK)
			return rc;
		rc = print_groups(cli, resp->groups, false);
		vireo__response__free_unpacked(resp, NULL);
		return rc;
	}
	return vireo_usage_error("unknown group command '%s'", sub);
}
