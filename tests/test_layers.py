"""The package's layers point one way: the import graph of src/binclass, read from the source (every
import, also those inside functions), has no cycle, and no module imports from a layer above its own."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# Lowest first. A module may import from its own layer and the layers below it, never from above.
# One layer per line reads as the stack it is, hence the formatter is told to leave it (fmt: skip).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("binclass.version", "binclass.errors", "binclass.metrics", "binclass.phases", "binclass.progressbar",
              "binclass.allocator", "binclass.device", "binclass.synth", "binclass.fastexit", "binclass.calibration",
              "binclass.labelaudit")),
    ("data, models, config", ("binclass.data", "binclass.models", "binclass.config", "binclass.features")),
    ("run folder", ("binclass.run",)),
    ("doctor, lint, report", ("binclass.doctor", "binclass.lint", "binclass.report", "binclass.compare", "binclass.ood", "binclass.notebook")),
    ("engine", ("binclass.engine",)),
    ("recipes", ("binclass.recipes", "binclass.predict", "binclass.export", "binclass.onnxpredict", "binclass.chunked", "binclass.lrfind", "binclass.watch", "binclass.tuning", "binclass.explain", "binclass.serve", "binclass.track")),
    ("command line, API, developer tools", ("binclass", "binclass.__main__", "binclass.cli", "binclass.api",
                                            "binclass.devtools")),
]  # fmt: skip


def module_names(root: Path) -> dict[str, Path]:
    names = {}
    for path in (root / "binclass").rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def imports_of(name: str, path: Path, modules: set[str]) -> set[str]:
    """The binclass modules `name` imports anywhere in its source (relative imports resolved)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import mod` imports the module pkg.mod; `from mod import name` the module mod
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        found |= {t for t in targets if t in modules and t != name}
    return found


def layer_of(name: str) -> int:
    best = None
    for rank, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            # The package itself (the API's front door) is no prefix: each module is placed by its own name.
            matches = name == prefix or (prefix != "binclass" and name.startswith(prefix + "."))
            if matches and (best is None or len(prefix) > best[1]):
                best = (rank, len(prefix))
    assert best is not None, f"{name} belongs to no layer: add it to LAYERS"
    return best[0]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def graph_of(root: Path) -> dict[str, set[str]]:
    modules = module_names(root)
    return {name: imports_of(name, path, set(modules)) for name, path in modules.items()}


def test_the_import_graph_has_no_cycle():
    cycle = find_cycle(graph_of(SRC))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_module_imports_from_a_higher_layer():
    upward = [
        f"{name} ({LAYERS[layer_of(name)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
        for name, targets in graph_of(SRC).items()
        for target in sorted(targets)
        if layer_of(target) > layer_of(name)
    ]
    assert not upward, "\n".join(upward)


@pytest.mark.parametrize(
    "files, problem",
    [
        (
            {
                "binclass/__init__.py": "",
                "binclass/a.py": "from . import b",
                "binclass/b.py": "def f():\n    from .a import x",
            },
            "cycle",
        ),
        ({"binclass/__init__.py": "", "binclass/errors.py": "from .cli import app", "binclass/cli.py": ""}, "upward"),
    ],
)
def test_the_checks_catch_a_cycle_inside_a_function_and_an_upward_import(tmp_path, files, problem):
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    graph = graph_of(tmp_path)
    if problem == "cycle":
        assert find_cycle(graph) == ["binclass.a", "binclass.b", "binclass.a"]
    else:
        assert any(layer_of(t) > layer_of(n) for n, ts in graph.items() for t in ts)
