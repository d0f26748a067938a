"""The errors embgraft raises, one set for both engines (the CPU one and the CUDA one raise
these same classes), so ``except embgraft.InputError`` works whichever ran."""


class Error(Exception):
    """An embgraft error; the message names the cause and what to do."""


class InputError(Error):
    """Bad input: a flag value, a corpus, a config file."""


class DonorError(Error):
    """A donor that cannot be used."""


class DownloadError(Error):
    """A download that failed."""


class OutputError(Error):
    """An output folder or file that cannot be written."""
