import json
from pathlib import Path

import pytest
from helpers import finding_ids
from typer.testing import CliRunner

from binclass.cli import app
from binclass.lint import lint_file, lint_source

ROOT = Path(__file__).resolve().parents[1]
POSTED = ROOT / "src" / "binclass" / "devtools" / "posted.py"
CASES = Path(__file__).parent / "lint_cases"
runner = CliRunner()


def ids_and_severities(findings):
    return {(f.id, f.severity) for f in findings}


def line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_posted_script_findings():
    findings = lint_file(POSTED)
    assert ("lint-argmax-single-output", "error") in ids_and_severities(findings)
    assert ("lint-sigmoid-bceloss", "warning") in ids_and_severities(findings)
    assert ("lint-scheduler-in-batch-loop", "error") in ids_and_severities(findings)
    assert ("lint-single-batch-accuracy", "warning") in ids_and_severities(findings)
    assert ("lint-hardcoded-flatten", "info") in ids_and_severities(findings)
    argmax_lines = {f.line for f in findings if f.id == "lint-argmax-single-output"}
    assert line_of(POSTED, "pred = torch.argmax(output, dim=1)") in argmax_lines
    sched = next(f for f in findings if f.id == "lint-scheduler-in-batch-loop")
    assert sched.line == line_of(POSTED, "scheduler.step()")
    # its validation loop does use eval() and no_grad()
    assert not {"lint-eval-mode", "lint-no-grad"} & {f.id for f in findings}


@pytest.mark.parametrize("name", ["corrected.py", "multiclass_ok.py", "lightning_style_ok.py"])
def test_correct_scripts_get_no_finding(name):
    assert lint_file(CASES / name) == []  # not even an info: no rule fires on a file marked clean


def test_cli_exit_status_and_json():
    result = runner.invoke(app, ["lint", str(POSTED), "--json"])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    first = data["findings"][0]
    assert set(first) >= {"id", "severity", "evidence", "message", "fix", "path", "line"}
    assert first["severity"] == "error"
    ok = runner.invoke(app, ["lint", str(CASES / "corrected.py"), str(CASES / "multiclass_ok.py")])
    assert ok.exit_code == 0, ok.output
    bad = runner.invoke(app, ["lint", str(ROOT / "missing.py")])
    assert bad.exit_code == 2 and "missing.py" in bad.output


HEADER = """
import torch
import torch.nn as nn
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(10, 1)
    def forward(self, x):
        return self.fc(x)
model = Net()
"""


@pytest.mark.parametrize(
    "body,expected",
    [
        (
            "criterion = nn.BCEWithLogitsLoss()\nfor x, y in train_loader:\n    out = model(x)\n    pred = out.argmax(1)\n",
            "lint-argmax-single-output",
        ),
        (
            "from torch import argmax\ncriterion = nn.BCEWithLogitsLoss()\nfor x, y in loader:\n    out = model(x)\n    p = argmax(out, dim=-1)\n",
            "lint-argmax-single-output",
        ),
        (
            "criterion = nn.BCELoss()\nfor x, y in loader:\n    out = model(x)\n    p = out.max(1)[1]\n",
            "lint-argmax-single-output",
        ),
        (
            "criterion = nn.BCELoss()\nfor x, y in loader:\n    _, p = torch.max(model(x), 1)\n",
            "lint-argmax-single-output",
        ),
        (
            "criterion = nn.BCEWithLogitsLoss()\nfor x, y in loader:\n    out = model(x)\n    pred = (out > 0.5).float()\n",
            "lint-threshold-on-logits",
        ),
        (
            "criterion = nn.BCEWithLogitsLoss()\nfor x, y in loader:\n    out = model(x).squeeze(1)\n    pred = torch.round(out)\n",
            "lint-threshold-on-logits",
        ),
        (
            "from torch.optim import lr_scheduler\nopt = torch.optim.SGD(model.parameters(), lr=0.1)\n"
            "s = lr_scheduler.ExponentialLR(opt, 0.9)\nfor e in range(3):\n    for x, y in train_loader:\n        s.step()\n",
            "lint-scheduler-in-batch-loop",
        ),
        (
            "def validate(val_loader):\n    with torch.no_grad():\n        for x, y in val_loader:\n            model(x)\n",
            "lint-eval-mode",
        ),
        (
            "def validate(val_loader):\n    model.eval()\n    for x, y in val_loader:\n        model(x)\n",
            "lint-no-grad",
        ),
    ],
)
def test_each_rule_fires(body, expected):
    assert expected in finding_ids(lint_source(HEADER + body))


