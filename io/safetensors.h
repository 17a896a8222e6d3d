/* safetensors.h — reading and writing safetensors files (weights, inputs, outputs, checkpoints).
 *
 * Format: an 8-byte little-endian header length N, N bytes of UTF-8 JSON (maybe padded with
 * spaces), then the data section. The JSON maps each tensor name to
 *     {"dtype": "F32", "shape": [768, 2304], "data_offsets": [begin, end]}
 * (offsets relative to the data section) plus an optional "__metadata__" string→string map.
 *
 * The reader enforces the reference implementation's rules, and reports the first broken one
 * through the ir_diag, as "PATH: message" naming the tensor where there is one:
 *  - N ≤ 100,000,000 and the file holds at least 8 + N bytes;
 *  - the header is valid UTF-8 and one JSON object (nothing but spaces after it);
 *  - each entry has a known dtype, a shape of non-negative integers (rank ≤ IR_MAX_RANK) and
 *    data_offsets [begin, end] with begin ≤ end;
 *  - shape × dtype size, computed with overflow checks, equals end − begin;
 *  - names are unique; the byte ranges neither overlap nor leave holes and tile the data
 *    section exactly to the end of the file;
 *  - __metadata__, when present, maps strings to strings.
 * Dtypes F64 F32 F16 BF16 I64 I32 U8 map to loom's; BOOL, I8, I16, U16, U32, U64 and the F8
 * formats are known to the format but rejected as unsupported.
 *
 * The file is mapped read-only (mmap), so tensor data is read in place: loading converts each
 * tensor once, from the mapping into its destination. Byte order is little-endian on disk; the
 * conversions assemble values byte by byte, so they do not depend on the host's order.
 */
#ifndef LOOM_RT_SAFETENSORS_H
#define LOOM_RT_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ir/diag.h"
#include "ir/ir.h"

#define RT_ST_MAX_HEADER 100000000ull

/* One tensor of an open file. */
typedef struct {
    char *name;
    ir_dtype dtype;
    ir_shape shape;
    uint64_t begin, end;     /* byte range in the data section */
    const uint8_t *data;     /* points into the mapping: end - begin bytes */
    bool alias;              /* a second name for another tensor's data (io/hf.h: a tied LM
                                head): never reported as unexpected */
} rt_st_tensor;

typedef struct {
    char *key, *value;
} rt_st_meta;

/* An open, validated file. Tensors are in data order (ascending offsets). */
typedef struct rt_st_file {
    char *path;
    int n_tensors;
    rt_st_tensor *tensors;
    int n_meta;
    rt_st_meta *meta;
    void *map;               /* the whole file (NULL if empty mapping) */
    size_t map_len;
    struct rt_st_file *parts; /* the shards whose data tensors point into (io/hf.h), closed with it */
    int n_parts;
} rt_st_file;

/* Opens and validates path. On success fills *f (release with rt_st_close) and returns true;
 * on failure reports one error "PATH: ..." through d, leaves *f empty and returns false. */
bool rt_st_open(const char *path, rt_st_file *f, ir_diag *d);

/* The same checks over a file already in memory (buf, len: the whole file); `path` only names
 * it in messages. Tensor data then points into buf, which must outlive *f. */
bool rt_st_parse(const char *path, const void *buf, size_t len, rt_st_file *f, ir_diag *d);

void rt_st_close(rt_st_file *f);

/* The tensor called name, or NULL. */
const rt_st_tensor *rt_st_find(const rt_st_file *f, const char *name);
/* The metadata value for key, or NULL. */
const char *rt_st_meta_get(const rt_st_file *f, const char *key);

/* "F32" for DT_F32 ...; NULL for a dtype safetensors cannot name. */
const char *rt_st_dtype_name(ir_dtype dt);

/* ---- conversions ------------------------------------------------------------------------ */
/* Converts n little-endian elements of dtype dt at src to doubles (exactly: every f32, f16,
 * bf16 and i32 value is a double; i64 beyond 2^53 rounds). */
void rt_convert_to_f64(ir_dtype dt, const void *src, double *dst, size_t n);
/* Converts n float elements (F64, F32, F16, BF16) at src to floats, for runtimes that compute
 * in f32: F64 rounds to nearest even (overflow gives ±inf); the others are exact, and F32 is
 * copied bit for bit (NaN payloads too: a checkpoint loaded and saved again is the same file). */
void rt_convert_to_f32(ir_dtype dt, const void *src, float *dst, size_t n);
/* Converts n doubles to little-endian elements of dtype dt, rounding to nearest even for
 * floats (overflow gives ±inf, NaN stays NaN) and truncating toward zero for integers
 * (saturating at the type's range; NaN gives 0). */
void rt_convert_from_f64(ir_dtype dt, const double *src, void *dst, size_t n);
/* Half and bfloat16 bit patterns, for tests and tools. */
double rt_f16_to_f64(uint16_t h);
uint16_t rt_f64_to_f16(double v);
double rt_bf16_to_f64(uint16_t h);
uint16_t rt_f64_to_bf16(double v);

/* ---- writing ---------------------------------------------------------------------------- */
/* One tensor to write. Either data (shape × dtype bytes, little-endian) or, when data is NULL,
 * the writer's fill callback produces the bytes. */
typedef struct {
    const char *name;
    ir_dtype dtype;
    ir_shape shape;
    const void *data;
} rt_st_entry;

/* Produces elements [first, first + count) of entry e into dst (count elements of e's dtype);
 * reports through d and returns false on error. The writer asks for a tensor in chunks, so a
 * tensor larger than memory streams to disk. */
typedef bool (*rt_st_fill_fn)(void *ctx, const rt_st_entry *e, int64_t first, int64_t count, void *dst, ir_diag *d);

/* Writes a safetensors file: tensors in byte order of their names (so the same set of tensors
 * always gives the same file), __metadata__ (if n_meta > 0) first in the header, the header
 * padded with spaces to a multiple of 8 bytes. Atomic: writes PATH.tmp, fsyncs it and renames
 * it over path; on error removes PATH.tmp and leaves path as it was. Names must be unique
 * (reported as an error otherwise). fill may be NULL when every entry has data. A file larger
 * than the free space of its filesystem is refused before anything is written. */
bool rt_st_write(const char *path, const rt_st_entry *entries, int n, const rt_st_meta *meta,
                 int n_meta, rt_st_fill_fn fill, void *ctx, ir_diag *d);
/* The same, and *sum (when not NULL) gets the file's checksum (io/checksum.h). */
bool rt_st_write_sum(const char *path, const rt_st_entry *entries, int n, const rt_st_meta *meta, int n_meta,
                     rt_st_fill_fn fill, void *ctx, uint64_t *sum, ir_diag *d);

#endif
