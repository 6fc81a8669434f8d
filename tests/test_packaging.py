"""`pip install .` and `pip install -e .` give taomm.cli/.datasets/.detectors, never top-level ones."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHADOWED = ("cli", "datasets", "detectors")


def copy_source(dst: Path) -> Path:
    """The project's source, without build leftovers, virtual environments or caches."""
    ignore = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__",
                                    ".pytest_cache", ".ruff_cache", ".hypothesis")
    shutil.copytree(REPO, dst, ignore=ignore)
    return dst


def pip(*args: str, cwd: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args],
                   cwd=cwd, check=True)


def bare_venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    return path / "bin" / "python"


CHECK = """
import importlib, pathlib, sys
import taomm, taomm.cli, taomm.datasets, taomm.detectors
for name in ("cli", "datasets", "detectors"):
    try:
        importlib.import_module(name)
    except ModuleNotFoundError:
        pass
    else:
        sys.exit(f"top-level {name!r} is importable")
print(pathlib.Path(taomm.__file__).parent)
print(pathlib.Path(taomm.cli.__file__).parent)
print(pathlib.Path(taomm.datasets.__file__).parent)
"""


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_source(tmp_path_factory.mktemp("src") / "taomm-src")


@pytest.fixture(scope="module")
def wheel(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(out), ".", cwd=source)
    (found,) = out.glob("taomm-*.whl")
    return found


def test_wheel_layout(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    for module in ("taomm/__init__.py", "taomm/cli/app.py", "taomm/datasets/store.py",
                   "taomm/detectors/__init__.py", "taomm/resources/taobao33.tsv",
                   "taomm/resources/product_words.txt", "taomm/resources/spam/contact.txt",
                   "taomm/resources/spam/allow.txt", "taomm/text/spam.py"):
        assert module in names
    assert not [n for n in names if n.split("/")[0] in SHADOWED]
    # Every module of the source tree is in the wheel (a new subpackage must be listed in
    # pyproject's packages).
    roots = {"taomm": "taomm", "cli": "taomm/cli", "datasets": "taomm/datasets", "detectors": "taomm/detectors"}
    for folder, installed in roots.items():
        for module in (REPO / folder).rglob("*.py"):
            if "__pycache__" not in module.parts:
                assert f"{installed}/{module.relative_to(REPO / folder).as_posix()}" in names, module
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "taomm = taomm.cli.app:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_pip_install_wheel_into_fresh_venv(wheel: Path, tmp_path: Path) -> None:
    python = bare_venv(tmp_path / "venv")
    pip("--python", str(python), "install", "--no-deps", str(wheel), cwd=tmp_path)
    out = subprocess.run([str(python), "-c", CHECK], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr + out.stdout
    taomm_dir, cli_dir, datasets_dir = map(Path, out.stdout.split())
    assert tmp_path / "venv" in taomm_dir.parents
    assert cli_dir == taomm_dir / "cli" and datasets_dir == taomm_dir / "datasets"


def test_pip_install_editable_into_fresh_venv(source: Path, tmp_path: Path) -> None:
    # What `pip install -e .` does (PEP 660): the backend builds an editable wheel, pip
    # installs it. The backend runs here (the fresh venv has no setuptools).
    build = "import sys; from setuptools import build_meta; print(build_meta.build_editable(sys.argv[1]))"
    out = subprocess.run([sys.executable, "-c", build, str(tmp_path)], cwd=source, check=True,
                         capture_output=True, text=True)
    editable_wheel = tmp_path / out.stdout.strip().splitlines()[-1]
    python = bare_venv(tmp_path / "venv")
    pip("--python", str(python), "install", "--no-deps", str(editable_wheel), cwd=tmp_path)
    out = subprocess.run([str(python), "-c", CHECK], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr + out.stdout
    taomm_dir, cli_dir, datasets_dir = map(Path, out.stdout.split())
    assert (taomm_dir, cli_dir, datasets_dir) == (source / "taomm", source / "cli", source / "datasets")
