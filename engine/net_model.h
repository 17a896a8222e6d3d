/* net_model.h — the machine model that `loom check --explain` and `loom plan` predict times
 * with (docs/cluster.md, "Checks before launch" and "The planner"): links inside a node and
 * between nodes, each a latency per message step and a bandwidth (the alpha-beta model), ranks
 * placed G to a node in rank order, and a peak FLOP rate for compute.
 *
 * Collectives are timed as ring algorithms over their group (every rank's share of the
 * traffic goes over the group's slowest link: inter-node as soon as the group spans nodes):
 *   allreduce of n bytes over T ranks: 2(T-1) steps, 2(T-1)/T · n on the wire per rank
 *   allgather (n: the gathered result), reduce-scatter (n: the input): T-1 steps, (T-1)/T · n
 *   send of n bytes: 1 step, n; a receive costs nothing of its own (the send carries it).
 * time = steps · latency + wire bytes / bandwidth. */
#ifndef LOOM_ENGINE_NET_MODEL_H
#define LOOM_ENGINE_NET_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/options.h"
#include "ir/diag.h"

typedef struct {
    double intra_bw, inter_bw;   /* bytes per second */
    double intra_lat, inter_lat; /* seconds per message step */
    int per_node;                /* ranks (devices) a node */
    double peak_flops;           /* FLOP/s of one device */
    double mfu;                  /* the fraction of peak a GEMM-bound step reaches */
    double mem_bw;               /* bytes per second of a device's memory (the optimizer update) */
} eng_net;

/* H100-class defaults: 8 devices a node, 150 GB/s and 5 us inside a node, 25 GB/s and 10 us
 * between nodes, 400 TFLOP/s peak at 40% of it, 3 TB/s of memory. */
eng_net eng_net_default(void);
/* Reads cmd's options into n (others unchanged): --bandwidth intra=X,inter=Y (150GB/s, 25GB/s,
 * 200Gb/s, 1e9: bytes/s), --latency intra=X,inter=Y (5us, 0.01ms, 1e-6: seconds),
 * --gpus-per-node G, --peak-tflops T, --mfu F, --memory-bandwidth RATE (plan). false after
 * reporting a bad value. */
bool eng_net_options(const eng_opts *o, const char *cmd, eng_net *n, ir_diag *d);
/* "intra-node 150 GB/s, 5 us; inter-node 25 GB/s, 10 us; 8 ranks a node" */
const char *eng_net_str(const eng_net *n, char *buf, size_t cap);

/* Message steps and bytes on the wire per rank of communication op `op` (an ir_opcode: allreduce,
 * allgather, reduce_scatter, send, recv) over T ranks; bytes as above. */
void eng_net_traffic(int op, int T, double bytes, double *steps, double *wire);
/* Its time in seconds, over inter-node links when `spans` (the group crosses nodes). */
double eng_net_time(const eng_net *n, int op, int T, double bytes, bool spans);
/* Whether the group of world rank r along axis a of the mesh crosses nodes (per_node ranks a
 * node, in rank order). */
struct pass_mesh;
bool eng_net_spans(const eng_net *n, const struct pass_mesh *m, int r, int a);

/* A size with a unit: "80GiB", "80GB", "512MiB", "1e9" (bytes). false when not one. */
bool eng_parse_bytes(const char *s, double *out);

#endif
