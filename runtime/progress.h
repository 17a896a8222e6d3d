/* progress.h — a progress line for long work (a compile, a large checkpoint's load) on a
 * terminal: "loom: WHAT DETAIL (12.3 s)" rewritten in place on stderr, at most ten times a
 * second, only once the work has taken a second, and wiped when done. When stderr is not a
 * terminal (a log file, a pipe, CI) nothing is printed at all. */
#ifndef LOOM_RT_PROGRESS_H
#define LOOM_RT_PROGRESS_H

#include <stdbool.h>

typedef struct {
    const char *what;   /* "compiling", "loading checkpoint" */
    double start, last; /* rt_now_ms */
    bool tty, shown;
} rt_progress;

void rt_progress_begin(rt_progress *p, const char *what);
/* detail: what is going on now ("pass fuse", "3.1 of 4.0 GB"); may be called often. */
void rt_progress_update(rt_progress *p, const char *detail);
/* Wipes the line if one was shown. */
void rt_progress_end(rt_progress *p);

#endif
