/* plan_io.h — the plan file: an execution plan (plan.h) and named blobs as bytes, for artifacts
 * that run without the compiler (`loom build` executables; later PTX or OpenCL C text as blobs).
 *
 * Layout (all integers little-endian):
 *     "LOOMPLAN"  u32 version  u32 0  u64 body size  u64 FNV-1a 64 of the body  body
 * body: i64 arena_bytes; u32 buffer count, buffers (name, dtype, kind, numel, offset); u32 step
 * count, steps (u32 kind, then that kind's fields); u32 blob count, blobs (name, u64 size, bytes).
 * Strings are u32 length + bytes (no NUL inside). A new step kind must be added to the writer
 * and the reader (switches without default: the build fails until it is).
 *
 * Reading validates everything before anything runs: magic, version, size, checksum, then the
 * plan itself (rt_plan_validate): known dtypes and kinds, buffer references in range, every
 * element a GEMM, attention, copy or id check can touch inside its buffers, activations inside
 * the arena. Errors name the file (`what`) and the buffer or step.
 */
#ifndef LOOM_RT_PLAN_IO_H
#define LOOM_RT_PLAN_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ir/diag.h"
#include "plan/plan.h"

#define RT_PLAN_FILE_VERSION 4 /* 2: GEMM steps carry an epilogue kernel; 3: library steps their kernels, attention an lse;
                                  4: GEMM steps a quantized B */
#define RT_PLAN_FILE_MAGIC "LOOMPLAN"
#define RT_PLAN_HEADER_BYTES 32

/* A named byte string carried with a plan (kernel sources, the run signature, ...). */
typedef struct {
    char *name;
    uint8_t *data;
    size_t size;
} rt_plan_blob;

/* Serializes p and blobs; returns malloc'd bytes (*size of them). */
uint8_t *rt_plan_serialize(const rt_plan *p, const rt_plan_blob *blobs, int n_blobs, size_t *size);

/* Parses and validates data[0..size) into *p (free with rt_plan_clear) and *blobs (free with
 * rt_plan_blobs_free). False with the reason in d ("WHAT: ..."), leaving nothing allocated. */
bool rt_plan_deserialize(const void *data, size_t size, const char *what, rt_plan *p, rt_plan_blob **blobs,
                         int *n_blobs, ir_diag *d);

/* The checks of rt_plan_deserialize on a plan in memory. */
bool rt_plan_validate(const rt_plan *p, const char *what, ir_diag *d);

void rt_plan_blobs_free(rt_plan_blob *blobs, int n);
const rt_plan_blob *rt_plan_blob_find(const rt_plan_blob *blobs, int n, const char *name);
/* Blob b's bytes as a NUL-terminated string (malloc'd; the caller frees it), or NULL for a NULL b. */
char *rt_plan_blob_text(const rt_plan_blob *b);

/* FNV-1a, 64 bits. */
uint64_t rt_fnv1a64(const void *data, size_t n);

/* ---- little-endian byte writer and reader (also for blob encoders) ----------------------- */
typedef struct {
    uint8_t *data;
    size_t n, cap;
} rt_wbuf;

void rt_wbuf_bytes(rt_wbuf *w, const void *p, size_t n);
void rt_wbuf_u32(rt_wbuf *w, uint32_t v);
void rt_wbuf_u64(rt_wbuf *w, uint64_t v);
void rt_wbuf_i64(rt_wbuf *w, int64_t v);
void rt_wbuf_f64(rt_wbuf *w, double v);
void rt_wbuf_str(rt_wbuf *w, const char *s);

/* Reads past the end set `bad` and return zeros; check it once at the end. */
typedef struct {
    const uint8_t *p;
    size_t n, pos;
    bool bad;
} rt_rbuf;

uint32_t rt_rbuf_u32(rt_rbuf *r);
uint64_t rt_rbuf_u64(rt_rbuf *r);
int64_t rt_rbuf_i64(rt_rbuf *r);
double rt_rbuf_f64(rt_rbuf *r);
/* A malloc'd string (NULL and `bad` set on a short read, an embedded NUL or over 1 MiB). */
char *rt_rbuf_str(rt_rbuf *r);
/* Points at the next n bytes (NULL and `bad` set when fewer remain). */
const uint8_t *rt_rbuf_bytes(rt_rbuf *r, size_t n);

#endif
