/* comm_meter.c — profile.h's communication meter: the collectives' observer that counts bytes
 * per mesh axis for the metrics and, under --profile, records each operation as a slice and each
 * point-to-point message as the two ends of a flow. Apart from profile.c so that an executable
 * without MPI (a model's `loom build` executable) links profiling without the collectives. */
#include "engine/profile.h"

#include <stdio.h>
#include <string.h>

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

