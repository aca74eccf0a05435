#include <time.h>
#include <qb/qbutil.h>

#include "util/clock.h"

uint64_t util_mono_us(void)
{
	return qb_util_nano_current_get() / 1000u;
}

uint64_t util_mono_ms(void)
{
	return qb_util_nano_current_get() / 1000000u;
}

int64_t util_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
