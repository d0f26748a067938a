#!/usr/bin/env bash
# embgraft's vocabulary transplant against the Python reference on a real donor: maps DONOR's
# rows onto GPT-2's vocabulary both ways and compares every class and every row bit for bit.
#
#   bench/transplant_compare.sh [DONOR_DIR]   (default: ../shared/data/donors/all-minilm-l6-v2)
#
# Needs a Python with tokenizers, numpy and safetensors (PYTHON=..., default python3).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
donor="${1:-$root/../shared/data/donors/all-minilm-l6-v2}"
python="${PYTHON:-python3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$root"
cargo build --release --quiet --bin embgraft --example gpt2_tokens
target/release/examples/gpt2_tokens "$work/gpt2_tokens.txt"
start=$(date +%s.%N)
target/release/embgraft inspect "$donor" --tokenizer gpt2 --write-mapped "$work/mapped.safetensors"
echo "embgraft inspect: $(echo "$(date +%s.%N) - $start" | bc) s"
start=$(date +%s.%N)
"$python" reference/transplant_reference.py --gpt2-tokens "$work/gpt2_tokens.txt" --donor "$donor" \
    --compare "$work/mapped.safetensors"
echo "reference: $(echo "$(date +%s.%N) - $start" | bc) s"
