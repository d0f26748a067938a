#!/usr/bin/env bash
# Model 1's training step: embgraft (fused and plain) against PyTorch eager, on the same batches,
# run alternately in one go (one process per measurement, so each peak RSS is its own). Prints
# median tokens/s, peak RSS and the ratio to PyTorch per shape and mode.
#
#   bench/compare.sh CORPUS.txt [REPEATS]      (needs: cargo, python3 with torch and safetensors;
#                                               PYTHON=path/to/python to pick one, STEPS=N timed steps,
#                                               ISA=avx2 for AVX2 kernels everywhere: bench/isa.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=${1:?usage: bench/compare.sh CORPUS.txt [REPEATS]}
repeats=${2:-2}
steps=${STEPS:-6}
PY=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
. bench/isa.sh
embgraft_for_isa
results="$work/results.jsonl"
for shape in 64x8 16x64; do
    batches="$work/batches-$shape.safetensors"
    for mode in frozen trainable; do
        flag=""; [ "$mode" = trainable ] && flag="--trainable"
        for _ in $(seq "$repeats"); do
            "$EMBGRAFT" bench --shape "$shape" $flag --steps "$steps" --warmup 1 --batches "$batches" --corpus "$corpus" >> "$results"
            $PY bench/model1_bench.py --batches "$batches" $flag --warmup 1 >> "$results"
            "$EMBGRAFT" bench --shape "$shape" $flag --steps "$steps" --warmup 1 --impl plain --batches "$batches" >> "$results"
        done
    done
done
$PY bench/summarize.py "$results" --memory rss
