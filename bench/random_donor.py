#!/usr/bin/env python3
"""A random donor of another donor's shape: each column drawn from that column's mean and standard
deviation (seeded), with the same tokenizer.json, so it maps through the same tokenizer as the
original and differs only in what the rows hold. The two-donor run in docs/tokenizers.md compares
the shared MiniLM with one.

  python3 bench/random_donor.py ../shared/data/donors/all-minilm-l6-v2 /tmp/minilm-random [--seed 0]

Needs: python3 -m pip install numpy safetensors
"""
import argparse
import os
import shutil

import numpy as np
from safetensors.numpy import load_file, save_file

p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
p.add_argument("source")
p.add_argument("out")
p.add_argument("--seed", type=int, default=0)
a = p.parse_args()
weights = load_file(os.path.join(a.source, "model.safetensors"))
name = next(n for n in weights if n.endswith("word_embeddings.weight") or n.endswith("wte.weight"))
rows = weights[name].astype(np.float64)
rng = np.random.default_rng(a.seed)
drawn = rng.normal(rows.mean(axis=0), rows.std(axis=0), size=rows.shape).astype(np.float32)
os.makedirs(a.out, exist_ok=True)
save_file({name: drawn}, os.path.join(a.out, "model.safetensors"), metadata={"made_by": "bench/random_donor.py", "seed": str(a.seed)})
shutil.copy(os.path.join(a.source, "tokenizer.json"), os.path.join(a.out, "tokenizer.json"))
print(f"wrote {a.out}: {name} {list(drawn.shape)} drawn per column from {a.source}'s, seed {a.seed}")
