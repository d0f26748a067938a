#!/usr/bin/env bash
# Model 1's training step: embgraft (fused and plain) against PyTorch eager, on the same batches,
# run alternately in one go (one process per measurement, so each peak RSS is its own). Prints
# median tokens/s, peak RSS and the ratio to PyTorch per shape and mode.
#
#   bench/compare.sh CORPUS.txt [REPEATS]      (needs: cargo, python3 with torch and safetensors;
#                                               PYTHON=path/to/python to pick one, STEPS=N timed steps)
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=${1:?usage: bench/compare.sh CORPUS.txt [REPEATS]}
repeats=${2:-2}
steps=${STEPS:-6}
PY=${PYTHON:-python3}
cargo build --release --quiet
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
results="$work/results.jsonl"
for shape in 64x8 16x64; do
    batches="$work/batches-$shape.safetensors"
    for mode in frozen trainable; do
        flag=""; [ "$mode" = trainable ] && flag="--trainable"
        for _ in $(seq "$repeats"); do
            ./target/release/embgraft bench --shape "$shape" $flag --steps "$steps" --warmup 1 --batches "$batches" --corpus "$corpus" >> "$results"
            $PY bench/model1_bench.py --batches "$batches" $flag --warmup 1 >> "$results"
            ./target/release/embgraft bench --shape "$shape" $flag --steps "$steps" --warmup 1 --impl plain --batches "$batches" >> "$results"
        done
    done
done
$PY - "$results" <<'PYEOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
key = lambda r: (r["batch"], r["seq_len"], r["trainable"])
print(f"{'shape':>7} {'mode':>9} {'implementation':>22} {'tokens/s':>10} {'peak RSS MB':>12} {'vs PyTorch':>10}")
for k in sorted({key(r) for r in rows}):
    group = [r for r in rows if key(r) == k]
    impls = sorted({r["implementation"] for r in group})
    med = {i: statistics.median(r["tokens_per_s"] for r in group if r["implementation"] == i) for i in impls}
    rss = {i: statistics.median(r["peak_rss_mb"] for r in group if r["implementation"] == i) for i in impls}
    torch_tps = next(v for i, v in med.items() if i.startswith("pytorch"))
    for i in impls:
        print(f"{k[0]:>3}x{k[1]:<3} {'trainable' if k[2] else 'frozen':>9} {i:>22} {med[i]:>10.0f} {rss[i]:>12.0f} {med[i] / torch_tps:>9.2f}x")
PYEOF
