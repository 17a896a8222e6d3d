/* trace.c — trace.h: the event buffer (interned descriptions, 32-byte events), the Chrome
 * trace-event writer and the merge of ranks' files.
 *
 * File layout (what rt_trace_merge relies on): a first line that opens the object and its
 * "traceEvents" array and names loom, one event a line, each but the last followed by a comma,
 * and a last line "]}". Any JSON reader reads it whole.
 */
#include "runtime/trace.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/clock.h"

#define HEADER "{\"displayTimeUnit\":\"ms\",\"otherData\":{\"producer\":\"loom trace 1\",\"base_ns\":"
#define MAX_EVENTS (8 << 20) /* 256 MiB of events: then recording stops, and the file says so */

typedef struct {
    char *cat, *name, *args;
    double flops, bytes;
    uint64_t hash;
} desc;

typedef struct {
    double ts, end; /* ms (rt_now_ms) */
    uint64_t flow;  /* flow events: the id */
    int desc;       /* slices: the description; flows: -1 start, -2 end */
    int tid;
} event;

struct rt_trace {
    pthread_mutex_t mu;
    int rank;
    char *process;
    char *track[8];   /* names of tids 0..7 */
    desc *d;
    int n_desc, cap_desc;
    int *table;       /* open addressing: desc index + 1, 0 empty */
    int cap_table;
    event *ev;
    size_t n_ev, cap_ev;
    bool truncated;
    int64_t base_ns;  /* CLOCK_REALTIME at creation: the file's time 0 (header "base_ns") */
    int64_t mono0_ns; /* rt_now_ms at creation, in ns */
};

static rt_trace *installed;

void rt_trace_install(rt_trace *t) { installed = t; }
rt_trace *rt_trace_active(void) { return installed; }
int rt_trace_rank(const rt_trace *t) { return t->rank; }

static char *xstrdup(const char *s)
{
    char *p = strdup(s ? s : "");
    if (!p)
        ir_unreachable("out of memory");
    return p;
}

rt_trace *rt_trace_new(int rank, const char *process_name)
{
    rt_trace *t = calloc(1, sizeof *t);
    if (!t)
        ir_unreachable("out of memory");
    pthread_mutex_init(&t->mu, NULL);
    t->rank = rank;
    t->process = xstrdup(process_name);
    struct timespec w;
    clock_gettime(CLOCK_REALTIME, &w);
    t->base_ns = (int64_t)w.tv_sec * 1000000000 + w.tv_nsec;
    t->mono0_ns = llround(rt_now_ms() * 1e6);
    rt_trace_track_name(t, RT_TRACE_HOST, "host");
    return t;
}

