"""Which engine runs a call: the CUDA engine (the ``embgraft-cuda13`` wheel, which
``pip install 'embgraft[cuda13]'`` brings) when it loads, else the CPU engine in this package.

``device="auto"`` (the default) runs on the GPU when the CUDA engine loads and a device answers
(the engine says which), else on the CPU with one line saying why; ``device="cuda"`` without a
usable CUDA engine is an :class:`InputError` naming what is missing."""

import importlib
import re

from . import _embgraft as cpu
from ._errors import InputError

_cuda = None  # (module or None, why not), once looked for


def cuda():
    """(the CUDA engine or None, why it is not there), looked for once."""
    global _cuda
    if _cuda is None:
        _cuda = _load_cuda()
    return _cuda


def _load_cuda():
    try:
        return importlib.import_module("embgraft_cuda13")._embgraft, None
    except ModuleNotFoundError as e:
        if e.name == "embgraft_cuda13":
            return None, "embgraft's CUDA engine is not installed (pip install 'embgraft[cuda13]' on a GPU machine)"
        return None, f"embgraft's CUDA engine cannot load ({e})"
    except (ImportError, OSError) as e:
        text = str(e)
        if "libcuda.so" in text:
            return None, "no CUDA driver found (libcuda.so.1)"
        lib = re.search(r"lib[\w+-]+\.so[\w.]*", text)
        return None, (f"a CUDA library is missing ({lib.group(0) if lib else text}); "
                      "pip install 'embgraft[cuda13]' brings NVIDIA's")


def for_device(device):
    """(engine, the --device value to give it, a line to show or None) for ``device=``."""
    device = "auto" if device is None else str(device)
    engine, why = cuda()
    if engine is not None:
        return engine, device, None
    if device == "auto":
        return cpu, "cpu", f"{why}: running on the CPU"
    if device == "cuda" or device.startswith("cuda:"):
        raise InputError(f"device={device!r}: {why}; use device='auto' or 'cpu'")
    return cpu, device, None
