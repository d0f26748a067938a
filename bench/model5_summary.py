#!/usr/bin/env python3
"""The table of `bench/model5_compare.sh`: per shape, tokens/s of the training step and of the
evaluation for embgraft and transformers (eager, torch.compile), the ratios, peak RSS, and the
share of the machine's FP32 peak each training step reaches; then embgraft's profile.

  python3 bench/model5_summary.py RESULTS.jsonl [--peak-gflops G]

The peak defaults to cores x FLOPs per cycle x the clock /proc/cpuinfo reports (32 FLOPs per
cycle per core with AVX2 FMA, 64 with AVX-512).
"""
import argparse
import json
import os


def cpu_peak_gflops():
    info = open("/proc/cpuinfo").read()
    mhz = max(float(l.split(":")[1]) for l in info.splitlines() if l.startswith("cpu MHz"))
    # ISA=avx2 (bench/isa.sh) holds every backend to AVX2 kernels: their peak is AVX2's.
    per_cycle = 64 if " avx512f" in info and os.environ.get("ISA") != "avx2" else 32
    return os.cpu_count() * per_cycle * mhz / 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--peak-gflops", type=float, default=None)
    a = ap.parse_args()
    peak = a.peak_gflops or cpu_peak_gflops()
    rows = [json.loads(line) for line in open(a.results) if line.strip()]
    key = lambda r: (r["dim"], r["layers"], r["batch"], r["seq_len"])
    flop = {key(r): r["step_gflop"] for r in rows if "step_gflop" in r}
    kernels = ", ".join(sorted({r["kernels"] for r in rows if "kernels" in r})) or "?"
    print(f"FP32 peak taken as {peak:.0f} GFLOP/s; embgraft's gemm kernels: {kernels}; ISA={os.environ.get('ISA', 'native')}\n")
    print("| width | layers | B×T | embgraft tok/s | eager tok/s | compile tok/s | vs eager | vs compile "
          "| eval tok/s embgraft / no_grad eager | eval ratio | RSS MB embgraft / eager / compile "
          "| % of peak embgraft / eager / compile |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for k in sorted({key(r) for r in rows}):
        by = {r["implementation"]: r for r in rows if key(r) == k}
        e, te, tc = by.get("embgraft-fused"), by.get("transformers-eager"), by.get("transformers-compile")
        tps = lambda r: r["tokens_per_s"] if r else float("nan")
        pct = lambda r: (f"{100 * k2 / r['median_step_s'] / peak:.0f}" if r and (k2 := flop.get(k)) else "-")
        rss = lambda r: f"{r['peak_rss_mb']:.0f}" if r else "-"
        ratio = lambda x, y: f"{tps(x) / tps(y):.2f}x" if x and y else "-"
        ev = (f"{e['eval_tokens_per_s']:.0f} / {te['eval_tokens_per_s']:.0f}" if e and te else "-")
        evr = (f"{e['eval_tokens_per_s'] / te['eval_tokens_per_s']:.2f}x" if e and te else "-")
        print(f"| {k[0]} | {k[1]} | {k[2]}×{k[3]} | {tps(e):.0f} | {tps(te):.0f} | {tps(tc):.0f} "
              f"| {ratio(e, te)} | {ratio(e, tc)} | {ev} | {evr} | {rss(e)} / {rss(te)} / {rss(tc)} "
              f"| {pct(e)} / {pct(te)} / {pct(tc)} |")
        if "embgraft-plain" in by:
            p = by["embgraft-plain"]
            print(f"|  |  | (candle autograd, before) | {tps(p):.0f} |  |  | {ratio(p, te)} |  | "
                  f"{p['eval_tokens_per_s']:.0f} |  | {rss(p)} |  |")
    print()
    for r in rows:
        where = f"width {r['dim']}, {r['layers']} layers, {r['batch']}×{r['seq_len']}"
        if r.get("phases_ms"):
            phases = sorted(r["phases_ms"].items(), key=lambda kv: -kv[1])
            parts = ", ".join(f"{n} {v:.0f}" for n, v in phases)
            print(f"profile (ms per step) {where}: {parts}")
        if r.get("eval_phases_ms"):
            phases = sorted(r["eval_phases_ms"].items(), key=lambda kv: -kv[1])
            parts = ", ".join(f"{n} {v:.0f}" for n, v in phases)
            print(f"evaluation (ms per batch) {where}: {parts}")


if __name__ == "__main__":
    main()
