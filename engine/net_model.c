/* net_model.c — net_model.h: the alpha-beta machine model of --explain and `loom plan`. */
#include "engine/net_model.h"
#include "passes/mesh.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

eng_net eng_net_default(void)
{
    return (eng_net){.intra_bw = 150e9, .inter_bw = 25e9, .intra_lat = 5e-6, .inter_lat = 10e-6, .per_node = 8,
                     .peak_flops = 400e12, .mfu = 0.4, .mem_bw = 3e12};
}

/* "150GB/s", "200Gb/s", "1.5e11" -> bytes per second */
static bool parse_rate(const char *s, double *out)
{
    char *end;
    double x = strtod(s, &end);
    if (end == s || !(x > 0) || !isfinite(x))
        return false;
    static const struct {
        const char *unit;
        double scale;
    } units[] = {{"", 1},          {"B/s", 1},        {"KB/s", 1e3},     {"MB/s", 1e6},     {"GB/s", 1e9},
                 {"TB/s", 1e12},   {"KiB/s", 1024.0}, {"MiB/s", 1048576.0}, {"GiB/s", 1073741824.0},
                 {"Kb/s", 1e3 / 8}, {"Mb/s", 1e6 / 8}, {"Gb/s", 1e9 / 8}, {"Tb/s", 1e12 / 8}};
    for (size_t k = 0; k < sizeof units / sizeof *units; k++)
        if (strcmp(end, units[k].unit) == 0) {
            *out = x * units[k].scale;
            return true;
        }
    return false;
}

/* "5us", "0.01ms", "1e-6", "2ns" -> seconds (0 allowed) */
static bool parse_time(const char *s, double *out)
{
    char *end;
    double x = strtod(s, &end);
    if (end == s || !(x >= 0) || !isfinite(x))
        return false;
    double scale = strcmp(end, "") == 0 || strcmp(end, "s") == 0 ? 1
                   : strcmp(end, "ms") == 0                        ? 1e-3
                   : strcmp(end, "us") == 0                        ? 1e-6
                   : strcmp(end, "ns") == 0                        ? 1e-9
                                                                   : -1;
    if (scale < 0)
        return false;
    *out = x * scale;
    return true;
}

bool eng_parse_bytes(const char *s, double *out)
{
    char *end;
    double x = strtod(s, &end);
    if (end == s || !(x > 0) || !isfinite(x))
        return false;
    static const struct {
        const char *unit;
        double scale;
    } units[] = {{"", 1},     {"B", 1},      {"KB", 1e3},         {"MB", 1e6},           {"GB", 1e9},
                 {"TB", 1e12}, {"KiB", 1024.0}, {"MiB", 1048576.0}, {"GiB", 1073741824.0}, {"TiB", 1099511627776.0}};
    for (size_t k = 0; k < sizeof units / sizeof *units; k++)
        if (strcmp(end, units[k].unit) == 0) {
            *out = x * units[k].scale;
            return true;
        }
    return false;
}

/* "intra=X,inter=Y" (either may be left out) with each value parsed by fn */
static bool parse_pair(const char *v, bool (*fn)(const char *, double *), double *intra, double *inter)
{
    char buf[256];
    if (!*v || strlen(v) >= sizeof buf)
        return false;
    strcpy(buf, v);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        double *dst = strncmp(tok, "intra=", 6) == 0 ? intra : strncmp(tok, "inter=", 6) == 0 ? inter : NULL;
        if (!dst || !fn(tok + 6, dst))
            return false;
    }
    return true;
}

