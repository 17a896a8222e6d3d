#!/usr/bin/env bash
# run_fail.sh LIMIT_S REGEX... -- CMD... — a job that must fail, and fail well: runs CMD (an
# mpiexec line) and passes only if it exits nonzero within LIMIT_S seconds and its combined
# output matches every extended REGEX (grep -E). Prints the seconds it took and the output, so
# the log shows the message a user would see. A job still running at LIMIT_S + 10 s is killed
# (TERM, then KILL 5 s later; the test fails): a hang is the bug these tests guard against.
set -u
limit=$1
shift
regexes=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
  regexes+=("$1")
  shift
done
shift
out=$(mktemp)
trap 'rm -f "$out"' EXIT
start=$(date +%s.%N)
timeout --kill-after=5 $((limit + 10)) "$@" >"$out" 2>&1
rc=$?
end=$(date +%s.%N)
secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
cat "$out"
echo "run_fail: exit status $rc after $secs s (limit $limit s)"
ok=1
if [ "$rc" -eq 0 ]; then echo "run_fail: FAIL: the job exited 0"; ok=0; fi
if [ "$rc" -eq 124 ] || awk -v s="$secs" -v l="$limit" 'BEGIN { exit !(s >= l + 10) }'; then
  echo "run_fail: FAIL: the job hung and was killed"; ok=0
fi
if awk -v s="$secs" -v l="$limit" 'BEGIN { exit !(s > l) }'; then
  echo "run_fail: FAIL: took longer than $limit s"; ok=0
fi
for re in "${regexes[@]}"; do
  if ! grep -Eq -- "$re" "$out"; then echo "run_fail: FAIL: no line matches /$re/"; ok=0; fi
done
[ $ok -eq 1 ] && echo "run_fail: OK"
[ $ok -eq 1 ]