void rt_trace_free(rt_trace *t)
{
    if (!t)
        return;
    for (int i = 0; i < t->n_desc; i++) {
        free(t->d[i].cat);
        free(t->d[i].name);
        free(t->d[i].args);
    }
    for (int i = 0; i < 8; i++)
        free(t->track[i]);
    free(t->d);
    free(t->table);
    free(t->ev);
    free(t->process);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

void rt_trace_track_name(rt_trace *t, int tid, const char *name)
{
    if (tid < 0 || tid >= 8)
        return;
    pthread_mutex_lock(&t->mu);
    free(t->track[tid]);
    t->track[tid] = xstrdup(name);
    pthread_mutex_unlock(&t->mu);
}

static uint64_t fnv(uint64_t h, const char *s)
{
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return (h ^ 0xff) * 0x100000001b3ull;
}

static void rehash(rt_trace *t)
{
    int cap = t->cap_table ? t->cap_table * 2 : 256;
    int *tab = calloc((size_t)cap, sizeof *tab);
    if (!tab)
        ir_unreachable("out of memory");
    for (int i = 0; i < t->n_desc; i++) {
        size_t k = t->d[i].hash & (size_t)(cap - 1);
        while (tab[k])
            k = (k + 1) & (size_t)(cap - 1);
        tab[k] = i + 1;
    }
    free(t->table);
    t->table = tab;
    t->cap_table = cap;
}

int rt_trace_intern(rt_trace *t, const char *cat, const char *name, const char *args, double flops, double bytes)
{
    args = args ? args : "";
    uint64_t h = fnv(fnv(fnv(0xcbf29ce484222325ull, cat), name), args);
    pthread_mutex_lock(&t->mu);
    if (2 * (t->n_desc + 1) > t->cap_table)
        rehash(t);
    size_t k = h & (size_t)(t->cap_table - 1);
    for (; t->table[k]; k = (k + 1) & (size_t)(t->cap_table - 1)) {
        const desc *x = &t->d[t->table[k] - 1];
        if (x->hash == h && strcmp(x->cat, cat) == 0 && strcmp(x->name, name) == 0 && strcmp(x->args, args) == 0) {
            pthread_mutex_unlock(&t->mu);
            return t->table[k] - 1;
        }
    }
    if (t->n_desc == t->cap_desc) {
        t->cap_desc = t->cap_desc ? 2 * t->cap_desc : 64;
        desc *nd = realloc(t->d, (size_t)t->cap_desc * sizeof *nd);
        if (!nd)
            ir_unreachable("out of memory");
        t->d = nd;
    }
    int id = t->n_desc++;
    t->d[id] = (desc){xstrdup(cat), xstrdup(name), xstrdup(args), flops, bytes, h};
    t->table[k] = id + 1;
    pthread_mutex_unlock(&t->mu);
    return id;
}

static void push(rt_trace *t, event e)
{
    pthread_mutex_lock(&t->mu);
    if (t->n_ev == MAX_EVENTS) {
        t->truncated = true;
    } else {
        if (t->n_ev == t->cap_ev) {
            t->cap_ev = t->cap_ev ? 2 * t->cap_ev : 4096;
            event *ne = realloc(t->ev, t->cap_ev * sizeof *ne);
            if (!ne)
                ir_unreachable("out of memory");
            t->ev = ne;
        }
        t->ev[t->n_ev++] = e;
    }
    pthread_mutex_unlock(&t->mu);
}

void rt_trace_slice(rt_trace *t, int tid, int d, double t0_ms, double t1_ms)
{
    push(t, (event){t0_ms, t1_ms > t0_ms ? t1_ms : t0_ms, 0, d, tid});
}

void rt_trace_slice_named(rt_trace *t, int tid, const char *cat, const char *name, const char *args, double t0_ms,
                          double t1_ms)
{
    rt_trace_slice(t, tid, rt_trace_intern(t, cat, name, args, -1, -1), t0_ms, t1_ms);
}

void rt_trace_flow(rt_trace *t, int tid, uint64_t id, bool start, double ts_ms)
{
    push(t, (event){ts_ms, ts_ms, id, start ? -1 : -2, tid});
}

char *rt_trace_json_str(const char *s, char *buf, size_t cap)
{
    size_t k = 0;
    if (cap < 3) {
        if (cap)
            buf[0] = 0;
        return buf;
    }
    buf[k++] = '"';
    for (; s && *s && k + 8 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[k++] = '\\';
            buf[k++] = (char)c;
        } else if (c < 0x20) {
            k += (size_t)snprintf(buf + k, cap - k, "\\u%04x", c);
        } else {
            buf[k++] = (char)c;
        }
    }
    buf[k++] = '"';
    buf[k] = 0;
    return buf;
}

static const char *kind_name(rt_step_kind k)
{
    static const char *names[RT_STEP_KIND_COUNT] = {"kernel", "gemm", "attention", "copy", "check_ids",
                                                    "cache_write", "attention_grad", "scatter_add", "sum_rows"};
    return (unsigned)k < RT_STEP_KIND_COUNT ? names[k] : "step";
}

int rt_trace_plan_step(rt_trace *t, const rt_plan *p, int s)
{
    const rt_plan_step *st = &p->steps[s];
    const rt_plan_origin *o = &st->origin;
    char what[160], name[512], args[1536], q[4][300];
    if (st->kind == RT_STEP_KERNEL)
        snprintf(what, sizeof what, "%s", st->kernel.name);
    else if (st->kind == RT_STEP_GEMM)
        snprintf(what, sizeof what, "gemm %" PRId64 "x%" PRId64 "x%" PRId64, st->gemm.M, st->gemm.N, st->gemm.K);
    else
        snprintf(what, sizeof what, "%s", kind_name(st->kind));
    const char *loc = o->loc ? strrchr(o->loc, '/') : NULL; /* the file's name, not its folder */
    loc = loc ? loc + 1 : o->loc;
    if (o->op && loc)
        snprintf(name, sizeof name, "%s %s @%s", what, o->op, loc);
    else if (o->op)
        snprintf(name, sizeof name, "%s %s", what, o->op);
    else
        snprintf(name, sizeof name, "%s", what);
    snprintf(args, sizeof args, "\"step\":%d,\"kind\":\"%s\",\"op\":%s,\"scope\":%s,\"loc\":%s,\"shape\":%s,"
             "\"bytes\":%.0f,\"flops\":%.0f",
             s, kind_name(st->kind), rt_trace_json_str(o->op ? o->op : "", q[0], sizeof q[0]),
             rt_trace_json_str(o->scope ? o->scope : "", q[1], sizeof q[1]),
             rt_trace_json_str(o->loc ? o->loc : "", q[2], sizeof q[2]),
             rt_trace_json_str(o->type ? o->type : "", q[3], sizeof q[3]), o->bytes, o->flops);
    return rt_trace_intern(t, "step", name, args, o->flops, o->bytes);
}

