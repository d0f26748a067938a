"""What an export folder holds, read with numpy alone, and Model 1 as a PyTorch module."""

import json
import struct
from pathlib import Path

import numpy as np

_DTYPES = {"F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "U8": "u1"}


def read_safetensors(path):
    """Every tensor of a safetensors file as a read-only numpy array mapped from the file."""
    path = Path(path)
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    out = {}
    for name, t in header.items():
        if t["dtype"] not in _DTYPES:
            raise ValueError(f"{path}: {name} is {t['dtype']}, which this reader does not take")
        lo, hi = t["data_offsets"]
        dtype = np.dtype(_DTYPES[t["dtype"]])
        count = (hi - lo) // dtype.itemsize
        if count == 0:
            out[name] = np.zeros(t["shape"], dtype)
            continue
        out[name] = np.memmap(path, dtype=dtype, mode="r", offset=8 + n + lo, shape=tuple(t["shape"]))
    return out


def torch_model1(folder):
    """The Model 1 an ``embgraft export`` folder holds, as a ``torch.nn.Module`` (on the CPU, in
    eval mode): token embedding -> exact GELU -> unembedding, logits of shape (..., vocab)."""
    import torch

    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    if config.get("model_type") != "embgraft-model1":
        raise ValueError(f"{folder} holds a {config.get('model_type')} export, not Model 1; "
                         "load a Model 5 folder with transformers.GPT2LMHeadModel.from_pretrained")

    class Model1(torch.nn.Module):
        def __init__(self, vocab, dim):
            super().__init__()
            self.embedding = torch.nn.Embedding(vocab, dim)
            self.gelu = torch.nn.GELU()
            self.unembedding = torch.nn.Linear(dim, vocab, bias=False)

        def forward(self, ids):
            return self.unembedding(self.gelu(self.embedding(ids)))

    model = Model1(config["vocab_size"], config["hidden_size"])
    weights = read_safetensors(folder / "model.safetensors")
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in weights.items()})
    return model.eval()
