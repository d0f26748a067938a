"""Saved weights and exports, loaded by the real PyTorch and transformers: Model 1 through
``embgraft.torch_model1``, Model 5 through ``GPT2LMHeadModel.from_pretrained``, each scoring the
run's test windows as the run scored them. Without torch or transformers these skip, unless
EMBGRAFT_REQUIRE_TORCH is set (CI installs both and sets it)."""

import json
import os

import numpy as np
import pytest

import embgraft
from helpers import DIM, VOCAB


def _need(module):
    if os.environ.get("EMBGRAFT_REQUIRE_TORCH"):
        return __import__(module)
    return pytest.importorskip(module)


RUN = dict(seeds=1, batch_size=16, eval_every=2, progress=False, save_weights=True)


def _final_test_loss(folder):
    return json.loads((folder / "embgraft.json").read_text())["final_test_loss"]


def test_weights_are_mapped_and_frozen_donor_tensors_come_from_the_donor(inputs, tmp_path):
    r = embgraft.compare(donor=inputs["donor"], corpus=inputs["corpus"], configs=["A", "B"], max_steps=4,
                         out=tmp_path / "run", **RUN)
    b = r.weights("B")
    assert sorted(b) == ["lm_head", "wte"] and b["wte"].shape == (VOCAB, DIM)
    # B's frozen embedding is the donor's, bit for bit, mapped from the donor file itself.
    assert np.array_equal(b["wte"].view(np.uint32), inputs["wte"].view(np.uint32))
    assert str(b["wte"].filename).endswith("model.safetensors") and "donor" in str(b["wte"].filename)
    a = r.weights("A", seed=0)
    assert not np.array_equal(a["wte"], inputs["wte"])
    with pytest.raises(embgraft.InputError, match="no cell C seed 0"):
        r.weights("C")
    plain = embgraft.compare(donor=inputs["donor"], corpus=inputs["corpus"], configs=["A"], max_steps=2, seeds=1,
                             batch_size=16, progress=False, out=tmp_path / "plain")
    with pytest.raises(embgraft.InputError, match="--save-weights"):
        plain.weights("A")
    with pytest.raises(embgraft.InputError, match="--save-weights"):
        plain.export("A", out=tmp_path / "nothing")
    assert not (tmp_path / "nothing").exists()


def test_model1_export_reproduces_the_runs_test_loss_in_torch(inputs, tmp_path):
    torch = _need("torch")
    r = embgraft.compare(donor=inputs["donor"], corpus=inputs["corpus"], configs=["B", "C"], max_steps=6,
                         out=tmp_path / "run", **RUN)
    for config in ["B", "C"]:
        folder = r.export(config, out=tmp_path / f"export-{config}")
        model = embgraft.torch_model1(folder)
        windows = embgraft.read_safetensors(folder / "test-windows.safetensors")
        x, y = (torch.from_numpy(np.array(windows[k])) for k in ("input_ids", "labels"))
        with torch.no_grad():
            logits = model(x)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).double(), y.reshape(-1))
        assert abs(loss.item() - _final_test_loss(folder)) < 1e-5, (config, loss.item(), _final_test_loss(folder))
        # The engine's own logits for the first test window, from the run folder.
        ours = r.logits(config, np.array(windows["input_ids"][:1]))
        np.testing.assert_allclose(logits[0].numpy(), ours[0], rtol=0, atol=1e-5)


def test_model5_export_loads_in_transformers_with_the_runs_logits_and_loss(inputs, tmp_path):
    torch = _need("torch")
    transformers = _need("transformers")
    r = embgraft.compare(donor=inputs["donor"], corpus=inputs["corpus"], model="model5", layers=2, heads=2,
                         configs=["C"], max_steps=6, out=tmp_path / "run", **RUN)
    folder = r.export("C", out=tmp_path / "gpt2")
    model = transformers.GPT2LMHeadModel.from_pretrained(folder).eval()
    assert model.config.n_embd == DIM and model.config.n_layer == 2 and model.config.vocab_size == VOCAB
    windows = embgraft.read_safetensors(folder / "test-windows.safetensors")
    x, y = (torch.from_numpy(np.array(windows[k])) for k in ("input_ids", "labels"))
    with torch.no_grad():
        first = model(x[:1]).logits[0].numpy()
        ours = r.logits("C", np.array(windows["input_ids"][:1]))[0]
        np.testing.assert_allclose(first, ours, rtol=0, atol=1e-5)
        total = 0.0
        for lo in range(0, len(x), 256):
            z = model(x[lo:lo + 256]).logits
            total += torch.nn.functional.cross_entropy(z.reshape(-1, z.shape[-1]).double(),
                                                       y[lo:lo + 256].reshape(-1), reduction="sum").item()
    loss = total / y.numel()
    assert abs(loss - _final_test_loss(folder)) < 1e-5, (loss, _final_test_loss(folder))


def test_export_refuses_a_non_empty_folder_unless_forced(inputs, tmp_path):
    r = embgraft.compare(donor=inputs["donor"], corpus=inputs["corpus"], configs=["A"], max_steps=2,
                         out=tmp_path / "run", **RUN)
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "mine.txt").write_text("keep me")
    with pytest.raises(embgraft.OutputError, match="not empty"):
        r.export("A", out=dest)
    assert sorted(p.name for p in dest.iterdir()) == ["mine.txt"]
    r.export("A", out=dest, force=True)
    assert (dest / "model.safetensors").is_file() and (dest / "mine.txt").read_text() == "keep me"
