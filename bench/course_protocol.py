#!/usr/bin/env python3
"""The lecture's whole protocol in PyTorch, timed: the reference `embgraft compare --protocol
course` is timed against on the same machine.

Model 1 (nn.Embedding -> nn.GELU -> nn.Linear(bias=False)), configurations A (random,
trainable), B (copied, frozen), C (copied, trainable), D (random, frozen); windows of 8 tokens
with stride 2, a random 90/10 split of the windows, DataLoader(batch_size=64, shuffle=True),
F.cross_entropy, torch.optim.AdamW(lr=1e-3, weight_decay=0.01) over model.parameters() (a
frozen embedding has requires_grad False, as in the lecture), and the test loss after every
epoch. Batches move to the device one at a time, as the lecture's loop does.

  python3 bench/course_protocol.py --tokens tokens.safetensors --donor model.safetensors [--device cuda]

--tokens: the corpus's GPT-2 ids (`embgraft bench --corpus BOOK.txt --tokens-out tokens.safetensors`
writes them); --donor: a safetensors file with `wte.weight` (GPT-2's, or the `fake_gpt2` example's).
Reads safetensors with the standard library and numpy only. Prints one JSON line: seconds per
configuration and in all (from the first model built to the last test loss, inputs already read),
and each configuration's final test loss.
"""
import argparse
import json
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

# The same Model 1 and safetensors reader as the step benchmark (this script's folder is on sys.path).
from model1_bench import Model1, read_tensor


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", required=True)
    ap.add_argument("--donor", required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--configs", default="A,B,C,D")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    dev = torch.device(a.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    tokens = read_tensor(a.tokens, "tokens")
    wte = read_tensor(a.donor, "wte.weight")
    vocab, dim = wte.shape
    starts = torch.arange(0, len(tokens) - 8, 2)
    x = torch.stack([tokens[s : s + 8] for s in starts.tolist()])
    y = torch.stack([tokens[s + 1 : s + 9] for s in starts.tolist()])
    g = torch.Generator().manual_seed(a.seed)
    perm = torch.randperm(len(x), generator=g)
    cut = int(0.9 * len(x))
    train = TensorDataset(x[perm[:cut]], y[perm[:cut]])
    test = TensorDataset(x[perm[cut:]], y[perm[cut:]])

    seconds, final = {}, {}
    sync()
    t_all = time.perf_counter()
    for config in a.configs.split(","):
        t0 = time.perf_counter()
        torch.manual_seed(a.seed)
        model = Model1(vocab, dim).to(dev)
        if config in ("B", "C"):
            model.embedding.weight.data.copy_(wte.to(dev))
        model.embedding.weight.requires_grad = config in ("A", "C")
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
        loader = DataLoader(train, batch_size=64, shuffle=True)
        for _ in range(a.epochs):
            model.train()
            for xb, yb in loader:
                xb, yb = xb.to(dev), yb.to(dev)
                loss = F.cross_entropy(model(xb).view(-1, vocab), yb.view(-1))
                opt.zero_grad()
                loss.backward()
                opt.step()
            model.eval()
            total, count = 0.0, 0
            with torch.no_grad():
                for xb, yb in DataLoader(test, batch_size=64):
                    xb, yb = xb.to(dev), yb.to(dev)
                    total += F.cross_entropy(model(xb).view(-1, vocab), yb.view(-1), reduction="sum").item()
                    count += yb.numel()
        sync()
        seconds[config] = time.perf_counter() - t0
        final[config] = total / count
    print(json.dumps({
        "implementation": f"pytorch-{torch.__version__}", "device": a.device, "epochs": a.epochs,
        "train_windows": cut, "steps_per_config": a.epochs * -(-cut // 64),
        "seconds": seconds, "total_seconds": time.perf_counter() - t_all, "final_test_loss": final,
    }))


if __name__ == "__main__":
    main()
