"""How close Model 5's steps come to the best BLAS on the machine: the share of each step's time
that its matrix products would take at the fastest rate any backend reached for each of them.

    python3 bench/blas_share.py GEMM.md MODEL5.jsonl

GEMM.md is what bench/gemm_compare.sh printed (its table: every product, every backend, GFLOP/s);
MODEL5.jsonl the lines bench/model5_compare.sh kept (KEEP=FILE), from the same sitting and ISA.
A step of L layers multiplies, per layer, the qkv, attention-output and both MLP projections
(forward, input gradient, weight gradient) and the attention's scores and context (forward and two
gradients each, as three products of the same size), and once the tied head's logits, input
gradient and weight gradient. Each product's time at the best rate is its FLOPs over the highest
GFLOP/s in its row; the share is their sum over the measured step (or evaluation: the forward
products only). 100 % would be a step that does nothing but its products, each at the best rate
measured on this machine.
"""
import json
import re
import sys

if len(sys.argv) != 3:
    sys.exit(__doc__.strip().split("\n\n")[1].strip())
gemm_md, model5_jsonl = sys.argv[1], sys.argv[2]

best, flop = {}, {}
for line in open(gemm_md):
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) < 4 or not re.match(r"^\d+x\d+x\d+", cells[1]):
        continue
    m, k, n = map(int, re.match(r"^(\d+)x(\d+)x(\d+)", cells[1]).groups())
    repeat = int(re.search(r"\(x(\d+)\)", cells[1]).group(1)) if "(x" in cells[1] else 1
    rates = [float(c) for c in cells[2:-2] if re.match(r"^[\d.]+$", c)]
    best[cells[0]] = max(rates)
    flop[cells[0]] = 2.0 * m * k * n * repeat / 1e9


def seconds(name):
    if name not in best:
        sys.exit(f"{gemm_md} has no row for {name!r}: run gemm_compare.sh without --only")
    return flop[name] / best[name]


PARTS = ("fwd", "dx", "dw")


def at_best(d, layers, shape, v=50257):
    """Seconds a step's and an evaluation's products take at the best rate measured."""
    tag = f"{shape} d{d}"
    step = sum(seconds(f"{p}.{part} {tag}") for p in ("qkv", "attn.proj", "mlp.fc", "mlp.proj") for part in PARTS)
    step += 3 * (seconds(f"attn.scores {tag}") + seconds(f"attn.context {tag}"))
    step = layers * step + sum(seconds(f"head.{p} {tag} V{v}") for p in ("logits", "dx", "dw"))
    ev = layers * (
        sum(seconds(f"{p}.fwd {tag}") for p in ("qkv", "attn.proj", "mlp.fc", "mlp.proj"))
        + seconds(f"attn.scores {tag}")
        + seconds(f"attn.context {tag}")
    ) + seconds(f"head.logits {tag} V{v}")
    return step, ev


rows = [json.loads(line) for line in open(model5_jsonl)]
key = lambda r: (r.get("dim"), r.get("layers"), r.get("batch"), r.get("seq_len"))
names = {"embgraft-fused": "embgraft", "transformers-eager": "eager", "transformers-compile": "compile"}
print("| width | layers | B×T | step: embgraft / eager / compile | evaluation: embgraft / eager |")
print("|---|---|---|---|---|")
for k in dict.fromkeys(key(r) for r in rows if r.get("model") == "model5"):
    by = {names[r["implementation"]]: r for r in rows if key(r) == k and r.get("implementation") in names}
    if "embgraft" not in by:
        continue
    d, layers, b, t = k
    step, ev = at_best(d, layers, f"{b}x{t}")
    share = lambda name, field, need: f"{need / by[name][field]:.0%}" if name in by and by[name].get(field) else "-"
    print(
        f"| {d} | {layers} | {b}×{t} | {share('embgraft', 'median_step_s', step)} / "
        f"{share('eager', 'median_step_s', step)} / {share('compile', 'median_step_s', step)} | "
        f"{share('embgraft', 'median_eval_s', ev)} / {share('eager', 'median_eval_s', ev)} |"
    )
