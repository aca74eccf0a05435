/* Sync decisions: pure, unit-tested in tests/unit/test_sync.c. */
#include "cluster/sync.h"

#include <string.h>

static bool better(const struct cluster_sync_hello *a, const struct cluster_sync_hello *b)
{
	if (a->authoritative != b->authoritative)
		return a->authoritative;
	if (a->version != b->version)
		return a->version > b->version;
	return a->node < b->node;
}

size_t cluster_sync_choose(const struct cluster_sync_hello *hellos, size_t n)
{
	size_t best = 0;

	for (size_t i = 1; i < n; i++)
		if (better(&hellos[i], &hellos[best]))
			best = i;
	return best;
}

bool cluster_sync_needs_transfer(const struct cluster_sync_hello *hellos, size_t n, size_t winner)
{
	for (size_t i = 0; i < n; i++)
		if (memcmp(&hellos[i].digest, &hellos[winner].digest, sizeof(hellos[i].digest)) != 0)
			return true;
	return false;
}

uint32_t cluster_manager_elect(const uint32_t *members, size_t n)
{
	uint32_t lowest = 0;

	for (size_t i = 0; i < n; i++)
		if (lowest == 0 || members[i] < lowest)
			lowest = members[i];
	return lowest;
}
