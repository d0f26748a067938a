"""The OpenBLAS numpy's wheel ships, for embgraft's matrix products on CPUs without AVX-512.

The package sets EMBGRAFT_BLAS to it on import (a value the user set wins). This file needs
nothing but numpy, so bench/isa.sh runs it as a script to point the benchmarks' engine at the
same library: ``python3 python/embgraft/_blas.py`` prints the path, or nothing.
"""

import glob
import os


def numpy_openblas():
    """numpy.libs/libscipy_openblas*.so beside the installed numpy, or None (no numpy, or a
    numpy built against another BLAS)."""
    try:
        import numpy
    except ImportError:
        return None
    libs = os.path.join(os.path.dirname(numpy.__file__), os.pardir, "numpy.libs")
    found = sorted(glob.glob(os.path.join(libs, "libscipy_openblas*.so*")))
    return os.path.normpath(found[0]) if found else None


if __name__ == "__main__":
    print(numpy_openblas() or "")