@pytest.mark.parametrize(
    "body",
    [
        "criterion = nn.BCEWithLogitsLoss()\nfor x, y in loader:\n    out = model(x)\n    pred = (torch.sigmoid(out) > 0.5).float()\n",
        "criterion = nn.BCEWithLogitsLoss()\nfor x, y in loader:\n    out = model(x)\n    pred = (out > 0).float()\n",
        "criterion = nn.BCEWithLogitsLoss()\nfor x, y in loader:\n    probs = torch.sigmoid(model(x))\n    pred = probs.round()\n",
        "opt = torch.optim.SGD(model.parameters(), lr=0.1)\n"
        "s = torch.optim.lr_scheduler.OneCycleLR(opt, 0.1, total_steps=100)\nfor x, y in train_loader:\n    s.step()\n",
        "opt = torch.optim.SGD(model.parameters(), lr=0.1)\ns = torch.optim.lr_scheduler.StepLR(opt, 5)\n"
        "for e in range(3):\n    for x, y in train_loader:\n        pass\n    s.step()\n",
    ],
)
def test_correct_variants_are_silent(body):
    assert [f.id for f in lint_source(HEADER + body) if f.severity != "info"] == []


def test_model_defined_in_another_class_and_alias_imports():
    src = """
from torch import nn as tnn
import torch as T
class Backbone(tnn.Module):
    def __init__(self):
        super().__init__()
        self.conv = tnn.Conv2d(3, 4, 3)
        self.fc = tnn.Linear(4 * 30 * 30, 8)
class Classifier(tnn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = Backbone()
        self.head = tnn.Linear(8, 1)
        self.act = tnn.Sigmoid()
    def forward(self, x):
        return self.act(self.head(self.backbone(x)))
clf = Classifier()
loss_fn = tnn.BCELoss()
for x, y in train_loader:
    out = clf(x)
    guess = T.argmax(out, 1)
"""
    found = {f.id for f in lint_source(src)}
    assert {"lint-argmax-single-output", "lint-sigmoid-bceloss", "lint-hardcoded-flatten"} <= found


def test_syntax_error_is_a_clear_error():
    from binclass.errors import BinclassError

    with pytest.raises(BinclassError, match="not valid Python"):
        lint_source("def broken(:\n", "x.py")


def _posted_notebook(path: Path) -> dict[int, tuple[int, int]]:
    """posted.py as a notebook: a markdown cell first, a cell per top-level definition, each code cell
    opened by an IPython line (magic or shell), and a %%bash cell. Returns script line -> (cell, line)."""
    lines = POSTED.read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(("class ", "def ", "if __name__"))]
    bounds = list(zip([0] + starts, starts + [len(lines)]))
    cells = [{"cell_type": "markdown", "metadata": {}, "source": ["# The posted loop\n"]}]
    mapping = {}
    for k, (a, b) in enumerate(bounds):
        head = "%matplotlib inline" if k % 2 == 0 else "!nvidia-smi"
        body = [head] + lines[a:b]
        cells.append(
            {
                "cell_type": "code",
                "metadata": {},
                "execution_count": None,
                "outputs": [],
                "source": [t + "\n" for t in body],
            }
        )
        for offset in range(b - a):
            mapping[a + offset + 1] = (len(cells), offset + 2)
        if k == 1:
            cells.append({"cell_type": "code", "metadata": {}, "outputs": [], "source": "%%bash\nls -l | head\n"})
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return mapping


def test_notebook_findings_at_their_cells_and_lines(tmp_path):
    from binclass.lint import lint_path

    notebook = tmp_path / "posted.ipynb"
    mapping = _posted_notebook(notebook)
    script = lint_file(POSTED)
    cells = lint_path(notebook)
    assert len(script) == len(cells) >= 5
    expected = sorted((f.id, *mapping[f.line]) for f in script)
    assert sorted((f.id, f.cell, f.line) for f in cells) == expected
    argmax = next(f for f in cells if f.id == "lint-argmax-single-output")
    cell_source = json.loads(notebook.read_text())["cells"][argmax.cell - 1]["source"]
    assert "torch.argmax(output, dim=1)" in cell_source[argmax.line - 1]
    result = runner.invoke(app, ["lint", str(notebook), "--json"])
    assert result.exit_code == 1
    first = json.loads(result.stdout)["findings"][0]
    assert first["cell"] >= 2 and first["path"] == str(notebook)
    assert f"{notebook}:cell {argmax.cell}:{argmax.line}:" in runner.invoke(app, ["lint", str(notebook)]).output


