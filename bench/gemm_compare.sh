#!/usr/bin/env bash
# The models' matrix products through embgraft (its gemm-crate door and candle's matmul), numpy
# and PyTorch, in one sitting on this machine: one markdown table of GFLOP/s.
#
#   bench/gemm_compare.sh [--only head.] [--steps 5]    (PYTHON=..., default python3)
#
# Needs a Python with numpy and torch (CPU wheels). ISA=avx2 runs every backend on its AVX2
# kernels (bench/isa.sh), as an AVX2-only CPU would.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python3}"
threads="${THREADS:-$(nproc)}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$root"
. bench/isa.sh
embgraft_for_isa
RAYON_NUM_THREADS="$threads" "$EMBGRAFT" bench --gemm "$@" > "$work/embgraft.jsonl"
"$python" bench/gemm_bench.py "$work/embgraft.jsonl" --threads "$threads"
