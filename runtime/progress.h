/* progress.h — a progress line for long work (a compile, a large checkpoint's load) on a
 * terminal: "loom: WHAT DETAIL (12.3 s)" rewritten in place on stderr ten times a second by a
 * small thread, once the work has taken a second (so a blocking step such as the JIT shows its
 * time going by), and wiped when done. When stderr is not a terminal (a log file, a pipe, CI)
 * nothing is printed and no thread is started. */
#ifndef LOOM_RT_PROGRESS_H
#define LOOM_RT_PROGRESS_H

#include <pthread.h>
#include <stdbool.h>

typedef struct {
    const char *what;     /* "compiling", "loading checkpoint" */
    char detail[96];      /* what is going on now */
    double start;         /* rt_now_ms */
    bool tty, shown, done;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
} rt_progress;

void rt_progress_begin(rt_progress *p, const char *what);
/* detail: what is going on now ("pass fuse", "tensor 3 of 148"); cheap, may be called often. */
void rt_progress_update(rt_progress *p, const char *detail);
/* Stops the line (wiped if shown). */
void rt_progress_end(rt_progress *p);

#endif