/* ---- writing ----------------------------------------------------------------------------- */

/* A time in nanoseconds as Chrome's microseconds, exactly (integers: a child slice never ends
 * after its parent by a rounding). */
static const char *us(int64_t ns, char *buf)
{
    int64_t a = ns < 0 ? -ns : ns;
    snprintf(buf, 32, "%s%" PRId64 ".%03d", ns < 0 ? "-" : "", a / 1000, (int)(a % 1000));
    return buf;
}

static void write_meta(FILE *f, int pid, int tid, const char *what, const char *name, bool *first)
{
    char q[600];
    fprintf(f, "%s{\"ph\":\"M\",\"pid\":%d,\"tid\":%d,\"name\":\"%s\",\"args\":{\"name\":%s}}", *first ? "" : ",\n",
            pid, tid, what, rt_trace_json_str(name, q, sizeof q));
    *first = false;
}

bool rt_trace_write(const rt_trace *t0, const char *path, ir_diag *d)
{
    rt_trace *t = (rt_trace *)t0;
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp%d", path, t->rank);
    int pid = t->rank + 1; /* pid 0 is the kernel's swapper to Perfetto */
    FILE *f = fopen(tmp, "w");
    if (!f) {
        ir_diag_error(d, -1, 0, 0, "%s: cannot write the trace: %s", path, strerror(errno));
        return false;
    }
    pthread_mutex_lock(&t->mu);
    fprintf(f, "%s%" PRId64 "},\"traceEvents\":[\n", HEADER, t->base_ns);
    bool first = true;
    char tb[32], db[32];
    write_meta(f, pid, 0, "process_name", t->process, &first);
    fprintf(f, ",\n{\"ph\":\"M\",\"pid\":%d,\"tid\":0,\"name\":\"process_sort_index\",\"args\":{\"sort_index\":%d}}",
            pid, t->rank);
    for (int i = 0; i < 8; i++)
        if (t->track[i]) {
            write_meta(f, pid, i, "thread_name", t->track[i], &first);
            fprintf(f, ",\n{\"ph\":\"M\",\"pid\":%d,\"tid\":%d,\"name\":\"thread_sort_index\",\"args\":{\"sort_index\":%d}}",
                    pid, i, i);
        }
    if (t->truncated)
        fprintf(f, ",\n{\"ph\":\"i\",\"s\":\"p\",\"pid\":%d,\"tid\":%d,\"ts\":%s,\"name\":\"trace truncated: more "
                   "than %d events\"}",
                pid, RT_TRACE_HOST,
                us(t->n_ev ? llround(t->ev[t->n_ev - 1].ts * 1e6) - t->mono0_ns : 0, tb), MAX_EVENTS);
    char q[2][600];
    for (size_t i = 0; i < t->n_ev; i++) {
        const event *e = &t->ev[i];
        int64_t t0 = llround(e->ts * 1e6), t1 = llround(e->end * 1e6);
        us(t0 - t->mono0_ns, tb);
        if (e->desc < 0) {
            fprintf(f, ",\n{\"ph\":\"%s\",\"cat\":\"flow\",\"name\":\"p2p\",\"id\":%" PRIu64 ",\"pid\":%d,\"tid\":%d,"
                       "\"ts\":%s}",
                    e->desc == -1 ? "s" : "f\",\"bp\":\"e", e->flow, pid, e->tid, tb);
            continue;
        }
        const desc *x = &t->d[e->desc];
        double dur_ms = (double)(t1 - t0) / 1e6;
        fprintf(f, ",\n{\"ph\":\"X\",\"cat\":%s,\"name\":%s,\"pid\":%d,\"tid\":%d,\"ts\":%s,\"dur\":%s,\"args\":{%s",
                rt_trace_json_str(x->cat, q[0], sizeof q[0]), rt_trace_json_str(x->name, q[1], sizeof q[1]), pid,
                e->tid, tb, us(t1 - t0, db), x->args);
        const char *sep = x->args[0] ? "," : "";
        if (x->flops > 0 && dur_ms > 0) {
            fprintf(f, "%s\"gflop_per_s\":%.3f", sep, x->flops / (dur_ms * 1e6));
            sep = ",";
        }
        if (x->bytes > 0 && dur_ms > 0)
            fprintf(f, "%s\"gb_per_s\":%.3f", sep, x->bytes / (dur_ms * 1e6));
        fprintf(f, "}}");
    }
    pthread_mutex_unlock(&t->mu);
    fprintf(f, "\n]}\n");
    bool ok = !ferror(f);
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        ir_diag_error(d, -1, 0, 0, "%s: cannot write the trace: %s", path, strerror(errno));
        remove(tmp);
        return false;
    }
    return true;
}

