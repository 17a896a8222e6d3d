/* safetensors.c — the safetensors reader (validation as the reference implementation does it),
 * the writer (deterministic, atomic) and dtype conversions. See safetensors.h for the rules.
 *
 * Every error names the file first ("w.safetensors: ...") and the tensor where there is one;
 * the reader stops at the first broken rule, since later checks would only repeat it.
 */
#include "io/safetensors.h"

#include "io/checksum.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

/* ---- dtypes ------------------------------------------------------------------------------- */
static const struct {
    const char *name;
    ir_dtype dt;
} st_dtypes[] = {
    {"F64", DT_F64}, {"F32", DT_F32}, {"F16", DT_F16}, {"BF16", DT_BF16},
    {"I64", DT_I64}, {"I32", DT_I32}, {"U8", DT_U8}, {"I8", DT_I8},
};

/* Dtypes the format defines that loom does not compute with. */
static const char *const st_unsupported[] = {
    "BOOL", "I16", "U16", "U32", "U64", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3",
    "F6_E3M2", "F4", "C64",
};

const char *rt_st_dtype_name(ir_dtype dt)
{
    for (size_t i = 0; i < sizeof st_dtypes / sizeof *st_dtypes; i++)
        if (st_dtypes[i].dt == dt)
            return st_dtypes[i].name;
    return NULL;
}

/* ---- helpers ------------------------------------------------------------------------------ */
static char *xstrdup(const char *s)
{
    char *p = strdup(s);
    if (!p)
        ir_unreachable("out of memory");
    return p;
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p)
        ir_unreachable("out of memory");
    return p;
}

/* Length of the valid UTF-8 prefix of s[0..n): n when all of it is valid (RFC 3629: no
 * overlong forms, no surrogates, nothing above U+10FFFF). */
static size_t utf8_valid_prefix(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t len;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            len = 2, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return i;
        }
        if (n - i < len)
            return i;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return i;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return i;
        i += len;
    }
    return n;
}

static uint64_t load_u64le(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* A JSON number that is an integer in [0, 2^53] (beyond that doubles are no longer exact). */
static bool json_uint(const cJSON *item, uint64_t *out)
{
    if (!cJSON_IsNumber(item))
        return false;
    double v = item->valuedouble;
    if (!(v >= 0 && v <= 9007199254740992.0) || v != floor(v))
        return false;
    *out = (uint64_t)v;
    return true;
}

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmp_range(const void *a, const void *b)
{
    const rt_st_tensor *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* ---- reading ------------------------------------------------------------------------------ */
void rt_st_close(rt_st_file *f)
{
    for (int i = 0; i < f->n_tensors; i++)
        free(f->tensors[i].name);
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta[i].key);
        free(f->meta[i].value);
    }
    free(f->tensors);
    free(f->meta);
    free(f->path);
    if (f->map)
        munmap(f->map, f->map_len);
    for (int i = 0; i < f->n_parts; i++)
        rt_st_close(&f->parts[i]);
    free(f->parts);
    memset(f, 0, sizeof *f);
}

static bool parse_metadata(const char *path, const cJSON *m, rt_st_file *f, ir_diag *d)
{
    if (!cJSON_IsObject(m)) {
        ir_diag_error(d, -1, 0, 0, "%s: __metadata__ must be an object mapping strings to strings",
                      path);
        return false;
    }
    int n = cJSON_GetArraySize(m);
    f->meta = xcalloc((size_t)n, sizeof *f->meta);
    for (const cJSON *e = m->child; e; e = e->next) {
        if (!cJSON_IsString(e)) {
            ir_diag_error(d, -1, 0, 0, "%s: __metadata__: the value of '%s' must be a string", path,
                          e->string);
            return false;
        }
        f->meta[f->n_meta].key = xstrdup(e->string);
        f->meta[f->n_meta].value = xstrdup(e->valuestring);
        f->n_meta++;
    }
    return true;
}

