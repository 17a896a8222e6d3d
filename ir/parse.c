/* parse.c — textual IR parser (STUB). */
#include "ir.h"
ir_graph *ir_parse(ir_diag *d, int file) { ir_diag_error(d, file, 0, 0, "IR parser not written"); return NULL; }
