"""embgraft from Python: graft pretrained token embeddings into small language models, freeze or
thaw them, train, and report whether the graft helped and whether freezing hurt.

The engine is embgraft's Rust core; keyword arguments are its command-line flags in snake_case
(``max_steps=300`` is ``--max-steps 300``), with the same defaults and validation::

    import embgraft
    r = embgraft.compare(donor="gpt2", corpus="timemachine.txt", seeds=3, max_steps=300)
    r.verdicts   # the report's answers
    r            # in Jupyter: verdicts, configurations and curves

``donor=`` also takes a 2-D array (numpy, or a torch tensor on the CPU). With
``pip install 'embgraft[cuda13]'`` on a GPU machine, ``device="auto"`` (the default) trains on the GPU.
"""

import os as _os

from ._blas import numpy_openblas as _numpy_openblas

# The engine loads this OpenBLAS for its matrix products on CPUs without AVX-512, where it beats
# the engine's own kernels; EMBGRAFT_BLAS set by the user wins, and EMBGRAFT_GEMM=gemm turns it off.
if not _os.environ.get("EMBGRAFT_BLAS"):
    _blas = _numpy_openblas()
    if _blas:
        _os.environ["EMBGRAFT_BLAS"] = _blas

from ._errors import DonorError, DownloadError, Error, InputError, OutputError  # noqa: E402
from ._api import Result, compare, inspect, report, settings, train  # noqa: E402
from ._torch import read_safetensors, torch_model1  # noqa: E402

try:
    from importlib.metadata import version as _version

    __version__ = _version("embgraft")
except Exception:  # noqa: BLE001 (not installed as a distribution: a source tree)
    __version__ = "0.1.0"

__all__ = [
    "compare",
    "train",
    "inspect",
    "report",
    "settings",
    "Result",
    "torch_model1",
    "read_safetensors",
    "Error",
    "InputError",
    "DonorError",
    "DownloadError",
    "OutputError",
]
