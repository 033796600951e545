"""How the command line says what the library says: the library names each
setting as Python spells it, in backticks ("`max_len` must be at least 1",
see ``errors.py``); the command line writes it as the option of the running
command that sets it ("--max-len must be at least 1"). Here, and nowhere
else, do the library's names become flags: in its errors (``cli.main``) and
in what it logs, notes and summarises (``say``)."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable

# the library's names for settings whose option has another name (its dest): name -> dest
ALIASES = {
    "AdaptConfig.steps": "adapt_steps",  # mode adapt's next-word steps (a run's own are `steps`)
    "adapt.steps": "adapt_steps",  # the same, as CompareConfig holds them
    "prompts": "prompt",  # CompareConfig.prompts: compare's --prompt, once per prompt
    "out": "out_file",  # predict's --out (the file written; the other commands' --out is `out`)
}


def in_options(message: str, command: argparse.ArgumentParser | None) -> str:
    """A library message as the command line says it: each setting the library names in backticks
    (`max_len`, `adapt.steps`) written as the option of ``command`` that sets it (--max-len,
    --adapt-steps). A name that no option of the command sets stays as it is, backticks and all."""
    if command is None:
        return message
    flags = {
        a.dest: next((o for o in a.option_strings if o == "--" + a.dest.replace("_", "-")), a.option_strings[-1])
        for a in command._actions
        if a.option_strings
    }
    return re.sub(r"`([\w.]+)`", lambda m: flags.get(m[1]) or flags.get(ALIASES.get(m[1])) or m[0], message)


def say(args, file=None) -> Callable[[str], None]:
    """``print`` for what the library says while ``args``' command runs (the lines it logs, its notes, its
    summaries): its settings written as that command's options (``in_options``). ``file``: None for
    stdout (as it is when a line is printed), or a stream such as ``sys.stderr``."""
    command = getattr(args, "command_parser", None)

    def said(message: str) -> None:
        print(in_options(message, command), file=file if file is not None else sys.stdout)

    return said
