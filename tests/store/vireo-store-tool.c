/* vireo-store-tool: sharedstore/ from the command line, for the integration
 * tests (run inside lab hosts) and for trying a pool by hand. Exit 0 on
 * success, 1 on failure (one sentence on stderr), 2 on a usage error.
 *
 *   vireo-store-tool check POOL [--expect ID] [--mount mountpoint|not-root|any]
 *                              [--lockspace] [--timeout MS]     (JSON on stdout)
 *   vireo-store-tool init POOL                                 (prints the id)
 *   vireo-store-tool create POOL NAME SIZE [--raw] [--prealloc]
 *   vireo-store-tool resize POOL NAME SIZE
 *   vireo-store-tool delete POOL NAME
 *   vireo-store-tool info POOL NAME                            (JSON)
 *   vireo-store-tool list POOL                                 (JSON)
 *   vireo-store-tool path POOL NAME [qcow2|raw]
 *   vireo-store-tool lease-held POOL DISK_PATH                 (prints yes/no)
 *   vireo-store-tool lease-hold POOL DISK_PATH   (takes the lease, prints "held",
 *                                   keeps it until stdin reaches EOF)
 *   vireo-store-tool render-qemu | render-lockd POOL
 *   vireo-store-tool check-host CONF_DIR POOL
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "sharedstore/images.h"
#include "sharedstore/leases.h"
#include "sharedstore/pool.h"

static const char *prog = "vireo-store-tool";

static int usage(const char *why)
{
	fprintf(stderr, "%s: %s; see the comment at the top of tests/store/vireo-store-tool.c\n",
		prog, why);
	return 2;
}

static int fail(const char *msg)
{
	fprintf(stderr, "%s: %s\n", prog, msg);
	return 1;
}

static void print_json(struct json_object *o)
{
	puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
}

static int cmd_check(int argc, char **argv)
{
	struct store_pool_opts o = { .path = argv[0], .mount = STORE_POOL_MOUNTPOINT };
	struct store_pool_status st;
	struct json_object *j, *reasons;
	int rc;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--expect") == 0 && i + 1 < argc) {
			o.expected_id = argv[++i];
		} else if (strcmp(argv[i], "--lockspace") == 0) {
			o.need_lockspace = true;
		} else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
			o.timeout_ms = (unsigned)strtoul(argv[++i], NULL, 10);
		} else if (strcmp(argv[i], "--mount") == 0 && i + 1 < argc) {
			const char *m = argv[++i];

			if (strcmp(m, "mountpoint") == 0)
				o.mount = STORE_POOL_MOUNTPOINT;
			else if (strcmp(m, "not-root") == 0)
				o.mount = STORE_POOL_NOT_ROOT_FS;
			else if (strcmp(m, "any") == 0)
				o.mount = STORE_POOL_ANY_FS;
			else
				return usage("--mount takes mountpoint, not-root or any");
		} else {
			return usage("unknown option to check");
		}
	}
	if ((rc = store_pool_check(&o, &st)) < 0) {
		fprintf(stderr, "%s: cannot check shared store %s: %s\n", prog, o.path, strerror(-rc));
		return 1;
	}
	j = json_object_new_object();
	reasons = json_object_new_array();
	for (unsigned i = 0; i < st.n_reasons; i++)
		json_object_array_add(reasons, json_object_new_string(st.reasons[i]));
	json_object_object_add(j, "ok", json_object_new_boolean(st.ok));
	json_object_object_add(j, "error", json_object_new_string(st.error ? strerror(-st.error) : ""));
	json_object_object_add(j, "reasons", reasons);
	json_object_object_add(j, "id", json_object_new_string(st.id));
	json_object_object_add(j, "fstype", json_object_new_string(st.fstype));
	json_object_object_add(j, "mountpoint", json_object_new_boolean(st.mountpoint));
	json_object_object_add(j, "direct_io", json_object_new_boolean(st.direct_io));
	json_object_object_add(j, "total_bytes", json_object_new_int64((int64_t)st.total_bytes));
	json_object_object_add(j, "free_bytes", json_object_new_int64((int64_t)st.free_bytes));
	json_object_object_add(j, "elapsed_us", json_object_new_int64(st.elapsed_us));
	print_json(j);
	return st.ok ? 0 : 1;
}

static struct json_object *info_json(const struct store_image_info *i)
{
	struct json_object *j = json_object_new_object();

	json_object_object_add(j, "name", json_object_new_string(i->name));
	json_object_object_add(j, "format", json_object_new_string(store_format_name(i->format)));
	json_object_object_add(j, "virtual_bytes", json_object_new_int64((int64_t)i->virtual_bytes));
	json_object_object_add(j, "actual_bytes", json_object_new_int64((int64_t)i->actual_bytes));
	json_object_object_add(j, "in_use", json_object_new_boolean(i->in_use));
	if (i->error)
		json_object_object_add(j, "error", json_object_new_string(strerror(-i->error)));
	return j;
}

static int size_arg(const char *text, uint64_t *bytes)
{
	int rc = store_parse_size(text, bytes);

	if (rc < 0)
		fprintf(stderr, "%s: '%s' is not a size; write it like 10G, 512M or 1T\n", prog, text);
	return rc;
}

static int cmd_image(const char *cmd, int argc, char **argv)
{
	struct store *st = NULL;
	struct store_image_info info, *list = NULL;
	uint64_t bytes;
	size_t n;
	int rc = 1;

	if (store_open(argv[0], &st) < 0)
		return fail("the pool must be an absolute path");
	if (strcmp(cmd, "create") == 0 && argc >= 3) {
		enum store_format fmt = STORE_FMT_QCOW2;
		unsigned flags = 0;

		for (int i = 3; i < argc; i++) {
			if (strcmp(argv[i], "--raw") == 0)
				fmt = STORE_FMT_RAW;
			else if (strcmp(argv[i], "--prealloc") == 0)
				flags |= STORE_IMAGE_PREALLOCATE;
			else
				goto usage;
		}
		if (size_arg(argv[2], &bytes) < 0)
			goto cleanup;
		rc = store_image_create(st, argv[1], bytes, fmt, flags);
	} else if (strcmp(cmd, "resize") == 0 && argc == 3) {
		if (size_arg(argv[2], &bytes) < 0)
			goto cleanup;
		rc = store_image_resize(st, argv[1], bytes);
	} else if (strcmp(cmd, "delete") == 0 && argc == 2) {
		rc = store_image_delete(st, argv[1]);
	} else if (strcmp(cmd, "info") == 0 && argc == 2) {
		if ((rc = store_image_info(st, argv[1], &info)) == 0)
			print_json(info_json(&info));
	} else if (strcmp(cmd, "list") == 0 && argc == 1) {
		if ((rc = store_image_list(st, &list, &n)) == 0) {
			struct json_object *a = json_object_new_array();

			for (size_t i = 0; i < n; i++)
				json_object_array_add(a, info_json(&list[i]));
			print_json(a);
		}
	} else if (strcmp(cmd, "path") == 0 && (argc == 2 || argc == 3)) {
		enum store_format fmt = STORE_FMT_QCOW2;
		char path[PATH_MAX];

		if (argc == 3 && store_format_parse(argv[2], &fmt) < 0)
			goto usage;
		if ((rc = store_image_path(st, argv[1], fmt, path, sizeof(path))) == 0)
			puts(path);
		else
			snprintf(st->error, sizeof(st->error), "image name '%s' is not valid", argv[1]);
	} else {
		goto usage;
	}
	if (rc < 0)
		fail(store_error(st));
	rc = rc < 0;
	goto cleanup;
usage:
	rc = usage("wrong arguments for an image command");
cleanup:
	free(list);
	store_close(st);
	return rc;
}

int main(int argc, char **argv)
{
	char buf[8192], id[STORE_POOL_ID_LEN + 1];
	const char *cmd;
	int rc;

	if (argc < 2)
		return usage("give a command");
	cmd = argv[1];
	argc -= 2;
	argv += 2;
	if (strcmp(cmd, "render-qemu") == 0 && argc == 0) {
		if (store_lease_render_qemu_conf(buf, sizeof(buf)) < 0)
			return fail("buffer too small");
		fputs(buf, stdout);
		return 0;
	}
	if (argc < 1)
		return usage("give the pool's path");
	if (strcmp(cmd, "check") == 0)
		return cmd_check(argc, argv);
	if (strcmp(cmd, "init") == 0 && argc == 1) {
		rc = store_pool_init(argv[0], id, buf, sizeof(buf));
		if (rc < 0)
			return fail(buf);
		puts(id);
		return 0;
	}
	if (strcmp(cmd, "render-lockd") == 0 && argc == 1) {
		if (store_lease_render_lockd_conf(argv[0], buf, sizeof(buf)) < 0)
			return fail("the pool path cannot be written into qemu-lockd.conf");
		fputs(buf, stdout);
		return 0;
	}
	if (strcmp(cmd, "check-host") == 0 && argc == 2) {
		if (store_lease_check_host(argv[0], argv[1], buf, sizeof(buf)) < 0)
			return fail(buf);
		puts("ok");
		return 0;
	}
	if (strcmp(cmd, "lease-held") == 0 && argc == 2) {
		rc = store_lease_held(argv[0], argv[1]);
		if (rc < 0) {
			fprintf(stderr, "%s: cannot test the lease: %s\n", prog, strerror(-rc));
			return 1;
		}
		puts(rc ? "yes" : "no");
		return 0;
	}
	if (strcmp(cmd, "lease-hold") == 0 && argc == 2) {
		int fd = store_lease_take(argv[0], argv[1]);

		if (fd < 0) {
			fprintf(stderr, "%s: cannot take the lease: %s\n", prog, strerror(-fd));
			return 1;
		}
		puts("held");
		fflush(stdout);
		while (fgets(buf, sizeof(buf), stdin))
			;
		store_lease_release(fd, argv[0], argv[1], true);
		return 0;
	}
	if (!strcmp(cmd, "create") || !strcmp(cmd, "resize") || !strcmp(cmd, "delete") ||
	    !strcmp(cmd, "info") || !strcmp(cmd, "list") || !strcmp(cmd, "path"))
		return cmd_image(cmd, argc, argv);
	return usage("unknown command");
}
