"""embgraft from Python: graft pretrained token embeddings into small language models, freeze or
thaw them, train, and report whether the graft helped and whether freezing hurt.

The engine is embgraft's Rust core; keyword arguments are its command-line flags in snake_case
(``max_steps=300`` is ``--max-steps 300``), with the same defaults and validation::

    import embgraft
    r = embgraft.compare(donor="gpt2", corpus="timemachine.txt", seeds=3, max_steps=300)
    r.verdicts   # the report's answers
    r            # in Jupyter: verdicts, configurations and curves

``donor=`` also takes a 2-D array (numpy, or a torch tensor on the CPU).
"""

from ._embgraft import DonorError, DownloadError, Error, InputError, OutputError
from ._api import Result, compare, inspect, report, settings, train

__all__ = [
    "compare",
    "train",
    "inspect",
    "report",
    "settings",
    "Result",
    "Error",
    "InputError",
    "DonorError",
    "DownloadError",
    "OutputError",
]