/* Validates one header entry into t (name already set). */
static bool parse_entry(const char *path, const cJSON *e, rt_st_tensor *t, ir_diag *d)
{
    const char *name = t->name;
    if (!cJSON_IsObject(e)) {
        ir_diag_error(d, -1, 0, 0,
                      "%s: tensor '%s': expected an object with dtype, shape and data_offsets",
                      path, name);
        return false;
    }
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    const char *missing = !dtype ? "dtype" : !shape ? "shape" : !offs ? "data_offsets" : NULL;
    if (missing) {
        ir_diag_error(d, -1, 0, 0, "%s: tensor '%s': missing \"%s\"", path, name, missing);
        return false;
    }

    /* dtype */
    if (!cJSON_IsString(dtype)) {
        ir_diag_error(d, -1, 0, 0, "%s: tensor '%s': dtype must be a string such as \"F32\"", path,
                      name);
        return false;
    }
    bool found = false;
    for (size_t i = 0; i < sizeof st_dtypes / sizeof *st_dtypes && !found; i++)
        if (strcmp(dtype->valuestring, st_dtypes[i].name) == 0) {
            t->dtype = st_dtypes[i].dt;
            found = true;
        }
    if (!found) {
        for (size_t i = 0; i < sizeof st_unsupported / sizeof *st_unsupported; i++)
            if (strcmp(dtype->valuestring, st_unsupported[i]) == 0) {
                ir_diag_error(d, -1, 0, 0,
                              "%s: tensor '%s': unsupported dtype '%s' (loom reads F64, F32, F16, "
                              "BF16, I64, I32, U8 and I8)",
                              path, name, dtype->valuestring);
                return false;
            }
        ir_diag_error(d, -1, 0, 0, "%s: tensor '%s': unknown dtype '%s'", path, name,
                      dtype->valuestring);
        return false;
    }

    /* shape */
    if (!cJSON_IsArray(shape)) {
        ir_diag_error(d, -1, 0, 0, "%s: tensor '%s': shape must be a list of non-negative integers",
                      path, name);
        return false;
    }
    int rank = cJSON_GetArraySize(shape);
    if (rank > IR_MAX_RANK) {
        ir_diag_error(d, -1, 0, 0, "%s: tensor '%s': shape has rank %d; loom supports at most %d",
                      path, name, rank, IR_MAX_RANK);
        return false;
    }
    t->shape.rank = rank;
    int k = 0;
    for (const cJSON *x = shape->child; x; x = x->next, k++) {
        uint64_t v;
        if (!json_uint(x, &v)) {
            ir_diag_error(d, -1, 0, 0,
                          "%s: tensor '%s': shape entry %d is not a non-negative integer (at most "
                          "2^53)",
                          path, name, k);
            return false;
        }
        t->shape.dim[k] = (int64_t)v;
    }

    /* data_offsets */
    uint64_t b, en;
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 || !json_uint(offs->child, &b) ||
        !json_uint(offs->child->next, &en) || b > en) {
        ir_diag_error(d, -1, 0, 0,
                      "%s: tensor '%s': data_offsets must be [begin, end] with integers 0 <= "
                      "begin <= end",
                      path, name);
        return false;
    }
    t->begin = b;
    t->end = en;

    /* size, with overflow checks */
    uint64_t bytes = (uint64_t)ir_dtype_size(t->dtype);
    bool overflow = false;
    for (int i = 0; i < rank; i++)
        overflow |= __builtin_mul_overflow(bytes, (uint64_t)t->shape.dim[i], &bytes);
    char sh[IR_MAX_RANK * 24 + 4];
    ir_shape_str(&t->shape, sh, sizeof sh);
    if (overflow) {
        ir_diag_error(d, -1, 0, 0,
                      "%s: tensor '%s': shape %s (%s) is too large: its size in bytes overflows "
                      "64 bits",
                      path, name, sh, dtype->valuestring);
        return false;
    }
    if (bytes != en - b) {
        ir_diag_error(d, -1, 0, 0,
                      "%s: tensor '%s': shape %s (%s) needs %" PRIu64
                      " bytes but data_offsets give %" PRIu64,
                      path, name, sh, dtype->valuestring, bytes, en - b);
        return false;
    }
    return true;
}

