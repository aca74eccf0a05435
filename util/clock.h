/* The clocks every folder reads: monotonic for durations and deadlines
 * (libqb's, the clock its timers run on), wall for what users and other
 * hosts see. */
#ifndef VIREO_UTIL_CLOCK_H
#define VIREO_UTIL_CLOCK_H

#include <stdint.h>

uint64_t util_mono_us(void);
uint64_t util_mono_ms(void);
int64_t util_wall_ms(void);

#endif
