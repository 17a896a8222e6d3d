/* launch.c — who started this process: rank, size and local rank from the launcher's
 * environment variables (OpenMPI, PMI, torchrun, Slurm), without initializing any library.
 *
 * Used before a communicator exists: to choose a backend (COLL_BACKEND_AUTO), to pick the GPU
 * (local rank), and to check that MPI sees as many ranks as the launcher started. The order of
 * the table is the order of trust (coll.h explains it). A variable that is present but
 * malformed is an error naming it, never a silent rank 0.
 */
#include "collectives/coll_impl.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *launcher;
    const char *rank, *size, *local_rank, *local_size; /* NULL: not provided */
    const char *require; /* also needed for the launcher to count as present, or NULL */
} launcher_vars;

static const launcher_vars launchers[] = {
    {"openmpi", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
     "OMPI_COMM_WORLD_LOCAL_SIZE", NULL},
    {"pmi", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS", NULL},
    {"torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", NULL},
    /* Only inside a job step (srun): a batch script also has SLURM_PROCID=0 and the whole
     * allocation's SLURM_NTASKS, but is one process. */
    {"slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", NULL, "SLURM_STEP_ID"},
};

/* Parses variable name as an int in [lo, hi]; absent: *out unchanged, true. */
static bool env_int(const char *name, int lo, int hi, int *out, coll_error *err)
{
    const char *s = name ? getenv(name) : NULL;
    if (!s)
        return true;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi) {
        err->code = COLL_ERR_ARG;
        snprintf(err->message, sizeof err->message,
                 "coll: launcher variable %s='%s' is not an integer in [%d, %d]", name, s, lo, hi);
        return false;
    }
    *out = (int)v;
    return true;
}

bool coll_launch_detect(coll_launch *out, coll_error *err)
{
    *out = (coll_launch){false, "none", 0, 1, 0, 1};
    err->code = COLL_OK;
    err->message[0] = 0;
    for (size_t i = 0; i < sizeof launchers / sizeof launchers[0]; i++) {
        const launcher_vars *l = &launchers[i];
        if (!getenv(l->rank) || !getenv(l->size) || (l->require && !getenv(l->require)))
            continue;
        coll_launch r = {true, l->launcher, 0, 0, 0, -1};
        if (!env_int(l->size, 1, INT_MAX, &r.size, err) ||
            !env_int(l->rank, 0, r.size - 1, &r.rank, err) ||
            !env_int(l->local_rank, 0, r.size - 1, &r.local_rank, err) ||
            !env_int(l->local_size, 1, r.size, &r.local_size, err))
            return false;
        if (r.local_size > 0 && r.local_rank >= r.local_size) {
            err->code = COLL_ERR_ARG;
            snprintf(err->message, sizeof err->message,
                     "coll: launcher %s: local rank %d is not below the local size %d (%s, %s)",
                     l->launcher, r.local_rank, r.local_size, l->local_rank, l->local_size);
            return false;
        }
        *out = r;
        return true;
    }
    return true;
}
