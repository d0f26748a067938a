# Sourced by bench/compare.sh, model5_compare.sh and gemm_compare.sh: builds embgraft for the
# instruction set a comparison runs at and holds numpy's and PyTorch's BLAS to the same one, so
# every backend in the table runs the same width of vector kernels.
#
#   ISA=native (default)  each library picks its own kernels for this CPU (AVX-512 where it has it)
#   ISA=avx2              the AVX2 kernels everywhere, as on a laptop or workstation without
#                         AVX-512: embgraft built without its `avx512` feature,
#                         OPENBLAS_CORETYPE=Haswell, MKL_ENABLE_INSTRUCTIONS=AVX2,
#                         ONEDNN_MAX_CPU_ISA=AVX2, and ATEN_CPU_CAPABILITY=avx2 (PyTorch's own
#                         vectorised ops and the code torch.compile generates)
#
# Sets EMBGRAFT to the binary to run (a copy under the caller's $work for ISA=avx2, so
# target/release/embgraft stays the default build) and exports ISA for the Python summaries.
embgraft_for_isa() {
    export ISA=${ISA:-native}
    # Whatever this shell had for numpy's OpenBLAS is the caller's; the comparison sets its own.
    unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
    case "$ISA" in
        native)
            cargo build --release --quiet --bin embgraft
            EMBGRAFT=target/release/embgraft
            ;;
        avx2)
            if ! grep -qw avx2 /proc/cpuinfo; then
                echo "ISA=avx2: this CPU has no AVX2; run with ISA=native" >&2
                return 1
            fi
            # A target folder of its own, so neither build undoes the other's crates (gemm's
            # kernels are compiled per feature set: a switch in one folder rebuilds minutes of code).
            CARGO_TARGET_DIR=target/avx2 cargo build --release --quiet --bin embgraft --no-default-features
            EMBGRAFT="$work/embgraft-avx2"
            cp target/avx2/release/embgraft "$EMBGRAFT"
            export OPENBLAS_CORETYPE=Haswell MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2
            ;;
        *)
            echo "ISA=$ISA: give native or avx2" >&2
            return 1
            ;;
    esac
    # embgraft's door loads a BLAS where the gemm crate has no AVX-512 kernels (src/ops/blas.rs):
    # the one numpy ships (found as the Python package finds it), so it and numpy run the same library (EMBGRAFT_BLAS overrides it;
    # EMBGRAFT_GEMM=gemm times the gemm crate alone).
    if [ -z "${EMBGRAFT_BLAS:-}" ]; then
        EMBGRAFT_BLAS=$("${PYTHON:-python3}" python/embgraft/_blas.py 2>/dev/null || true)
        [ -n "$EMBGRAFT_BLAS" ] && export EMBGRAFT_BLAS
    fi
    echo "ISA=$ISA: embgraft $EMBGRAFT${OPENBLAS_CORETYPE:+, OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE}${MKL_ENABLE_INSTRUCTIONS:+, MKL_ENABLE_INSTRUCTIONS=$MKL_ENABLE_INSTRUCTIONS}${EMBGRAFT_BLAS:+, EMBGRAFT_BLAS=$EMBGRAFT_BLAS}" >&2
}
