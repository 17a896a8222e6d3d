/* safetensors.c — fuzzes the safetensors reader and writer (io/safetensors.c), the format of
 * every weights, inputs, outputs and checkpoint file.
 *
 * Feeds: the input as a whole file, "fuzz.safetensors": parsed in memory (rt_st_parse) and, from
 * the scratch directory, mapped (rt_st_open).
 * Asserts, beyond no crash, hang, leak or sanitizer report:
 *  - both readers agree (same verdict; on success the same tensors and metadata);
 *  - a refused file got one error naming the file; an accepted one none;
 *  - an accepted file keeps the format's rules: each tensor's bytes are shape × dtype size, lie
 *    inside the file and tile the data section in order; every name is found by rt_st_find;
 *    every element converts (rt_convert_to_f64, and rt_convert_to_f32 for float dtypes);
 *  - written back (rt_st_write, with its metadata), the file reads again with the same tensors
 *    (names, dtypes, shapes, bytes) and metadata: the writer never writes a wrong file;
 *  - bound as the weights of a model (rt_io_load, as `loom run --weights` binds them) whose
 *    params are the file's tensors with, from a hash of the input, another dtype or shape here
 *    and there and one more param: it binds, or it is refused with errors naming the file.
 */
#include "fuzz/fuzz.h"

#include "io/run_io.h"
#include "io/safetensors.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fz_limit_memory();
    return 0;
}

/* a and b hold the same tensors (and metadata, when meta). */
static void same_files(const rt_st_file *a, const rt_st_file *b, bool meta, const char *what)
{
    if (a->n_tensors != b->n_tensors)
        fz_fail("%s: %d tensors against %d", what, a->n_tensors, b->n_tensors);
    for (int i = 0; i < a->n_tensors; i++) {
        const rt_st_tensor *x = &a->tensors[i], *y = rt_st_find(b, x->name);
        if (!y)
            fz_fail("%s: tensor '%s' missing", what, x->name);
        if (x->dtype != y->dtype || !ir_shape_eq(&x->shape, &y->shape) || x->end - x->begin != y->end - y->begin ||
            memcmp(x->data, y->data, (size_t)(x->end - x->begin)) != 0)
            fz_fail("%s: tensor '%s' differs", what, x->name);
    }
    if (!meta)
        return;
    if (a->n_meta != b->n_meta)
        fz_fail("%s: %d metadata entries against %d", what, a->n_meta, b->n_meta);
    for (int i = 0; i < a->n_meta; i++)
        if (strcmp(a->meta[i].key, b->meta[i].key) != 0 || strcmp(a->meta[i].value, b->meta[i].value) != 0)
            fz_fail("%s: metadata entry %d ('%s') differs", what, i, a->meta[i].key);
}

