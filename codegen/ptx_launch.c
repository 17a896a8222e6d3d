/* ptx_launch.c — the launch geometry of a PTX kernel (codegen.h: cg_ptx_launch_dims), the
 * mapping that render_nvptx.c's code assumes. Apart from the renderer because it needs no
 * LLVM: a `loom build --target cuda` executable lowers its graph at start-up and computes each
 * kernel step's geometry here (exe/program_cuda_table.c), with no LLVM linked. */
#include <stdint.h>

#include "codegen/codegen.h"

enum { WARP = 32 };
static const int64_t MAX_GRID = INT32_MAX; /* gridDim.x limit */

static int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

void cg_ptx_launch_dims(const cg_kernel *k, unsigned grid[3], unsigned block[3])
{
    int64_t p = 1, g, b;
    for (int d = 0; d < k->n_dims; d++)
        p *= k->dim[d];
    if (k->n_loops == 0 || k->seq) { /* one thread per grid point */
        b = round_up(p, WARP);
        b = b > CG_PTX_MAX_BLOCK ? CG_PTX_MAX_BLOCK : b;
        g = (p + b - 1) / b;
    } else {
        int64_t ext = 1;
        for (int l = 0; l < k->n_loops; l++)
            ext = k->loop[l] > ext ? k->loop[l] : ext;
        b = round_up(ext, WARP);
        b = b > CG_PTX_MAX_BLOCK ? CG_PTX_MAX_BLOCK : b;
        g = p;
    }
    grid[0] = (unsigned)(g > MAX_GRID ? MAX_GRID : g < 1 ? 1 : g);
    block[0] = (unsigned)b;
    grid[1] = grid[2] = block[1] = block[2] = 1;
}
