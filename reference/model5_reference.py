"""Golden logits and loss for a tiny GPT-2, computed independently of embgraft.

The checkpoint's values follow a formula that gives exact dyadic numbers (so Rust and Python
build bit-identical weights without sharing a file): tests/model5_reference.rs writes the same
tensors, in GPT-2's layout (Hugging Face names, Conv1D weights stored (in, out)), grafts them
whole into Model 5 and compares with `model5_golden.json`.

The forward pass below is GPT-2's as Hugging Face's GPT2LMHeadModel computes it, written out
with torch primitives: Conv1D is x @ W + b on the stored (in, out) weight, gelu_new is the tanh
approximation, attention is causal, the head is tied to wte.

Run: python reference/model5_reference.py  (torch, numpy; writes reference/model5_golden.json)
"""

import json
import math
import pathlib

import torch

VOCAB, DIM, HEADS, LAYERS, POSITIONS = 37, 16, 4, 2, 12
EPS = 1e-5


def names_and_shapes():
    """GPT-2's tensor names and stored shapes, in the order the formula numbers them."""
    d = DIM
    out = [("wte.weight", (VOCAB, d)), ("wpe.weight", (POSITIONS, d))]
    for i in range(LAYERS):
        p = f"h.{i}."
        out += [
            (p + "ln_1.weight", (d,)),
            (p + "ln_1.bias", (d,)),
            (p + "attn.c_attn.weight", (d, 3 * d)),
            (p + "attn.c_attn.bias", (3 * d,)),
            (p + "attn.c_proj.weight", (d, d)),
            (p + "attn.c_proj.bias", (d,)),
            (p + "ln_2.weight", (d,)),
            (p + "ln_2.bias", (d,)),
            (p + "mlp.c_fc.weight", (d, 4 * d)),
            (p + "mlp.c_fc.bias", (4 * d,)),
            (p + "mlp.c_proj.weight", (4 * d, d)),
            (p + "mlp.c_proj.bias", (d,)),
        ]
    out += [("ln_f.weight", (d,)), ("ln_f.bias", (d,))]
    return out


def value(k, i, name):
    """Element i of tensor k: exact in float32. LayerNorm gains sit near 1, the rest near 0."""
    v = ((i * 7 + k * 13) % 17 - 8) / 16.0
    if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name == "ln_f.weight":
        return 1.0 + v / 4.0
    return v


def weights():
    w = {}
    for k, (name, shape) in enumerate(names_and_shapes()):
        n = math.prod(shape)
        w[name] = torch.tensor([value(k, i, name) for i in range(n)], dtype=torch.float64).reshape(shape)
    return w


def forward(w, ids):
    b, t = ids.shape
    x = w["wte.weight"][ids] + w["wpe.weight"][:t]
    hd = DIM // HEADS
    mask = torch.tril(torch.ones(t, t, dtype=torch.bool))
    for i in range(LAYERS):
        p = f"h.{i}."
        a = torch.nn.functional.layer_norm(x, (DIM,), w[p + "ln_1.weight"], w[p + "ln_1.bias"], EPS)
        qkv = a @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]
        q, k, v = qkv.split(DIM, dim=-1)
        q, k, v = (z.reshape(b, t, HEADS, hd).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        att = att.masked_fill(~mask, float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(b, t, DIM)
        x = x + y @ w[p + "attn.c_proj.weight"] + w[p + "attn.c_proj.bias"]
        m = torch.nn.functional.layer_norm(x, (DIM,), w[p + "ln_2.weight"], w[p + "ln_2.bias"], EPS)
        m = torch.nn.functional.gelu(m @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"], approximate="tanh")
        x = x + m @ w[p + "mlp.c_proj.weight"] + w[p + "mlp.c_proj.bias"]
    x = torch.nn.functional.layer_norm(x, (DIM,), w["ln_f.weight"], w["ln_f.bias"], EPS)
    return x @ w["wte.weight"].T  # tied head


def main():
    # float64 throughout: the golden values are the exact model, and embgraft's float32 must
    # land within rounding of them.
    w = weights()
    ids = torch.tensor([[3, 17, 5, 36, 0, 11, 29, 8], [1, 1, 2, 3, 5, 8, 13, 21]])
    targets = torch.tensor([[17, 5, 36, 0, 11, 29, 8, 4], [1, 2, 3, 5, 8, 13, 21, 34]])
    logits = forward(w, ids)  # (B, T, V)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1))
    out = {
        "config": {"vocab": VOCAB, "dim": DIM, "heads": HEADS, "layers": LAYERS, "positions": POSITIONS},
        "ids": ids.tolist(),
        "targets": targets.tolist(),
        "logits": logits.reshape(-1, VOCAB).tolist(),
        "loss": loss.item(),
        "torch": torch.__version__,
    }
    path = pathlib.Path(__file__).with_name("model5_golden.json")
    path.write_text(json.dumps(out))
    print(f"wrote {path}: loss {loss.item():.6f}")


if __name__ == "__main__":
    main()