bool eng_net_options(const eng_opts *o, const char *cmd, eng_net *n, ir_diag *d)
{
    const char *v;
    if ((v = eng_named(o, "--bandwidth")) && !parse_pair(v, parse_rate, &n->intra_bw, &n->inter_bw)) {
        ir_diag_error(d, -1, 0, 0,
                      "%s: --bandwidth expects intra=RATE,inter=RATE with RATE like 150GB/s, 200Gb/s or 1.5e11 "
                      "(bytes/s), got '%s'",
                      cmd, v);
        return false;
    }
    if ((v = eng_named(o, "--latency")) && !parse_pair(v, parse_time, &n->intra_lat, &n->inter_lat)) {
        ir_diag_error(d, -1, 0, 0, "%s: --latency expects intra=TIME,inter=TIME with TIME like 5us, 0.01ms or 1e-6 (s), got '%s'",
                      cmd, v);
        return false;
    }
    if ((v = eng_named(o, "--gpus-per-node"))) {
        char *end;
        long g = strtol(v, &end, 10);
        if (!*v || *end || g < 1 || g > 4096) {
            ir_diag_error(d, -1, 0, 0, "%s: --gpus-per-node expects an integer in [1, 4096], got '%s'", cmd, v);
            return false;
        }
        n->per_node = (int)g;
    }
    if ((v = eng_named(o, "--peak-tflops"))) {
        char *end;
        double t = strtod(v, &end);
        if (!*v || *end || !(t > 0) || t > 1e6) {
            ir_diag_error(d, -1, 0, 0, "%s: --peak-tflops expects a number in (0, 1e6], got '%s'", cmd, v);
            return false;
        }
        n->peak_flops = t * 1e12;
    }
    if ((v = eng_named(o, "--mfu"))) {
        char *end;
        double f = strtod(v, &end);
        if (!*v || *end || !(f > 0) || f > 1) {
            ir_diag_error(d, -1, 0, 0, "%s: --mfu expects a fraction in (0, 1], got '%s'", cmd, v);
            return false;
        }
        n->mfu = f;
    }
    if ((v = eng_named(o, "--memory-bandwidth")) && !parse_rate(v, &n->mem_bw)) {
        ir_diag_error(d, -1, 0, 0, "%s: --memory-bandwidth expects a RATE like 3TB/s, 900GB/s or 3e12 (bytes/s), got '%s'",
                      cmd, v);
        return false;
    }
    return true;
}

static const char *rate_str(double bps, char *buf, size_t cap)
{
    snprintf(buf, cap, "%.3g GB/s", bps / 1e9);
    return buf;
}

const char *eng_net_str(const eng_net *n, char *buf, size_t cap)
{
    char a[32], b[32];
    snprintf(buf, cap, "intra-node %s, %.4g us; inter-node %s, %.4g us; %d rank%s a node", rate_str(n->intra_bw, a, sizeof a),
             n->intra_lat * 1e6, rate_str(n->inter_bw, b, sizeof b), n->inter_lat * 1e6, n->per_node,
             n->per_node == 1 ? "" : "s");
    return buf;
}

void eng_net_traffic(int op, int T, double bytes, double *steps, double *wire)
{
    *steps = 0;
    *wire = 0;
    if (op == OP_send) {
        *steps = 1;
        *wire = bytes;
    } else if (op == OP_allreduce && T > 1) {
        *steps = 2.0 * (T - 1);
        *wire = 2.0 * (T - 1) / T * bytes;
    } else if ((op == OP_allgather || op == OP_reduce_scatter) && T > 1) {
        *steps = T - 1;
        *wire = (double)(T - 1) / T * bytes;
    }
}

double eng_net_time(const eng_net *n, int op, int T, double bytes, bool spans)
{
    double steps, wire;
    eng_net_traffic(op, T, bytes, &steps, &wire);
    return steps * (spans ? n->inter_lat : n->intra_lat) + wire / (spans ? n->inter_bw : n->intra_bw);
}

bool eng_net_spans(const eng_net *n, const pass_mesh *m, int r, int a)
{
    int node = pass_mesh_with(m, r, a, 0) / n->per_node;
    for (int c = 1; c < m->size[a]; c++)
        if (pass_mesh_with(m, r, a, c) / n->per_node != node)
            return true;
    return false;
}
