/* profile.c — profile.h: a job's trace from start to the merged file, and the collectives'
 * observer (metrics and trace slices). */
#include "engine/profile.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/jobs.h"
#include "runtime/clock.h"

struct eng_profile {
    rt_trace *t;
    char *path;
    int rank, size;
};

eng_profile *eng_profile_start(const char *path, const char *job, ir_diag *d)
{
    if (!path)
        return NULL;
    coll_launch launch;
    coll_error cerr;
    int rank = 0, size = 1;
    if (coll_launch_detect(&launch, &cerr) && launch.found) {
        rank = launch.rank;
        size = launch.size;
    }
    /* a path that cannot be written is said now, not after the whole run */
    char probe[4200];
    snprintf(probe, sizeof probe, "%s.probe%d", path, rank);
    FILE *f = fopen(probe, "w");
    if (!f) {
        ir_diag_error(d, -1, 0, 0, "--profile %s: cannot write there: %s", path, strerror(errno));
        return NULL;
    }
    fclose(f);
    remove(probe);
    eng_profile *p = calloc(1, sizeof *p);
    p->path = strdup(path);
    if (!p || !p->path)
        ir_unreachable("out of memory");
    p->rank = rank;
    p->size = size;
    char name[300];
    snprintf(name, sizeof name, "rank %d: %s", rank, job);
    p->t = rt_trace_new(rank, name);
    rt_trace_install(p->t);
    return p;
}

static void rank_path(const char *path, int rank, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s.rank%d.json", path, rank);
}

bool eng_profile_finish(eng_profile *p, ir_diag *d)
{
    if (!p)
        return true;
    rt_trace_install(NULL);
    char mine[4200];
    if (p->size > 1)
        rank_path(p->path, p->rank, mine, sizeof mine);
    else
        snprintf(mine, sizeof mine, "%s", p->path);
    bool ok = rt_trace_write(p->t, mine, d);
    if (ok && p->size > 1 && p->rank == 0) {
        /* the other ranks write theirs as they finish: wait for them, then merge */
        const char *env = getenv("LOOM_PROFILE_WAIT");
        double wait_s = env && atof(env) > 0 ? atof(env) : 60, t0 = rt_now_ms();
        char **in = calloc((size_t)p->size + 1, sizeof *in);
        if (!in)
            ir_unreachable("out of memory");
        int missing = -1;
        for (int r = 0; r < p->size; r++) {
            in[r] = malloc(4200);
            if (!in[r])
                ir_unreachable("out of memory");
            rank_path(p->path, r, in[r], 4200);
            while (access(in[r], R_OK) != 0 && rt_now_ms() - t0 < wait_s * 1e3)
                usleep(20000);
            if (access(in[r], R_OK) != 0 && missing < 0)
                missing = r;
        }
        if (missing >= 0) {
            fprintf(stderr,
                    "loom: --profile: %s did not appear within %.0f s (another host's disk?); merge the ranks' files "
                    "with `loom trace-merge %s %s.rank*.json`\n",
                    in[missing], wait_s, p->path, p->path);
        } else {
            ok = rt_trace_merge(p->path, (const char *const *)in, p->size, d);
            for (int r = 0; ok && r < p->size; r++)
                remove(in[r]);
        }
        for (int r = 0; r < p->size; r++)
            free(in[r]);
        free(in);
    }
    if (ok && p->rank == 0)
        fprintf(stderr, "loom: profile written to %s (open it in ui.perfetto.dev or chrome://tracing)\n", p->path);
    rt_trace_free(p->t);
    free(p->path);
    free(p);
    return ok;
}

void eng_trace_span(const char *cat, const char *name, const char *args, double t0, double t1)
{
    rt_trace *t = rt_trace_active();
    if (t)
        rt_trace_slice_named(t, RT_TRACE_HOST, cat, name, args, t0, t1);
}

bool eng_trace_merge(const eng_opts *o, ir_diag *d)
{
    if (!o->file || o->n_extra < 1) {
        ir_diag_error(d, -1, 0, 0, "trace-merge: usage: loom trace-merge OUT.json RANK.json... (see --help)");
        return false;
    }
    for (int i = 0; i < o->n_extra; i++)
        if (strcmp(o->extra[i], o->file) == 0) {
            ir_diag_error(d, -1, 0, 0, "trace-merge: %s is both the output and an input", o->file);
            return false;
        }
    if (!rt_trace_merge(o->file, (const char *const *)o->extra, o->n_extra, d))
        return false;
    printf("merged %d trace%s into %s\n", o->n_extra, o->n_extra == 1 ? "" : "s", o->file);
    return true;
}
