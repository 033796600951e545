"""The errors minitransfer raises on purpose, in one place: each message says
what was wrong (the file, field, tensor or setting) and what to do instead.
The command line prints them as one line; anything else is a bug.
"""

from __future__ import annotations

import re
from collections.abc import Callable


class DataError(ValueError):
    """Bad or unusable input data; the message names the file/field and what was expected."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message says which file/tensor and why."""


class TrainingError(RuntimeError):
    """Training cannot go on (the loss became NaN, a folder holds another run); the message says what to change."""


class BookError(RuntimeError):
    """A lecture that cannot be run or built; the message says which and why."""


class SettingError(ValueError):
    """A setting (a function's parameter, a config's field) given a value it cannot take. The message
    names each setting as Python spells it, in backticks (`max_len`); the command line shows its option
    there instead (``named``), so that only the command line speaks in flags."""

    def named(self, name: Callable[[str], str]) -> str:
        """The message with each `setting` written as ``name(setting)``."""
        return re.sub(r"`(\w+)`", lambda m: name(m[1]), str(self))
