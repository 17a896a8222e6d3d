/* jit.c — running host kernels in-process with LLVM's ORC LLJIT, and writing them to a host
 * object file. Both render and optimize kernel IR as cg_llvm_build_host does (validate,
 * render, optimize), so the JIT and `loom build` run the same code.
 *
 * The JIT compiles a kernel list in chunks of a few kernels, each its own module, on as many
 * threads as there are CPUs, and links the objects in; a chunk compiled before (by any process)
 * is read from the object cache instead (objcache.h). Undefined symbols (libm's expf, tanhf,
 * erff, ...) resolve from the running process. Every LLVM object made here is disposed here.
 */
#include "codegen/render_llvm.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codegen/objcache.h"
#include "plan/plan_io.h"

#include <llvm-c/Core.h>
#include <llvm-c/Error.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>

struct cg_jit {
    LLVMOrcLLJITRef jit;
    int n_alias, cap_alias;
    struct jit_alias {
        char *name, *to; /* a kernel compiled as another of the same body (cg_kernel_same_body) */
    } *alias;
};

static char *xstrdup(const char *s)
{
    char *p = strdup(s);
    if (!p)
        ir_unreachable("out of memory");
    return p;
}

/* Reports an LLVM error (consuming it) as "what: message"; returns false. */
static bool llvm_error(ir_diag *d, LLVMErrorRef e, const char *what)
{
    char *msg = LLVMGetErrorMessage(e);
    ir_diag_error(d, -1, 0, 0, "%s: %s", what, msg);
    LLVMDisposeErrorMessage(msg);
    return false;
}

cg_jit *cg_jit_new(ir_diag *d)
{
    if (LLVMInitializeNativeTarget() || LLVMInitializeNativeAsmPrinter()) {
        ir_diag_error(d, -1, 0, 0, "LLVM has no native target for this host");
        return NULL;
    }
    LLVMOrcJITTargetMachineBuilderRef jtmb;
    LLVMErrorRef e = LLVMOrcJITTargetMachineBuilderDetectHost(&jtmb);
    if (e) {
        llvm_error(d, e, "JIT: detecting the host");
        return NULL;
    }
    LLVMOrcLLJITBuilderRef builder = LLVMOrcCreateLLJITBuilder();
    LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(builder, jtmb); /* takes jtmb */
    cg_jit *j = calloc(1, sizeof *j);
    if (!j)
        ir_unreachable("out of memory");
    e = LLVMOrcCreateLLJIT(&j->jit, builder); /* takes builder */
    if (e) {
        free(j);
        llvm_error(d, e, "JIT: creating LLJIT");
        return NULL;
    }
    LLVMOrcDefinitionGeneratorRef gen;
    e = LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(&gen, LLVMOrcLLJITGetGlobalPrefix(j->jit), NULL, NULL);
    if (e) {
        llvm_error(d, e, "JIT: process symbol generator");
        cg_jit_free(j);
        return NULL;
    }
    LLVMOrcJITDylibAddGenerator(LLVMOrcLLJITGetMainJITDylib(j->jit), gen); /* takes gen */
    return j;
}

/* ---- compiling a kernel list: chunks of CHUNK kernels, on worker threads, through the cache --
 * Each chunk is one module rendered in its own LLVM context; its key (objcache.h) is hashed
 * from the module's text before optimization, so a hit skips the optimization and code
 * generation that make up most of a compile. Chunk boundaries depend only on the kernel list,
 * so the same program finds the same entries on any machine. */
enum { CHUNK = 8 };

typedef struct {
    cg_kernel *const *ks;
    int n;
    const cg_host_options *o;
    const char *cache; /* NULL: no cache */
    void *obj;         /* the object file, malloc'd */
    size_t obj_n;
    cg_obj_lookup found;
    bool stored;
    ir_diag d;
} jit_chunk;

typedef struct {
    jit_chunk *chunks;
    int n;
    atomic_int next;
} jit_work;

static uint64_t module_key(LLVMModuleRef m, LLVMTargetMachineRef tm, const cg_host_options *o)
{
    unsigned major = 0, minor = 0, patch = 0;
    LLVMGetVersion(&major, &minor, &patch);
    char *triple = LLVMGetTargetMachineTriple(tm), *cpu = LLVMGetTargetMachineCPU(tm);
    char *features = LLVMGetTargetMachineFeatureString(tm), *text = LLVMPrintModuleToString(m);
    char head[256];
    int hn = snprintf(head, sizeof head, "loom objcache %d llvm %u.%u.%u O%d %s %s\n", CG_OBJCACHE_FORMAT, major,
                      minor, patch, o->opt_level, triple, cpu);
    uint64_t key = rt_fnv1a64(head, (size_t)hn) ^ (rt_fnv1a64(features, strlen(features)) * 31) ^
                   (rt_fnv1a64(text, strlen(text)) * 0x9e3779b97f4a7c15ull);
    LLVMDisposeMessage(triple);
    LLVMDisposeMessage(cpu);
    LLVMDisposeMessage(features);
    LLVMDisposeMessage(text);
    return key;
}

