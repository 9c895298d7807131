"""`binclass lint`: static checks of a user's PyTorch training script, notebook or folder of them (read
with ast, never run) for the bugs that make a reported number wrong. Precision first: a correct script
must get no error.

    script.py   the parsed script, what the whole file says about its model, the queries rules share
    rules.py    the rules, each registered with the node type it reads
    notebooks   code cells as one program, findings at their cell and line

The package is also the API's `binclass.lint(*scripts)`: calling it returns the findings for scripts,
notebooks or folders of them, as `binclass.doctor(path)` does for histories."""

from __future__ import annotations

import ast
import os
import sys
import types
from pathlib import Path

from ..doctor.findings import Finding
from ..errors import BinclassError
from .notebooks import lint_notebook, lint_tree
from .rules import RULES

__all__ = ["RULES", "lint_file", "lint_notebook", "lint_path", "lint_source", "scripts_under"]

SKIPPED_DIRS = {"__pycache__", "site-packages", "node_modules", ".ipynb_checkpoints"}


def lint_source(source: str, path: str = "<string>") -> list[Finding]:
    try:
        tree = ast.parse(source, filename=path)
    except SyntaxError as exc:
        raise BinclassError(
            f"{path}:{exc.lineno}: not valid Python ({exc.msg}); lint reads Python source files"
        ) from None
    return sorted(lint_tree(tree, path), key=lambda f: f.line or 0)


def lint_file(path: Path) -> list[Finding]:
    try:
        source = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise BinclassError(f"{path}: cannot read ({exc})") from None
    return lint_source(source, str(path))


def lint_path(path: Path) -> list[Finding]:
    """A .py script, a .ipynb notebook, or a folder: every .py and .ipynb under it (hidden folders,
    __pycache__, site-packages and notebook checkpoints left out)."""
    path = Path(path)
    if path.is_dir():
        return [f for file in scripts_under(path) for f in lint_path(file)]
    if path.suffix.lower() == ".ipynb":
        return lint_notebook(path)
    return lint_file(path)


def scripts_under(folder: Path) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIPPED_DIRS)
        found += [Path(root) / f for f in sorted(files) if f.endswith((".py", ".ipynb")) and not f.startswith(".")]
    return found


class _CallableModule(types.ModuleType):
    def __call__(self, *scripts: str | Path) -> list[Finding]:
        """The findings of `binclass lint` for training scripts, notebooks or folders of them (read, never run):
        a list, shown as a table in a notebook."""
        from ..notebook import Findings

        return Findings(finding for script in scripts for finding in lint_path(Path(script)))


sys.modules[__name__].__class__ = _CallableModule
