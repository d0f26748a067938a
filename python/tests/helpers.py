"""What the Python tests share: a safetensors writer and a small protocol."""

import json
import struct

import numpy as np

VOCAB, DIM = 50257, 8  # GPT-2's BPE (compiled in) indexes 50257 rows


def write_safetensors(path, tensors):
    """The safetensors layout: 8-byte header length, JSON header, raw little-endian data."""
    header, blobs, offset = {}, [], 0
    for name, arr in tensors.items():
        data = np.ascontiguousarray(arr, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    path.write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs))


SMALL = dict(max_steps=6, eval_every=3, seeds=2, batch_size=16, progress=False)
