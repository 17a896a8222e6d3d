"""kill_train.py — a rank of `mpirun -np 2 loom train --mesh dp=2` dies mid-training: the job must end.

usage: kill_train.py LOOM MPIEXEC MODEL [-D name=value ...]

Starts a long data-parallel training run (one process per rank, one thread each, shared-memory
transport, collective timeout --timeout 5 s), waits until rank 0 has printed a few step
lines, then SIGKILLs the process of rank 1 (found among mpirun's descendants by
OMPI_COMM_WORLD_RANK=1 in /proc/PID/environ). Two runs:
- launcher: mpirun as it comes. The job must exit nonzero within the timeout + 30 s and its
  output name rank 1 as the one that died (mpirun's "process rank 1 ... signal 9"); loom's own
  coll message, if one came first, must name the operation.
- timeout: mpirun told not to end the job when a rank dies (orte_abort_on_non_zero_status=0, as
  srun without --kill-on-bad-exit): rank 0's collective timeout must end it, no sooner than the
  timeout and within the timeout + 30 s, with loom's message naming rank 0/2, the operation and
  the timeout. (It cannot name the dead rank: an MPI allreduce does not say whose part is missing.)
In both, no rank may be left running. Prints what it saw and the seconds the job took to end; a
job still running at the limit is killed (its whole process group) and the test fails: a hang is
the bug this test guards against."""
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

COLL_TIMEOUT = 5  # seconds, loom train --timeout
MARGIN = 30  # seconds the job may take to end after the kill, beyond the collective timeout
START_LIMIT = 90  # seconds to compile and reach the first step lines (ASan builds are slow)
STEP_LINES_BEFORE_KILL = 3
STEP = re.compile(r"^step (\d+)/\d+ \| loss", re.M)
DEAD_RANK_NAMED = re.compile(r"rank 1 with PID \d+ .*(signal 9|Killed)|rank 1/2 ")
LOOM_COLL = re.compile(r"^loom: coll: .*$", re.M)
OPERATION = re.compile(r"(allreduce|allgather|reduce_scatter|broadcast|barrier|send|recv|sendrecv|split) #\d+")


def children(pid):
    """The pids of pid's direct children (from /proc/*/stat: field 4 is the parent)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue  # exited meanwhile
        if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
            out.append(int(entry))
    return out


def descendants(pid):
    todo, seen = [pid], []
    while todo:
        for c in children(todo.pop()):
            seen.append(c)
            todo.append(c)
    return seen


def world_rank(pid):
    """OMPI_COMM_WORLD_RANK from the process's environment, or None."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = f.read().split(b"\0")
    except OSError:
        return None
    for var in env:
        if var.startswith(b"OMPI_COMM_WORLD_RANK="):
            return int(var.split(b"=", 1)[1])
    return None


def rank_pids(launcher_pid, loom):
    """{rank: pid} of the loom processes below the launcher."""
    ranks = {}
    for pid in descendants(launcher_pid):
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            continue
        r = world_rank(pid)
        if r is not None and os.path.basename(exe) == os.path.basename(loom):
            ranks[r] = pid
    return ranks


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def read(path):
    with open(path, errors="replace") as f:
        return f.read()


def main():
    loom, mpiexec, model = sys.argv[1:4]
    defines = sys.argv[4:]
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "text.txt")
        rng = np.random.default_rng(7)
        with open(data, "wb") as f:
            f.write(rng.choice(np.frombuffer(b"abcdefgh ij\n", np.uint8), 40000).tobytes())
        cmd = [mpiexec, "--allow-run-as-root", "--oversubscribe", "--bind-to", "none", "-np", "2", loom, "train",
               model, *defines, "--data", data, "--steps", "1000000", "--lr", "3e-3", "--warmup", "2", "--sample", "0",
               "--eval-every", "1000000", "--eval-batches", "1", "--mesh", "dp=2", "--timeout", str(COLL_TIMEOUT)]
        # --timeout wins over the environment's (much longer) default
        env = dict(os.environ, LOOM_NUM_THREADS="1", OMPI_MCA_btl="self,vader", LOOM_COLL_TIMEOUT="600")
        for scenario, extra_env in (("launcher", {}), ("timeout", {"OMPI_MCA_orte_abort_on_non_zero_status": "0"})):
            print(f"---- {scenario}: $ " + " ".join(f"{k}={v}" for k, v in extra_env.items()) +
                  " LOOM_COLL_TIMEOUT=600 " + " ".join(cmd))
            out_path = os.path.join(tmp, f"{scenario}.txt")
            with open(out_path, "wb") as out:
                # a session of its own: a hung job is ended as a whole (mpirun and both ranks)
                job = subprocess.Popen(cmd, env=dict(env, **extra_env), stdout=out, stderr=subprocess.STDOUT,
                                       start_new_session=True)
            try:
                failures += check(scenario, job, loom, out_path)
            finally:
                if job.poll() is None:
                    os.killpg(job.pid, signal.SIGKILL)
                    job.wait()
    return 1 if failures else 0