/* ---- merging --------------------------------------------------------------------------------- */

/* The header's base_ns of a loom trace's first line, or false. */
static bool header_base(const char *line, int64_t *base)
{
    size_t n = strlen(HEADER);
    char *end;
    if (strncmp(line, HEADER, n) != 0)
        return false;
    long long b = strtoll(line + n, &end, 10);
    if (strncmp(end, "},\"traceEvents\":[", 17) != 0)
        return false;
    *base = b;
    return true;
}

/* line (an event) with its "ts" moved by shift_ns, into f; false if its ts is not a number. */
static bool shifted(FILE *f, const char *line, int64_t shift_ns)
{
    const char *ts = strstr(line, "\"ts\":");
    if (!ts || !shift_ns) {
        fputs(line, f);
        return true;
    }
    const char *p = ts + 5;
    bool neg = *p == '-';
    p += neg;
    char *end;
    long long whole = strtoll(p, &end, 10);
    long long frac = 0;
    int digits = 0;
    if (end == p)
        return false;
    if (*end == '.')
        for (end++; *end >= '0' && *end <= '9'; end++, digits++)
            if (digits < 3)
                frac = frac * 10 + (*end - '0');
    for (; digits < 3; digits++)
        frac *= 10;
    int64_t ns = (neg ? -1 : 1) * ((int64_t)whole * 1000 + frac) + shift_ns;
    char b[32];
    fprintf(f, "%.*s%s%s", (int)(ts + 5 - line), line, us(ns, b), end);
    return true;
}

bool rt_trace_merge(const char *out, const char *const *in, int n, ir_diag *d)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    int64_t *base = calloc((size_t)n + 1, sizeof *base), first_base = 0;
    if (!base)
        ir_unreachable("out of memory");
    char *line = NULL;
    size_t cap = 0;
    bool ok = true;
    /* every file's time 0 first: the merged file's is the earliest */
    for (int i = 0; ok && i < n; i++) {
        FILE *g = fopen(in[i], "r");
        if (!g) {
            ir_diag_error(d, -1, 0, 0, "%s: cannot read: %s", in[i], strerror(errno));
            ok = false;
            break;
        }
        if (getline(&line, &cap, g) < 0 || !header_base(line, &base[i])) {
            ir_diag_error(d, -1, 0, 0, "%s: not a loom trace (its first line is not loom's); loom trace-merge merges "
                                       "the files that --profile writes", in[i]);
            ok = false;
        }
        fclose(g);
        if (ok && (i == 0 || base[i] < first_base))
            first_base = base[i];
    }
    FILE *f = ok ? fopen(tmp, "w") : NULL;
    if (ok && !f) {
        ir_diag_error(d, -1, 0, 0, "%s: cannot write the trace: %s", out, strerror(errno));
        ok = false;
    }
    if (f)
        fprintf(f, "%s%" PRId64 "},\"traceEvents\":[\n", HEADER, first_base);
    bool first = true;
    for (int i = 0; ok && i < n; i++) {
        FILE *g = fopen(in[i], "r");
        if (!g || getline(&line, &cap, g) < 0) {
            ir_diag_error(d, -1, 0, 0, "%s: cannot read: %s", in[i], strerror(errno));
            ok = false;
            if (g)
                fclose(g);
            break;
        }
        bool closed = false;
        long lineno = 1;
        ssize_t len;
        while (ok && (len = getline(&line, &cap, g)) >= 0) {
            lineno++;
            while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
                line[--len] = 0;
            if (strcmp(line, "]}") == 0) {
                closed = true;
                break;
            }
            if (len > 0 && line[len - 1] == ',')
                line[--len] = 0;
            if (len < 2 || line[0] != '{' || line[len - 1] != '}') {
                ir_diag_error(d, -1, 0, 0, "%s:%ld: not an event of a loom trace", in[i], lineno);
                ok = false;
                break;
            }
            fputs(first ? "" : ",\n", f);
            first = false;
            if (!shifted(f, line, base[i] - first_base)) {
                ir_diag_error(d, -1, 0, 0, "%s:%ld: an event whose ts is not a number", in[i], lineno);
                ok = false;
            }
        }
        if (ok && !closed) {
            ir_diag_error(d, -1, 0, 0, "%s: the trace ends early (was its rank still writing?)", in[i]);
            ok = false;
        }
        fclose(g);
    }
    free(line);
    free(base);
    if (f) {
        fprintf(f, "\n]}\n");
        ok = fclose(f) == 0 && ok;
    }
    if (ok && rename(tmp, out) != 0) {
        ir_diag_error(d, -1, 0, 0, "%s: cannot write the trace: %s", out, strerror(errno));
        ok = false;
    }
    if (!ok)
        remove(tmp);
    return ok;
}
