"""How the ``minitransfer`` command sets up its process before any work
(``cli.entry``): glibc huge pages (a restart), JAX's persistent compilation
cache, and deterministic GPU operations. ``cli.main`` alone, as the tests
call it, has none of them."""

from __future__ import annotations

import os
import sys
from pathlib import Path

HUGE_PAGES_TUNABLE = "glibc.malloc.hugetlb=1"


def huge_pages_env() -> dict[str, str] | None:
    """The environment to restart this process with so that glibc's malloc
    backs large blocks with transparent huge pages; None where that does not
    apply (not Linux/glibc, transparent huge pages off, already set, or
    ``MINITRANSFER_NO_HUGEPAGES=1``).

    Why: a training step at the 124M shape needs about a gigabyte of
    temporaries (activations, gradients). glibc takes blocks that large
    straight from the kernel (mmap) and returns them on free, so every step
    the kernel faults in and zeroes some 250,000 fresh 4 KiB pages: about
    0.3 s of a 3.7 s step on a 2-core CPU (measured with
    benchmarks/train_step.py). With huge pages that is 2 MiB per fault.
    glibc reads its tunables only at start-up, hence a restart.
    """
    import platform

    tunables = os.environ.get("GLIBC_TUNABLES", "")
    if (
        sys.platform != "linux"
        or os.environ.get("MINITRANSFER_NO_HUGEPAGES", "") not in ("", "0")
        or "glibc.malloc.hugetlb" in tunables
        or platform.libc_ver()[0] != "glibc"
    ):
        return None
    try:
        thp = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return None
    if "[never]" in thp:
        return None
    return {**os.environ, "GLIBC_TUNABLES": ":".join(t for t in (tunables, HUGE_PAGES_TUNABLE) if t)}


def restart_with_huge_pages() -> None:
    """Re-run this very command with ``huge_pages_env()`` (once; a no-op where
    it does not apply or the restart fails)."""
    env = huge_pages_env()
    if env is None:
        return
    argv = list(getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv])
    try:
        os.execve(sys.executable, argv, env)
    except OSError:
        return


COMPILATION_CACHE_ENV = "MINITRANSFER_COMPILATION_CACHE"


def host_processor() -> str:
    """A short name for this machine's processor: its architecture and a hash
    of the instruction-set features the kernel lists (``x86_64-3f9a...``)."""
    import hashlib
    import platform

    features = ""
    try:
        features = next(
            (line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith(("flags", "Features"))),
            "",
        )
    except OSError:
        pass
    return f"{platform.machine() or 'cpu'}-{hashlib.sha256(features.encode()).hexdigest()[:10]}"


def compilation_cache_dir() -> Path | None:
    """Where the ``minitransfer`` command keeps compiled programs: the
    directory ``$MINITRANSFER_COMPILATION_CACHE`` names, ``0`` for none, by
    default ``$XDG_CACHE_HOME/minitransfer/jax/<processor>`` (``~/.cache/...``).

    The default has a folder per processor (``host_processor``) because a
    home directory can be shared by machines with different processors (a
    cluster's login and compute nodes), and a program compiled for one CPU's
    instruction set is not for another's."""
    chosen = os.environ.get(COMPILATION_CACHE_ENV, "")
    if chosen.lower() in ("0", "off", "false", "no"):
        return None
    if chosen:
        return Path(chosen).expanduser()
    home_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return home_cache / "minitransfer" / "jax" / host_processor()


def enable_compilation_cache() -> Path | None:
    """Turn on JAX's persistent compilation cache for this process (before
    anything compiles); returns its directory, or None where it stays off.

    Why: every command traces and compiles its steps afresh, which costs
    seconds on a CPU (the default ``compare`` spends about 10 s compiling 94
    programs) and more on a GPU, where XLA also tunes each matmul. The
    cache keeps each compiled program on disk, keyed by the program, the
    compiler options, the device and the jax version, so the next command
    with the same shapes loads it instead: same program, same results. It is
    JAX's own cache; this only chooses its directory (private to the user:
    JAX's documentation warns that whoever can write to it can make JAX run
    their code), caches every program whatever its compile time (JAX's
    default keeps only those that took a second or more, which on a CPU is
    almost none of ours; a 1-layer ``compare`` compiled 7.0 s cold and 1.2 s
    from this cache, against 2.0 s when only those over 0.05 s were kept)
    and caps it at 2 GiB, the least recently used going first. Settings
    made with JAX's own ``JAX_COMPILATION_CACHE_DIR`` and
    ``JAX_PERSISTENT_CACHE_*`` variables win."""
    directory = compilation_cache_dir()
    if directory is None or os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return None
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as e:
        print(f"minitransfer: note: no compilation cache ({directory}: {e.strerror})", file=sys.stderr)
        return None
    import jax

    jax.config.update("jax_compilation_cache_dir", str(directory))
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    if "JAX_COMPILATION_CACHE_MAX_SIZE" not in os.environ:
        jax.config.update("jax_compilation_cache_max_size", 2 * 2**30)
    return directory


GPU_DETERMINISM_FLAG = "--xla_gpu_deterministic_ops=true"


def make_gpu_deterministic() -> bool:
    """Ask XLA for deterministic GPU operations in this process (before JAX
    starts its backend, which is when it reads ``XLA_FLAGS``); returns
    whether it added the flag. A choice already in ``XLA_FLAGS`` either way
    wins, so ``XLA_FLAGS=--xla_gpu_deterministic_ops=false`` turns it off.

    Why: without it, XLA's scatter-add on a GPU (the embedding's gradient)
    sums with atomics in whatever order threads arrive, so the same command
    with the same seed gives different numbers. On an H100 (2026-11-27) two
    runs of the default ``compare``, one after the other, differed in 192 of
    their 252 result rows (every row but the frozen-backbone ``probe``'s,
    whose backbone gets no gradient); test accuracies moved by up to 3.6
    points (``full``, 100 labels, seed 0). On a CPU the flag changes nothing."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_gpu_deterministic_ops" in flags:
        return False
    os.environ["XLA_FLAGS"] = f"{flags} {GPU_DETERMINISM_FLAG}".strip()
    return True
