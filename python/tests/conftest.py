"""The generated inputs every test runs on: a donor file and a corpus, made in a temporary folder."""

import numpy as np
import pytest

from helpers import DIM, VOCAB, write_safetensors


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    wte = (rng.standard_normal((VOCAB, DIM)) * 0.5).astype(np.float32)
    donor = root / "donor"
    donor.mkdir()
    write_safetensors(donor / "model.safetensors", {"wte.weight": wte})
    words = "the time traveller smiled and the machine began to move across the years of the future".split()
    text = " ".join(words[int(i)] for i in rng.integers(0, len(words), 6000)) + "."
    corpus = root / "corpus.txt"
    corpus.write_text(text)
    return {"root": root, "wte": wte, "donor": str(donor), "corpus": str(corpus)}
