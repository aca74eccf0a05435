#include "node/config.h"
#include "cluster/state.h"
#include "hypervisor/hv.h"

#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

void node_config_defaults(struct node_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->node_name[0] = '\0';   /* required */
	snprintf(cfg->state_dir, sizeof(cfg->state_dir), "/var/lib/vireo/state");
	snprintf(cfg->log_file, sizeof(cfg->log_file), "/var/log/vireo/vireod.log");
	cfg->log_level = LOG_INFO;
	snprintf(cfg->cpg_group, sizeof(cfg->cpg_group), "vireo");
	snprintf(cfg->ipc_name, sizeof(cfg->ipc_name), "vireo");
	cfg->token_ms = 0;
	snprintf(cfg->pool_dir, sizeof(cfg->pool_dir), "/var/lib/vireo/pool");
	snprintf(cfg->libvirt_uri, sizeof(cfg->libvirt_uri), "qemu:///system");
	cfg->accel = HV_ACCEL_AUTO;
	snprintf(cfg->probe_kernel, sizeof(cfg->probe_kernel), "/var/cache/vireo/guest/vmlinux");
	snprintf(cfg->probe_initrd, sizeof(cfg->probe_initrd), "/var/cache/vireo/guest/initrd.img");
	cfg->restart_limit = 3;
	cfg->hv_hang_limit_ms = 60000;
	cfg->migration_port = 7410;
	snprintf(cfg->migration_key_file, sizeof(cfg->migration_key_file), "/etc/corosync/authkey");
	snprintf(cfg->migration_dir, sizeof(cfg->migration_dir), "/run/vireo/migration");
	snprintf(cfg->migration_peer_uri, sizeof(cfg->migration_peer_uri), "qemu+tcp://%%s/system");
	snprintf(cfg->watchdog_socket, sizeof(cfg->watchdog_socket), "/run/vireo/watchdog.sock");
	snprintf(cfg->watchdog_log_file, sizeof(cfg->watchdog_log_file),
		 "/var/log/vireo/vireo-watchdog.log");
}

static int set_string(char *field, size_t size, const char *value)
{
	if (value[0] == '\0' || strlen(value) >= size)
		return -EINVAL;
	memcpy(field, value, strlen(value) + 1);
	return 0;
}

static int set_path(char *field, size_t size, const char *key, const char *value,
		    char *err, size_t errlen)
{
	if (value[0] != '/' || strlen(value) >= size) {
		snprintf(err, errlen, "%s must be an absolute path shorter than %zu characters",
			 key, size);
		return -EINVAL;
	}
	memcpy(field, value, strlen(value) + 1);
	return 0;
}

static int set_number(uint64_t *out, const char *key, const char *value, uint64_t min,
		      uint64_t max, char *err, size_t errlen)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(value, &end, 10);
	if (errno || *end || end == value || value[0] == '-' || v < min || v > max) {
		snprintf(err, errlen, "%s must be a number from %llu to %llu", key,
			 (unsigned long long)min, (unsigned long long)max);
		return -EINVAL;
	}
	*out = v;
	return 0;
}

/* The migration settings. -ENOENT: not one of them. */
static int set_migration_key(struct node_config *cfg, const char *key, const char *value,
			     char *err, size_t errlen)
{
	uint64_t v;
	int rc;

	if (strcmp(key, "migration_port") == 0) {
		if ((rc = set_number(&v, key, value, 1, 65535, err, errlen)) == 0)
			cfg->migration_port = (uint16_t)v;
		return rc;
	}
	if (strcmp(key, "migration_bandwidth_mibps") == 0)
		return set_number(&cfg->migration_bandwidth_mibps, key, value, 0, 1000000, err, errlen);
	if (strcmp(key, "migration_max_downtime_ms") == 0) {
		if ((rc = set_number(&v, key, value, 0, 60000, err, errlen)) == 0)
			cfg->migration_max_downtime_ms = (uint32_t)v;
		return rc;
	}
	if (strcmp(key, "migration_peer_uri") == 0) {
		const char *pct = strchr(value, '%');

		/* Exactly one %s and no other conversion: it is a format string. */
		if (!pct || pct[1] != 's' || strchr(pct + 2, '%') ||
		    set_string(cfg->migration_peer_uri, sizeof(cfg->migration_peer_uri), value) < 0) {
			snprintf(err, errlen, "migration_peer_uri must be a libvirt URI with one %%s "
				 "for the target's address, e.g. qemu+tls://%%s/system");
			return -EINVAL;
		}
		return 0;
	}
	return -ENOENT;
}

