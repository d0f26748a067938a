#!/usr/bin/env python3
"""transformers' GPT-2 beside `embgraft bench --model model5`: the same training step and the
same evaluation, timed on the same batches.

GPT2LMHeadModel from a GPT2Config of the given sizes (vocabulary 50257, context = the batches'
sequence length, dropout 0, gelu_new, tied head, eager attention), random init, every parameter
training; loss = F.cross_entropy over every position (mean); torch.optim.AdamW(lr=1e-3,
weight_decay=0.01); float32. Evaluation is the loss of each batch under torch.no_grad(), the
model in eval mode. With --compile, the loss (forward and backward) and the evaluation each go
through torch.compile; the compile happens in the untimed warm-up steps. Prints one JSON line
shaped like embgraft's.

  python3 bench/model5_bench.py --batches B.safetensors --layers 2 --dim 768 --heads 12 [--compile]
"""
import argparse
import json
import os
import resource
import statistics
import time

import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel

from model1_bench import read_tensor


EVAL_ROUNDS = 3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", required=True)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--heads", type=int, default=None, help="default: dim / 64")
    ap.add_argument("--vocab", type=int, default=50257)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--compile", action="store_true", help="torch.compile the loss and the evaluation")
    a = ap.parse_args()
    heads = a.heads or max(1, a.dim // 64)

    tokens = read_tensor(a.batches, "tokens")  # (steps, batch, seq_len + 1)
    steps, batch, window = tokens.shape
    seq = window - 1
    torch.manual_seed(0)
    cfg = GPT2Config(
        vocab_size=a.vocab,
        n_positions=seq,
        n_embd=a.dim,
        n_layer=a.layers,
        n_head=heads,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        activation_function="gelu_new",
        layer_norm_epsilon=1e-5,
        tie_word_embeddings=True,
    )
    cfg._attn_implementation = "eager"
    model = GPT2LMHeadModel(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)

    def loss_of(x, y):
        logits = model(input_ids=x).logits
        return F.cross_entropy(logits.reshape(-1, a.vocab), y.reshape(-1))

    def eval_sum(x, y):
        logits = model(input_ids=x).logits
        return F.cross_entropy(logits.reshape(-1, a.vocab), y.reshape(-1), reduction="sum")

    if a.compile:
        loss_of = torch.compile(loss_of)
        eval_sum = torch.compile(eval_sum)

    times, loss = [], float("nan")
    model.train()
    for i in range(steps):
        x, y = tokens[i, :, :-1], tokens[i, :, 1:]
        t0 = time.perf_counter()
        l = loss_of(x, y)
        l.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= a.warmup:
            times.append(time.perf_counter() - t0)
        loss = l.item()
    model.eval()
    evals = []
    with torch.no_grad():
        # EVAL_ROUNDS passes over the batches (a call is short: one pass is few samples), the
        # first `warmup` calls untimed, as embgraft's bench does.
        for j in range(EVAL_ROUNDS * steps):
            i = j % steps
            x, y = tokens[i, :, :-1], tokens[i, :, 1:]
            t0 = time.perf_counter()
            eval_sum(x, y).item()
            if j >= a.warmup:
                evals.append(time.perf_counter() - t0)
    med, ev = statistics.median(times), statistics.median(evals)
    print(json.dumps({
        "implementation": "transformers-" + ("compile" if a.compile else "eager"),
        "model": "model5",
        "layers": a.layers,
        "dim": a.dim,
        "heads": heads,
        "batch": batch,
        "seq_len": seq,
        "steps": len(times),
        "median_step_s": med,
        "tokens_per_s": batch * seq / med,
        "median_eval_s": ev,
        "eval_tokens_per_s": batch * seq / ev,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "final_loss": loss,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
    }))


if __name__ == "__main__":
    main()
