"""The ``embgraft`` command that pip installs: the same command line as the Rust binary."""

import os
import sys

from . import _engine


def main():
    # The CUDA engine when it loads (its --device auto then picks the GPU if one answers); else the
    # CPU engine, told why the CUDA one is absent so that its auto line and its --device cuda
    # error name the real cause (no driver, say) rather than a build without CUDA.
    engine, why = _engine.cuda()
    if engine is None:
        os.environ["EMBGRAFT_NO_CUDA_ENGINE"] = why
        engine = _engine.cpu
    sys.exit(engine.main(["embgraft", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