/* The fencing settings. -ENOENT: not one of them. */
static int set_fence_key(struct node_config *cfg, const char *key, const char *value,
			 char *err, size_t errlen)
{
	/* "" or none: no watchdog (socket) or no hardware watchdog (device). */
	bool none = value[0] == '\0' || strcmp(value, "none") == 0;

	if (strcmp(key, "watchdog_socket") == 0) {
		if (none) {
			cfg->watchdog_socket[0] = '\0';
			return 0;
		}
		return set_path(cfg->watchdog_socket, sizeof(cfg->watchdog_socket), key, value,
				err, errlen);
	}
	if (strcmp(key, "watchdog_device") == 0) {
		if (none) {
			cfg->watchdog_device[0] = '\0';
			return 0;
		}
		return set_path(cfg->watchdog_device, sizeof(cfg->watchdog_device), key, value,
				err, errlen);
	}
	if (strcmp(key, "watchdog_log_file") == 0)
		return set_path(cfg->watchdog_log_file, sizeof(cfg->watchdog_log_file), key, value,
				err, errlen);
	if (strcmp(key, "nonha_on_quorum_loss") == 0) {
		if (strcmp(value, "stop") && strcmp(value, "keep")) {
			snprintf(err, errlen, "nonha_on_quorum_loss must be 'stop' or 'keep'");
			return -EINVAL;
		}
		cfg->nonha_stop = value[0] == 's';
		return 0;
	}
	return -ENOENT;
}

/* The settings of VMs and storage (the cluster's are in set_key). */
static int set_vm_key(struct node_config *cfg, const char *key, const char *value,
		      char *err, size_t errlen)
{
#define PATH_FIELD(key, field) \
	{ key, offsetof(struct node_config, field), sizeof(((struct node_config *)0)->field) }
	static const struct { const char *key; size_t off, size; } paths[] = {
		PATH_FIELD("pool_dir", pool_dir),
		PATH_FIELD("console_dir", console_dir),
		PATH_FIELD("accel_probe_kernel", probe_kernel),
		PATH_FIELD("accel_probe_initrd", probe_initrd),
		PATH_FIELD("migration_key_file", migration_key_file),
		PATH_FIELD("migration_dir", migration_dir),
	};
#undef PATH_FIELD

	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
		if (strcmp(key, paths[i].key) == 0)
			return set_path((char *)cfg + paths[i].off, paths[i].size, key, value, err,
					errlen);
	if (strcmp(key, "pool_mount") == 0) {
		if (strcmp(value, "mountpoint") && strcmp(value, "any")) {
			snprintf(err, errlen, "pool_mount must be 'mountpoint' or 'any'");
			return -EINVAL;
		}
		cfg->pool_any_fs = value[0] == 'a';
		return 0;
	}
	if (strcmp(key, "libvirt_uri") == 0) {
		if (set_string(cfg->libvirt_uri, sizeof(cfg->libvirt_uri), value) < 0) {
			snprintf(err, errlen, "libvirt_uri must be a URI shorter than %zu characters",
				 sizeof(cfg->libvirt_uri));
			return -EINVAL;
		}
		return 0;
	}
	if (strcmp(key, "accel") == 0) {
		/* Only the enum from hv.h: the CLI links this file, not libvirt. */
		if (strcmp(value, "auto") == 0)
			cfg->accel = HV_ACCEL_AUTO;
		else if (strcmp(value, "kvm") == 0)
			cfg->accel = HV_ACCEL_KVM;
		else if (strcmp(value, "tcg") == 0)
			cfg->accel = HV_ACCEL_TCG;
		else {
			snprintf(err, errlen, "accel must be kvm, tcg or auto");
			return -EINVAL;
		}
		return 0;
	}
	if (strcmp(key, "vm_restart_limit") == 0) {
		char *end;
		unsigned long v;

		errno = 0;
		v = strtoul(value, &end, 10);
		if (errno || *end || end == value || v > 100) {
			snprintf(err, errlen, "vm_restart_limit must be a number from 0 to 100");
			return -EINVAL;
		}
		cfg->restart_limit = (uint32_t)v;
		return 0;
	}
	if (strcmp(key, "hypervisor_hang_limit_s") == 0) {
		char *end;
		unsigned long v;

		errno = 0;
		v = strtoul(value, &end, 10);
		if (errno || *end || end == value || v > 86400) {
			snprintf(err, errlen, "hypervisor_hang_limit_s must be a number of seconds from "
				 "0 (never) to 86400");
			return -EINVAL;
		}
		cfg->hv_hang_limit_ms = (uint32_t)v * 1000u;
		return 0;
	}
	int rc = set_migration_key(cfg, key, value, err, errlen);

	if (rc != -ENOENT)
		return rc;
	if ((rc = set_fence_key(cfg, key, value, err, errlen)) != -ENOENT)
		return rc;
	snprintf(err, errlen, "unknown setting '%s'", key);
	return -EINVAL;
}

static char *trim(char *s)
{
	char *end;

	while (isspace((unsigned char)*s))
		s++;
	end = s + strlen(s);
	while (end > s && isspace((unsigned char)end[-1]))
		*--end = '\0';
	return s;
}

static const struct {
	const char *name;
	int level;
} levels[] = {
	{ "error", LOG_ERR }, { "warning", LOG_WARNING }, { "notice", LOG_NOTICE },
	{ "info", LOG_INFO }, { "debug", LOG_DEBUG },
};

