"""embgraft's CUDA engine. Not imported directly: ``import embgraft`` loads it when it can (see
``embgraft._engine``). Importing it loads NVIDIA's CUDA 13 libraries from their pip wheels
(site-packages/nvidia/*/lib) first, by full path, so the engine's links to libcudart, libcublas,
libcublasLt and libcurand find them without LD_LIBRARY_PATH; the driver library
(libcuda.so.1) must come from the system's GPU driver."""

import ctypes
import glob
import os
import sys

# Each library by the soname the engine links (CUDA 13's; cuRAND numbers its own), in load order.
_LIBS = ["libcudart.so.13", "libcublasLt.so.13", "libcublas.so.13", "libcurand.so.10"]


def _preload():
    roots = [os.path.join(p, "nvidia") for p in sys.path if p and os.path.isdir(os.path.join(p, "nvidia"))]
    for lib in _LIBS:
        found = sorted(f for root in roots for f in glob.glob(os.path.join(root, "*", "lib", lib)))
        if found:
            ctypes.CDLL(found[0], mode=ctypes.RTLD_GLOBAL)


_preload()
from ._embgraft import *  # noqa: E402,F401,F403
from . import _embgraft  # noqa: E402,F401
