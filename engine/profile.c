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

/* ---- the communication meter ------------------------------------------------------------- */

static const char *axis_of(const eng_comm_meter *m, const char *comm)
{
    return strcmp(comm, "world") == 0 && m->world_as ? m->world_as : comm;
}

/* The number of the message from src to dst with tag on comm, counted on both of its ends. */
static uint64_t message_number(eng_comm_meter *m, const char *comm, int src, int dst, int tag)
{
    for (int i = 0; i < m->n_pairs; i++) {
        struct eng_meter_pair *p = &m->pairs[i];
        if (p->src == src && p->dst == dst && p->tag == tag && strcmp(p->comm, comm) == 0)
            return p->count++;
    }
    if (m->n_pairs == (int)(sizeof m->pairs / sizeof *m->pairs))
        return UINT64_MAX; /* more peers than pipelines have: no arrow */
    struct eng_meter_pair *p = &m->pairs[m->n_pairs++];
    *p = (struct eng_meter_pair){src, dst, tag, "", 1};
    snprintf(p->comm, sizeof p->comm, "%s", comm);
    return 0;
}

static void observe(void *ctx, const coll_event *ev)
{
    eng_comm_meter *m = ctx;
    const char *axis = axis_of(m, ev->comm);
    bool p2p = strcmp(ev->op, "send") == 0 || strcmp(ev->op, "recv") == 0;
    bool sends = strcmp(ev->op, "recv") != 0 && strcmp(ev->op, "flush") != 0 && strcmp(ev->op, "barrier") != 0;
    if (sends) {
        int k = 0;
        while (k < m->n_axes && strcmp(m->axis[k], axis) != 0)
            k++;
        if (k == m->n_axes && k < ENG_METER_AXES)
            snprintf(m->axis[m->n_axes++], sizeof m->axis[0], "%s", axis);
        if (k < ENG_METER_AXES)
            m->bytes[k] += (double)ev->bytes;
    }
    rt_trace *t = rt_trace_active();
    if (!t)
        return;
    double t0 = ev->start * 1e3, t1 = ev->end * 1e3; /* coll_now and rt_now_ms: one monotonic clock */
    char name[96], args[400], q[2][80];
    if (p2p)
        snprintf(name, sizeof name, "%s %s rank %d", ev->op, ev->op[0] == 's' ? "to" : "from", ev->peer);
    else
        snprintf(name, sizeof name, "%s %s", ev->op, axis);
    snprintf(args, sizeof args, "\"op\":%s,\"axis\":%s,\"bytes\":%zu,\"peer\":%d,\"tag\":%d,\"ranks\":%d",
             rt_trace_json_str(ev->op, q[0], sizeof q[0]), rt_trace_json_str(axis, q[1], sizeof q[1]), ev->bytes,
             ev->peer, ev->tag, ev->size);
    rt_trace_slice(t, RT_TRACE_HOST, rt_trace_intern(t, "comm", name, args, -1, (double)ev->bytes), t0, t1);
    if (p2p) {
        bool send = ev->op[0] == 's';
        int src = send ? ev->rank : ev->peer, dst = send ? ev->peer : ev->rank;
        uint64_t n = message_number(m, ev->comm, src, dst, ev->tag);
        if (n != UINT64_MAX) {
            /* one id on both ends: the message's comm, ends, tag and number */
            uint64_t h = 0xcbf29ce484222325ull;
            for (const char *c = ev->comm; *c; c++)
                h = (h ^ (unsigned char)*c) * 0x100000001b3ull;
            uint64_t key[4] = {(uint64_t)src, (uint64_t)dst, (uint64_t)ev->tag, n};
            for (int i = 0; i < 4; i++)
                h = (h ^ key[i]) * 0x100000001b3ull;
            /* the arrow leaves as the send starts and arrives as the receive ends (a message is
             * never received before it is sent), each end just inside its slice */
            double in = (t1 - t0) / 2 < 5e-4 ? (t1 - t0) / 2 : 5e-4;
            rt_trace_flow(t, RT_TRACE_HOST, h >> 12, send, send ? t0 + in : t1 - in);
        }
    }
}

void eng_comm_watch(coll_comm *comm, eng_comm_meter *m, const char *world_as)
{
    m->world_as = world_as;
    coll_set_observer(comm, observe, m);
}

double eng_comm_meter_take(eng_comm_meter *m, const char *axis)
{
    for (int k = 0; k < m->n_axes; k++)
        if (strcmp(m->axis[k], axis) == 0) {
            double b = m->bytes[k];
            m->bytes[k] = 0;
            return b;
        }
    return 0;
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
