/* progress.c — progress.h. */
#include "runtime/progress.h"

#include <stdio.h>
#include <unistd.h>

#include "runtime/clock.h"

void rt_progress_begin(rt_progress *p, const char *what)
{
    *p = (rt_progress){what, rt_now_ms(), 0, isatty(2) == 1, false};
}

void rt_progress_update(rt_progress *p, const char *detail)
{
    if (!p->tty)
        return;
    double now = rt_now_ms();
    if (now - p->start < 1000 || now - p->last < 100)
        return;
    p->last = now;
    p->shown = true;
    fprintf(stderr, "\r\033[Kloom: %s %s (%.1f s)", p->what, detail, (now - p->start) / 1e3);
    fflush(stderr);
}

void rt_progress_end(rt_progress *p)
{
    if (p->shown) {
        fprintf(stderr, "\r\033[K");
        fflush(stderr);
    }
    p->shown = false;
}
