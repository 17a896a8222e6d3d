/* run_mesh.c — `loom run MODEL --mesh dp=D,tp=T,pp=P --weights W --inputs I --outputs O
 * [--allreduce backend|ring|tree] [--target T] [--stats]` under a launcher (`mpirun -np N`,
 * `srun`): one process per rank, each running its own graph (docs/cluster.md, "Running").
 *
 * Each rank takes its rank and the world size from the launcher's environment (the mesh's
 * rank count must equal the world size), removes what needs an absent optional input (so every
 * rank drops the same communication), builds its graph with the pipeline and shard passes,
 * loads its slices of the full checkpoint and inputs by the names those passes give (mesh.h),
 * and runs it as mesh_exec_job (engine/mesh_exec.c): segments between the communication ops,
 * each a program on --target. Rank 0, which holds every output, writes them.
 */
#include "engine/jobs.h"
#include "engine/run_values.h"
#include "collectives/coll.h"
#include "passes/mesh.h"
#include "engine/mesh_exec.h"
#include "passes/pass.h"
#include "engine/program.h"
#include "io/hf.h"
#include "io/safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Whether the inputs file (NULL: none given) holds name. */
static bool in_file(const void *inputs, const char *name)
{
    return inputs && rt_st_find(inputs, name);
}

bool eng_run_mesh(const eng_opts *o, ir_diag *d)
{
    coll_launch launch;
    coll_error cerr;
    if (!coll_launch_detect(&launch, &cerr)) {
        ir_diag_error(d, -1, 0, 0, "run: %s", cerr.message);
        return ir_diag_ok(d);
    }
    int rank = launch.found ? launch.rank : o->rank;
    if (!o->outputs)
        ir_diag_error(d, -1, 0, 0, "run: missing --outputs FILE.safetensors (where to write the outputs)");
    ir_graph *g = ir_diag_ok(d) ? eng_load_graph(o, d) : NULL;
    pass_mesh mesh;
    if (g && pass_mesh_parse(o->mesh, rank < 0 ? 0 : rank, g, &mesh, d) && eng_seq_parallel(o, &mesh, "run", d)) {
        int started = launch.found ? launch.size : 1;
        if (mesh.world != started) {
            char m[128];
            ir_diag_error(d, -1, 0, 0,
                          "run: the mesh %s has %d rank%s but %d process%s started; start one process per rank "
                          "(mpirun -np %d loom run ... --mesh %s)",
                          pass_mesh_str(&mesh, m, sizeof m), mesh.world, mesh.world == 1 ? "" : "s", started,
                          started == 1 ? " was" : "es were", mesh.world, o->mesh);
        }
    }
    if (!ir_diag_ok(d)) {
        ir_graph_free(g);
        /* every rank finds the same error: only rank 0 says it */
        if (rank > 0)
            ir_diag_quiet(d);
        return ir_diag_ok(d);
    }
    mesh_job job = {.who = "loom run", .outputs = o->outputs, .stats = o->stats, .profile = o->profile,
                    .compile = program_compile_segment,
                    .compile_ctx = (void *)(o->target ? o->target : "cpu")};
    rt_st_file wf = {0}, inf = {0};
    bool have_w = mesh_coll_options(o->named_key, o->named_value, o->n_named, "run", &job.coll, d) && o->weights &&
                  rt_hf_open_weights(o->weights, &wf, d);
    job.coll.gpu = o->target && strncmp(o->target, "cuda", 4) == 0; /* NCCL unless $LOOM_COLL says */
    bool have_i = ir_diag_ok(d) && o->inputs && rt_st_open(o->inputs, &inf, d);
    job.weights = have_w ? &wf : NULL;
    job.inputs = have_i ? &inf : NULL;
    /* before any pass, so every rank removes the same communication */
    eng_drop_absent_if(g, in_file, job.inputs);
    pass_options po = pass_options_default();
    po.mesh = &mesh;
    if (ir_diag_ok(d) && pass_run_pipeline(g, "pipeline,shard,dce,cse", &po, d))
        mesh_exec_job(g, &mesh, &job, d);
    else
        ir_graph_free(g);
    if (have_w)
        rt_st_close(&wf);
    if (have_i)
        rt_st_close(&inf);
    return ir_diag_ok(d);
}