/* Returns 0, or -EINVAL with a sentence in err. */
static int set_key(struct node_config *cfg, const char *key, const char *value,
		   char *err, size_t errlen)
{
	if (strcmp(key, "node_name") == 0) {
		if (!cluster_name_valid(value)) {
			snprintf(err, errlen, "node_name must be 1-64 letters, digits, '-', '_' or '.'");
			return -EINVAL;
		}
		return set_string(cfg->node_name, sizeof(cfg->node_name), value);
	}
	if (strcmp(key, "state_dir") == 0)
		return set_path(cfg->state_dir, sizeof(cfg->state_dir), key, value, err, errlen);
	if (strcmp(key, "log_file") == 0)
		return set_path(cfg->log_file, sizeof(cfg->log_file), key, value, err, errlen);
	if (strcmp(key, "log_level") == 0) {
		for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
			if (strcmp(value, levels[i].name) == 0) {
				cfg->log_level = levels[i].level;
				return 0;
			}
		}
		snprintf(err, errlen, "log_level must be one of error, warning, notice, info, debug");
		return -EINVAL;
	}
	if (strcmp(key, "cpg_group") == 0 || strcmp(key, "ipc_name") == 0) {
		char *field = key[0] == 'c' ? cfg->cpg_group : cfg->ipc_name;
		size_t size = key[0] == 'c' ? sizeof(cfg->cpg_group) : sizeof(cfg->ipc_name);
		if (set_string(field, size, value) < 0 || strchr(value, '/')) {
			snprintf(err, errlen, "%s must be a name without '/' shorter than %zu characters",
				 key, size);
			return -EINVAL;
		}
		return 0;
	}
	if (strcmp(key, "token_ms") == 0) {
		char *end;
		unsigned long v;

		if (strcmp(value, "auto") == 0) {
			cfg->token_ms = 0;
			return 0;
		}
		errno = 0;
		v = strtoul(value, &end, 10);
		if (errno || *end || end == value || v < 100 || v > 60000) {
			snprintf(err, errlen, "token_ms must be 'auto' or a number of milliseconds "
				 "from 100 to 60000");
			return -EINVAL;
		}
		cfg->token_ms = (uint32_t)v;
		return 0;
	}
	return set_vm_key(cfg, key, value, err, errlen);
}

int node_config_parse(const char *path, const char *text, struct node_config *cfg,
		      char *err, size_t errlen)
{
	char *copy = strdup(text);
	char *line, *save = NULL;
	char why[256];
	unsigned lineno = 0;
	int rc = 0;

	if (!copy) {
		snprintf(err, errlen, "out of memory reading %s", path);
		return -ENOMEM;
	}
	/* strtok_r would merge empty lines and skew line numbers. */
	for (line = copy; line; line = save) {
		char *eq, *key, *value;

		save = strchr(line, '\n');
		if (save)
			*save++ = '\0';
		lineno++;
		if ((eq = strchr(line, '#')))
			*eq = '\0';
		line = trim(line);
		if (!*line)
			continue;
		if (!(eq = strchr(line, '='))) {
			snprintf(err, errlen, "%s line %u: expected 'key = value', found '%s'",
				 path, lineno, line);
			rc = -EINVAL;
			break;
		}
		*eq = '\0';
		key = trim(line);
		value = trim(eq + 1);
		if (set_key(cfg, key, value, why, sizeof(why)) < 0) {
			snprintf(err, errlen, "%s line %u: %s", path, lineno, why);
			rc = -EINVAL;
			break;
		}
	}
	if (rc == 0 && !cfg->console_dir[0] &&
	    snprintf(cfg->console_dir, sizeof(cfg->console_dir), "%s/console", cfg->pool_dir) >=
	    (int)sizeof(cfg->console_dir)) {
		snprintf(err, errlen, "%s: pool_dir is too long to hold console/; set console_dir",
			 path);
		rc = -EINVAL;
	}
	if (rc == 0 && !cfg->node_name[0]) {
		snprintf(err, errlen, "%s: node_name is not set; set it to this host's corosync "
			 "node name", path);
		rc = -EINVAL;
	}
	free(copy);
	return rc;
}

int node_config_load(const char *path, struct node_config *cfg, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	char *text = NULL;
	size_t len = 0;
	int rc;

	if (!f) {
		rc = -errno;
		snprintf(err, errlen, "cannot read the configuration file %s: %s", path, strerror(-rc));
		return rc;
	}
	text = calloc(1, 65537);
	if (!text) {
		rc = -ENOMEM;
		snprintf(err, errlen, "out of memory reading %s", path);
		goto cleanup;
	}
	len = fread(text, 1, 65536, f);
	if (ferror(f) || !feof(f)) {
		rc = ferror(f) ? -EIO : -EFBIG;
		snprintf(err, errlen, "cannot read the configuration file %s: %s", path,
			 rc == -EFBIG ? "larger than 64 KiB" : "read error");
		goto cleanup;
	}
	text[len] = '\0';
	if (memchr(text, '\0', len)) {
		rc = -EINVAL;
		snprintf(err, errlen, "%s is not a text file", path);
		goto cleanup;
	}
	rc = node_config_parse(path, text, cfg, err, errlen);
cleanup:
	free(text);
	fclose(f);
	return rc;
}
