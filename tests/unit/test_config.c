/* vireo.conf parsing: good files load, bad ones name the line. */
#include <errno.h>
#include <string.h>
#include <syslog.h>

#include "hypervisor/hv.h"
#include "node/config.h"
#include "unit.h"

static int parse(const char *text, struct node_config *cfg, char *err)
{
	node_config_defaults(cfg);
	return node_config_parse("test.conf", text, cfg, err, 256);
}

START_TEST(good_config)
{
	struct node_config cfg;
	char err[256] = "";

	ck_assert_int_eq(parse("# comment\n\nnode_name = n1  # trailing\nstate_dir=/s\n"
			       "log_level = debug\ntoken_ms = 3000\n", &cfg, err), 0);
	ck_assert_str_eq(cfg.node_name, "n1");
	ck_assert_str_eq(cfg.state_dir, "/s");
	ck_assert_int_eq(cfg.log_level, LOG_DEBUG);
	ck_assert_uint_eq(cfg.token_ms, 3000);
	ck_assert_str_eq(cfg.ipc_name, "vireo");
}
END_TEST

START_TEST(errors_name_the_line)
{
	struct node_config cfg;
	char err[256];

	ck_assert_int_eq(parse("node_name = n1\n\ncolour = blue\n", &cfg, err), -EINVAL);
	ck_assert_str_eq(err, "test.conf line 3: unknown setting 'colour'");
	ck_assert_int_eq(parse("node_name = n1\njust words\n", &cfg, err), -EINVAL);
	ck_assert_str_eq(err, "test.conf line 2: expected 'key = value', found 'just words'");
	ck_assert_int_eq(parse("node_name = n1\ntoken_ms = 5x\n", &cfg, err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "line 2: token_ms"));
	ck_assert_int_eq(parse("node_name = n1\nstate_dir = relative\n", &cfg, err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "line 2: state_dir must be an absolute path"));
	ck_assert_int_eq(parse("node_name = a/b\n", &cfg, err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "line 1: node_name"));
	ck_assert_int_eq(parse("log_level = loud\nnode_name = n1\n", &cfg, err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "line 1: log_level"));
}
END_TEST

START_TEST(vm_and_storage_settings)
{
	struct node_config cfg;
	char err[256] = "";

	ck_assert_int_eq(parse("node_name = n1\n", &cfg, err), 0);
	ck_assert_str_eq(cfg.pool_dir, "/var/lib/vireo/pool");
	ck_assert_str_eq(cfg.console_dir, "/var/lib/vireo/pool/console");
	ck_assert_int_eq(cfg.accel, HV_ACCEL_AUTO);
	ck_assert_uint_eq(cfg.restart_limit, 3);
	ck_assert_int_eq(parse("node_name = n1\npool_dir = /p\naccel = tcg\npool_mount = any\n"
			       "vm_restart_limit = 0\nconsole_dir = /c\n", &cfg, err), 0);
	ck_assert_str_eq(cfg.pool_dir, "/p");
	ck_assert_str_eq(cfg.console_dir, "/c");
	ck_assert_int_eq(cfg.accel, HV_ACCEL_TCG);
	ck_assert(cfg.pool_any_fs);
	ck_assert_uint_eq(cfg.restart_limit, 0);
	ck_assert_int_eq(parse("node_name = n1\npool_dir = /p\n", &cfg, err), 0);
	ck_assert_str_eq(cfg.console_dir, "/p/console");
	ck_assert_int_eq(parse("node_name = n1\naccel = fast\n", &cfg, err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "line 2: accel must be kvm, tcg or auto"));
	ck_assert_int_eq(parse("node_name = n1\npool_dir = pool\n", &cfg, err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "line 2: pool_dir must be an absolute path"));
	ck_assert_int_eq(parse("node_name = n1\nvm_restart_limit = 101\n", &cfg, err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "line 2: vm_restart_limit"));
	ck_assert_int_eq(parse("node_name = n1\npool_mount = maybe\n", &cfg, err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "line 2: pool_mount"));
}
END_TEST

START_TEST(migration_settings)
{
	struct node_config cfg;
	char err[256] = "";

	ck_assert_int_eq(parse("node_name = n1\n", &cfg, err), 0);
	ck_assert_uint_eq(cfg.migration_port, 7410);
	ck_assert_str_eq(cfg.migration_key_file, "/etc/corosync/authkey");
	ck_assert_str_eq(cfg.migration_peer_uri, "qemu+tcp://%s/system");
	ck_assert_int_eq(parse("node_name = n1\nmigration_port = 9000\nmigration_dir = /m\n"
			       "migration_peer_uri = qemu+tls://%s/system\n"
			       "migration_bandwidth_mibps = 500\nmigration_max_downtime_ms = 80\n",
			       &cfg, err), 0);
	ck_assert_uint_eq(cfg.migration_port, 9000);
	ck_assert_str_eq(cfg.migration_dir, "/m");
	ck_assert_str_eq(cfg.migration_peer_uri, "qemu+tls://%s/system");
	ck_assert_uint_eq(cfg.migration_bandwidth_mibps, 500);
	ck_assert_uint_eq(cfg.migration_max_downtime_ms, 80);
	ck_assert_int_eq(parse("node_name = n1\nmigration_port = 0\n", &cfg, err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "line 2: migration_port must be a number from 1 to 65535"));
	ck_assert_int_eq(parse("node_name = n1\nmigration_port = -5\n", &cfg, err), -EINVAL);
	ck_assert_int_eq(parse("node_name = n1\nmigration_peer_uri = qemu:///%d\n", &cfg, err),
			 -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "one %s"));
	ck_assert_int_eq(parse("node_name = n1\nmigration_peer_uri = %s%s\n", &cfg, err), -EINVAL);
	ck_assert_int_eq(parse("node_name = n1\nmigration_dir = run\n", &cfg, err), -EINVAL);
}
END_TEST

START_TEST(missing_node_name_and_file)
{
	struct node_config cfg;
	char err[256];

	ck_assert_int_eq(parse("state_dir = /x\n", &cfg, err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "node_name is not set"));
	node_config_defaults(&cfg);
	ck_assert_int_eq(node_config_load("/nonexistent/vireo.conf", &cfg, err, sizeof(err)), -ENOENT);
	ck_assert_ptr_nonnull(strstr(err, "cannot read the configuration file /nonexistent/vireo.conf"));
}
END_TEST

static Suite *config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("parse");

	tcase_add_test(tc, good_config);
	tcase_add_test(tc, errors_name_the_line);
	tcase_add_test(tc, vm_and_storage_settings);
	tcase_add_test(tc, migration_settings);
	tcase_add_test(tc, missing_node_name_and_file);
	suite_add_tcase(s, tc);
	return s;
}

UNIT_MAIN(config_suite)
