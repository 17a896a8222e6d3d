/* data.h — a training corpus from a file: a LOOMTOK1 token file (text/tokens.h) or, for any
 * other file, its bytes as byte-level tokens (vocab 256). */
#ifndef LOOM_RT_DATA_H
#define LOOM_RT_DATA_H

#include <stdbool.h>

#include "ir/diag.h"
#include "text/tokens.h"

/* Reads path into *t. A file starting with the token-file magic must be a valid token file; an
 * empty file is an error. Reports "PATH: ..." through d and returns false on failure. */
bool rt_data_load(const char *path, rt_tokens *t, ir_diag *d);

#endif
