/* What the parts of the vireo CLI share: the options every command takes,
 * the exit codes, and one way to call vireod and print JSON. */
#ifndef VIREO_TOOLS_VIREO_CLI_H
#define VIREO_TOOLS_VIREO_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <json-c/json.h>

#include "proto/vireo.pb-c.h"

enum {
	EXIT_OK = 0,
	EXIT_FAILED = 1,
	EXIT_USAGE = 2,
	EXIT_UNAVAILABLE = 3,
};

struct cli {
	bool json;
	const char *ipc_name;
	int timeout_ms;
	bool timeout_set;         /* --timeout was given: commands keep their hands off */
};

/* Prints "vireo: <message>; see 'vireo --help'" and returns EXIT_USAGE. */
int vireo_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Sends req; on success *resp holds an OK response. Otherwise prints the
 * one-line reason and returns the exit code; with keep_failed, a response
 * that is not OK is kept in *resp (for its body), else *resp is NULL. */
int vireo_call(const struct cli *cli, const Vireo__Request *req, Vireo__Response **resp,
	       bool keep_failed);

/* Prints o pretty and drops the reference. */
void vireo_print_json(json_object *o);

int vireo_parse_u32(const char *s, uint32_t min, uint32_t max, uint32_t *out);

/* vireo_vm.c: "vireo vm ..."; argv[0] is "vm". */
int vireo_vm_main(const struct cli *cli, int argc, char **argv);

/* Every VM (name NULL or ""), or the one named (EXIT_FAILED with a sentence
 * when it is gone): a VmListReply in *resp, or the exit code. */
int vireo_fetch_vms(const struct cli *cli, const char *name, Vireo__Response **resp);

/* vireo_migrate.c: "vireo vm migrate ..."; argv[0] is "vm". */
int vireo_vm_migrate(const struct cli *cli, int argc, char **argv);

/* vireo_group.c: "vireo group ..."; argv[0] is "group". */
int vireo_group_main(const struct cli *cli, int argc, char **argv);
/* The groups (a GroupListReply in *resp), for vm list and show. */
int vireo_fetch_groups(const struct cli *cli, Vireo__Response **resp);
/* The group vm is a member of, or NULL. */
const Vireo__VmGroup *vireo_group_of(const Vireo__GroupListReply *gl, const char *vm);

/* vireo_node.c: "vireo node maintenance|evacuate ..."; argv[0] is "node". */
int vireo_node_main(const struct cli *cli, int argc, char **argv);
/* "active", "maintenance", "evacuate". */
const char *vireo_node_mode_name(Vireo__NodeMode m);

#endif
