/* jit.c — running host kernels in-process with LLVM's ORC LLJIT, and writing them to a host
 * object file. Both take kernel IR through cg_llvm_build_host (validate, render, optimize), so
 * the JIT and `loom build` run the same code.
 *
 * The JIT detects the host (triple, CPU, features), resolves undefined symbols (libm's expf,
 * tanhf, erff, ...) from the running process, and compiles a module lazily on first lookup.
 * Every LLVM object made here is disposed here: the JIT owns its modules once added.
 */
#include "codegen/render_llvm.h"

#include <stdlib.h>
#include <string.h>

#include <llvm-c/Error.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>

struct cg_jit {
    LLVMOrcLLJITRef jit;
};

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

bool cg_jit_add(cg_jit *j, cg_kernel *const *ks, int n, const cg_host_options *o, ir_diag *d)
{
    LLVMOrcThreadSafeContextRef tsc = LLVMOrcCreateNewThreadSafeContext();
    LLVMTargetMachineRef tm;
    LLVMModuleRef m = cg_llvm_build_host(LLVMOrcThreadSafeContextGetContext(tsc), ks, n, o, &tm, d);
    if (!m) {
        LLVMOrcDisposeThreadSafeContext(tsc);
        return false;
    }
    LLVMDisposeTargetMachine(tm);
    LLVMOrcThreadSafeModuleRef tsm = LLVMOrcCreateNewThreadSafeModule(m, tsc); /* takes m */
    LLVMOrcDisposeThreadSafeContext(tsc); /* the module keeps the context alive */
    LLVMErrorRef e = LLVMOrcLLJITAddLLVMIRModule(j->jit, LLVMOrcLLJITGetMainJITDylib(j->jit), tsm);
    if (e) {
        LLVMOrcDisposeThreadSafeModule(tsm);
        return llvm_error(d, e, "JIT: adding a module");
    }
    return true;
}

cg_host_fn cg_jit_lookup(cg_jit *j, const char *name, ir_diag *d)
{
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
