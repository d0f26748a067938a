#!/usr/bin/env python3
"""The matrix products of embgraft's two models, timed with numpy and PyTorch on this machine.

Reads the JSON lines `embgraft bench --gemm` printed (each shape with its layouts: an operand
stored as the product reads it, `n`, or stored transposed and read through a transposed view,
`t`, as embgraft's code stores weights and gradients), times the same products with numpy (its
BLAS, usually OpenBLAS) and torch (MKL on x86 wheels, else OpenBLAS) at the same thread count,
and prints one table: GFLOP/s per backend and each backend's share of the best, with the
machine's FP32 peak as an estimate. bench/gemm_compare.sh runs both in one sitting.

  python3 bench/gemm_bench.py embgraft.jsonl [--threads 2] [--reps 5]

Needs: python3 -m pip install numpy torch (CPU wheels)
"""
import argparse
import json
import os
import statistics
import sys
import time

p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
p.add_argument("embgraft", help="JSON lines from embgraft bench --gemm")
p.add_argument("--threads", type=int, default=os.cpu_count())
p.add_argument("--reps", type=int, default=5)
a = p.parse_args()
for var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ[var] = str(a.threads)

import numpy as np  # noqa: E402  (after the thread counts are set)

try:
    import torch

    torch.set_num_threads(a.threads)
except Exception as e:  # not installed, or a wheel that cannot load here
    print(f"(no torch: {e})", file=sys.stderr)
    torch = None


def operand(rows, cols, layout, salt, lib):
    """An (rows x cols) operand, stored transposed when `layout` is t; values as embgraft's."""
    stored = (rows, cols) if layout == "n" else (cols, rows)
    n = stored[0] * stored[1]
    x = (((np.arange(n, dtype=np.uint64) + salt) * 2654435761) % 4096).astype(np.float32) / 4096.0 - 0.5
    x = x.reshape(stored)
    if lib == "torch":
        x = torch.from_numpy(x)
    return x if layout == "n" else x.T


def timed(f, reps):
    f()
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def blas_kernels():
    """What numpy's and torch's BLAS run here, as far as they say: threadpoolctl's view of
    OpenBLAS's core type, and the instruction limits set for MKL and oneDNN."""
    said = []
    try:
        from threadpoolctl import threadpool_info

        for lib in threadpool_info():
            if lib.get("internal_api") in ("openblas", "mkl", "blis"):
                said.append(f"{lib['internal_api']} {lib.get('version')} {lib.get('architecture') or ''}".strip())
    except ImportError:
        said.append("(threadpoolctl not installed: BLAS kernels not read)")
    for var in ("OPENBLAS_CORETYPE", "MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA"):
        if os.environ.get(var):
            said.append(f"{var}={os.environ[var]}")
    return "; ".join(said)


def peak():
    """The FP32 peak as an upper bound: threads x clock x FLOPs per cycle of two FMA pipes at the
    widest vector the CPU has (64 with AVX-512, 32 with AVX2). Zen 4 runs AVX-512 on 256-bit pipes
    (half that), and a boost clock above the one /proc/cpuinfo reports raises it; read shares
    of it as estimates."""
    info = open("/proc/cpuinfo").read()
    flags = next((l for l in info.splitlines() if l.startswith("flags")), "")
    mhz = max(float(l.split(":")[1]) for l in info.splitlines() if l.startswith("cpu MHz"))
    model = next((l.split(":")[1].strip() for l in info.splitlines() if l.startswith("model name")), "?")
    # ISA=avx2 (bench/isa.sh) holds every backend to AVX2 kernels: their peak is AVX2's.
    wide = "avx512f" in flags and os.environ.get("ISA") != "avx2"
    per_cycle = 64 if wide else 32 if "avx2" in flags else 16
    kind = "AVX-512" if wide else "AVX2" if "avx2" in flags else "SSE"
    return a.threads * mhz * 1e6 * per_cycle / 1e9, f"{model}, {kind}, {a.threads} threads at {mhz:.0f} MHz x {per_cycle} FLOP/cycle"


rows = [json.loads(line) for line in open(a.embgraft) if line.startswith("{")]
shapes = {}
for r in rows:
    s = r["shape"]
    shapes.setdefault(s["name"], {"shape": s, "gflops": {}})["gflops"][r["backend"]] = r["gflops"]
blas = np.__config__.show(mode="dicts")["Build Dependencies"]["blas"]["name"] if hasattr(np, "__config__") else "?"
names = [f"numpy ({blas})"] + ([f"torch {torch.__version__}"] if torch else [])
for entry in shapes.values():
    s = entry["shape"]
    m, k, n, rep = s["m"], s["k"], s["n"], s["repeat"]
    flops = 2.0 * m * k * n * rep
    for lib, name in zip(["numpy", "torch"], names):
        A, B = operand(m, k, s["a"], 1, lib), operand(k, n, s["b"], 7, lib)
        if rep > 1:
            A = A.unsqueeze(0).expand(rep, m, k).contiguous() if lib == "torch" else np.ascontiguousarray(np.broadcast_to(A, (rep, m, k)))
            B = B.unsqueeze(0).expand(rep, k, n).contiguous() if lib == "torch" else np.ascontiguousarray(np.broadcast_to(B, (rep, k, n)))
        mm = torch.matmul if lib == "torch" else np.matmul
        entry["gflops"][name] = flops / timed(lambda: mm(A, B), a.reps) / 1e9

fp32, how = peak()
backends = ["embgraft"] + (["gemm-crate"] if any(r["backend"] == "gemm-crate" for r in rows) else []) + ["candle"] + names
print(f"FP32 peak (estimate): {fp32:.0f} GFLOP/s ({how})")
print(f"kernels: embgraft's door {', '.join(sorted({r.get('kernels', '?') for r in rows}))}; {blas_kernels()}\n")
print("| product | m x k x n | " + " | ".join(backends) + " | embgraft / best | best / peak |")
print("|---|---|" + "---|" * len(backends) + "---|---|")
for name, entry in shapes.items():
    s, g = entry["shape"], entry["gflops"]
    best = max(g.values())
    dims = f"{s['m']}x{s['k']}x{s['n']}" + (f" (x{s['repeat']})" if s["repeat"] > 1 else "")
    cells = " | ".join(f"{g[b]:.0f}" if b in g else "–" for b in backends)
    print(f"| {name} | {dims} | {cells} | {g['embgraft'] / best:.0%} | {best / fp32:.0%} |")
sys.stdout.flush()

# The head's products dominate both steps: their time-weighted share of the best backend.
for prefix in ("head.", "qkv.", "mlp.", "attn."):
    picked = [e for n, e in shapes.items() if n.startswith(prefix)]
    if picked:
        t_embgraft = sum(e["shape"]["m"] * e["shape"]["k"] * e["shape"]["n"] * e["shape"]["repeat"] / e["gflops"]["embgraft"] for e in picked)
        t_best = sum(e["shape"]["m"] * e["shape"]["k"] * e["shape"]["n"] * e["shape"]["repeat"] / max(e["gflops"].values()) for e in picked)
        print(f"\n{prefix}*: embgraft at {t_best / t_embgraft:.0%} of the best backend over {len(picked)} products (by time)", end="")
print()
