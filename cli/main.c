/* main.c — `loom CMD ...`: picks the subcommand. A command with code of its own lives in
 * cli/cmd_NAME.c; the others are engine jobs (engine/jobs.h), whose errors are printed here. */
#include "cli/cli.h"
#include "engine/hf.h"
#include "engine/jobs.h"

#include <stdio.h>
#include <string.h>

int cli_finish(ir_diag *d)
{
    ir_diag_print(d, stderr);
    int status = ir_diag_ok(d) ? 0 : 1;
    ir_diag_free(d);
    return status;
}

/* An engine job as a command: its errors printed, its exit status. */
#define JOB(name, fn)                                                                                                static int cmd_##name(const eng_opts *o)                                                                         {                                                                                                                    ir_diag d;                                                                                                       ir_diag_init(&d);                                                                                                fn(o, &d);                                                                                                       return cli_finish(&d);                                                                                       }
JOB(generate, eng_generate)

/* loom train: a preempted run (SIGTERM, SIGUSR1) exits with ENG_EXIT_PREEMPTED */
static int cmd_train(const eng_opts *o)
{
    ir_diag d;
    ir_diag_init(&d);
    bool preempted;
    eng_train(o, &d, &preempted);
    int status = cli_finish(&d);
    return status == 0 && preempted ? ENG_EXIT_PREEMPTED : status;
}
JOB(build, eng_build)
JOB(gather, eng_gather)
JOB(plot, eng_plot)
JOB(quantize, eng_quantize)
JOB(prune, eng_prune)
JOB(trace_merge, eng_trace_merge)
JOB(plan, eng_plan)

static const struct {
    const char *name;
    int (*run)(const eng_opts *);
    const char *help;
} commands[] = {
    {"check", cmd_check, "check FILE [-D n=v]...      parse, verify and summarize a model"},
    {"dump", cmd_dump, "dump FILE [--after=PASS] [--emit=graph|fused|plan|kir|ll|ptx|cl]  the graph IR or a stage of lowering"},
    {"opt", cmd_opt, "opt FILE.lir --passes=a,b   run passes over textual IR"},
    {"init", cmd_init, "init FILE -o W.safetensors  write initialized parameters"},
    {"run", cmd_run, "run FILE --weights W --inputs I --outputs O [--target ref|cpu|cuda]"},
    {"build", cmd_build, "build FILE [-D n=v]... [--target cpu|opencl|cuda] [--generic-cpu] -o EXE  a standalone executable"},
    {"train", cmd_train, "train FILE --data TEXT|F.tok --steps N [--lr ...]  train on the CPU (docs/training.md)"},
    {"tokenize", cmd_tokenize, "tokenize --vocab DIR|--bytes [-o F.tok] [--decode]  text <-> token ids"},
    {"generate", cmd_generate, "generate FILE --weights W --vocab DIR --prompt TEXT [--max-tokens N] [--temperature T --top-k K --top-p P --seed S]"},
    {"devices", cmd_devices, "devices                     list the CPU, CUDA and OpenCL devices"},
    {"embed", cmd_embed, "embed FILE --weights W --vocab vocab.txt SENTENCE...  sentence embeddings"},
    {"gather", cmd_gather, "gather CKPT -o W.safetensors  the whole params of a sharded (tp/pp) checkpoint"},
    {"quantize", cmd_quantize, "quantize W.safetensors --format int8|int4 [--group G] -o Q.safetensors  weight-only quantization"},
    {"prune", cmd_prune, "prune W.safetensors --sparsity S | --pattern N:M -o P.safetensors  magnitude pruning of GEMM weights"},
    {"plot", cmd_plot, "plot LOG... -o curve.svg     loss curves of loom train --log files"},
    {"plan", cmd_plan, "plan FILE --devices N [--device-memory 80GiB] [--batch B] ...  choose the mesh for loom train"},
    {"trace-merge", cmd_trace_merge, "trace-merge OUT.json RANK.json...  one timeline of the ranks' --profile files"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: loom COMMAND [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(out, "  loom %s\n", commands[i].help);
    fprintf(out, "\ncommon options: -D name=value, --after=PASS, --passes=a,b, --time-passes\n");
    fprintf(out, "loom COMMAND --help: its options, defaults and examples; loom --version\n");
    fprintf(out, "--hf DIR (run, generate, embed, train, check): a Hugging Face save_pretrained folder\n");
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        cli_version(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (strcmp(argv[1], commands[i].name) == 0) {
            for (int k = 2; k < argc; k++)
                if (strcmp(argv[k], "--help") == 0 || strcmp(argv[k], "-h") == 0)
                    return cli_help(argv[1], stdout) ? 0 : 2;
            static eng_opts o; /* big: not on the stack */
            char why[512];
            if (!eng_opts_parse(argv[1], argc - 2, argv + 2, &o, why, sizeof why)) {
                fprintf(stderr, "%s\n", why);
                return 2;
            }
            if (o.hf) { /* --hf DIR: the model file, -D, weights and tokenizer from the folder */
                ir_diag d;
                ir_diag_init(&d);
                if (!eng_hf_apply(&o, argv[1], &d))
                    return cli_finish(&d);
                ir_diag_free(&d);
            }
            return commands[i].run(&o);
        }
    fprintf(stderr, "loom: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
