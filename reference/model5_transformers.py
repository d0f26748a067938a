"""Model 5 against the real transformers GPT-2: logits, every gradient, and 10 AdamW steps.

In the manner of llm.c's test_gpt2: `transformers.GPT2LMHeadModel` is built from a small
`GPT2Config` (no download), loaded with the same formula weights that
tests/model5_reference.rs writes in GPT-2's layout, and run in float32 (embgraft's precision):

- the logits and the mean cross-entropy of a fixed batch (targets given per position),
- the gradient of every parameter (GPT-2's layout: Conv1D weights (in, out); the head is tied
  to wte, so wte's gradient holds both uses),
- 10 steps of torch.optim.AdamW (one group, weight decay on every parameter), each on its own
  batch: the loss before each step and every parameter's sum after the last.

tests/model5_transformers.rs grafts the same tensors whole into Model 5 (context 8 of the
donor's 12 positions), replays this and compares. Only wpe's first 8 rows are ever used, so
its gradient and sum are recorded over those rows.

Run: python reference/model5_transformers.py  (torch, transformers; writes
reference/model5_transformers_golden.json)
"""

import json
import pathlib

import torch
import transformers

from model5_reference import DIM, EPS, HEADS, LAYERS, POSITIONS, VOCAB, weights

T, B, STEPS = 8, 2, 10
LR, WD = 1e-2, 0.1


def batch(k):
    """Step k's inputs and targets: fixed formulas, no random state."""
    ids = [[(3 + 5 * i + 7 * j + 11 * k) % VOCAB for j in range(T)] for i in range(B)]
    targets = [[(1 + 2 * i + 3 * j + 13 * k) % VOCAB for j in range(T)] for i in range(B)]
    return torch.tensor(ids), torch.tensor(targets)


def loss_of(model, ids, targets):
    logits = model(input_ids=ids).logits  # (B, T, V)
    return logits, torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1))


def used(name, t):
    """The part of a tensor Model 5 has: wpe's first T rows."""
    return t[:T] if name == "wpe.weight" else t


def summed(name, t):
    """The part of a tensor whose sum after training is compared. The key bias (the middle
    third of c_attn's bias) adds q·b_k to every score of a query alike, which the softmax
    cancels: its true gradient is 0, both implementations compute rounding noise of ~1e-9,
    and AdamW divides that noise by its own size, so the key bias drifts differently in each
    (by up to lr per step). Its gradient is still compared; its sum is left out."""
    t = used(name, t)
    if name.endswith("attn.c_attn.bias"):
        t = torch.cat([t[:DIM], t[2 * DIM :]])
    return t


def main():
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(
        vocab_size=VOCAB,
        n_embd=DIM,
        n_layer=LAYERS,
        n_head=HEADS,
        n_positions=POSITIONS,
        activation_function="gelu_new",
        layer_norm_epsilon=EPS,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=None,
    )
    model = transformers.GPT2LMHeadModel(cfg)
    model.config._attn_implementation = "eager"
    model = model.float().train()  # dropout is 0; train() as a training step runs
    w = weights()
    params = dict(model.transformer.named_parameters())
    with torch.no_grad():
        for name, value in w.items():
            params[name].copy_(value.float())
    assert model.lm_head.weight.data_ptr() == params["wte.weight"].data_ptr(), "head tied to wte"

    ids, targets = batch(0)
    logits, loss = loss_of(model, ids, targets)
    loss.backward()
    grads = {n: used(n, p.grad).reshape(-1).tolist() for n, p in params.items()}

    model.zero_grad(set_to_none=True)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WD)
    losses = []
    for k in range(STEPS):
        ids_k, targets_k = batch(k)
        opt.zero_grad(set_to_none=True)
        _, l = loss_of(model, ids_k, targets_k)
        l.backward()
        opt.step()
        losses.append(l.item())
    sums = {n: summed(n, p.detach()).double().sum().item() for n, p in params.items()}
    out = {
        "config": {"vocab": VOCAB, "dim": DIM, "heads": HEADS, "layers": LAYERS, "positions": POSITIONS, "t": T},
        "adamw": {"lr": LR, "weight_decay": WD},
        "batches": [[x.tolist() for x in batch(k)] for k in range(STEPS)],
        "logits": logits.detach().reshape(-1, VOCAB).tolist(),
        "loss": loss.item(),
        "grads": grads,
        "losses": losses,
        "sums": sums,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    path = pathlib.Path(__file__).with_name("model5_transformers_golden.json")
    path.write_text(json.dumps(out))
    print(f"wrote {path}: loss {loss.item():.6f}, after {STEPS} AdamW steps {losses[-1]:.6f}")


if __name__ == "__main__":
    main()
