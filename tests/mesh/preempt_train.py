"""preempt_train.py — `loom train` told to stop (SIGTERM or SIGUSR1: Slurm's --signal, a
preemption notice) finishes its step, writes a checkpoint on every rank and exits with status 75;
resumed, it is bit-identical to a run never stopped.

usage: preempt_train.py LOOM MPIEXEC MODEL [-D name=value ...]

Three jobs, each run twice — uninterrupted (A), and stopped after its step lines pass 3 then
resumed with --resume (B) — with the same --steps (the learning-rate schedule depends on it):
- one process, SIGTERM to it;
- `mpirun -np 2 ... --mesh dp=2`, SIGUSR1 to every rank, as Slurm's `scancel --signal=USR1` does
  (OpenMPI 4.1's mpirun does not pass SIGUSR1 on, and on SIGTERM it ends the job itself);
- `mpirun -np 4 ... --mesh tp=2,pp=2`, SIGTERM to rank 2 alone (the ranks agree to stop after the
  same step: the others learn it in the step's flag allreduce).
Checks: B exits with 75 and says "preempted after step N"; every step line B prints after the
resume equals A's line for that step (loss, lr, norm, as text); B's final checkpoint files (every
rank's under tp/pp) are byte-identical to A's."""
import filecmp
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kill_train import rank_pids  # noqa: E402

STEPS = 300
START_LIMIT = 120
STEP = re.compile(r"^step (\d+)/\d+ \| loss", re.M)


def fields(line):
    return tuple(p.strip() for p in line.split("|")[:4])


def steps_of(text):
    return {int(STEP.match(l).group(1)): fields(l) for l in text.splitlines() if STEP.match(l)}


def read(path):
    with open(path, errors="replace") as f:
        return f.read()


def state_files(ck):
    out = []
    for root, _, files in os.walk(ck):
        out += [os.path.relpath(os.path.join(root, f), ck) for f in files if f.startswith("state-")]
    return sorted(out)


def run_job(name, cmd, env, stop, tmp, loom):
    """Runs A to the end, B until stopped, then B resumed; returns a list of problems."""
    problems = []
    ck_a, ck_b = os.path.join(tmp, name + ".a"), os.path.join(tmp, name + ".b")
    a = subprocess.run(cmd + ["--checkpoint", ck_a], env=env, capture_output=True, text=True)
    if a.returncode != 0:
        return [f"run A failed ({a.returncode}):\n{a.stdout[-3000:]}{a.stderr[-3000:]}"]
    want = steps_of(a.stdout)
    out_path = os.path.join(tmp, name + ".b.txt")
    with open(out_path, "wb") as out:
        job = subprocess.Popen(cmd + ["--checkpoint", ck_b], env=env, stdout=out, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        t0 = time.time()
        while len(STEP.findall(read(out_path))) < 3:
            if job.poll() is not None or time.time() - t0 > START_LIMIT:
                return [f"run B ended or stalled before 3 step lines:\n{read(out_path)[-3000:]}"]
            time.sleep(0.02)
        stop(job)
        job.wait(timeout=120)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
    text = read(out_path)
    m = re.search(r"^preempted after step (\d+): checkpoint written to (\S+) \(--resume", text, re.M)
    if job.returncode != 75:
        problems.append(f"run B exited with {job.returncode}, not 75")
    if not m:
        return problems + [f"run B did not say it was preempted:\n{text[-3000:]}"]
    n = int(m.group(1))
    if n >= STEPS:
        return problems + [f"run B was stopped only after its last step ({n})"]
    r = subprocess.run(cmd + ["--checkpoint", ck_b, "--resume", ck_b], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        return problems + [f"the resumed run failed ({r.returncode}):\n{r.stdout[-3000:]}{r.stderr[-3000:]}"]
    got = steps_of(r.stdout)
    if sorted(got) != list(range(n + 1, STEPS + 1)):
        problems.append(f"the resumed run printed steps {min(got, default=0)}..{max(got, default=0)}, "
                        f"want {n + 1}..{STEPS}")
    diff = [s for s in got if got[s] != want.get(s)]
    if diff:
        s = diff[0]
        problems.append(f"{len(diff)} step lines differ from the uninterrupted run, first step {s}: {got[s]} vs "
                        f"{want.get(s)}")
    files_a, files_b = state_files(ck_a), state_files(ck_b)
    if files_a != files_b or not files_a:
        problems.append(f"the checkpoints hold other files: {files_a} vs {files_b}")
    else:
        same = [filecmp.cmp(os.path.join(ck_a, f), os.path.join(ck_b, f), shallow=False) for f in files_a]
        if not all(same):
            problems.append(f"state files differ: {[f for f, s in zip(files_a, same) if not s]}")
    print(f"{name}: stopped after step {n} of {STEPS} (exit {job.returncode}); resumed: {len(got)} step lines and "
          f"{len(files_a)} state file(s) equal to the uninterrupted run's" if not problems else f"{name}: FAILED")
    return problems


def main():
    loom, mpiexec, model = sys.argv[1:4]
    defines = sys.argv[4:]
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "text.txt")
        with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "data",
                               "tinyshakespeare.txt"), "rb") as f:
            open(data, "wb").write(f.read(100000))
        train = [loom, "train", model, *defines, "--data", data, "--steps", str(STEPS), "--lr", "3e-3", "--warmup", "2",
                 "--sample", "0", "--eval-every", "0", "--eval-batches", "1", "--seed", "5"]
        mpi = [mpiexec, "--allow-run-as-root", "--oversubscribe", "--bind-to", "none"]
        env = dict(os.environ, LOOM_NUM_THREADS="1", OMPI_MCA_btl="self,vader")

        def term(job):
            os.kill(job.pid, signal.SIGTERM)

        def usr1(job):
            for pid in rank_pids(job.pid, loom).values():
                os.kill(pid, signal.SIGUSR1)

        def term_rank2(job):
            ranks = rank_pids(job.pid, loom)
            os.kill(ranks[2], signal.SIGTERM)

        jobs = [("one process", train, term),
                ("dp=2", mpi + ["-np", "2"] + train + ["--mesh", "dp=2"], usr1),
                ("tp=2,pp=2", mpi + ["-np", "4"] + train + ["--mesh", "tp=2,pp=2", "--microbatches", "2"], term_rank2)]
        for name, cmd, stop in jobs:
            problems = run_job(name.replace(" ", "_").replace("=", "").replace(",", "_"), cmd, env, stop, tmp, loom)
            for p in problems:
                print(f"FAIL {name}: {p}")
            failures += bool(problems)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
