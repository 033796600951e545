"""The errors minitransfer raises on purpose, in one place: each message says
what was wrong (the file, field, tensor or setting) and what to do instead.
The command line prints them as one line; anything else is a bug.

A message names a setting (a function's parameter, a config's field) as
Python spells it, in backticks: "`max_len` must be at least 1". The command
line writes each such name as its own option ("--max-len must be at least
1": ``cli.options``), so that only the command line speaks in flags. What
the library logs and notes names them the same way.
"""

from __future__ import annotations


class DataError(ValueError):
    """Bad or unusable input data; the message names the file/field and what was expected."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message says which file/tensor and why."""


class TrainingError(RuntimeError):
    """Training cannot go on (the loss became NaN, a folder holds another run); the message says what to change."""


class BookError(RuntimeError):
    """A lecture that cannot be run or built; the message says which and why."""