def check(scenario, job, loom, out_path):
    """Kills rank 1 once rank 0 is training, then checks how the job ended; 0 when it ended well."""
    t0 = time.time()
    while len(STEP.findall(read(out_path))) < STEP_LINES_BEFORE_KILL:
        if job.poll() is not None:
            print(f"FAIL {scenario}: the job ended (exit status {job.returncode}) before "
                  f"{STEP_LINES_BEFORE_KILL} step lines\n{read(out_path)}")
            return 1
        if time.time() - t0 > START_LIMIT:
            print(f"FAIL {scenario}: fewer than {STEP_LINES_BEFORE_KILL} step lines after {START_LIMIT} s\n"
                  f"{read(out_path)}")
            return 1
        time.sleep(0.05)
    ranks = rank_pids(job.pid, loom)
    if sorted(ranks) != [0, 1]:
        print(f"FAIL {scenario}: found the ranks {sorted(ranks)} below mpirun (pid {job.pid}), want [0, 1]")
        return 1
    steps_before = len(STEP.findall(read(out_path)))
    os.kill(ranks[1], signal.SIGKILL)
    t_kill = time.time()
    limit = COLL_TIMEOUT + MARGIN
    try:
        job.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait()
        print(f"FAIL {scenario}: the job hung: still running {limit} s after rank 1 (pid {ranks[1]}) was killed\n"
              f"{tail(read(out_path))}")
        return 1
    secs = time.time() - t_kill
    text = read(out_path)
    print(tail(text))
    print(f"{scenario}: killed rank 1 (pid {ranks[1]}) after {steps_before} step lines of rank 0 (pid {ranks[0]}); "
          f"the job ended {secs:.1f} s later with exit status {job.returncode} (limit {limit} s)")
    problems = []
    if job.returncode == 0:
        problems.append("the job exited 0")
    coll_lines = LOOM_COLL.findall(text)
    for line in coll_lines:
        if not OPERATION.search(line):
            problems.append(f"loom's coll message names no operation: {line}")
    if scenario == "launcher" and not DEAD_RANK_NAMED.search(text):
        problems.append(f"no line names rank 1 as the dead one (/{DEAD_RANK_NAMED.pattern}/)")
    if scenario == "timeout":
        want = re.compile(r"rank 0/2 .*" + OPERATION.pattern + rf" .*did not complete within {COLL_TIMEOUT}\.0 s")
        if not any(want.search(line) for line in coll_lines):
            problems.append(f"no loom coll message matches /{want.pattern}/")
        if secs < COLL_TIMEOUT - 0.5:
            problems.append(f"ended {secs:.1f} s after the kill, before the {COLL_TIMEOUT} s timeout: not by it")
    time.sleep(0.5)  # allow for a slow /proc after the launcher reaped its children
    if alive(ranks[0]):
        problems.append(f"rank 0 (pid {ranks[0]}) is still running after the job ended")
    for p in problems:
        print(f"FAIL {scenario}: {p}")
    if not problems:
        print(f"ok   {scenario}: the job ended " +
              ("with rank 1 named" if scenario == "launcher" else "by rank 0's timeout, the operation named"))
    return 1 if problems else 0


def tail(text):
    """The output without rank 0's step lines but the last two: what a user would look at."""
    lines = text.splitlines()
    step_idx = [i for i, line in enumerate(lines) if STEP.match(line)]
    drop = set(step_idx[:-2])
    return "\n".join(line for i, line in enumerate(lines) if i not in drop)


if __name__ == "__main__":
    sys.exit(main())