static void compile_chunk(jit_chunk *c)
{
    LLVMContextRef ctx = LLVMContextCreate();
    LLVMTargetMachineRef tm = cg_llvm_host_machine(c->o, &c->d);
    LLVMModuleRef m = tm ? cg_llvm_render_host(ctx, c->ks, c->n, tm, c->o, &c->d) : NULL;
    if (m) {
        uint64_t key = module_key(m, tm, c->o);
        c->found = c->cache ? cg_objcache_load(c->cache, key, &c->obj, &c->obj_n) : CG_OBJ_MISS;
        if (c->found != CG_OBJ_HIT && cg_llvm_optimize(m, tm, c->o->opt_level, &c->d)) {
            char *err = NULL;
            LLVMMemoryBufferRef buf;
            if (LLVMTargetMachineEmitToMemoryBuffer(tm, m, LLVMObjectFile, &err, &buf)) {
                ir_diag_error(&c->d, -1, 0, 0, "internal error: LLVM code generation: %s", err ? err : "");
            } else {
                c->obj_n = LLVMGetBufferSize(buf);
                c->obj = malloc(c->obj_n ? c->obj_n : 1);
                if (!c->obj)
                    ir_unreachable("out of memory");
                memcpy(c->obj, LLVMGetBufferStart(buf), c->obj_n);
                LLVMDisposeMemoryBuffer(buf);
                c->stored = c->cache && cg_objcache_store(c->cache, key, c->obj, c->obj_n);
            }
            LLVMDisposeMessage(err);
        }
        LLVMDisposeModule(m);
    }
    if (tm)
        LLVMDisposeTargetMachine(tm);
    LLVMContextDispose(ctx);
}

static void *compile_worker(void *arg)
{
    jit_work *w = arg;
    for (int i; (i = atomic_fetch_add(&w->next, 1)) < w->n;)
        compile_chunk(&w->chunks[i]);
    return NULL;
}

/* Threads for compiling: LOOM_NUM_THREADS when set (as the thread pool reads it), else the
 * CPUs. */
static int compile_threads(int chunks)
{
    const char *env = getenv("LOOM_NUM_THREADS");
    long t = env && *env ? strtol(env, NULL, 10) : sysconf(_SC_NPROCESSORS_ONLN);
    if (t < 1)
        t = 1;
    return t < chunks ? (int)t : chunks;
}

