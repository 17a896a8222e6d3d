/* help.c — `loom COMMAND --help` and `loom --version`: each command's synopsis, every option
 * with its default, and examples that work pasted from the repository root (after `make`;
 * tests/tools/test_help.py runs every one). Printing only. */
#include "cli/cli.h"

#include <stdio.h>
#include <string.h>

#ifndef LOOM_VERSION
#define LOOM_VERSION "unknown"
#endif

/* a tiny GPT-2 for the examples: fast on two cores */
#define TINY "-D n_layer=2 -D d_model=64 -D n_head=4 -D vocab=256 -D seq=32 -D batch=4"

typedef struct {
    const char *name, *synopsis, *about;
    const char *options; /* one "  --option VALUE   what (default: ...)" a line */
    const char *examples[4];
} command_help;

#define COMMON_MODEL "  -D NAME=VALUE        set a model hparam (repeatable; default: the model's own)\n"
#define HF_FOLDER "  --hf DIR             a Hugging Face save_pretrained folder: the model file, its -D, weights and tokenizer (docs/generation.md)\n"

static const command_help helps[] = {
    {"check", "loom check MODEL [-D name=value]... [--mesh AXES [--train]] [--json]",
     "Parses, verifies and summarizes a model: inputs, outputs, parameters (per block), forward FLOPs, "
     "activation memory; with --mesh the per-rank memory and communication of the mesh.",
     COMMON_MODEL
     HF_FOLDER
     "  --mesh dp=N,tp=N,pp=N  report every rank of this mesh (default: one device)\n"
     "  --train              the mesh report of one training step (default: the forward)\n"
     "  --microbatches N     pipeline micro-batches with --train (default: pp)\n"
     "  --schedule S         gpipe or 1f1b (default: 1f1b)\n"
     "  --virtual-stages V   with pp: V model chunks a stage, interleaved 1F1B (default: 1)\n"
     "  --accum N            gradient accumulation with --train (default: 1)\n"
     "  --optimizer O        adamw or sgd, for the optimizer state (default: adamw)\n"
     "  --momentum M         sgd's momentum (default: 0.9)\n"
     "  --zero Z             with --train: 1 the optimizer state sharded over dp, 2 the gradient sums too\n"
     "  --sequence-parallel  with tp: Megatron's sequence parallelism\n"
     "  --recompute R        with --train: none, selective or full activation recomputation\n"
     "  --json               one JSON object (params, FLOPs, memory, per-rank mesh report) on stdout\n"
     "  --explain            with --mesh: every collective of a rank (one a pipeline stage, or --rank R): its\n"
     "                       layout change, bytes, predicted time and source op with its .loom line\n"
     "  --bandwidth intra=R,inter=R  --explain's links (default: intra=150GB/s,inter=25GB/s)\n"
     "  --latency intra=T,inter=T    --explain's latency per message step (default: intra=5us,inter=10us)\n"
     "  --gpus-per-node G    ranks a node, in rank order, for --explain (default: 8)\n"
     "With --mesh, every rank's collectives are first proven to match (same kind, dtype, count and order\n"
     "in every group; every send received; the job simulated to its end), else an error names both ranks.\n",
     {"build/loom check models/gpt2.loom", "build/loom check models/llama.loom -D n_layer=2 --json",
      "build/loom check models/gpt2.loom " TINY " --mesh tp=2,pp=2 --train",
      "build/loom check models/gpt2.loom " TINY " --mesh tp=2,pp=2 --explain --gpus-per-node 2"}},
    {"dump", "loom dump MODEL [--after=PASS] [--emit=STAGE] [--dot [--dot-depth N]] [--mesh AXES --rank R]",
     "Prints the graph IR (after a pass), a stage of lowering, or the graph as Graphviz.",
     COMMON_MODEL
     "  --after=PASS         print the IR after this pass of the pipeline (default: the model as built)\n"
     "  --passes=a,b,...     the pipeline (default: dce,cse,fuse; with autodiff: the training pipeline)\n"
     "  --emit=STAGE         graph, fused, plan, kir, ll, ptx or cl (default: graph)\n"
     "  --sm 80|90           the PTX target of --emit=ptx (default: 80)\n"
     "  --dot                Graphviz: ops with shape and dtype, fused groups as clusters, pipeline stages\n"
     "                       and shard layouts coloured, collectives marked (render: dot -Tsvg)\n"
     "  --dot-depth N        with --dot: 0 collapses each block instance (gpt2_block(l=3)) to one node\n"
     "                       (default: every op)\n"
     "  --mesh AXES --rank R with --after a mesh pass or --dot: rank R's graph of that mesh\n",
     {"build/loom dump models/gpt2.loom " TINY " --after=fuse", "build/loom dump models/gpt2.loom " TINY
      " --dot --after=fuse > /tmp/gpt2.dot && dot -Tsvg /tmp/gpt2.dot -o /tmp/gpt2.svg",
      "build/loom dump models/gpt2.loom " TINY " --dot --dot-depth 0 --mesh pp=2 --rank 1 --after=shard"}},
    {"opt", "loom opt FILE.lir --passes=a,b,...",
     "Runs passes over textual IR and prints the result (the passes' tests are written this way).",
     "  --passes=a,b,...     the passes, in order (required)\n"
     "  --after=PASS         print after this pass and stop (default: at the end)\n"
     "  --time-passes        each pass's wall time on stderr\n",
     {"build/loom opt tests/lit/ptx/layernorm.lir --passes=dce,cse,fuse",
      "build/loom opt tests/lit/ptx/layernorm.lir --passes=dce,cse --time-passes"}},
    {"init", "loom init MODEL -o W.safetensors [-D name=value]... [--seed S]",
     "Writes the model's parameters, initialized as the model says (normal, zeros, ones ...).",
     COMMON_MODEL
     "  -o FILE              the safetensors file to write (required)\n"
     "  --seed S             the random seed (default: 0)\n",
     {"build/loom init models/gpt2.loom " TINY " --seed 1 -o /tmp/gpt2-tiny.safetensors"}},
    {"run", "loom run MODEL --weights W --inputs I --outputs O [--target T] [--profile F.json]",
     "Runs a model's forward on safetensors inputs and writes its outputs.",
     COMMON_MODEL
     HF_FOLDER
     "  --weights FILE       the parameters (safetensors; required)\n"
     "  --inputs FILE        the inputs by name (safetensors; required when the model has inputs)\n"
     "  --outputs FILE       where to write the outputs (required)\n"
     "  --target T           ref, cpu, cuda or opencl[:P[:D]] (default: cpu)\n"
     "  --precision P        f32, f64 (ref), bf16 or fp16 (default: f32)\n"
     "  --passes=a,b,...     the pipeline before lowering, ending with fuse (default: dce,cse,fuse)\n"
     "  --stats              step counts, memory and timings (LOOM_STATS_RUNS more runs on a device)\n"
     "  --profile FILE.json  a timeline of compile and run (Perfetto, chrome://tracing; docs/profiling.md)\n"
     "  --mesh AXES          run on every rank of a mesh, one process per rank under mpirun\n"
     "  --sequence-parallel  with tp: norms and residuals split along the sequence (Megatron-SP)\n"
     "  --allreduce A        backend, ring or tree (default: backend)\n"
     "  --timeout S          seconds a collective may take (default: 600; 0: none)\n",
     {"build/loom init models/gpt2.loom " TINY " -o /tmp/w.safetensors && python3 -c \"import numpy as np, sys; "
      "sys.path.insert(0, 'tests/models'); from harness import write_safetensors; "
      "write_safetensors('/tmp/i.safetensors', {'tokens': np.zeros((4, 32), np.int32)})\" && build/loom run "
      "models/gpt2.loom " TINY " --weights /tmp/w.safetensors --inputs /tmp/i.safetensors --outputs /tmp/o.safetensors "
      "--profile /tmp/run.json",
      "build/loom run models/gpt2.loom " TINY " --weights /tmp/w.safetensors --inputs /tmp/i.safetensors --outputs "
      "/tmp/o.safetensors --target ref"}},
    {"build", "loom build MODEL -o EXE [--target cpu|opencl|cuda] [--mesh AXES [--train]]",
     "Writes a standalone executable of the model (or, with --mesh, a cluster executable run under mpirun).",
     COMMON_MODEL
     "  -o EXE               the executable (required)\n"
     "  --target T           cpu, opencl or cuda (default: cpu)\n"
     "  --generic-cpu        kernels for any CPU of this architecture (default: this CPU's)\n"
     "  --precision P        f32, bf16 or fp16 (default: f32)\n"
     "  --mesh AXES          a cluster executable of this mesh\n"
     "  --train              with --mesh: a training executable (loom train's options on its command line)\n"
     "  --microbatches, --accum, --optimizer, --zero, --recompute, --sequence-parallel, --virtual-stages ...\n"
     "                       with --train: compiled in, as loom train takes them\n",
     {"build/loom build models/gpt2.loom " TINY " -o /tmp/gpt2-tiny && /tmp/gpt2-tiny --help",
      "build/loom init models/gpt2.loom " TINY " -o /tmp/w.safetensors && python3 -c \"import numpy as np, sys; "
      "sys.path.insert(0, 'tests/models'); from harness import write_safetensors; "
      "write_safetensors('/tmp/i.safetensors', {'tokens': np.zeros((4, 32), np.int32)})\" && /tmp/gpt2-tiny --weights "
      "/tmp/w.safetensors --inputs /tmp/i.safetensors --outputs /tmp/o.safetensors --profile /tmp/exe.json"}},
    {"train", "loom train MODEL --data TEXT|F.tok --steps N [options]",
     "Trains a model (AdamW or SGD, warmup + cosine), on one process or under mpirun with --mesh "
     "(docs/training.md, docs/cluster.md).",
     COMMON_MODEL
     HF_FOLDER
     "  --data FILE          text (bytes) or a token file from loom tokenize (required)\n"
     "  --steps N            optimizer steps (required)\n"
     "  --lr X               peak learning rate (default: 3e-4)\n"
     "  --min-lr X           the cosine's floor (default: lr/10)\n"
     "  --warmup N           linear warmup steps (default: 0)\n"
     "  --optimizer O        adamw or sgd (default: adamw)\n"
     "  --weight-decay X     (default: 0.1)\n"
     "  --beta1 X --beta2 X --eps X   AdamW (default: 0.9, 0.95, 1e-8)\n"
     "  --momentum X         sgd (default: 0.9)\n"
     "  --clip X             max global gradient norm; 0: none (default: 1)\n"
     "  --accum N            batches a step (default: 1)\n"
     "  --precision P        f32, bf16 or fp16 (mixed; default: f32)\n"
     "  --loss-scale X       fp16's initial loss scale (default: 65536)\n"
     "  --on-nan stop|skip   a non-finite loss or gradient (default: stop)\n"
     "  --eval-every N       validation every N steps (default: 0, at the end only)\n"
     "  --eval-batches N     validation batches (default: 10)\n"
     "  --sample N           tokens generated at the end (default: 256)\n"
     "  --prompt TEXT --temperature T --top-k K   the sample (default: newline, 1, 0 = all)\n"
     "  --log FILE           metrics a step: JSON lines, or CSV for FILE.csv (default: none)\n"
     "  --peak-tflops X      one device's peak, for MFU (default: known for the CPU and common GPUs)\n"
     "  --profile FILE.json  a timeline of the run (docs/profiling.md)\n"
     "  --checkpoint DIR --save-every N   checkpoints (default: none; at the end when DIR is given)\n"
     "  --resume DIR         continue from a checkpoint\n"
     "  --weights W          start from these weights (fine-tuning; default: loom init's)\n"
     "  --mask P             keep the zeros of P's GEMM weights (loom prune; docs/compression.md); starts\n"
     "                       from P unless --weights is given\n"
     "  --teacher MODEL      distill: loss A*CE + (1-A)*T^2*KL(teacher || student), the teacher's forward in\n"
     "                       the step (docs/compression.md; default: none)\n"
     "  --teacher-weights W  the teacher's params (required with --teacher)\n"
     "  --teacher-define N=V the teacher's hparams over the student's -D (repeatable; e.g. n_layer=4)\n"
     "  --distill-alpha A    CE's weight (default: 0.5)\n"
     "  --distill-temperature T  the softmax temperature (default: 2)\n"
     "  --trace DIR          every step's gradients as safetensors (tests)\n"
     "  --target T           cpu, cuda or opencl[:P[:D]] (default: cpu)\n"
     "  --seed S             initialization and data order (default: 0)\n"
     "  --stats              step composition and timings\n"
     "  --mesh AXES          dp, tp and pp under mpirun (one process per rank)\n"
     "  --sequence-parallel  with tp: norms and residuals split along the sequence over tp (Megatron-SP:\n"
     "                       reduce-scatter and allgather instead of allreduce)\n"
     "  --microbatches N --schedule gpipe|1f1b   pipeline micro-batches (default: pp, 1f1b)\n"
     "  --virtual-stages V   V model chunks a pipeline stage, run in Megatron's interleaved 1F1B order\n"
     "                       (micro-batches a multiple of pp; a smaller bubble, more sends; default: 1)\n"
     "  --zero 1             the optimizer state sharded over dp (ZeRO stage 1: gradients reduce-scattered,\n"
     "                       each rank updating 1/dp of the params, then allgathered; default: 0)\n"
     "  --zero 2             also the summed gradients: each micro-batch's reduce-scattered into a 1/dp chunk\n"
     "  --recompute R        none, selective (GEMM and attention results kept) or full: the backward\n"
     "                       recomputes block activations from the blocks' inputs (default: none)\n"
     "  --allreduce A --timeout S   collectives (default: backend, 600)\n",
     {"build/loom train models/gpt2.loom " TINY " --data data/tinyshakespeare.txt --steps 20 --sample 0 --log "
      "/tmp/a.jsonl",
      "build/loom train models/gpt2.loom " TINY " --data data/tinyshakespeare.txt --steps 20 --lr 1e-3 --sample 0 "
      "--log /tmp/b.jsonl --profile /tmp/train.json && build/loom plot /tmp/a.jsonl /tmp/b.jsonl -o /tmp/loss.svg",
      "mpirun --allow-run-as-root --oversubscribe -np 2 build/loom train models/gpt2.loom " TINY
      " --data data/tinyshakespeare.txt --steps 3 --sample 0 --mesh pp=2 --profile /tmp/pp.json",
      "build/loom init models/gpt2.loom " TINY " -o /tmp/w.safetensors && build/loom prune /tmp/w.safetensors "
      "--pattern 2:4 -o /tmp/p.safetensors && build/loom train models/gpt2.loom " TINY " --data "
      "data/tinyshakespeare.txt --steps 5 --sample 0 --mask /tmp/p.safetensors && build/loom train models/gpt2.loom "
      TINY " -D n_layer=1 --data data/tinyshakespeare.txt --steps 5 --sample 0 --teacher models/gpt2.loom "
      "--teacher-define n_layer=2 --teacher-weights /tmp/w.safetensors --distill-alpha 0.5 --distill-temperature 2"}},
    {"tokenize", "loom tokenize --vocab DIR|--bytes [FILE] [-o F.tok] [--decode]",
     "Text to token ids (GPT-2 BPE from encoder.json + vocab.bpe, BERT WordPiece from vocab.txt, or bytes), "
     "or back with --decode. Reads FILE or standard input.",
     "  --vocab DIR          the tokenizer's folder (encoder.json + vocab.bpe, or vocab.txt)\n"
     "  --bytes              byte-level tokens (vocab 256) instead of --vocab\n"
     "  -o F.tok             write a token file for loom train (default: ids on stdout)\n"
     "  --decode             ids (or a token file) back to text\n"
     "  --no-special         no special tokens (default: the tokenizer's)\n",
     {"echo 'Hello world' | build/loom tokenize --vocab data/gpt2",
      "build/loom tokenize --bytes data/tinyshakespeare.txt -o /tmp/shakespeare.tok"}},
    {"generate", "loom generate MODEL --weights W --vocab DIR --prompt TEXT [--max-tokens N] [sampling]",
     "Text from a prompt with a KV cache (docs/generation.md).",
     COMMON_MODEL
     HF_FOLDER
     "  --weights FILE       the parameters (required)\n"
     "  --vocab DIR          GPT-2's tokenizer folder (required)\n"
     "  --prompt TEXT        (required)\n"
     "  --max-tokens N       new tokens (default: 32)\n"
     "  --temperature T      0: greedy (default: 1)\n"
     "  --top-k K            0: all (default: 0)\n"
     "  --top-p P            nucleus (default: 1)\n"
     "  --seed S             the sampler's seed (default: 0)\n"
     "  --ignore-eos         do not stop at end-of-text\n"
     "  --target T           cpu, cuda or opencl[:P[:D]] (default: cpu; the KV cache lives on the device)\n"
     "  --recompute          no KV cache (for tests)\n"
     "  --dump-logits FILE   each step's id and logits (tests)\n"
     "  --profile FILE.json  a timeline of prefill and decode (docs/profiling.md)\n"
     "  --stats              decode step composition\n",
     {"build/loom init models/gpt2.loom -D n_layer=2 -D d_model=64 -D n_head=4 -D ctx=64 -D seq=64 -o /tmp/g.safetensors && "
      "build/loom generate models/gpt2.loom -D n_layer=2 -D d_model=64 -D n_head=4 -D ctx=64 -D seq=64 --weights "
      "/tmp/g.safetensors --vocab data/gpt2 --prompt 'Hello' --max-tokens 8 --temperature 0 --profile /tmp/gen.json"}},
    {"devices", "loom devices", "Lists the CPU and the CUDA and OpenCL devices loom can use.", "", {"build/loom devices"}},
    {"embed", "loom embed MODEL --weights W --vocab vocab.txt SENTENCE...",
     "Sentence embeddings of a BERT model (mean-pooled, normalized).",
     COMMON_MODEL
     HF_FOLDER
     "  --weights FILE       the parameters (required)\n"
     "  --vocab FILE|DIR     vocab.txt (required)\n"
     "  --stats              tokenization and forward times\n",
     {"printf '[PAD]\\n[UNK]\\n[CLS]\\n[SEP]\\nhello\\nworld\\n' > /tmp/vocab.txt && build/loom init models/bert.loom "
      "-D vocab=6 -D d_model=32 -D n_layer=1 -D n_head=2 -D d_ff=64 -D seq=8 -o /tmp/bert.safetensors && "
      "build/loom embed models/bert.loom -D vocab=6 -D d_model=32 -D n_layer=1 -D n_head=2 -D d_ff=64 -D seq=8 "
      "--weights /tmp/bert.safetensors --vocab /tmp/vocab.txt 'hello world'"}},
    {"quantize", "loom quantize W.safetensors --format int8|int4 [--group G] [--scales f16|f32] -o Q.safetensors",
     "Weight-only quantization of the GEMM weights (docs/compression.md): symmetric int8 with a scale per output "
     "channel, or int4 (two codes a byte) with a scale per G weights along the reduction; embeddings, norms and "
     "biases stay float. loom run and loom generate take the result as --weights: the model dequantizes it.",
     "  --format int8|int4   the code width (required)\n"
     "  --group G            int4: weights per scale along the reduction axis, e.g. 32, 64, 128 (default: 32)\n"
     "  --scales f16|f32     the scales' dtype (default: f16)\n"
     "  -o FILE              the quantized safetensors file (required)\n",
     {"build/loom init models/gpt2.loom " TINY " -o /tmp/w.safetensors && build/loom quantize /tmp/w.safetensors "
      "--format int4 --group 32 -o /tmp/q4.safetensors && python3 tests/tools/make_bad_checkpoint.py --tokens "
      "/tmp/in.safetensors 'tokens=I32[4,32]' && build/loom run models/gpt2.loom " TINY " --weights "
      "/tmp/q4.safetensors --inputs /tmp/in.safetensors --outputs /tmp/out.safetensors"}},
    {"prune", "loom prune W.safetensors --sparsity S | --pattern N:M -o P.safetensors",
     "Magnitude pruning of the GEMM weights (docs/compression.md): the smallest fraction S of each weight, or the "
     "M-N smallest of every M along the reduction axis (2:4: NVIDIA's sparse tensor cores); loom train --mask P "
     "fine-tunes with the zeros kept.",
     "  --sparsity S         the fraction of each GEMM weight set to zero, 0 <= S < 1\n"
     "  --pattern N:M        keep the N largest of every M consecutive weights along the reduction (e.g. 2:4)\n"
     "  -o FILE              the pruned safetensors file (required)\n",
     {"build/loom init models/gpt2.loom " TINY " -o /tmp/w.safetensors && build/loom prune /tmp/w.safetensors "
      "--pattern 2:4 -o /tmp/p.safetensors"}},
    {"gather", "loom gather CKPT -o W.safetensors",
     "The whole parameters of a checkpoint sharded by loom train --mesh with tp or pp.",
     "  -o FILE              the safetensors file to write (required)\n",
     {"mpirun --allow-run-as-root --oversubscribe -np 2 build/loom train models/gpt2.loom " TINY
      " --data data/tinyshakespeare.txt --steps 2 --sample 0 --mesh pp=2 --checkpoint /tmp/ckpt-pp && build/loom "
      "gather /tmp/ckpt-pp -o /tmp/gathered.safetensors"}},
    {"plot", "loom plot LOG... -o curve.svg [--x step|tokens] [--log-y] [--title TEXT]",
     "Draws the loss (solid) and the validation loss (dashed) of one or several loom train --log files in one "
     "SVG, to compare runs at a glance.",
     "  -o FILE.svg          the picture (required)\n"
     "  --x step|tokens      the horizontal axis (default: step)\n"
     "  --log-y              a logarithmic loss axis (default: linear)\n"
     "  --title TEXT         (default: training loss)\n",
     {"build/loom train models/gpt2.loom " TINY " --data data/tinyshakespeare.txt --steps 20 --eval-every 5 "
      "--sample 0 --log /tmp/run.csv && build/loom plot /tmp/run.csv -o /tmp/run.svg --x tokens --log-y"}},
    {"plan", "loom plan MODEL [-D name=value]... --devices N [--device-memory 80GiB] [--batch B] [--bandwidth "
             "intra=R,inter=R] [--gpus-per-node G] [--peak-tflops T]",
     "Chooses how loom train should split a model over N devices: every mesh dp x tp x pp, micro-batch count "
     "and schedule loom has, pruned by the per-rank memory loom check --train predicts, ranked by a predicted "
     "step time (FLOPs at peak x MFU, ring collectives, the pipeline bubble, the update's memory traffic); prints "
     "the best with the command "
     "to run each (docs/cluster.md).",
     COMMON_MODEL
     "  --devices N          the devices (ranks) to plan for (required)\n"
     "  --device-memory SIZE memory a device, e.g. 80GiB, 40GB (default: 80GiB)\n"
     "  --batch B            the global batch in rows: -D batch=B (default: the model's)\n"
     "  --bandwidth intra=R,inter=R  links inside and between nodes (default: intra=150GB/s,inter=25GB/s)\n"
     "  --latency intra=T,inter=T    per message step (default: intra=5us,inter=10us)\n"
     "  --gpus-per-node G    devices a node, ranks in order (default: 8)\n"
     "  --peak-tflops T      a device's peak (default: 400)\n"
     "  --mfu F              the fraction of peak compute reaches (default: 0.4)\n"
     "  --memory-bandwidth R a device's memory, for the optimizer update (default: 3TB/s)\n"
     "  --optimizer O        adamw or sgd, for the optimizer state (default: adamw)\n"
     "  --recompute R        build every configuration with loom train's --recompute R\n"
     "  --top K              choices printed (default: 5)\n",
     {"build/loom plan models/gpt2.loom " TINY " --devices 4 --device-memory 1GiB",
      "build/loom plan models/gpt2.loom -D vocab=50304 -D seq=1024 --batch 64 --devices 64 --top 3"}},
    {"trace-merge", "loom trace-merge OUT.json RANK.json...",
     "Merges the ranks' --profile files (FILE.rankN.json) into one timeline; rank 0 does it by itself when "
     "the ranks share a disk.",
     "",
     {"mpirun --allow-run-as-root --oversubscribe -np 2 build/loom train models/gpt2.loom " TINY
      " --data data/tinyshakespeare.txt --steps 2 --sample 0 --mesh pp=2 --profile /tmp/m.json && build/loom "
      "trace-merge /tmp/m2.json /tmp/m.json"}},
};

bool cli_help(const char *cmd, FILE *out)
{
    for (size_t i = 0; i < sizeof helps / sizeof *helps; i++) {
        const command_help *h = &helps[i];
        if (strcmp(h->name, cmd) != 0)
            continue;
        fprintf(out, "usage: %s\n\n%s\n", h->synopsis, h->about);
        if (h->options[0])
            fprintf(out, "\noptions:\n%s", h->options);
        fprintf(out, "\nexamples (from the repository root, after make):\n");
        for (int k = 0; k < 4 && h->examples[k]; k++)
            fprintf(out, "  $ %s\n", h->examples[k]);
        return true;
    }
    return false;
}

void cli_version(FILE *out) { fprintf(out, "loom %s\n", LOOM_VERSION); }
