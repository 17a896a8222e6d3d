/* coll_single.c — the single-process backend: a communicator of one rank, no library.
 *
 * Collectives on one rank are copies, and coll.c already does them (a one-rank comm never
 * reaches a backend's collective), so this file only holds point-to-point messages to itself:
 * a send copies the message into the comm's mailbox (a FIFO per comm), a receive takes the
 * oldest message of the same channel and tag. A receive that nothing in the mailbox matches
 * can never complete in one process: COLL_ERR_DEADLOCK, returned at once instead of waiting
 * for the timeout.
 */
#include "collectives/coll_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct msg {
    struct msg *next;
    int channel, tag;
    coll_dtype dt;
    size_t count;
    unsigned char data[]; /* count · dtype size bytes */
} msg;

typedef struct {
    msg *head, *tail;
} mailbox;

coll_status coll_single_init(coll_comm *c, coll_error *err)
{
    mailbox *mb = calloc(1, sizeof *mb);
    if (!mb) {
        snprintf(err->message, sizeof err->message, "coll: out of memory");
        return COLL_ERR_NOMEM;
    }
    c->ops = &coll_single_ops;
    c->impl = mb;
    c->rank = c->world_rank = c->local_rank = 0;
    c->size = c->world_size = c->local_size = 1;
    return COLL_OK;
}

static coll_status single_sendrecv(coll_comm *c, int channel, const void *s, size_t sn, int dest,
                                   void *r, size_t rn, int src, coll_dtype dt, int tag,
                                   const coll_call *call)
{
    mailbox *mb = c->impl;
    size_t es = coll_dtype_size(dt);
    if (dest >= 0) {
        msg *m = malloc(sizeof *m + sn * es);
        if (!m)
            return coll_set_error(c, COLL_ERR_NOMEM, "%s: out of memory", call->op);
        *m = (msg){NULL, channel, tag, dt, sn};
        memcpy(m->data, s, sn * es);
        if (mb->tail)
            mb->tail->next = m;
        else
            mb->head = m;
        mb->tail = m;
    }
    if (src < 0)
        return COLL_OK;
    msg *prev = NULL, *m = mb->head;
    while (m && (m->channel != channel || m->tag != tag)) {
        prev = m;
        m = m->next;
    }
    if (!m)
        return coll_set_error(c, COLL_ERR_DEADLOCK,
                              "%s #%lu (%s): no message with tag %d was sent to this rank, and "
                              "one process can never send it",
                              call->op, call->seq, call->detail, tag);
    if (m->dt != dt || m->count != rn)
        return coll_set_error(c, COLL_ERR_ARG,
                              "%s #%lu: the message with tag %d holds %zu %s elements, the receive "
                              "expects %zu %s",
                              call->op, call->seq, tag, m->count, coll_dtype_name(m->dt), rn,
                              coll_dtype_name(dt));
    memcpy(r, m->data, rn * es);
    if (prev)
        prev->next = m->next;
    else
        mb->head = m->next;
    if (mb->tail == m)
        mb->tail = prev;
    free(m);
    return COLL_OK;
}

static coll_status single_split(coll_comm *c, int color, int key, coll_comm *out)
{
    if (color == COLL_UNDEFINED)
        return COLL_OK;
    coll_error err;
    coll_status st = coll_single_init(out, &err);
    if (st != COLL_OK)
        return coll_set_error(c, st, "coll_split: %s", err.message);
    return COLL_OK;
}

static void single_destroy(coll_comm *c, bool world)
{
    mailbox *mb = c->impl;
    if (!mb)
        return;
    for (msg *m = mb->head, *next; m; m = next) {
        next = m->next;
        free(m);
    }
    free(mb);
    c->impl = NULL;
}

static _Noreturn void single_abort(coll_comm *c, int code)
{
    fflush(stdout);
    fflush(stderr);
    _Exit(code ? code : 1);
}

/* Collectives never reach a one-rank backend (coll.c copies); these are here so the table is
 * complete. */
static coll_status single_unreachable(coll_comm *c, const char *op)
{
    return coll_set_error(c, COLL_ERR_UNSUPPORTED, "%s: reached the single backend with size > 1", op);
}
static coll_status single_allreduce(coll_comm *c, const void *s, void *r, size_t n, coll_dtype dt,
                                    coll_op op, const coll_call *call)
{
    return single_unreachable(c, call->op);
}
static coll_status single_allgather(coll_comm *c, const void *s, void *r, size_t n, coll_dtype dt,
                                    const coll_call *call)
{
    return single_unreachable(c, call->op);
}
static coll_status single_reduce_scatter(coll_comm *c, const void *s, void *r, size_t n,
                                         coll_dtype dt, coll_op op, const coll_call *call)
{
    return single_unreachable(c, call->op);
}
static coll_status single_broadcast(coll_comm *c, void *buf, size_t n, coll_dtype dt, int root,
                                    const coll_call *call)
{
    return single_unreachable(c, call->op);
}
static coll_status single_barrier(coll_comm *c, const coll_call *call)
{
    return single_unreachable(c, call->op);
}

const coll_backend_ops coll_single_ops = {
    .name = "single",
    .caps = 0,
    .allreduce = single_allreduce,
    .allgather = single_allgather,
    .reduce_scatter = single_reduce_scatter,
    .broadcast = single_broadcast,
    .barrier = single_barrier,
    .sendrecv = single_sendrecv,
    .split = single_split,
    .destroy = single_destroy,
    .abort_job = single_abort,
};