bool cg_jit_add(cg_jit *j, cg_kernel *const *ks, int n, const cg_host_options *o, ir_diag *d)
{
    if (!o)
        o = &cg_host_defaults;
    bool ok = true;
    for (int i = 0; i < n; i++)
        ok &= cg_kernel_validate(ks[i], d);
    for (int i = 0; i < n && ok; i++)
        for (int k = 0; k < i; k++)
            if (strcmp(ks[i]->name, ks[k]->name) == 0) {
                ir_diag_error(d, -1, 0, 0, "two kernels named %s in one module", ks[i]->name);
                ok = false;
            }
    if (!ok || n == 0)
        return ok;
    /* one compile per body: a kernel whose body an earlier one has becomes an alias of it */
    cg_kernel **uniq = malloc(sizeof *uniq * (size_t)n);
    uint64_t *hash = malloc(sizeof *hash * (size_t)n);
    if (!uniq || !hash)
        ir_unreachable("out of memory");
    int nu = 0;
    for (int i = 0; i < n; i++) {
        uint64_t h = cg_kernel_body_hash(ks[i]);
        int same = -1;
        for (int u = 0; u < nu && same < 0; u++)
            if (hash[u] == h && cg_kernel_same_body(uniq[u], ks[i]))
                same = u;
        if (same < 0) {
            hash[nu] = h;
            uniq[nu++] = ks[i];
            continue;
        }
        ir_grow((void **)&j->alias, &j->cap_alias, j->n_alias + 1, sizeof *j->alias);
        j->alias[j->n_alias++] = (struct jit_alias){xstrdup(ks[i]->name), xstrdup(uniq[same]->name)};
    }
    free(hash);
    ks = uniq;
    n = nu;
    char *cache = cg_objcache_dir();
    jit_work w = {.n = (n + CHUNK - 1) / CHUNK};
    w.chunks = calloc((size_t)w.n, sizeof *w.chunks);
    if (!w.chunks)
        ir_unreachable("out of memory");
    atomic_init(&w.next, 0);
    for (int c = 0; c < w.n; c++) {
        jit_chunk *ch = &w.chunks[c];
        ch->ks = ks + (size_t)c * CHUNK;
        ch->n = n - c * CHUNK < CHUNK ? n - c * CHUNK : CHUNK;
        ch->o = o;
        ch->cache = cache;
        ir_diag_init(&ch->d);
    }
    int nt = compile_threads(w.n);
    pthread_t *th = calloc((size_t)nt, sizeof *th);
    if (!th)
        ir_unreachable("out of memory");
    int started = 0;
    for (int t = 1; t < nt; t++)
        started += pthread_create(&th[started], NULL, compile_worker, &w) == 0;
    compile_worker(&w);
    for (int t = 0; t < started; t++)
        pthread_join(th[t], NULL);
    free(th);

    int hits = 0, corrupt = 0, stored = 0;
    for (int c = 0; c < w.n; c++) {
        jit_chunk *ch = &w.chunks[c];
        for (int m = 0; m < ch->d.n_msg; m++)
            if (ch->d.msg[m].level == DIAG_ERROR)
                ir_diag_error(d, -1, 0, 0, "%s", ch->d.msg[m].msg);
        ok &= ir_diag_ok(&ch->d) && ch->obj;
        hits += ch->found == CG_OBJ_HIT;
        corrupt += ch->found == CG_OBJ_CORRUPT;
        stored += ch->stored;
        if (ok) {
            LLVMMemoryBufferRef buf =
                LLVMCreateMemoryBufferWithMemoryRangeCopy(ch->obj, ch->obj_n, ch->ks[0]->name);
            LLVMErrorRef e = LLVMOrcLLJITAddObjectFile(j->jit, LLVMOrcLLJITGetMainJITDylib(j->jit), buf);
            if (e) /* the JIT took buf either way */
                ok = llvm_error(d, e, "JIT: adding an object");
        }
        free(ch->obj);
        ir_diag_free(&ch->d);
    }
    if (getenv("LOOM_CPU_CACHE_STATS"))
        fprintf(stderr, "loom: cpu object cache %s: %d modules, %d found, %d compiled, %d corrupt, %d written\n",
                cache ? cache : "off", w.n, hits, w.n - hits, corrupt, stored);
    free(w.chunks);
    free(cache);
    free(uniq);
    return ok;
}

cg_host_fn cg_jit_lookup(cg_jit *j, const char *name, ir_diag *d)
{
    for (int i = 0; i < j->n_alias; i++)
        if (strcmp(j->alias[i].name, name) == 0) {
            name = j->alias[i].to;
            break;
        }
    LLVMOrcExecutorAddress addr = 0;
    LLVMErrorRef e = LLVMOrcLLJITLookup(j->jit, &addr, name);
    if (e) {
        llvm_error(d, e, "JIT: looking up a kernel");
        return NULL;
    }
    cg_host_fn fn;
    void *p = (void *)(uintptr_t)addr;
    memcpy(&fn, &p, sizeof fn); /* object pointer → function pointer without a cast warning */
    return fn;
}

void cg_jit_free(cg_jit *j)
{
    if (!j)
        return;
    if (j->jit) {
        LLVMErrorRef e = LLVMOrcDisposeLLJIT(j->jit);
        if (e) {
            char *msg = LLVMGetErrorMessage(e);
            fprintf(stderr, "loom: JIT teardown: %s\n", msg);
            LLVMDisposeErrorMessage(msg);
        }
    }
    for (int i = 0; i < j->n_alias; i++) {
        free(j->alias[i].name);
        free(j->alias[i].to);
    }
    free(j->alias);
    free(j);
}

bool cg_host_emit_object(cg_kernel *const *ks, int n, const cg_host_options *o, const char *path, ir_diag *d)
{
    LLVMContextRef ctx = LLVMContextCreate();
    LLVMTargetMachineRef tm;
    LLVMModuleRef m = cg_llvm_build_host(ctx, ks, n, o, &tm, d);
    bool ok = m != NULL;
    if (m) {
        char *err = NULL;
        if (LLVMTargetMachineEmitToFile(tm, m, path, LLVMObjectFile, &err)) {
            ir_diag_error(d, -1, 0, 0, "cannot write object file %s: %s", path, err ? err : "");
            ok = false;
        }
        LLVMDisposeMessage(err);
        LLVMDisposeModule(m);
        LLVMDisposeTargetMachine(tm);
    }
    LLVMContextDispose(ctx);
    return ok;
}
