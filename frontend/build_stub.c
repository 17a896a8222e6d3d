/* build_stub.c — placeholder for the builder (being written). */
#include "frontend.h"
ir_graph *fe_build(ir_diag *d, int file, const fe_define *defs, int n_defs)
{
    (void)defs;
    (void)n_defs;
    ir_diag_error(d, file, 0, 0, "frontend not written");
    return NULL;
}
