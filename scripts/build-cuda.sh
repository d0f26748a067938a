#!/usr/bin/env bash
# Build embgraft with `--features cuda` on a machine that has neither a GPU nor a CUDA toolkit.
#
#   scripts/build-cuda.sh                 # CUDA 13.0 (driver 580+), kernels for compute capability 9.0 (H100/H200)
#   CUDA_COMPUTE_CAP=80 scripts/build-cuda.sh   # an A100 (its driver must be CUDA 13.0 or newer)
#   scripts/build-cuda.sh test --release --no-run --test cuda_agreement   # any cargo command instead of
#                                         # `build --release`: here the GPU agreement test's binary
#   CUDA_COMPUTE_CAP=75 scripts/build-cuda.sh wheel dist   # the embgraft-cuda13 wheel
#                                         # (python/cuda13/pyproject.toml) into dist/, with maturin and zig
#                                         # (pip install maturin ziglang): PTX for the T4 and every newer card
#
# CUDA_VERSION is the "CUDA Version" that `nvidia-smi` prints on the machine that will run the binary:
# PTX compiled by a newer nvcc than the driver is refused at load time (CUDA_ERROR_UNSUPPORTED_PTX_VERSION),
# so the toolkit is pinned to that release. CUDA_COMPUTE_CAP is the card's compute capability without
# the dot (nvidia-smi --query-gpu=compute_cap); kernels are compiled for it.
#
# What it does, all under .cuda/<version>/ in this checkout (nothing system-wide, no root):
#   1. downloads NVIDIA's wheels from PyPI (pip download): nvcc, nvvm (cicc), crt and cccl headers,
#      the runtime, nvrtc, cuBLAS and cuRAND, and unpacks them into one CUDA_HOME-shaped tree;
#   2. adds the unversioned `libX.so` links the linker looks for (the wheels ship only `libX.so.N`);
#   3. writes a stub libcuda.so.1: libcuda belongs to the GPU driver, no wheel ships it, and the link
#      only needs its symbol names. The stub is compiled here with cc from the entry points cudarc
#      declares; the real driver library replaces it at run time (same soname);
#   4. runs `cargo build --release --features cuda` with a separate target folder (target/cuda), so the
#      CPU build in target/ stays warm.
# The binary is target/cuda/release/embgraft. At run time it needs the driver (libcuda.so.1) and
# libcudart, libcublas, libcublasLt, libcurand and libnvrtc of the same CUDA major version: a PyTorch
# install for that CUDA has them under site-packages/nvidia/; point LD_LIBRARY_PATH there, or at
# .cuda/<version>/cuda/lib on a machine where this script ran.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

version=${CUDA_VERSION:-13.0}
cap=${CUDA_COMPUTE_CAP:-90}
major=${version%%.*}
minor=${version#*.}; minor=${minor%%.*}
case "$major" in
    12) echo "CUDA_VERSION=$version: CUDA 12's compiler is not on PyPI (nvidia-cuda-nvcc-cu12 12.2-12.9 ship ptxas but no nvcc or cicc), so this script builds CUDA 13 (driver 580 or newer); for a CUDA 12 driver, install NVIDIA's CUDA 12 toolkit and run cargo build --release --features cuda with CUDA_COMPUTE_CAP set" >&2; exit 2 ;;
    13) ;;
    *) echo "CUDA_VERSION=$version: only CUDA 13.x has its compiler on PyPI as wheels; set CUDA_VERSION=13.0 (drivers 580 and newer)" >&2; exit 2 ;;
esac
case "$cap" in
    [0-9][0-9]|[0-9][0-9][0-9]) ;;
    *) echo "CUDA_COMPUTE_CAP=$cap is not a compute capability like 80 or 90 (nvidia-smi --query-gpu=compute_cap, without the dot)" >&2; exit 2 ;;
esac

