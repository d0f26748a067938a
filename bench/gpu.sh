#!/usr/bin/env bash
# The GPU checks in one go, on a machine with a CUDA GPU, PyTorch (with CUDA) and numpy, run
# from the repository root. No Rust needed there: the binaries are built elsewhere with
# scripts/build-cuda.sh and brought along (plain or .xz) in DIR:
#
#   DIR/embgraft         target/cuda/release/embgraft
#   DIR/cuda_agreement   the test binary of tests/cuda_agreement.rs (scripts/build-cuda.sh test --release --no-run --test cuda_agreement)
#   DIR/fake_gpt2        cargo build --release --example fake_gpt2 (writes a donor with GPT-2's shapes)
#   DIR/corpus.txt       the corpus (The Time Machine)
#
#   bench/gpu.sh DIR [REPEATS]        (STEPS=N timed steps; PROFILE=1 times each part of the step too;
#                                      SKIP_TF32=1 leaves out the TF32 rows)
#
# 1. the agreement tests (CPU vs CUDA); 2. Model 1's step, embgraft vs PyTorch
# (bench/model1_bench.py) at 64x8 and 16x64, frozen and trainable, run alternately REPEATS
# times: median tokens/s and peak GPU memory; 3. the course protocol (A-D, 10 epochs, one seed,
# GPT-2 shapes) end to end: `embgraft compare --protocol course` vs bench/course_protocol.py.
# Results go to $OUT (or DIR/out). Each part has its own time limit and the next runs anyway.
set -u
cd "$(dirname "$0")/.."
dir=${1:?usage: bench/gpu.sh DIR [REPEATS]}
repeats=${2:-2}
out=${OUT:-$dir/out}
PY=${PYTHON:-python3}
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for f in embgraft cuda_agreement fake_gpt2; do
    if [ ! -x "$dir/$f" ] && [ -f "$dir/$f.xz" ]; then
        $PY -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$dir/$f.xz" "$work/$f"
        chmod +x "$work/$f"
    else
        cp "$dir/$f" "$work/$f"
    fi
done
bin=$work

# The CUDA libraries the binary links (cudart, cuBLAS, cuRAND): PyTorch's own wheels first
# (site-packages/nvidia/*/lib), then a system toolkit. libcuda comes with the driver.
libs=$($PY -c '
import glob, os
try:
    import nvidia
    roots = list(nvidia.__path__)
except ImportError:
    roots = []
print(":".join(sorted({os.path.dirname(p) for r in roots for p in glob.glob(os.path.join(r, "**", "lib*.so*"), recursive=True)})))
')
export LD_LIBRARY_PATH="$libs:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
{
    nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv
    $PY -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
    ldd "$bin/embgraft" | grep -E "cuda|cublas|curand|not found"
} 2>&1 | tee "$out/machine.txt"

echo "== 1. agreement: CPU vs CUDA"
start=$(date +%s)
timeout 300 "$bin/cuda_agreement" --ignored --test-threads=1 --nocapture 2>&1 | tail -40 | tee "$out/agreement.txt"
echo "agreement tests took $(( $(date +%s) - start )) s" | tee -a "$out/agreement.txt"

echo "== 2. Model 1's step: embgraft vs PyTorch"
steps=${STEPS:-40}
results="$out/step-bench.jsonl"
: >"$results"
timeout 60 "$bin/embgraft" bench --corpus "$dir/corpus.txt" --tokens-out "$work/tokens.safetensors" \
    --batches "$work/warm.safetensors" --steps 3 --warmup 1 --device cuda >/dev/null
for shape in 64x8 16x64; do
    batches="$work/batches-$shape.safetensors"
    for mode in frozen trainable; do
        flag=""; [ "$mode" = trainable ] && flag="--trainable"
        for _ in $(seq "$repeats"); do
            timeout 120 "$bin/embgraft" bench --device cuda --shape "$shape" $flag --steps "$steps" --warmup 3 \
                --batches "$batches" --corpus "$dir/corpus.txt" ${PROFILE:+--profile} >>"$results"
            timeout 120 $PY bench/model1_bench.py --device cuda --batches "$batches" $flag --warmup 3 >>"$results"
        done
    done
done
# TF32 tensor cores in the GEMMs, both sides (less exact; not what the experiment uses).
[ -n "${SKIP_TF32:-}" ] || for flag in "" --trainable; do
    timeout 120 "$bin/embgraft" bench --device cuda --shape 64x8 $flag --steps "$steps" --warmup 3 \
        --batches "$work/batches-64x8.safetensors" --tf32 >>"$results"
    timeout 120 $PY bench/model1_bench.py --device cuda --batches "$work/batches-64x8.safetensors" $flag --warmup 3 --tf32 >>"$results"
done
$PY bench/summarize.py "$results" --memory gpu | tee "$out/step-bench.txt"

echo "== 3. the course protocol end to end (A-D, 10 epochs, one seed, GPT-2 shapes)"
"$bin/fake_gpt2" "$work/fake-gpt2/model.safetensors" >/dev/null
TIMEFORMAT="embgraft compare --protocol course on cuda: %R s"
{ time timeout 400 "$bin/embgraft" compare --protocol course --donor "$work/fake-gpt2" --corpus "$dir/corpus.txt" \
    --configs A,B,C,D --seeds 1 --device cuda --out "$work/course" --force >"$out/course-embgraft.stdout" \
    2>"$out/course-embgraft.stderr"; } 2>&1 | tee "$out/course.txt"
tail -3 "$out/course-embgraft.stderr"
cp "$work/course/report.md" "$work/course/summary.json" "$work/course/metrics.csv" "$out/" 2>/dev/null
timeout 600 $PY bench/course_protocol.py --tokens "$work/tokens.safetensors" --donor "$work/fake-gpt2/model.safetensors" \
    --device cuda | tee -a "$out/course.txt"