def test_lint_a_folder_reads_scripts_and_notebooks(tmp_path):
    from binclass.lint import lint_path

    (tmp_path / "nb").mkdir()
    _posted_notebook(tmp_path / "nb" / "posted.ipynb")
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "ok.py").write_text((CASES / "corrected.py").read_text())
    (tmp_path / ".ipynb_checkpoints").mkdir()
    (tmp_path / ".ipynb_checkpoints" / "broken.py").write_text("def (")
    findings = lint_path(tmp_path)
    assert {f.path for f in findings} == {str(tmp_path / "nb" / "posted.ipynb")}
    assert ("lint-argmax-single-output", "error") in ids_and_severities(findings)


def test_notebook_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.ipynb"
    bad.write_text(
        json.dumps(
            {"cells": [{"cell_type": "code", "source": "x = 1\n"}, {"cell_type": "code", "source": "def f(:\n"}]}
        )
    )
    result = runner.invoke(app, ["lint", str(bad)])
    assert result.exit_code == 2 and "cell 2, line 1" in result.output and len(result.output.splitlines()) == 1
    (tmp_path / "text.ipynb").write_text("not json")
    result = runner.invoke(app, ["lint", str(tmp_path / "text.ipynb")])
    assert result.exit_code == 2 and "not a Jupyter notebook" in result.output


# --- the traps of #18: each fires on the bug and stays silent on the fixed code ------------------------
TRAPS = {
    "lint-mean-of-batch-accuracies": (
        "acc_sum = 0\nfor x, y in val_loader:\n    out = model(x).squeeze(1)\n"
        "    acc_sum += ((out > 0).float() == y).float().mean().item()\nprint(acc_sum / len(val_loader))\n",
        "correct = total = 0\nfor x, y in val_loader:\n    out = model(x).squeeze(1)\n"
        "    correct += ((out > 0).float() == y).sum().item()\n    total += y.numel()\nprint(correct / total)\n"
        "loss_sum = 0\nfor x, y in val_loader:\n    loss_sum += 1.0\nprint(loss_sum / len(val_loader))\n",
    ),
    "lint-distributed-sampler-validation": (
        "from torch.utils.data import DataLoader, DistributedSampler\n"
        "val_loader = DataLoader(val_set, batch_size=64, sampler=DistributedSampler(val_set, shuffle=False))\n",
        "from torch.utils.data import DataLoader, DistributedSampler\n"
        "train_loader = DataLoader(train_set, batch_size=64, sampler=DistributedSampler(train_set))\n"
        "val_loader = DataLoader(val_set, batch_size=64, shuffle=False)\n",
    ),
    "lint-torchmetrics-logits": (
        "from torchmetrics.classification import BinaryAccuracy\ncriterion = nn.BCEWithLogitsLoss()\n"
        "metric = BinaryAccuracy()\nfor x, y in val_loader:\n    out = model(x).squeeze(1)\n    metric.update(out, y)\n",
        "from torchmetrics.classification import BinaryAccuracy\ncriterion = nn.BCEWithLogitsLoss()\n"
        "metric = BinaryAccuracy()\nfor x, y in val_loader:\n    out = model(x).squeeze(1)\n"
        "    metric.update(torch.sigmoid(out), y)\n",
    ),
    "lint-train-mode-in-validation": (
        "for epoch in range(3):\n    model.eval()\n    model.train()\n    for x, y in train_loader:\n        model(x)\n"
        "    with torch.no_grad():\n        for x, y in val_loader:\n            model(x)\n",
        "for epoch in range(3):\n    model.train()\n    for x, y in train_loader:\n        model(x)\n"
        "    model.eval()\n    with torch.no_grad():\n        for x, y in val_loader:\n            model(x)\n",
    ),
    "lint-shape-mismatch": (
        "criterion = nn.BCEWithLogitsLoss()\nfor x, y in val_loader:\n    out = model(x)\n"
        "    pred = (out > 0).float()\n    correct = (pred == y).sum().item()\n",
        "criterion = nn.BCEWithLogitsLoss()\nfor x, y in val_loader:\n    out = model(x)\n"
        "    pred = (out > 0).float().squeeze(1)\n    correct = (pred == y).sum().item()\n",
    ),
}