prefix=$root/.cuda/$major.$minor
home=$prefix/cuda
if [ ! -x "$home/bin/nvcc" ] || [ ! -e "$home/lib/libcuda.so" ]; then
    command -v python3 >/dev/null || { echo "python3 not found: it fetches NVIDIA's wheels from PyPI; install Python 3" >&2; exit 1; }
    command -v cc >/dev/null || { echo "cc not found: install a C compiler (gcc); nvcc also needs it as its host compiler" >&2; exit 1; }
    rm -rf "$prefix"
    # The wheels are kept outside the checkout, per version: a later build (a fresh clone, CI)
    # unpacks them again without downloading; pip checks each kept file against the index's
    # sha256 and downloads again only a file whose hash does not match.
    wheels=${EMBGRAFT_CUDA_WHEELS:-${XDG_CACHE_HOME:-$HOME/.cache}/embgraft/cuda-wheels}/$major.$minor
    mkdir -p "$wheels" "$prefix/unpacked" "$home"
    # cuRAND has its own version numbers; the rest follow the toolkit's. The compiler's back end
    # (cicc, in nvvm), its headers (crt) and libcu++ (cccl) are wheels of their own.
    pkgs=(
        "nvidia-cuda-nvcc==$major.$minor.*"
        "nvidia-cuda-runtime==$major.$minor.*"
        "nvidia-cuda-nvrtc==$major.$minor.*"
        "nvidia-cublas==$major.$minor.*"
        "nvidia-curand==10.4.${minor}.*"
        "nvidia-nvvm==$major.$minor.*"
        "nvidia-cuda-crt==$major.$minor.*"
        "nvidia-cuda-cccl==$major.$minor.*"
    )
    echo "fetching ${pkgs[*]} from PyPI into $wheels (kept files whose hashes match are reused)" >&2
    # The index sometimes answers a listing without the wheels (seen here once): try three times.
    for attempt in 1 2 3; do
        python3 -m pip download -q --no-deps --only-binary=:all: \
            -d "$wheels" "${pkgs[@]}" && break
        [ "$attempt" = 3 ] && { echo "could not download the CUDA wheels from PyPI (above); check the network or PIP_INDEX_URL, then rerun" >&2; rm -rf "$prefix"; exit 1; }
        sleep 5
    done
    # One wheel per package asked for, the newest that matches (the cache may also hold an older
    # patch release's, or another version's).
    for spec in "${pkgs[@]}"; do
        name=${spec%%==*}; ver=
        case "$spec" in *==*) ver=${spec#*==}; ver=${ver%\*} ;; esac
        w=$(ls "$wheels/${name//-/_}-$ver"*.whl 2>/dev/null | sort -V | tail -1 || true)
        [ -n "$w" ] || { echo "no wheel for $spec in $wheels after the download; delete that folder and rerun" >&2; exit 1; }
        python3 -m zipfile -e "$w" "$prefix/unpacked"
    done
    # CUDA 13's wheels share one tree (nvidia/cu13); merge whatever they unpacked into one CUDA_HOME.
    for d in "$prefix"/unpacked/nvidia/*/; do
        for sub in bin include lib nvvm; do
            if [ -d "$d$sub" ]; then cp -rT "$d$sub" "$home/$sub"; fi
        done
    done
    rm -rf "$prefix/unpacked" # what the merged tree holds again
    chmod +x "$home"/bin/* "$home"/nvvm/bin/* 2>/dev/null || true
    for lib in cudart cublas cublasLt curand nvrtc; do
        real=$(ls "$home"/lib/lib$lib.so.* 2>/dev/null | head -1)
        [ -n "$real" ] || { echo "lib$lib.so.* missing from the wheels in $wheels" >&2; exit 1; }
        ln -sf "$(basename "$real")" "$home/lib/lib$lib.so"
    done
    # The driver's entry points, as cudarc declares them (cuInit, cuCtxCreate_v4, ...).
    # (A plain build never fetches cudarc, an optional dependency: `cargo fetch` brings every crate
    # of Cargo.lock. The first look may find nothing, which pipefail must not turn into an exit.)
    cudarc=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.* 2>/dev/null | tail -1 || true)
    if [ -z "$cudarc" ]; then cargo fetch -q; cudarc=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.* | tail -1); fi
    grep -ho '^pub unsafe fn cu[A-Za-z0-9_]*' "$cudarc/src/driver/sys/mod.rs" | sed 's/pub unsafe fn //' | sort -u |
        awk '{ printf "int %s(void) { return 999; }\n", $1 }' >"$prefix/libcuda_stub.c"
    cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$home/lib/libcuda.so" "$prefix/libcuda_stub.c"
    echo "CUDA $major.$minor build tree ready in $home ($(du -sh "$home" | cut -f1))" >&2
fi

export CUDA_HOME=$home
export NVCC=$home/bin/nvcc
export PATH=$home/bin:$PATH
export CUDA_COMPUTE_CAP=$cap
export CUDARC_CUDA_VERSION=${major}0${minor}0
export LIBRARY_PATH=$home/lib${LIBRARY_PATH:+:$LIBRARY_PATH}
"$NVCC" --version | tail -2 >&2
start=$(date +%s)
if [ "${1:-}" = wheel ]; then
    # The engine as the embgraft-cuda13 wheel. manylinux2014 (glibc 2.17) through zig; auditwheel's
    # check is skipped because the engine links CUDA's libraries, which it must not bundle: the
    # driver's libcuda.so.1 comes with the GPU, the rest from NVIDIA's wheels (the wheel's
    # dependencies), loaded by embgraft_cuda13/__init__.py before the engine.
    dist=$(realpath -m "${2:-dist}")
    command -v maturin >/dev/null || { echo "maturin not found: pip install maturin ziglang" >&2; exit 1; }
    (cd python/cuda13 && CARGO_TARGET_DIR=$root/target/cuda-wheel maturin build --release --zig \
        --compatibility manylinux2014 --auditwheel skip -o "$dist")
    echo "the CUDA wheel took $(( $(date +%s) - start )) s (CUDA $major.$minor, PTX for compute_$cap): $(ls "$dist"/embgraft_cuda13-*.whl)" >&2
    exit 0
fi
if [ $# -eq 0 ]; then set -- build --release; fi
cargo "$@" --features cuda --target-dir target/cuda
echo "cargo $* --features cuda took $(( $(date +%s) - start )) s (CUDA $major.$minor, sm_$cap; binaries under target/cuda/release)" >&2
