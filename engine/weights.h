/* weights.h — binding a safetensors file's tensors to the params of compiled CPU programs
 * (program.h), converted once to each param's dtype and shared by every program bound
 * (generation binds the same memory to its prefill and decode programs; on a device, the same
 * device buffers). */
#ifndef LOOM_CLI_WEIGHTS_H
#define LOOM_CLI_WEIGHTS_H

#include <stdbool.h>

#include "ir/diag.h"
#include "engine/program.h"

typedef struct eng_weights eng_weights;

/* Opens and validates path (io/safetensors.h). NULL after reporting through d. */
eng_weights *eng_weights_open(const char *path, ir_diag *d);
/* Binds every param of p by name. A missing tensor, a shape that differs from the param's or
 * a dtype that cannot convert is reported ("W: no tensor 'NAME' for param NAME f32[2, 3]") and
 * gives false. Tensors the program has no param for are ignored. */
bool eng_weights_bind(eng_weights *w, program *p, ir_diag *d);
/* eng_weights_bind for programs made on device dev: each tensor goes up once, into a device
 * buffer that every program bound this way shares (generation's prefill and decode hold one
 * copy of the weights between them, not one each). Free w before closing dev. */
bool eng_weights_bind_device(eng_weights *w, program_device *dev, program *p, ir_diag *d);
void eng_weights_free(eng_weights *w);

#endif