/* Checks that the sorted ranges tile [0, data_len) exactly. */
static bool check_tiling(const char *path, const rt_st_file *f, uint64_t data_len, ir_diag *d)
{
    uint64_t at = 0;
    for (int i = 0; i < f->n_tensors; i++) {
        const rt_st_tensor *t = &f->tensors[i], *prev = i ? &f->tensors[i - 1] : NULL;
        if (t->begin < at) {
            ir_diag_error(d, -1, 0, 0,
                          "%s: tensors '%s' [%" PRIu64 ", %" PRIu64 ") and '%s' [%" PRIu64
                          ", %" PRIu64 ") overlap",
                          path, prev->name, prev->begin, prev->end, t->name, t->begin, t->end);
            return false;
        }
        if (t->begin > at) {
            if (prev)
                ir_diag_error(d, -1, 0, 0,
                              "%s: hole in the data: bytes [%" PRIu64 ", %" PRIu64
                              ") between tensors '%s' and '%s' belong to no tensor",
                              path, at, t->begin, prev->name, t->name);
            else
                ir_diag_error(d, -1, 0, 0,
                              "%s: hole in the data: bytes [0, %" PRIu64
                              ") before tensor '%s' belong to no tensor",
                              path, t->begin, t->name);
            return false;
        }
        at = t->end;
    }
    if (at > data_len) {
        const rt_st_tensor *last = &f->tensors[f->n_tensors - 1];
        ir_diag_error(d, -1, 0, 0,
                      "%s: truncated: tensor '%s' ends at data byte %" PRIu64
                      " but the file has only %" PRIu64 " bytes of data",
                      path, last->name, at, data_len);
        return false;
    }
    if (at < data_len) {
        ir_diag_error(d, -1, 0, 0,
                      "%s: the tensors end at data byte %" PRIu64 " but the file has %" PRIu64
                      " bytes of data: %" PRIu64 " trailing bytes belong to no tensor",
                      path, at, data_len, data_len - at);
        return false;
    }
    return true;
}

bool rt_st_parse(const char *path, const void *buf, size_t len, rt_st_file *f, ir_diag *d)
{
    memset(f, 0, sizeof *f);
    const uint8_t *p = buf;
    if (len < 8) {
        ir_diag_error(d, -1, 0, 0,
                      "%s: not a safetensors file: %zu bytes, too short for the 8-byte header "
                      "length",
                      path, len);
        return false;
    }
    uint64_t n = load_u64le(p);
    if (n > RT_ST_MAX_HEADER) {
        ir_diag_error(d, -1, 0, 0,
                      "%s: header length %" PRIu64 " exceeds the limit of %llu bytes (not a "
                      "safetensors file?)",
                      path, n, RT_ST_MAX_HEADER);
        return false;
    }
    if (n > len - 8) {
        ir_diag_error(d, -1, 0, 0,
                      "%s: truncated: header says %" PRIu64
                      " bytes of JSON but the file has %zu bytes after the 8-byte length",
                      path, n, len - 8);
        return false;
    }
    const uint8_t *hdr = p + 8;
    size_t valid = utf8_valid_prefix(hdr, (size_t)n);
    if (valid != n) {
        ir_diag_error(d, -1, 0, 0, "%s: header is not valid UTF-8 (at header byte %zu)", path, valid);
        return false;
    }
    const void *nul = memchr(hdr, 0, (size_t)n);
    if (nul) {
        ir_diag_error(d, -1, 0, 0, "%s: header is not valid JSON: NUL byte at header byte %zu",
                      path, (size_t)((const uint8_t *)nul - hdr));
        return false;
    }
    char *text = xcalloc((size_t)n + 1, 1);
    memcpy(text, hdr, (size_t)n);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(text, &end, 1);
    bool ok = false;
    const char **names = NULL;
    if (!root) {
        size_t at = end && end >= text ? (size_t)(end - text) : 0;
        ir_diag_error(d, -1, 0, 0, "%s: header is not valid JSON (near header byte %zu)", path, at);
        goto done;
    }
    if (!cJSON_IsObject(root)) {
        ir_diag_error(d, -1, 0, 0, "%s: header must be a JSON object", path);
        goto done;
    }

    /* names: unique */
    int count = cJSON_GetArraySize(root);
    names = xcalloc((size_t)count, sizeof *names);
    int k = 0;
    for (const cJSON *e = root->child; e; e = e->next)
        names[k++] = e->string;
    qsort(names, (size_t)count, sizeof *names, cmp_str_ptr);
    for (int i = 1; i < count; i++)
        if (strcmp(names[i - 1], names[i]) == 0) {
            ir_diag_error(d, -1, 0, 0, "%s: duplicate tensor name '%s' in the header", path,
                          names[i]);
            goto done;
        }

    /* entries */
    f->tensors = xcalloc((size_t)count, sizeof *f->tensors);
    for (const cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (!parse_metadata(path, e, f, d))
                goto done;
            continue;
        }
        rt_st_tensor *t = &f->tensors[f->n_tensors++];
        t->name = xstrdup(e->string);
        if (!parse_entry(path, e, t, d))
            goto done;
    }
    qsort(f->tensors, (size_t)f->n_tensors, sizeof *f->tensors, cmp_range);
    uint64_t data_len = (uint64_t)len - 8 - n;
    if (!check_tiling(path, f, data_len, d))
        goto done;
    for (int i = 0; i < f->n_tensors; i++)
        f->tensors[i].data = hdr + n + f->tensors[i].begin;
    f->path = xstrdup(path);
    ok = true;
