#!/usr/bin/env python3
"""PyTorch reference for embgraft's Model 1 training step.

Builds the course's Model 1 (nn.Embedding -> GELU -> nn.Linear(bias=False), log_softmax + NLLLoss,
torch.optim.AdamW), trains it for 20 steps from a fixed initialisation on a fixed list of batches,
once with the embedding trainable and once frozen (requires_grad=False, as the course does), and
writes beside this script:

  model1_golden.safetensors  the initialisation and the batches (inputs to replay)
  model1_golden.json         the 20 losses of each run and the final parameters' sums

tests/reference.rs replays the same initialisation and batches through embgraft and must match
every loss within 1e-4. Regenerate with:

  python3 -m pip install torch safetensors numpy
  python3 reference/model1_reference.py
"""
import json
import os

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

V, D, B, T, STEPS = 211, 24, 8, 8, 20
# Larger than the course's lr 1e-3 / wd 0.01 so that 20 steps move the parameters far enough
# for a wrong update rule or a leaking weight decay to show.
LR, WD = 1e-2, 0.1

HERE = os.path.dirname(os.path.abspath(__file__))


class Model1(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(V, D)
        self.gelu = nn.GELU()
        self.unembedding = nn.Linear(D, V, bias=False)

    def forward(self, x):
        return self.unembedding(self.gelu(self.embedding(x)))


def main():
    torch.manual_seed(0)
    init = Model1()  # PyTorch's own default initialisation
    wte0 = init.embedding.weight.detach().clone()
    head0 = init.unembedding.weight.detach().clone()
    g = torch.Generator().manual_seed(1)
    # Inputs from a small part of the vocabulary, so tokens repeat within a batch as in text.
    xs = torch.randint(0, 40, (STEPS, B, T), generator=g)
    # Targets mostly follow a rule of the input (so the loss falls), with 30 % noise.
    noise = torch.randint(0, V, (STEPS, B, T), generator=g)
    ys = torch.where(torch.rand(STEPS, B, T, generator=g) < 0.3, noise, (xs * 5 + 3) % V)

    runs = {}
    for name, frozen in [("trainable", False), ("frozen", True)]:
        model = Model1()
        model.embedding.weight.data = wte0.clone()
        model.unembedding.weight.data = head0.clone()
        model.embedding.weight.requires_grad = not frozen
        opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WD)
        losses = []
        for s in range(STEPS):
            logp = F.log_softmax(model(xs[s]), dim=-1)  # (B, T, V)
            loss = F.nll_loss(logp.view(-1, V), ys[s].view(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        sums = {}
        for pname, p in [("wte", model.embedding.weight), ("lm_head", model.unembedding.weight)]:
            w = p.detach().double()
            sums[pname] = {"sum": w.sum().item(), "abs_sum": w.abs().sum().item()}
        runs[name] = {"losses": losses, "final": sums,
                      "wte_unchanged": bool(torch.equal(model.embedding.weight.detach(), wte0))}

    save_file({"wte": wte0.contiguous(), "lm_head": head0.contiguous(),
               "inputs": xs.to(torch.int64).contiguous(), "targets": ys.to(torch.int64).contiguous()},
              os.path.join(HERE, "model1_golden.safetensors"))
    golden = {"torch": torch.__version__, "vocab": V, "dim": D, "batch": B, "seq_len": T, "steps": STEPS,
              "lr": LR, "weight_decay": WD, "runs": runs}
    with open(os.path.join(HERE, "model1_golden.json"), "w") as f:
        json.dump(golden, f, indent=1)
        f.write("\n")
    for name, r in runs.items():
        print(f"{name}: first loss {r['losses'][0]:.6f}, last {r['losses'][-1]:.6f}, "
              f"wte unchanged: {r['wte_unchanged']}")


if __name__ == "__main__":
    main()