@pytest.mark.parametrize("rule", sorted(TRAPS))
def test_trap_fires_on_the_bug(rule):
    bug, _ = TRAPS[rule]
    found = [f for f in lint_source(HEADER + bug) if f.id == rule]
    assert found, rule
    line = found[0].line
    assert 1 <= line <= len((HEADER + bug).splitlines())


@pytest.mark.parametrize("rule", sorted(TRAPS))
def test_trap_is_silent_on_the_fix(rule):
    _, fixed = TRAPS[rule]
    assert rule not in {f.id for f in lint_source(HEADER + fixed)}


def test_trap_variants():
    # Accuracy(task="binary") fed logits through its call, a model's metric attribute
    src = HEADER + (
        "import torchmetrics\ncriterion = nn.BCEWithLogitsLoss()\nacc = torchmetrics.Accuracy(task='binary')\n"
        "for x, y in val_loader:\n    logits = model(x).squeeze(1)\n    acc(logits, y)\n"
    )
    assert "lint-torchmetrics-logits" in {f.id for f in lint_source(src)}
    multiclass = src.replace("task='binary'", "task='multiclass', num_classes=3")
    assert "lint-torchmetrics-logits" not in {f.id for f in lint_source(multiclass)}
    # labels reshaped to (N, 1): the comparison is sound
    reshaped = HEADER + (
        "criterion = nn.BCEWithLogitsLoss()\nfor x, y in val_loader:\n    y = y.unsqueeze(1)\n    out = model(x)\n"
        "    correct = ((out > 0).float() == y).sum().item()\n"
    )
    assert "lint-shape-mismatch" not in {f.id for f in lint_source(reshaped)}
    # model.train() inside the validation loop itself
    inside = HEADER + (
        "model.eval()\nwith torch.no_grad():\n    for x, y in val_loader:\n        model.train()\n        model(x)\n"
    )
    assert "lint-train-mode-in-validation" in {f.id for f in lint_source(inside)}


@pytest.mark.parametrize("name", ["corrected.py", "multiclass_ok.py", "lightning_style_ok.py"])
def test_correct_scripts_stay_silent_on_the_new_traps(name):
    assert not {f.id for f in lint_file(CASES / name)} & set(TRAPS)


# --- lint-shape-mismatch on reductions and reshapes: (N, 1) against labels (N,) or not ----------------
SHAPE_LOOP = (
    "criterion = nn.BCEWithLogitsLoss()\nfor x, y in val_loader:\n    out = model(x)\n    correct = ({}).sum()\n"
)
SHAPE_CASES = {  # form: (a comparison that broadcasts to (N, N), one of the same form that does not)
    "argmax(x, 1)": ("torch.argmax(out, 1, keepdim=True) == y", "torch.argmax(out, 1) == y"),
    "argmax(x, dim=1, keepdim=True)": (
        "torch.argmax(out, dim=1, keepdim=True) == y",
        "torch.argmax(out, dim=1, keepdim=True) == y.unsqueeze(1)",
    ),
    ".max(1)[1]": ("out.max(1, keepdim=True)[1] == y", "out.max(1)[1] == y"),
    ".squeeze(1)": ("(out > 0).float().squeeze(0) == y", "(out > 0).float().squeeze(1) == y"),
    ".view(-1)": ("(out > 0).float().view(-1, 1) == y", "(out > 0).float().view(-1) == y"),
}


@pytest.mark.parametrize("form", sorted(SHAPE_CASES))
def test_the_shape_rule_fires_on_a_kept_column(form):
    broadcasts, _ = SHAPE_CASES[form]
    assert "lint-shape-mismatch" in finding_ids(lint_source(HEADER + SHAPE_LOOP.format(broadcasts)))


@pytest.mark.parametrize("form", sorted(SHAPE_CASES))
def test_the_shape_rule_is_silent_once_the_column_is_gone(form):
    _, flat = SHAPE_CASES[form]
    assert "lint-shape-mismatch" not in finding_ids(lint_source(HEADER + SHAPE_LOOP.format(flat)))


def test_argmax_compared_with_targets_is_the_argmax_bug_not_a_broadcast():
    found = finding_ids(lint_source(HEADER + SHAPE_LOOP.format("torch.argmax(torch.sigmoid(out), 1) == y")))
    assert "lint-argmax-single-output" in found and "lint-shape-mismatch" not in found


def test_every_rule_is_registered_once_with_a_name():
    from binclass.lint import RULES

    names = [r.name for r in RULES]
    assert len(names) == len(set(names)) >= 13 and "shape_mismatch" in names
