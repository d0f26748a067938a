#!/usr/bin/env python3
"""PyTorch reference for `embgraft bench`: the course's Model 1 training step, timed.

nn.Embedding -> nn.GELU -> nn.Linear(bias=False), F.log_softmax + F.nll_loss (mean over all
positions), torch.optim.AdamW(lr=1e-3, weight_decay=0.01); frozen = embedding.requires_grad
False, handed to AdamW as the course does. Reads the batches `embgraft bench` wrote, times one
step per batch after the warm-up ones, and prints one JSON line like embgraft's.

  python3 bench/model1_bench.py --batches B.safetensors [--trainable] [--warmup 2] [--device cuda]

On CUDA a step is timed to torch.cuda.synchronize(), and peak_gpu_mb is the caching allocator's
peak reservation (torch.cuda.max_memory_reserved: the device memory PyTorch held, which is what
embgraft's figure, device memory in use, compares with).
"""
import argparse
import json
import resource
import statistics
import struct
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


DTYPES = {"F32": np.float32, "I64": np.int64}


def read_tensor(path, name):
    """Tensor `name` of a safetensors file (F32 or I64), read with the standard library and numpy."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        info = json.loads(f.read(n))[name]
        lo, hi = info["data_offsets"]
        f.seek(8 + n + lo)
        data = np.frombuffer(f.read(hi - lo), dtype=DTYPES[info["dtype"]])
    return torch.from_numpy(data.copy()).reshape(info["shape"])


class Model1(nn.Module):
    def __init__(self, vocab, dim):
        super().__init__()
        self.embedding = nn.Embedding(vocab, dim)
        self.gelu = nn.GELU()
        self.unembedding = nn.Linear(dim, vocab, bias=False)

    def forward(self, x):
        return self.unembedding(self.gelu(self.embedding(x)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", required=True)
    ap.add_argument("--trainable", action="store_true")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--vocab", type=int, default=50257)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tf32", action="store_true", help="allow TF32 tensor cores in matmuls (CUDA)")
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = a.tf32
    dev = torch.device(a.device)
    cuda = dev.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    tokens = read_tensor(a.batches, "tokens").to(dev)  # (steps, batch, seq_len + 1)
    steps, batch, window = tokens.shape
    torch.manual_seed(0)
    model = Model1(a.vocab, a.dim).to(dev)
    model.embedding.weight.requires_grad = a.trainable
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    times = []
    for i in range(steps):
        x, y = tokens[i, :, :-1], tokens[i, :, 1:]
        sync()
        t0 = time.perf_counter()
        logp = F.log_softmax(model(x), dim=-1)  # (B, T, V)
        loss = F.nll_loss(logp.reshape(-1, a.vocab), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sync()
        if i >= a.warmup:
            times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    print(json.dumps({
        "implementation": f"pytorch-{torch.__version__}", "device": a.device,
        "batch": batch, "seq_len": window - 1, "trainable": a.trainable, "steps": len(times),
        "median_step_s": median, "tokens_per_s": batch * (window - 1) / median,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_gpu_mb": torch.cuda.max_memory_reserved(dev) / 2**20 if cuda else None,
        "final_loss": loss.item(), "threads": torch.get_num_threads(), "tf32": a.tf32,
    }))


if __name__ == "__main__":
    main()
