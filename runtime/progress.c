/* progress.c — progress.h. */
#include "runtime/progress.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "runtime/clock.h"

static void *ticker(void *arg)
{
    rt_progress *p = arg;
    pthread_mutex_lock(&p->mu);
    while (!p->done) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 100000000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        if (pthread_cond_timedwait(&p->cv, &p->mu, &until) != ETIMEDOUT || p->done)
            continue;
        double s = (rt_now_ms() - p->start) / 1e3;
        if (s < 1)
            continue;
        fprintf(stderr, "\r\033[Kloom: %s%s%s (%.1f s)", p->what, p->detail[0] ? " " : "", p->detail, s);
        fflush(stderr);
        p->shown = true;
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

void rt_progress_begin(rt_progress *p, const char *what)
{
    memset(p, 0, sizeof *p);
    p->what = what;
    p->start = rt_now_ms();
    p->tty = isatty(2) == 1;
    if (!p->tty)
        return;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (pthread_create(&p->thread, NULL, ticker, p) != 0) {
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->cv);
        p->tty = false; /* no line then, nothing else changes */
    }
}

void rt_progress_update(rt_progress *p, const char *detail)
{
    if (!p->tty)
        return;
    pthread_mutex_lock(&p->mu);
    snprintf(p->detail, sizeof p->detail, "%s", detail);
    pthread_mutex_unlock(&p->mu);
}

void rt_progress_end(rt_progress *p)
{
    if (!p->tty)
        return;
    pthread_mutex_lock(&p->mu);
    p->done = true;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->thread, NULL);
    if (p->shown) {
        fprintf(stderr, "\r\033[K");
        fflush(stderr);
    }
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    p->tty = false;
}
