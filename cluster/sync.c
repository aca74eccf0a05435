/* Sync decisions: pure, unit-tested in tests/unit/test_sync.c. */
#include "cluster/sync.h"

#include <string.h>

static size_t holders(const struct cluster_sync_hello *hellos, size_t n, size_t i)
{
	size_t count = 0;

	for (size_t j = 0; j < n; j++)
		if (memcmp(&hellos[j].digest, &hellos[i].digest, sizeof(hellos[i].digest)) == 0)
			count++;
	return count;
}

size_t cluster_sync_choose(const struct cluster_sync_hello *hellos, size_t n)
{
	size_t best = 0, best_holders = holders(hellos, n, 0);

	for (size_t i = 1; i < n; i++) {
		const struct cluster_sync_hello *a = &hellos[i], *b = &hellos[best];
		size_t h = holders(hellos, n, i);
		bool better;

		if (a->authoritative != b->authoritative)
			better = a->authoritative;
		else if (a->version != b->version)
			better = a->version > b->version;
		else if (h != best_holders)
			better = h > best_holders;   /* a lone diverged copy loses to the majority's */
		else
			better = a->node < b->node;
		if (better) {
			best = i;
			best_holders = h;
		}
	}
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
