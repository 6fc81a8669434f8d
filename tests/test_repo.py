"""Repository rules: README and CI agree, no unsafe loading, lint clean."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
INSTALL = '.venv/bin/pip install -e ".[dev]"'
TEST = ".venv/bin/pytest"


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text("utf-8")
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def test_readme_setup_is_what_ci_runs() -> None:
    first, second = readme_commands()[:2]
    assert first.strip().startswith("python3 -m venv .venv && " + INSTALL)
    assert second.strip() == TEST
    ci = (REPO / ".ci" / "run").read_text("utf-8")
    assert INSTALL in ci and f"{TEST} 2>&1" in ci and "set -euo pipefail" in ci


def test_no_unsafe_deserialisation() -> None:
    offenders = []
    for path in REPO.glob("**/*.py"):
        if ".venv" in path.parts or path == Path(__file__):
            continue
        for n, line in enumerate(path.read_text("utf-8").splitlines(), 1):
            if re.search(r"\bimport pickle\b|pickle\.loads?\(|allow_pickle=True", line) or (
                "torch.load(" in line and "weights_only=True" not in line
            ):
                offenders.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert not offenders, offenders


def test_ruff_is_clean() -> None:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent))
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e '.[dev]')")
    result = subprocess.run([ruff, "check", "--quiet", str(REPO)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
