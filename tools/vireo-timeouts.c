/* vireo-timeouts: every timeout of vireo for a corosync token, computed by
 * the same macros vireod uses (cluster/timeouts.h, hypervisor/hv_timeouts.h).
 * The one source of the numbers the Python tests and the chaos bounds use
 * (tests/integration/timeouts.py), and a way for an operator to see what a
 * longer token does to failover.
 *
 * usage: vireo-timeouts [--token MS] [--json]
 *
 * tests/unit/check-timeouts-listed checks that every macro of the two
 * headers is in the table below. */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/timeouts.h"
#include "hypervisor/hv_timeouts.h"

struct row {
	const char *name;       /* without VIREO_ */
	uint64_t value;
};

#define ROW(name) { #name, (uint64_t)(VIREO_##name(t)) }

static size_t rows(uint32_t t, struct row *out)
{
	const struct row all[] = {
		{ "DEFAULT_TOKEN_MS", VIREO_DEFAULT_TOKEN_MS },
		ROW(CONSENSUS_MS), ROW(DETECTION_MS), ROW(SYNC_STUCK_MS), ROW(DIGEST_REPORT_MS),
		ROW(RECONNECT_MIN_MS), ROW(RECONNECT_MAX_MS), ROW(SEND_RETRY_MS),
		ROW(PERSIST_DELAY_MS), ROW(PERSIST_STOP_WAIT_MS), ROW(REQUEST_TIMEOUT_MS),
		ROW(VM_RECONCILE_MS), ROW(VM_RESTART_WINDOW_MS), ROW(VM_STOP_EVENT_WAIT_MS),
		ROW(VM_START_RETRY_MS), ROW(VM_RESUME_RETRY_MS), ROW(VM_ACTION_TIMEOUT_MS),
		ROW(POOL_CHECK_MS), ROW(MIGRATION_PROGRESS_MS), ROW(MIGRATION_CONNECT_MS),
		ROW(MIGRATION_STALL_MS), ROW(MIGRATION_HANDSHAKE_MS), ROW(MIGRATION_QEMU_CONNECT_MS),
		ROW(MIGRATION_LANDING_MS), ROW(STALL_PROBE_MS), ROW(STALL_LOG_MS), ROW(HV_STALL_MS),
		ROW(HV_STALL_PROBE_MS), ROW(WATCHDOG_FEED_MS), ROW(WATCHDOG_TIMEOUT_MS),
		ROW(SELF_FENCE_MS), ROW(FENCE_SKEW_MS), ROW(FENCE_KILL_MS), ROW(FENCE_DELAY_MS),
		ROW(LEAVE_GRACE_MS), ROW(LEASE_RECHECK_MS), ROW(RELOCATION_WINDOW_MS),
		ROW(HV_TOKEN_MS), ROW(HV_RECONNECT_MIN_MS), ROW(HV_RECONNECT_MAX_MS),
		ROW(HV_KEEPALIVE_S), { "HV_KEEPALIVE_COUNT", VIREO_HV_KEEPALIVE_COUNT },
		ROW(HV_ACCEL_PROBE_MS), ROW(HV_SERIAL_POLL_MS), ROW(HV_SHUTDOWN_MS),
		ROW(HV_STATE_POLL_MS),
	};
	size_t n = sizeof(all) / sizeof(all[0]);

	if (out)
		memcpy(out, all, sizeof(all));
	return n;
}

static int usage(void)
{
	fprintf(stderr, "usage: vireo-timeouts [--token MS] [--json]\n"
		"  --token MS  the corosync token in ms, 100 to 600000 (default %u)\n"
		"  --json      one JSON object: token_ms and every timeout by name\n",
		VIREO_DEFAULT_TOKEN_MS);
	return 2;
}

int main(int argc, char **argv)
{
	uint32_t token = VIREO_DEFAULT_TOKEN_MS;
	struct row *r;
	bool json = false;
	size_t n;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			json = true;
		} else if (strcmp(argv[i], "--token") == 0 && i + 1 < argc) {
			char *end;
			unsigned long v;

			errno = 0;
			v = strtoul(argv[++i], &end, 10);
			if (errno || end == argv[i] || *end || v < 100 || v > 600000) {
				fprintf(stderr, "vireo-timeouts: --token takes 100 to 600000 (ms), not "
					"'%s'\n", argv[i]);
				return 2;
			}
			token = (uint32_t)v;
		} else {
			return usage();
		}
	}
	n = rows(token, NULL);
	if (!(r = calloc(n, sizeof(*r)))) {
		fprintf(stderr, "vireo-timeouts: out of memory\n");
		return 1;
	}
	rows(token, r);
	if (json)
		printf("{\n  \"token_ms\": %" PRIu32, token);
	for (size_t i = 0; i < n; i++) {
		if (json)
			printf(",\n  \"%s\": %" PRIu64, r[i].name, r[i].value);
		else
			printf("%-28s %" PRIu64 "\n", r[i].name, r[i].value);
	}
	if (json)
		printf("\n}\n");
	free(r);
	return 0;
}
