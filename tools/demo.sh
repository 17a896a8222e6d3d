#!/usr/bin/env bash
# The main job of `make demo`: until the CPU backend lands, check every model in models/
# (parse, build, verify, summarize), including the all-MiniLM-L6-v2 configuration of BERT.
set -euo pipefail
build=${1:-build}
for m in models/*.loom; do
  echo "== loom check $m"
  "$build/loom" check "$m"
done
echo "== loom check models/bert.loom (all-MiniLM-L6-v2)"
"$build/loom" check models/bert.loom -D d_model=384 -D n_layer=6 -D n_head=12 -D d_ff=1536
