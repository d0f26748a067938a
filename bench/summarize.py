#!/usr/bin/env python3
"""Summarises the JSON lines `embgraft bench` and `bench/model1_bench.py` print: per shape, mode
and implementation, the median tokens/s, ms/step and peak memory over the repeats, and the
ratio to PyTorch; then any per-part step timings (`embgraft bench --profile`).

  python3 bench/summarize.py RESULTS.jsonl [--memory rss|gpu]
"""
import argparse
import json
import os
import statistics


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--memory", choices=["rss", "gpu"], default="rss")
    a = ap.parse_args()
    rows = [json.loads(line) for line in open(a.results) if line.strip()]
    field, title = {"rss": ("peak_rss_mb", "peak RSS MB"), "gpu": ("peak_gpu_mb", "peak GPU MiB")}[a.memory]
    key = lambda r: (r["batch"], r["seq_len"], r["trainable"], r.get("tf32", False))
    kernels = ", ".join(sorted({r["kernels"] for r in rows if "kernels" in r})) or "?"
    print(f"embgraft's gemm kernels: {kernels}; ISA={os.environ.get('ISA', 'native')}")
    print(f"{'shape':>7} {'mode':>14} {'implementation':>22} {'tokens/s':>11} {'ms/step':>8} {title:>13} {'vs PyTorch':>10}")
    for k in sorted({key(r) for r in rows}):
        group = [r for r in rows if key(r) == k]
        impls = sorted({r["implementation"] for r in group})
        median = lambda i, f: statistics.median(f(r) for r in group if r["implementation"] == i)
        tps = {i: median(i, lambda r: r["tokens_per_s"]) for i in impls}
        torch_tps = next((v for i, v in tps.items() if i.startswith("pytorch")), None)
        for i in impls:
            ratio = f"{tps[i] / torch_tps:.2f}x" if torch_tps else "-"
            mode = ("trainable" if k[2] else "frozen") + (" tf32" if k[3] else "")
            step = median(i, lambda r: r["median_step_s"]) * 1e3
            mem = median(i, lambda r: r.get(field) or 0)
            print(f"{k[0]:>4}x{k[1]:<2} {mode:>14} {i:>22} {tps[i]:>11.0f} {step:>8.2f} {mem:>13.0f} {ratio:>10}")
    for r in rows:
        if r.get("phases_ms"):
            parts = ", ".join(f"{k[2:]} {v:.3f}" for k, v in r["phases_ms"].items())
            print(f"phases (ms) {r['batch']}x{r['seq_len']} {'trainable' if r['trainable'] else 'frozen'}: {parts}")


if __name__ == "__main__":
    main()
