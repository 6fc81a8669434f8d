"""Repository rules: README and CI agree, no unsafe loading, lint clean, imports point down
the layers."""

from __future__ import annotations

import ast
import functools
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
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


# Layering (STYLE.md principle 1): library (taomm/, datasets/, detectors/) -> trainer -> thin
# CLI. Every import statement is an arrow, at module level or inside a function (a lazy
# import still points up a layer, and a lazy pair still makes a circle).

# Installed package -> its folder (pyproject.toml [tool.setuptools.package-dir]).
PACKAGE_DIRS = {"taomm": "taomm", "taomm.cli": "cli", "taomm.datasets": "datasets", "taomm.detectors": "detectors"}


@dataclass(frozen=True)
class Import:
    path: str  # the importing file, relative to the repository
    line: int
    importer: str  # its module
    targets: tuple[str, ...]  # the module the statement names, then maybe-submodules (`from pkg import name`)
    type_only: bool  # under `if TYPE_CHECKING:`: no arrow at run time


@dataclass(frozen=True)
class LayerRule:
    name: str
    binds: tuple[str, ...]  # the modules the rule is for (and their submodules)
    exempt: tuple[str, ...]
    forbidden: tuple[str, ...]  # what they must not import (nor any submodule of it)


LAYER_RULES = (
    # `python -m taomm` (taomm/__main__.py) is the command line's own entry point.
    LayerRule("the library never imports the command line", ("taomm",), ("taomm.cli", "taomm.__main__"),
              ("taomm.cli", "typer", "rich", "click")),
    LayerRule("the text layer never imports the store", ("taomm.text",), (), ("taomm.datasets",)),
    LayerRule("datasets never import detectors", ("taomm.datasets",), (), ("taomm.detectors",)),
)


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def module_name(path: str) -> str:
    """The installed name of a source file: ``cli/app.py`` -> ``taomm.cli.app``."""
    folder, *rest = Path(path).parts
    package = next(name for name, where in PACKAGE_DIRS.items() if where == folder)
    parts = [*package.split("."), *rest]
    parts[-1] = parts[-1].removesuffix(".py")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the nodes under an ``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``)."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        test = getattr(node, "test", None)
        if isinstance(node, ast.If) and ast.unparse(test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            inside |= {id(child) for stmt in node.body for child in ast.walk(stmt)}
    return inside


def parse_imports(path: str, source: str) -> list[Import]:
    """Every import statement of one source file, lazy ones included, as absolute names."""
    module = module_name(path)
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    tree = ast.parse(source, filename=path)
    type_only = _type_checking_nodes(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = tuple(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *filter(None, [node.module])])
            targets = (base, *(f"{base}.{alias.name}" for alias in node.names))
        else:
            continue
        found.append(Import(path, node.lineno, module, targets, id(node) in type_only))
    return found


@functools.cache
def repo_imports() -> tuple[Import, ...]:
    files = sorted(p for folder in PACKAGE_DIRS.values() for p in (REPO / folder).rglob("*.py")
                   if "__pycache__" not in p.parts)
    return tuple(imp for p in files
                 for imp in parse_imports(p.relative_to(REPO).as_posix(), p.read_text("utf-8")))


def layer_breaks(imports: tuple[Import, ...] | list[Import], rule: LayerRule) -> list[str]:
    """``file:line: module imports target`` for each import that breaks ``rule``."""
    breaks = []
    for imp in imports:
        if _within(imp.importer, rule.binds) and not _within(imp.importer, rule.exempt):
            target = next((t for t in imp.targets if _within(t, rule.forbidden)), None)
            if target is not None:
                breaks.append(f"{imp.path}:{imp.line}: {imp.importer} imports {target}")
    return breaks


def import_circles(imports: tuple[Import, ...] | list[Import]) -> list[str]:
    """Each pair of modules that import each other, at any level, with the two lines."""
    modules = {imp.importer for imp in imports}
    arrows: dict[tuple[str, str], Import] = {}
    for imp in imports:
        if imp.type_only:
            continue
        for target in imp.targets:
            # `from a.b import C` names a.b.C: the module is the longest known prefix
            known = [m for m in modules if _within(target, (m,))]
            if known and (to := max(known, key=len)) != imp.importer:
                arrows.setdefault((imp.importer, to), imp)
    return [f"{there.path}:{there.line}: {a} imports {b}, and {back.path}:{back.line}: {b} imports {a}"
            for (a, b), there in sorted(arrows.items()) if a < b and (back := arrows.get((b, a)))]


@pytest.mark.parametrize("rule", LAYER_RULES, ids=lambda rule: rule.name.replace(" ", "-"))
def test_imports_point_down_the_layers(rule: LayerRule) -> None:
    breaks = layer_breaks(repo_imports(), rule)
    assert not breaks, f"{rule.name}, but:\n" + "\n".join(breaks)


def test_no_two_modules_import_each_other() -> None:
    circles = import_circles(repo_imports())
    assert not circles, "import circles (make the arrow point one way):\n" + "\n".join(circles)


def private_imports(imports: tuple[Import, ...] | list[Import]) -> list[str]:
    """Each ``from taomm.x import _name``: a module that reaches for another's private name."""
    return [f"{imp.path}:{imp.line}: {imp.importer} imports {target}" for imp in imports
            for target in imp.targets[1:] if target.startswith("taomm.")
            and target.rpartition(".")[2].startswith("_") and not target.endswith("__version__")]


def test_no_module_imports_another_modules_private_names() -> None:
    found = private_imports(repo_imports())
    assert not found, "make the name public or move it where both can reach it:\n" + "\n".join(found)


def test_the_import_checks_catch_lazy_relative_and_circular_imports() -> None:
    sources = {
        "taomm/__main__.py": "from taomm.cli.app import main\n",  # exempt: the CLI's entry point
        "taomm/a.py": "from taomm import cli\n\n\ndef f():\n    import rich.console\n",
        "taomm/text/bad.py": "import os\n\n\ndef f():\n    from taomm.datasets.store import FeatureStore\n",
        "datasets/x.py": "from ..detectors import foreign\n",
        "taomm/b.py": "def g():\n    from . import c\n",
        "taomm/c.py": "from taomm.b import g\n",
        "taomm/d.py": "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from taomm.e import E\n",
        "taomm/e.py": "import taomm.d\n",
    }
    imports = [imp for path, source in sources.items() for imp in parse_imports(path, source)]
    cli, text, datasets = (layer_breaks(imports, rule) for rule in LAYER_RULES)
    assert cli == ["taomm/a.py:1: taomm.a imports taomm.cli", "taomm/a.py:5: taomm.a imports rich.console"]
    assert text == ["taomm/text/bad.py:5: taomm.text.bad imports taomm.datasets.store"]
    assert datasets == ["datasets/x.py:1: taomm.datasets.x imports taomm.detectors"]
    assert import_circles(imports) == ["taomm/b.py:2: taomm.b imports taomm.c, and taomm/c.py:1: taomm.c imports taomm.b"]
    assert private_imports(parse_imports("datasets/y.py", "from taomm.datasets.store import _key, StoreMeta\n")) == [
        "datasets/y.py:1: taomm.datasets.y imports taomm.datasets.store._key"]


LIBRARY_DIRS = ("taomm", "datasets", "detectors")  # not cli/: the CLI words the flags (cli/common.py FLAGS)
USER_LOGS = {"warning", "error", "exception", "critical", "warn"}
FLAG = re.compile(r"--[A-Za-z]")


def flag_mentions(path: str, source: str) -> list[str]:
    """Strings (f-string parts too) in ``raise`` statements and user-facing log calls that spell
    a command-line flag: the library names its options as ``OptionError`` placeholders instead."""
    found = []
    for node in ast.walk(ast.parse(source)):
        shown = isinstance(node, ast.Raise) or (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                                                and node.func.attr in USER_LOGS)
        if shown:
            found += [(part.lineno, part.value) for part in ast.walk(node)
                      if isinstance(part, ast.Constant) and isinstance(part.value, str) and FLAG.search(part.value)]
    return [f"{path}:{line}: {text!r}" for line, text in sorted(set(found))]  # a log call in a raise: seen twice


def test_library_messages_name_no_cli_flags() -> None:
    found = [hit for folder in LIBRARY_DIRS for path in sorted((REPO / folder).rglob("*.py"))
             for hit in flag_mentions(str(path.relative_to(REPO)), path.read_text("utf-8"))]
    assert not found, "raise OptionError(\"... {name} ...\", \"name\") instead:\n" + "\n".join(found)


def test_the_flag_check_reads_f_strings_and_log_calls() -> None:
    source = ('def f(n, log):\n    """Docstrings may say --lr."""\n    log.info("--ok")\n'
              '    log.warning("--ema %s", n)\n    raise ValueError(f"{n} too big: lower "\n'
              '                     f"--lr {n}")\n')
    assert flag_mentions("x.py", source) == ["x.py:4: '--ema %s'", "x.py:5: ' too big: lower --lr '"]
