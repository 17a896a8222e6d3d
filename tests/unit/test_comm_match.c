/* test_comm_match.c — collective matching (passes/comm_match.h) on hand-made sequences, the
 * cases a model's layout does not produce by itself: a rank with one collective fewer, a send
 * whose receive expects another count, a send nobody receives, and two ranks that each wait for
 * the other (a receive before the collective its sender is stuck in): the deadlock the
 * simulation must find. Each asserts the exact message (both ranks, the position). */
#include <string.h>

#include "passes/comm_match.h"
#include "test_check.h"

static comm_event coll(ir_opcode op, int axis, int64_t count)
{
    return (comm_event){.op = op, .axis = axis, .dtype = DT_F32, .count = count, .peer = -1, .micro = -1,
                        .src_op = OP_matmul};
}

static comm_event p2p(ir_opcode op, int peer, int tag, int64_t count)
{
    return (comm_event){.op = op, .axis = -1, .dtype = DT_F32, .count = count, .detail = tag, .peer = peer,
                        .micro = -1, .src_op = op == OP_send ? OP_add : -1};
}

/* Runs comm_match over W ranks' sequences; the first message, or "" when they match. */
static const char *run(const char *mesh, comm_event ev[][4], const int *n, char *msg, size_t cap)
{
    ir_graph *g = ir_graph_new("m");
    ir_diag d;
    ir_diag_init(&d);
    pass_mesh m;
    msg[0] = 0;
    if (!pass_mesh_parse(mesh, 0, g, &m, &d))
        snprintf(msg, cap, "bad mesh");
    else {
        comm_seq seqs[4];
        for (int r = 0; r < m.world; r++)
            seqs[r] = (comm_seq){ev[r], n[r]};
        if (!comm_match(seqs, &m, &d))
            snprintf(msg, cap, "%s", d.n_msg ? d.msg[0].msg : "(no message)");
    }
    ir_diag_free(&d);
    ir_graph_free(g);
    return msg;
}

int main(void)
{
    char msg[2048];
    const char *want;
    /* tp=2 (axis 1 of dp, tp, pp): the same two allreduces match */
    comm_event same[4][4] = {{coll(OP_allreduce, 1, 8), coll(OP_allreduce, 1, 16)},
                             {coll(OP_allreduce, 1, 8), coll(OP_allreduce, 1, 16)}};
    run("tp=2", same, (int[]){2, 2}, msg, sizeof msg);
    CHECK(msg[0] == 0, "equal sequences: %s", msg);

    /* rank 1 lacks the second */
    run("tp=2", same, (int[]){2, 1}, msg, sizeof msg);
    want = "collectives do not match in the tp group of ranks 0, 1: #2 on rank 0 is allreduce over tp f32 x 16 (sum) "
           "of matmul; on rank 1 it is nothing (its 1 collectives over tp are done)";
    CHECK(strcmp(msg, want) == 0, "one fewer:\n  got  %s\n  want %s", msg, want);

    /* pp=2: rank 0 sends 8 elements with tag 5, rank 1 receives 4 */
    comm_event count[4][4] = {{p2p(OP_send, 1, 5, 8)}, {p2p(OP_recv, 0, 5, 4)}};
    run("pp=2", count, (int[]){1, 1}, msg, sizeof msg);
    want = "point-to-point ops do not match: #1 on rank 0 is send f32 x 8 (to rank 1, tag 5) of add; #1 on rank 1 is "
           "recv f32 x 4 (from rank 0, tag 5) of a value";
    CHECK(strcmp(msg, want) == 0, "count:\n  got  %s\n  want %s", msg, want);

    /* a send nobody receives */
    run("pp=2", count, (int[]){1, 0}, msg, sizeof msg);
    want = "point-to-point ops do not match: #1 on rank 0 is send f32 x 8 (to rank 1, tag 5) of add; rank 1 never "
           "receives it";
    CHECK(strcmp(msg, want) == 0, "unreceived:\n  got  %s\n  want %s", msg, want);

    /* tp=2, both in one group: rank 0 receives from rank 1 before the allreduce, rank 1 sends
     * only after it — each waits for the other */
    comm_event dead[4][4] = {{p2p(OP_recv, 1, 3, 8), coll(OP_allreduce, 1, 8)},
                             {coll(OP_allreduce, 1, 8), p2p(OP_send, 0, 3, 8)}};
    run("tp=2", dead, (int[]){2, 2}, msg, sizeof msg);
    want = "the ranks' communication would deadlock: rank 0 waits at #1, recv f32 x 8 (from rank 1, tag 3) of a "
           "value; rank 1 waits at #1, allreduce over tp f32 x 8 (sum) of matmul";
    CHECK(strcmp(msg, want) == 0, "deadlock:\n  got  %s\n  want %s", msg, want);

    /* the send first on rank 1: completes */
    comm_event fine[4][4] = {{p2p(OP_recv, 1, 3, 8), coll(OP_allreduce, 1, 8)},
                             {p2p(OP_send, 0, 3, 8), coll(OP_allreduce, 1, 8)}};
    run("tp=2", fine, (int[]){2, 2}, msg, sizeof msg);
    CHECK(msg[0] == 0, "send first: %s", msg);
    if (!failures)
        printf("comm_match: 6 cases ok\n");
    return failures != 0;
}
