#!/usr/bin/env bash
# Model 5's training step and evaluation: embgraft (the fused CPU decoder, and candle's autograd
# with --plain) against transformers' GPT2LMHeadModel eager and under torch.compile, on the same
# batches, run one after another per shape in one go (one process per measurement, so each
# peak RSS is its own). Prints the table docs/speed.md holds.
#
#   bench/model5_compare.sh CORPUS.txt [--plain]   (needs: cargo, python3 with torch and
#                                                   transformers; PYTHON=path/to/python to pick
#                                                   one; STEPS=N timed steps; SHAPES, WIDTHS,
#                                                   LAYERS to narrow the grid; NO_PYTORCH=1
#                                                   for embgraft's rows alone; ISA=avx2 for
#                                                   AVX2 kernels everywhere: bench/isa.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=${1:?usage: bench/model5_compare.sh CORPUS.txt [--plain]}
plain=${2:-}
steps=${STEPS:-4}
PY=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
. bench/isa.sh
embgraft_for_isa
results="$work/results.jsonl"
for dim in ${WIDTHS:-384 768}; do
    for layers in ${LAYERS:-2 4}; do
        for shape in ${SHAPES:-64x8 16x64 8x256}; do
            batches="$work/batches-$shape.safetensors"
            common=(--batches "$batches" --layers "$layers" --dim "$dim" --warmup 1)
            "$EMBGRAFT" bench --model model5 --shape "$shape" --steps "$steps" --corpus "$corpus" \
                --profile "${common[@]}" >> "$results"
            if [ -z "${NO_PYTORCH:-}" ]; then
                $PY bench/model5_bench.py "${common[@]}" >> "$results"
                $PY bench/model5_bench.py "${common[@]}" --compile >> "$results" \
                    || echo "torch.compile failed at $dim/$layers/$shape" >&2
            fi
            if [ "$plain" = --plain ]; then
                "$EMBGRAFT" bench --model model5 --shape "$shape" --impl plain "${common[@]}" \
                    >> "$results"
            fi
        done
    done
done
cp "$results" "${KEEP:-/dev/null}" 2>/dev/null || true
$PY bench/model5_summary.py "$results"