/* The file bound as weights (see the file comment). */
static void bind_as_weights(const rt_st_file *f, const char *path, uint64_t h)
{
    static const ir_dtype types[] = {DT_F32, DT_F64, DT_F16, DT_BF16, DT_I32, DT_I64, DT_U8};
    rt_io_sig sig = {0, calloc((size_t)f->n_tensors + 2, sizeof(rt_io_slot))};
    if (!sig.slots)
        abort();
    for (int i = 0; i <= f->n_tensors; i++) {
        rt_io_slot *s = &sig.slots[sig.n++];
        const rt_st_tensor *t = i < f->n_tensors ? &f->tensors[i] : NULL;
        s->name = strdup(t ? t->name : "fuzz.extra");
        s->kind = RT_IO_PARAM;
        s->dtype = t ? t->dtype : DT_F32;
        s->shape = t ? t->shape : (ir_shape){0};
        uint64_t r = (h >> (i % 48)) & 15;
        if (r == 1)
            s->dtype = types[(h >> 8) % 7];
        if (r == 2 && s->shape.rank)
            s->shape.dim[0]++;
        if (!s->name)
            abort();
    }
    if (!(h & 1)) /* without the extra param */
        free(sig.slots[--sig.n].name);
    ir_diag d;
    ir_diag_init(&d);
    ir_named_tensor *vals = NULL;
    int n_vals = 0;
    bool ok = rt_io_load(&sig, path, NULL, (h >> 1) & 1 ? IR_PREC_F64 : IR_PREC_F32, &vals, &n_vals, &d);
    fz_check_outcome(ok, &d, path, "rt_io_load");
    for (int i = 0; i < n_vals; i++)
        ir_tensor_free(vals[i].t);
    free(vals);
    ir_diag_free(&d);
    rt_io_sig_free(&sig);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1 << 20))
        return -1;
    ir_diag d;
    ir_diag_init(&d);
    rt_st_file f;
    bool ok = rt_st_parse("fuzz.safetensors", data, size, &f, &d);
    fz_check_outcome(ok, &d, "fuzz.safetensors", "rt_st_parse");

    char path[600];
    snprintf(path, sizeof path, "%s/fuzz.safetensors", fz_dir());
    fz_write(path, data, size);
    ir_diag d2;
    ir_diag_init(&d2);
    rt_st_file g;
    bool ok2 = rt_st_open(path, &g, &d2);
    fz_check_outcome(ok2, &d2, path, "rt_st_open");
    if (ok != ok2) {
        fz_print_diag(&d);
        fz_print_diag(&d2);
        fz_fail("rt_st_parse and rt_st_open disagree (%d, %d)", ok, ok2);
    }
    if (ok) {
        same_files(&f, &g, true, "rt_st_open against rt_st_parse");
        uint64_t n_hdr = 0;
        for (int i = 7; i >= 0; i--)
            n_hdr = n_hdr << 8 | data[i];
        const uint8_t *section = data + 8 + n_hdr;
        uint64_t at = 0;
        for (int i = 0; i < f.n_tensors; i++) {
            const rt_st_tensor *t = &f.tensors[i];
            if (t->begin != at || t->end < t->begin || t->data != section + t->begin)
                fz_fail("tensor '%s' [%llu, %llu) does not follow the one before (at %llu)", t->name,
                        (unsigned long long)t->begin, (unsigned long long)t->end, (unsigned long long)at);
            at = t->end;
            if (rt_st_find(&f, t->name) != t)
                fz_fail("rt_st_find does not find tensor '%s'", t->name);
            int64_t numel = ir_shape_numel(&t->shape);
            if (numel < 0 || (uint64_t)numel * (uint64_t)ir_dtype_size(t->dtype) != t->end - t->begin)
                fz_fail("tensor '%s': %lld elements of %d bytes in %llu bytes", t->name, (long long)numel,
                        ir_dtype_size(t->dtype), (unsigned long long)(t->end - t->begin));
            double *x = malloc(((size_t)numel + 1) * sizeof *x);
            float *y = malloc(((size_t)numel + 1) * sizeof *y);
            if (!x || !y)
                abort();
            rt_convert_to_f64(t->dtype, t->data, x, (size_t)numel);
            if (ir_dtype_is_float(t->dtype))
                rt_convert_to_f32(t->dtype, t->data, y, (size_t)numel);
            free(x);
            free(y);
        }
        if (8 + n_hdr + at != size)
            fz_fail("the tensors end at %llu, the file at %zu", (unsigned long long)(8 + n_hdr + at), size);
        for (int i = 0; i < f.n_meta; i++)
            if (!rt_st_meta_get(&f, f.meta[i].key))
                fz_fail("rt_st_meta_get does not find '%s'", f.meta[i].key);

        /* written back, read again */
        rt_st_entry *e = calloc((size_t)f.n_tensors + 1, sizeof *e);
        if (!e)
            abort();
        for (int i = 0; i < f.n_tensors; i++)
            e[i] = (rt_st_entry){f.tensors[i].name, f.tensors[i].dtype, f.tensors[i].shape, f.tensors[i].data};
        char out[600];
        snprintf(out, sizeof out, "%s/written.safetensors", fz_dir());
        ir_diag dw;
        ir_diag_init(&dw);
        bool wrote = rt_st_write(out, e, f.n_tensors, f.meta, f.n_meta, NULL, NULL, &dw);
        fz_check_outcome(wrote, &dw, out, "rt_st_write");
        if (wrote) {
            rt_st_file h;
            if (!rt_st_open(out, &h, &dw)) {
                fz_print_diag(&dw);
                fz_fail("rt_st_write wrote a file rt_st_open refuses");
            }
            same_files(&f, &h, true, "the file written back");
            same_files(&h, &f, true, "the file written back");
            rt_st_close(&h);
        }
        ir_diag_free(&dw);
        free(e);
    }
    if (ok) {
        uint64_t h = 0xcbf29ce484222325ull;
        for (size_t i = 0; i < size; i++)
            h = (h ^ data[i]) * 0x100000001b3ull;
        bind_as_weights(&f, path, h);
    }
    rt_st_close(&f);
    rt_st_close(&g);
    ir_diag_free(&d);
    ir_diag_free(&d2);
    fz_dir_clear();
    return 0;
}
