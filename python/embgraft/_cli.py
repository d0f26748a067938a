"""The ``embgraft`` command installed with the wheel: the same command line as the Rust binary."""

import sys

from ._embgraft import main as _main


def main():
    sys.exit(_main(["embgraft", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
