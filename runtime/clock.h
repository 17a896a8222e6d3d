/* clock.h — the one wall clock of timings and step lines, and the sort their medians need. */
#ifndef LOOM_RT_CLOCK_H
#define LOOM_RT_CLOCK_H

#include <stddef.h>

/* Milliseconds on the monotonic clock (an arbitrary origin: only differences mean anything). */
double rt_now_ms(void);
/* Sorts x[0..n) ascending (for medians of repeated timings). */
void rt_sort_doubles(double *x, size_t n);

#endif
