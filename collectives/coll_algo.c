/* coll_algo.c — allreduce written over the backend's send/recv (its internal channel), for
 * experiments and for a summation order loom states rather than inherits from a library.
 * Selected by coll_set_allreduce_algo (--allreduce=ring|tree|backend).
 *
 * Both algorithms are deterministic: for a given size, count and dtype the sequence of
 * floating-point additions is fixed, and every rank ends with the same bits (the reduced
 * values are computed once and then copied). With x_r the contribution of rank r, p ranks:
 *
 * ring (Patarasuk & Yuan, 2009): the count is cut into p chunks, chunk k holding elements
 *   [k·q + min(k, m), ...) with q = count / p, m = count % p (the first m chunks one longer).
 *   Reduce-scatter, p − 1 steps: at step s rank r sends chunk (r − s) mod p to rank r + 1 and
 *   adds the chunk (r − s − 1) mod p it receives from rank r − 1 to its own. Chunk k is thus
 *   summed as a left fold starting at rank k:  ((x_k + x_{k+1}) + x_{k+2}) + … + x_{k−1}
 *   (indices mod p), complete on rank k − 1. Allgather, p − 1 steps: rank r sends chunk
 *   (r + 1 − s) mod p and receives chunk (r − s) mod p. Bandwidth-optimal: each rank sends
 *   2·(p − 1)/p of the buffer. Extra memory: one chunk.
 * tree: binomial reduce to rank 0, then binomial broadcast. In round j (mask = 2^j) a rank
 *   with bit j set sends its partial sum to rank − mask and is done; a rank below it adds what
 *   it receives: acc(r) = acc(r) + acc(r + mask). The sum is the fixed binary tree over
 *   contiguous rank ranges, e.g. p = 4: (x_0 + x_1) + (x_2 + x_3); p = 3: (x_0 + x_1) + x_2.
 *   log2(p) steps of the whole buffer each way: latency-optimal for small buffers.
 *   Extra memory: one buffer.
 * Max and min are exact in any order. Integer sums wrap as two's complement.
 */
#include "collectives/coll_impl.h"

#include <stdlib.h>
#include <string.h>

enum { TAG_RING_RS = 1, TAG_RING_AG = 2, TAG_TREE_REDUCE = 3, TAG_TREE_BCAST = 4 };

static size_t chunk_off(size_t n, int p, int k)
{
    size_t q = n / (size_t)p, m = n % (size_t)p, kk = (size_t)k;
    return kk * q + (kk < m ? kk : m);
}

static size_t chunk_len(size_t n, int p, int k)
{
    return n / (size_t)p + ((size_t)k < n % (size_t)p ? 1 : 0);
}

static coll_status ring(coll_comm *c, char *buf, size_t n, coll_dtype dt, coll_op op,
                        const coll_call *call)
{
    int p = c->size, me = c->rank, right = (me + 1) % p, left = (me + p - 1) % p;
    size_t es = coll_dtype_size(dt);
    char *tmp = malloc((n / (size_t)p + 1) * es);
    if (!tmp)
        return coll_set_error(c, COLL_ERR_NOMEM, "allreduce (ring): out of memory");
    coll_status st = COLL_OK;
    for (int s = 0; s < p - 1 && st == COLL_OK; s++) {
        int sc = ((me - s) % p + p) % p, rc = ((me - s - 1) % p + p) % p;
        size_t sn = chunk_len(n, p, sc), rn = chunk_len(n, p, rc);
        if (sn == 0 && rn == 0)
            continue; /* both neighbours agree: chunk lengths depend only on n and p */
        st = c->ops->sendrecv(c, COLL_CH_ALGO, buf + chunk_off(n, p, sc) * es, sn, sn ? right : -1,
                              tmp, rn, rn ? left : -1, dt, TAG_RING_RS, call);
        if (st == COLL_OK)
            coll_reduce_local(buf + chunk_off(n, p, rc) * es, tmp, rn, dt, op);
    }
    for (int s = 0; s < p - 1 && st == COLL_OK; s++) {
        int sc = ((me + 1 - s) % p + p) % p, rc = ((me - s) % p + p) % p;
        size_t sn = chunk_len(n, p, sc), rn = chunk_len(n, p, rc);
        if (sn == 0 && rn == 0)
            continue;
        st = c->ops->sendrecv(c, COLL_CH_ALGO, buf + chunk_off(n, p, sc) * es, sn, sn ? right : -1,
                              buf + chunk_off(n, p, rc) * es, rn, rn ? left : -1, dt, TAG_RING_AG,
                              call);
    }
    free(tmp);
    return st;
}

static coll_status tree(coll_comm *c, char *buf, size_t n, coll_dtype dt, coll_op op,
                        const coll_call *call)
{
    int p = c->size, me = c->rank;
    char *tmp = malloc(n * coll_dtype_size(dt));
    if (!tmp)
        return coll_set_error(c, COLL_ERR_NOMEM, "allreduce (tree): out of memory");
    coll_status st = COLL_OK;
    /* reduce to rank 0 */
    for (int mask = 1; mask < p && st == COLL_OK; mask <<= 1) {
        if (me & mask) {
            st = c->ops->sendrecv(c, COLL_CH_ALGO, buf, n, me - mask, NULL, 0, -1, dt,
                                  TAG_TREE_REDUCE, call);
            break;
        }
        if (me + mask < p) {
            st = c->ops->sendrecv(c, COLL_CH_ALGO, NULL, 0, -1, tmp, n, me + mask, dt,
                                  TAG_TREE_REDUCE, call);
            if (st == COLL_OK)
                coll_reduce_local(buf, tmp, n, dt, op);
        }
    }
    free(tmp);
    /* broadcast from rank 0: receive from the parent (me minus its lowest set bit), then send
     * to children me + mask for each mask below that bit */
    int mask = 1;
    while (mask < p && !(me & mask))
        mask <<= 1;
    if (st == COLL_OK && me != 0)
        st = c->ops->sendrecv(c, COLL_CH_ALGO, NULL, 0, -1, buf, n, me - mask, dt, TAG_TREE_BCAST,
                              call);
    for (mask >>= 1; mask > 0 && st == COLL_OK; mask >>= 1)
        if (me + mask < p)
            st = c->ops->sendrecv(c, COLL_CH_ALGO, buf, n, me + mask, NULL, 0, -1, dt,
                                  TAG_TREE_BCAST, call);
    return st;
}

coll_status coll_algo_allreduce(coll_comm *c, const void *s, void *r, size_t n, coll_dtype dt,
                                coll_op op, coll_algo a, const coll_call *call)
{
    if (s != r)
        memcpy(r, s, n * coll_dtype_size(dt));
    if (c->size == 1 || n == 0)
        return COLL_OK;
    return a == COLL_ALGO_TREE ? tree(c, r, n, dt, op, call) : ring(c, r, n, dt, op, call);
}