done:
    free(names);
    cJSON_Delete(root);
    free(text);
    if (!ok)
        rt_st_close(f);
    return ok;
}

bool rt_st_open(const char *path, rt_st_file *f, ir_diag *d)
{
    memset(f, 0, sizeof *f);
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        ir_diag_error(d, -1, 0, 0, "cannot read %s: %s", path, strerror(errno));
        return false;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        ir_diag_error(d, -1, 0, 0, "cannot read %s: %s", path, strerror(errno));
        close(fd);
        return false;
    }
    if (!S_ISREG(st.st_mode)) {
        ir_diag_error(d, -1, 0, 0, "cannot read %s: %s", path,
                      S_ISDIR(st.st_mode) ? "it is a directory" : "not a regular file");
        close(fd);
        return false;
    }
    size_t len = (size_t)st.st_size;
    void *map = NULL;
    if (len > 0) {
        map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            ir_diag_error(d, -1, 0, 0, "cannot map %s: %s", path, strerror(errno));
            close(fd);
            return false;
        }
    }
    close(fd);
    if (!rt_st_parse(path, map ? map : "", len, f, d)) {
        if (map)
            munmap(map, len);
        return false;
    }
    f->map = map;
    f->map_len = len;
    return true;
}

const rt_st_tensor *rt_st_find(const rt_st_file *f, const char *name)
{
    for (int i = 0; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0)
            return &f->tensors[i];
    return NULL;
}

const char *rt_st_meta_get(const rt_st_file *f, const char *key)
{
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta[i].key, key) == 0)
            return f->meta[i].value;
    return NULL;
}

/* ---- conversions -------------------------------------------------------------------------- */
double rt_f16_to_f64(uint16_t h)
{
    int sign = h >> 15, exp = (h >> 10) & 0x1F, mant = h & 0x3FF;
    double v;
    if (exp == 0)
        v = ldexp(mant, -24);
    else if (exp == 31)
        v = mant ? NAN : INFINITY;
    else
        v = ldexp(1024 + mant, exp - 25);
    return sign ? -v : v;
}

double rt_bf16_to_f64(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float x;
    memcpy(&x, &bits, sizeof x);
    return x;
}

/* Rounds |v| (finite, > 0) to a binary format with `mbits` stored mantissa bits and minimum
 * normal exponent emin; returns the biased-exponent/mantissa bits, or UINT32_MAX on overflow
 * past emax. Rounding is to nearest, ties to even (nearbyint in the default mode). */
static uint32_t round_bits(double a, int mbits, int emin, int emax)
{
    int e;
    frexp(a, &e);
    int E = e - 1; /* a = 1.x · 2^E */
    if (E < emin) { /* subnormal: quantum 2^(emin - mbits); 2^mbits rounds up to the first normal */
        double q = nearbyint(ldexp(a, mbits - emin));
        return (uint32_t)q;
    }
    double q = nearbyint(ldexp(a, mbits - E)); /* in [2^mbits, 2^(mbits+1)] */
    if (q == ldexp(1, mbits + 1)) {
        q = ldexp(1, mbits);
        E++;
    }
    if (E > emax)
        return UINT32_MAX;
    return ((uint32_t)(E - emin + 1) << mbits) | ((uint32_t)q - (1u << mbits));
}

uint16_t rt_f64_to_f16(double v)
{
    uint16_t sign = signbit(v) ? 0x8000 : 0;
    if (isnan(v))
        return 0x7E00 | sign;
    double a = fabs(v);
    if (a == 0)
        return sign;
    if (isinf(a))
        return 0x7C00 | sign;
    uint32_t b = round_bits(a, 10, -14, 15);
    return b == UINT32_MAX ? (uint16_t)(0x7C00 | sign) : (uint16_t)(b | sign);
}

