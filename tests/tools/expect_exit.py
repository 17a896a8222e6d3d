#!/usr/bin/env python3
"""expect_exit.py STATUS CMD... — runs CMD, copies its stdout/stderr, and succeeds only if CMD
exited with exactly STATUS (a crash, a signal or another status fails the test)."""
import subprocess
import sys

want = int(sys.argv[1])
proc = subprocess.run(sys.argv[2:])
if proc.returncode != want:
    sys.stderr.write(f"expect_exit: {sys.argv[2]} exited with {proc.returncode}, expected {want}\n")
    sys.exit(1)
