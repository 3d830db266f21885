#!/bin/bash
# Alternating imports benchmark runs (commit 0fc7ad3; 50,000 rows, 10 s windows) at WORKER_LOW_NICENESS 15 and 19.
cd /tmp/bench-base
for pair in 1 2; do
  for n in 15 19; do
    git clean -fdq benchmarks/results
    env -i PATH=$PATH HOME=$HOME WORKER_LOW_NICENESS=$n flock /tmp/sp-bench.lock /work/main/.venv/bin/python -m benchmarks.imports --rows 50000 --peer-rows 10000 --window 10 > /tmp/iab/p$pair-n$n.log 2>&1
    cp $(ls -t benchmarks/results/imports-*.json | head -1) /tmp/iab/p$pair-n$n.json
  done
done
echo done > /tmp/iab/finished
