"""Notebooks: their code cells read as one program (IPython lines made harmless), the findings placed
at their cell and line."""

from __future__ import annotations

import ast
import json
from pathlib import Path

from ..doctor.findings import Finding
from ..errors import BinclassError
from .rules import run_rules
from .script import Script


def lint_tree(tree: ast.Module, path: str) -> list[Finding]:
    script = Script(tree, path)
    run_rules(script)
    return script.findings


# Cell magics whose body is Python (run as it is, timed or captured); any other (%%bash, %%writefile,
# %%html) holds no Python and its cell is skipped.
PYTHON_CELL_MAGICS = ("%%time", "%%timeit", "%%capture", "%%prun")


def notebook_program(cells: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    """The code cells as one program, and for each of its lines (cell, line in cell), both 1-based.
    IPython lines (%magic, !shell, `obj?` help) become `pass` at their indentation: the program keeps
    its blocks, and the line numbers stay the cell's."""
    lines: list[str] = []
    where: list[tuple[int, int]] = []
    for number, cell in enumerate(cells, start=1):
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        text = "".join(source) if isinstance(source, list) else str(source)
        cell_lines = text.splitlines()
        if cell_lines and cell_lines[0].lstrip().startswith("%%"):
            if cell_lines[0].split()[0] not in PYTHON_CELL_MAGICS:
                continue
            cell_lines[0] = ""
        for index, line in enumerate(cell_lines, start=1):
            stripped = line.lstrip()
            indent = line[: len(line) - len(stripped)]
            if stripped.startswith(("%", "!")) or (stripped.endswith("?") and not stripped.startswith("#")):
                line = f"{indent}pass"
            elif "= !" in stripped or "= %" in stripped:  # files = !ls: a shell result bound to a name
                line = f"{indent}{stripped.split('=', 1)[0].rstrip()} = None"
            lines.append(line)
            where.append((number, index))
    return "\n".join(lines) + "\n", where


def lint_notebook(path: Path) -> list[Finding]:
    try:
        cells = json.loads(Path(path).read_text())["cells"]
        if not isinstance(cells, list):
            raise TypeError
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        raise BinclassError(f"{path}: not a Jupyter notebook (.ipynb JSON with a cells list)") from None
    program, where = notebook_program(cells)
    try:
        tree = ast.parse(program, filename=str(path))
    except SyntaxError as exc:
        cell, line = where[min(max(exc.lineno or 1, 1), len(where)) - 1] if where else (0, 0)
        raise BinclassError(f"{path}: cell {cell}, line {line}: not valid Python ({exc.msg})") from None
    findings = lint_tree(tree, str(path))
    for f in findings:
        if f.line is not None and 1 <= f.line <= len(where):
            f.cell, f.line = where[f.line - 1]
        f.evidence = {k: _cell_line(v, where) if k.endswith("_line") else v for k, v in f.evidence.items()}
    return sorted(findings, key=lambda f: (f.cell or 0, f.line or 0))


def _cell_line(value: object, where: list[tuple[int, int]]) -> object:
    """A program line named in evidence, as "cell C, line L"."""
    if isinstance(value, int) and 1 <= value <= len(where):
        cell, line = where[value - 1]
        return f"cell {cell}, line {line}"
    return value
