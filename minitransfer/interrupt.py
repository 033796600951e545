"""Ctrl-C that is sure to stop a command.

Python turns SIGINT into a KeyboardInterrupt raised wherever the interpreter
happens to be. Where that is a callback whose exceptions are ignored (JAX's
garbage-collection hook, a ``__del__``), Python prints "Exception ignored"
and carries on: a new-user run saw a 5 s pretrain run to its end in 3 of 11
tries at stopping it. So the handler installed here also sets a flag, which
the training loop checks before every step (``loop.train_loop``), and
evaluation and feature passes before every batch (``check``).

No imports beyond the standard library: the command installs this first.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading

_flag = [False]


def _on_sigint(signum, frame):
    _flag[0] = True
    raise KeyboardInterrupt


def _quiet_unraisable(unraisable, _default=sys.unraisablehook):
    # a KeyboardInterrupt that Python cannot raise (it landed in a callback) is not news: the flag has it,
    # and the command stops with its one line; anything else is printed as usual
    if isinstance(unraisable.exc_value, KeyboardInterrupt) and _flag[0]:
        return
    _default(unraisable)


def install() -> bool:
    """Install the handler (in the main thread only, where signals arrive),
    and keep Python's "Exception ignored" report of a swallowed Ctrl-C off
    the screen; returns whether it did."""
    if threading.current_thread() is not threading.main_thread():
        return False
    if signal.getsignal(signal.SIGINT) is not _on_sigint:
        signal.signal(signal.SIGINT, _on_sigint)
    if sys.unraisablehook is not _quiet_unraisable:
        sys.unraisablehook = _quiet_unraisable
    return True


def requested() -> bool:
    """Was Ctrl-C pressed, even where its KeyboardInterrupt was swallowed?"""
    return _flag[0]


def request() -> None:
    """What Ctrl-C does, without the signal: the training loop stops before
    its next step, as at a real Ctrl-C (a notebook's stop button, a test)."""
    _flag[0] = True


def clear() -> None:
    _flag[0] = False


def check() -> None:
    """Raise the KeyboardInterrupt of a Ctrl-C that was swallowed; for long
    loops outside training (evaluation, frozen-backbone features)."""
    if _flag[0]:
        clear()  # acted on: a later call (in a notebook, the next cell's) must not stop again
        raise KeyboardInterrupt


@contextlib.contextmanager
def checkpoints():
    """The handler for the duration of a loop (the previous one put back
    after it); the flag is cleared once a KeyboardInterrupt has left the
    loop, since it has then been acted on."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    install()
    try:
        yield
    except KeyboardInterrupt:
        clear()
        raise
    finally:
        signal.signal(signal.SIGINT, previous)
