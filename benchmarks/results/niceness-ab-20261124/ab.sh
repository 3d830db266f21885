#!/bin/bash
# Alternating runs of the webhook benchmark (commit 95d9c43) at STOREFRONT_FIRST_NICENESS 10 and 15.
cd /tmp/bench-base
for pair in 1 2 3; do
  for n in 10 15; do
    git clean -fdq benchmarks/results
    env -i PATH=$PATH HOME=$HOME STOREFRONT_FIRST_NICENESS=$n flock /tmp/sp-bench.lock /work/main/.venv/bin/python -m benchmarks.webhooks --rounds 1 --e2e-seconds 5 > /tmp/ab/p$pair-n$n.log 2>&1
    cp $(ls -t benchmarks/results/webhooks-*.json | head -1) /tmp/ab/p$pair-n$n.json
  done
done
echo done > /tmp/ab/finished
