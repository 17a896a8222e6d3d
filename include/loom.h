/* loom.h — the public C API of libloom: compile a model written in the .loom language, bind its
 * weights, run it on the CPU or a device, and train it. This header is the whole public surface;
 * `loom` (the command) and the executables of `loom build` are programs over the same engine.
 *
 *     pkg-config --cflags --libs loom         (libloom.so; add --static for libloom.a)
 *
 * Conventions (IREE's):
 *  - Every call that can fail returns a loom_status: NULL on success, else an error that the
 *    caller owns and frees with loom_status_free. Its message is what the `loom` command would
 *    print: "file:line:col: error: ..." with the source line and a caret for a model's errors,
 *    "W.safetensors: ..." for a file's.
 *  - Results come back through out-parameters (`loom_model **out`), set only on success.
 *  - Objects are freed by their loom_*_free (NULL is fine). A program or trainer keeps what it
 *    needs of the model: the model may be freed once they are made.
 *  - Tensors are host memory, row-major, in the dtype the model declares for them.
 * Nothing here is thread-safe on one object; distinct objects may be used from distinct threads.
 * Examples: examples/run_model.c (compile, bind, run, read) and examples/train_steps.c.
 */
#ifndef LOOM_H
#define LOOM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LOOM_VERSION_MAJOR 0
#define LOOM_VERSION_MINOR 5
/* The version of the library linked, "MAJOR.MINOR.PATCH". */
const char *loom_version(void);

/* ---- errors ----------------------------------------------------------------------------- */
typedef struct loom_status_s *loom_status; /* NULL: success */
/* The whole message (one or more lines). Valid until loom_status_free. */
const char *loom_status_message(loom_status s);
void loom_status_free(loom_status s);

/* ---- tensors ---------------------------------------------------------------------------- */
typedef enum {
    LOOM_F32 = 1,
    LOOM_F64 = 2,
    LOOM_F16 = 3,
    LOOM_BF16 = 4,
    LOOM_I32 = 5,
    LOOM_I64 = 6,
    LOOM_U8 = 7,
    LOOM_I8 = 8,        /* quantized weights (docs/compression.md) */
} loom_dtype;

#define LOOM_MAX_RANK 8
typedef struct {
    const char *name;   /* external name: a Hugging Face name for params, "tokens", "logits" */
    loom_dtype dtype;
    int rank;
    int64_t dims[LOOM_MAX_RANK];
} loom_tensor_info;

/* Bytes per element of dtype (2 for LOOM_BF16, ...). */
size_t loom_dtype_size(loom_dtype dtype);
/* Elements of a tensor: the product of its dims (1 for a scalar). */
int64_t loom_tensor_numel(const loom_tensor_info *t);

/* ---- models ----------------------------------------------------------------------------- */
typedef struct loom_model loom_model;
/* A hyperparameter given a value, as `-D name=value` does: {"n_layer", "2"}. */
typedef struct {
    const char *name, *value;
} loom_define;

/* Builds the model in path: a .loom model (docs/language.md) with its hyperparameters bound
 * by defines (n_defines of them; others keep their defaults), or textual graph IR (.lir). */
loom_status loom_model_load(const char *path, const loom_define *defines, int n_defines, loom_model **out);
/* The same from source text held in memory; name is what messages call it. */
loom_status loom_model_parse(const char *name, const char *source, const loom_define *defines, int n_defines,
                             loom_model **out);
void loom_model_free(loom_model *m);

/* Keeps only the outputs names[0..n) and what computes them: "logits" of a model that also
 * has a "loss", whose optional input "targets" is then not needed. An unknown name is an error. */
loom_status loom_model_keep_outputs(loom_model *m, const char *const *names, int n);

typedef enum { LOOM_PARAM, LOOM_INPUT, LOOM_OUTPUT } loom_kind;
/* The model's params, inputs or outputs in declaration order: how many, and the i-th. */
int loom_model_count(const loom_model *m, loom_kind kind);
loom_tensor_info loom_model_tensor(const loom_model *m, loom_kind kind, int i);

/* ---- programs: a model compiled once for a target, run many times ----------------------- */
typedef struct loom_program loom_program;

/* Compiles m for target: "cpu" (kernels compiled for this machine, OpenBLAS, a thread pool of
 * LOOM_NUM_THREADS threads, default all cores), "cuda", or "opencl[:PLATFORM[:DEVICE]]". */
loom_status loom_program_new(const loom_model *m, const char *target, loom_program **out);
/* Binds every param from a safetensors file by name (converting float dtypes; the file's
 * other tensors are ignored). The program keeps the converted tensors. */
loom_status loom_program_load_weights(loom_program *p, const char *safetensors_path);
/* Binds the param or input called name to data (its declared dtype and shape). On the CPU the
 * program reads data in place: it must stay alive and unchanged while the program runs; a
 * device copies it. To change a value between runs, bind it again. */
loom_status loom_program_bind(loom_program *p, const char *name, const void *data);
loom_status loom_program_run(loom_program *p);
/* The output called name after the last run (its dtype and shape as loom_model_tensor says),
 * owned by the program and overwritten by the next run; NULL if there is no such output. */
const void *loom_program_output(loom_program *p, const char *name);
void loom_program_free(loom_program *p);

/* ---- training --------------------------------------------------------------------------- */
typedef struct loom_trainer loom_trainer;
/* An option of `loom train` without its dashes: {"data", "shakespeare.txt"}, {"lr", "1e-3"},
 * {"accum", "2"}, {"optimizer", "sgd"}, {"resume", "ck"}, {"seed", "7"}, {"precision",
 * "bf16"}, {"target", "opencl"} (docs/training.md lists them all). "data" is required. */
typedef struct {
    const char *name, *value;
} loom_option;

/* Sets up training of m (which needs i32 inputs "tokens" and "targets" [batch, seq] and an
 * output "loss"): programs compiled, data loaded and split (the last 10% for validation),
 * params initialized as the model declares (or resumed). Prints nothing. */
loom_status loom_trainer_new(const loom_model *m, const loom_option *options, int n_options, loom_trainer **out);

typedef struct {
    int64_t step;       /* steps done, this one included */
    double loss;        /* mean training loss of the step */
    double grad_norm;   /* before clipping */
    double lr;          /* the learning rate it used (warmup, then cosine decay) */
    double ms;          /* wall time of the step */
} loom_step;

/* One optimizer step on the next batch(es) of the training split. */
loom_status loom_trainer_step(loom_trainer *t, loom_step *out);
/* Mean loss over the first batches of the validation split ("eval-batches", default 10). */
loom_status loom_trainer_evaluate(loom_trainer *t, double *val_loss);
/* A checkpoint of the whole training state in dir: {"resume", dir} continues it bit for bit. */
loom_status loom_trainer_save(loom_trainer *t, const char *dir);
void loom_trainer_free(loom_trainer *t);

#ifdef __cplusplus
}
#endif

#endif