uint16_t rt_f64_to_bf16(double v)
{
    uint16_t sign = signbit(v) ? 0x8000 : 0;
    if (isnan(v))
        return 0x7FC0 | sign;
    double a = fabs(v);
    if (a == 0)
        return sign;
    if (isinf(a))
        return 0x7F80 | sign;
    uint32_t b = round_bits(a, 7, -126, 127);
    return b == UINT32_MAX ? (uint16_t)(0x7F80 | sign) : (uint16_t)(b | sign);
}

static float f64_to_f32(double v)
{
    /* beyond the midpoint between FLT_MAX and 2^128 IEEE rounding gives inf; C leaves the
     * out-of-range conversion undefined, so say it */
    if (v >= 0x1.ffffffp127)
        return INFINITY;
    if (v <= -0x1.ffffffp127)
        return -INFINITY;
    return (float)v;
}

static int64_t f64_to_int(double v, double lo, double hi_excl, int64_t min, int64_t max)
{
    if (isnan(v))
        return 0;
    if (v < lo)
        return min;
    if (v >= hi_excl)
        return max;
    return (int64_t)v;
}

void rt_convert_to_f64(ir_dtype dt, const void *src, double *dst, size_t n)
{
    const uint8_t *p = src;
    switch (dt) {
    case DT_F64:
        for (size_t i = 0; i < n; i++) {
            uint64_t b = load_u64le(p + 8 * i);
            memcpy(&dst[i], &b, 8);
        }
        break;
    case DT_F32:
        for (size_t i = 0; i < n; i++) {
            const uint8_t *q = p + 4 * i;
            uint32_t b = (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 |
                         (uint32_t)q[3] << 24;
            float x;
            memcpy(&x, &b, 4);
            dst[i] = x;
        }
        break;
    case DT_F16:
        for (size_t i = 0; i < n; i++)
            dst[i] = rt_f16_to_f64((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
        break;
    case DT_BF16:
        for (size_t i = 0; i < n; i++)
            dst[i] = rt_bf16_to_f64((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
        break;
    case DT_I64:
        for (size_t i = 0; i < n; i++)
            dst[i] = (double)(int64_t)load_u64le(p + 8 * i);
        break;
    case DT_I32:
        for (size_t i = 0; i < n; i++) {
            const uint8_t *q = p + 4 * i;
            uint32_t b = (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 |
                         (uint32_t)q[3] << 24;
            dst[i] = (double)(int32_t)b;
        }
        break;
    case DT_U8:
        for (size_t i = 0; i < n; i++)
            dst[i] = p[i];
        break;
    case DT_I8:
        for (size_t i = 0; i < n; i++)
            dst[i] = (int8_t)p[i];
        break;
    default:
        ir_unreachable("rt_convert_to_f64: dtype without a storage format");
    }
}

void rt_convert_to_f32(ir_dtype dt, const void *src, float *dst, size_t n)
{
    const uint8_t *p = src;
    double buf[256];
    if (!ir_dtype_is_float(dt))
        ir_unreachable("rt_convert_to_f32: not a float dtype");
    if (dt == DT_F32) { /* bit for bit: a signaling NaN stays one (a double would quiet it) */
        for (size_t i = 0; i < n; i++) {
            uint32_t b = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 | (uint32_t)p[4 * i + 2] << 16 |
                         (uint32_t)p[4 * i + 3] << 24;
            memcpy(&dst[i], &b, 4);
        }
        return;
    }
    for (size_t at = 0; at < n; at += 256) { /* through doubles, which hold every value exactly */
        size_t k = n - at < 256 ? n - at : 256;
        rt_convert_to_f64(dt, p + at * (size_t)ir_dtype_size(dt), buf, k);
        for (size_t i = 0; i < k; i++)
            dst[at + i] = f64_to_f32(buf[i]);
    }
}

static void store_le(uint8_t *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

void rt_convert_from_f64(ir_dtype dt, const double *src, void *dst, size_t n)
{
    uint8_t *p = dst;
    for (size_t i = 0; i < n; i++) {
        double v = src[i];
        switch (dt) {
        case DT_F64: {
            uint64_t b;
            memcpy(&b, &v, 8);
            store_le(p + 8 * i, b, 8);
            break;
        }
        case DT_F32: {
            float x = f64_to_f32(v);
            uint32_t b;
            memcpy(&b, &x, 4);
            store_le(p + 4 * i, b, 4);
            break;
        }
        case DT_F16:
            store_le(p + 2 * i, rt_f64_to_f16(v), 2);
            break;
        case DT_BF16:
            store_le(p + 2 * i, rt_f64_to_bf16(v), 2);
            break;
        case DT_I64:
            store_le(p + 8 * i,
                     (uint64_t)f64_to_int(v, -0x1p63, 0x1p63, INT64_MIN, INT64_MAX), 8);
            break;
        case DT_I32:
            store_le(p + 4 * i, (uint64_t)f64_to_int(v, -0x1p31, 0x1p31, INT32_MIN, INT32_MAX), 4);
            break;
        case DT_U8:
            p[i] = (uint8_t)f64_to_int(v, 0, 256, 0, 255);
            break;
        case DT_I8:
            p[i] = (uint8_t)(int8_t)f64_to_int(v, -128, 128, -128, 127);
            break;
        default:
            ir_unreachable("rt_convert_from_f64: dtype without a storage format");
        }
    }
}

/* ---- writing ------------------------------------------------------------------------------ */
typedef struct {
    char *s;
    size_t len, cap;
} strbuf;

static void sb_put(strbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->s = realloc(b->s, b->cap);
        if (!b->s)
            ir_unreachable("out of memory");
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}

static void sb_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(strbuf *b, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    sb_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* A JSON string literal (the text is UTF-8, checked by the caller). */
static void sb_json_str(strbuf *b, const char *s)
{
    sb_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            sb_put(b, esc, 2);
        } else if (c < 0x20) {
            sb_printf(b, "\\u%04x", c);
        } else {
            sb_put(b, (const char *)&c, 1);
        }
    }
    sb_put(b, "\"", 1);
}

static int cmp_entry_name(const void *a, const void *b)
{
    return strcmp((*(const rt_st_entry *const *)a)->name, (*(const rt_st_entry *const *)b)->name);
}

/* n bytes to out, added to the checksum. */
static bool write_all(FILE *out, rt_sum *sum, const void *p, size_t n)
{
    rt_sum_add(sum, p, n);
    return n == 0 || fwrite(p, 1, n, out) == n;
}

/* Whether the filesystem that path's directory is on has bytes free (false, reported, if not;
 * true when it cannot be told). */
static bool disk_has_room(const char *path, uint64_t bytes, ir_diag *d)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else
        snprintf(dir, sizeof dir, "%.*s", slash == path ? 1 : (int)(slash - path), path);
    struct statvfs fs;
    if (statvfs(dir, &fs) != 0)
        return true;
    uint64_t avail = (uint64_t)fs.f_bavail * (uint64_t)fs.f_frsize;
    if (bytes <= avail)
        return true;
    ir_diag_error(d, -1, 0, 0, "%s: the file needs %.1f GiB, more than the %.1f GiB free on its disk", path,
                  (double)bytes / (1u << 30), (double)avail / (1u << 30));
    return false;
}

bool rt_st_write(const char *path, const rt_st_entry *entries, int n, const rt_st_meta *meta,
                 int n_meta, rt_st_fill_fn fill, void *ctx, ir_diag *d)
{
    return rt_st_write_sum(path, entries, n, meta, n_meta, fill, ctx, NULL, d);
}

bool rt_st_write_sum(const char *path, const rt_st_entry *entries, int n, const rt_st_meta *meta, int n_meta,
                     rt_st_fill_fn fill, void *ctx, uint64_t *sum_out, ir_diag *d)
{
    rt_sum sum;
    rt_sum_init(&sum);
    const rt_st_entry **order = xcalloc((size_t)n, sizeof *order); /* by name */
    uint64_t *size = xcalloc((size_t)n, sizeof *size);
    strbuf h = {0};
    char *tmp = NULL;
    FILE *out = NULL;
    bool ok = false;

    for (int i = 0; i < n; i++)
        order[i] = &entries[i];
    qsort(order, (size_t)n, sizeof *order, cmp_entry_name);
    for (int i = 0; i < n; i++) {
        const rt_st_entry *e = order[i];
        if (i && strcmp(order[i - 1]->name, e->name) == 0) {
            ir_diag_error(d, -1, 0, 0, "%s: two tensors are named '%s'", path, e->name);
            goto done;
        }
        if (strcmp(e->name, "__metadata__") == 0 ||
            utf8_valid_prefix((const uint8_t *)e->name, strlen(e->name)) != strlen(e->name)) {
            ir_diag_error(d, -1, 0, 0, "%s: '%s' cannot be a tensor name", path, e->name);
            goto done;
        }
        if (!rt_st_dtype_name(e->dtype)) {
            ir_diag_error(d, -1, 0, 0, "%s: tensor '%s': safetensors has no dtype for %s", path,
                          e->name, ir_dtype_name(e->dtype));
            goto done;
        }
        uint64_t bytes = (uint64_t)ir_dtype_size(e->dtype);
        for (int k = 0; k < e->shape.rank; k++)
            if (e->shape.dim[k] < 0 ||
                __builtin_mul_overflow(bytes, (uint64_t)e->shape.dim[k], &bytes)) {
                ir_diag_error(d, -1, 0, 0, "%s: tensor '%s': bad shape", path, e->name);
                goto done;
            }
        size[i] = bytes;
    }

    /* header */
    sb_put(&h, "{", 1);
    if (n_meta > 0) {
        sb_put(&h, "\"__metadata__\":{", 16);
        for (int i = 0; i < n_meta; i++) {
            if (i)
                sb_put(&h, ",", 1);
            sb_json_str(&h, meta[i].key);
            sb_put(&h, ":", 1);
            sb_json_str(&h, meta[i].value);
        }
        sb_put(&h, "}", 1);
    }
    uint64_t at = 0;
    for (int i = 0; i < n; i++) {
        const rt_st_entry *e = order[i];
        if (i || n_meta > 0)
            sb_put(&h, ",", 1);
        sb_json_str(&h, e->name);
        sb_printf(&h, ":{\"dtype\":\"%s\",\"shape\":[", rt_st_dtype_name(e->dtype));
        for (int k = 0; k < e->shape.rank; k++)
            sb_printf(&h, "%s%" PRId64, k ? "," : "", e->shape.dim[k]);
        sb_printf(&h, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", at, at + size[i]);
        at += size[i];
    }
    sb_put(&h, "}", 1);
    while (h.len % 8)
        sb_put(&h, " ", 1);

    /* room for it on the disk (a tensor the size of a model that does not fit would fill the
     * disk for minutes before failing) */
    uint64_t file_bytes = 8 + h.len + at;
    if (!disk_has_room(path, file_bytes, d))
        goto done;
    /* data, to PATH.tmp, then rename */
    size_t plen = strlen(path);
    tmp = xcalloc(plen + 5, 1);
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 4);
    out = fopen(tmp, "wb");
    if (!out) {
        ir_diag_error(d, -1, 0, 0, "cannot write %s: %s", tmp, strerror(errno));
        goto done;
    }
    uint8_t len8[8];
    store_le(len8, h.len, 8);
    bool io = write_all(out, &sum, len8, 8) && write_all(out, &sum, h.s, h.len);
    for (int i = 0; i < n && io; i++) {
        const rt_st_entry *e = order[i];
        uint64_t bytes = size[i];
        if (e->data) {
            io = write_all(out, &sum, e->data, bytes);
            continue;
        }
        if (!fill)
            ir_unreachable("rt_st_write: entry without data and no fill callback");
        int64_t esize = ir_dtype_size(e->dtype), count = (int64_t)(bytes / (uint64_t)esize);
        int64_t chunk = ((int64_t)1 << 24) / esize; /* 16 MiB at a time */
        void *buf = xcalloc((size_t)(count < chunk ? count : chunk), (size_t)esize);
        bool filled = true;
        for (int64_t at = 0; at < count && io && filled; at += chunk) {
            int64_t k = count - at < chunk ? count - at : chunk;
            filled = fill(ctx, e, at, k, buf, d);
            io = filled && write_all(out, &sum, buf, (size_t)(k * esize));
        }
        free(buf);
        if (!filled)
            goto done;
    }
    if (!io || fflush(out) != 0 || fsync(fileno(out)) != 0) {
        ir_diag_error(d, -1, 0, 0, "cannot write %s: %s", tmp, strerror(errno));
        goto done;
    }
    int rc = fclose(out);
    out = NULL;
    if (rc != 0) {
        ir_diag_error(d, -1, 0, 0, "cannot write %s: %s", tmp, strerror(errno));
        goto done;
    }
    if (rename(tmp, path) != 0) {
        ir_diag_error(d, -1, 0, 0, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        goto done;
    }
    ok = true;
    if (sum_out)
        *sum_out = rt_sum_final(&sum);
done:
    if (out)
        fclose(out);
    if (!ok && tmp)
        unlink(tmp);
    free(tmp);
    free(h.s);
    free(size);
    free(order);
    return ok;
}
