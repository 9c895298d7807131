"""How binclass shows itself in Jupyter: rich HTML for a Run, findings, predictions and history rows, and
a training display that updates in place (one table of epochs under the run's first lines) instead of a
scroll of lines. In a terminal nothing changes: these are only `_repr_html_` methods and a log function
that binclass.train uses when it finds itself in a notebook kernel."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Iterable
from pathlib import Path

# The epoch line of a run (engine.driver's EpochRecorder), read back into a table row.
EPOCH_LINE = re.compile(
    r"^epoch\s+(?P<epoch>\d+)/(?P<epochs>\d+)\s+train loss (?P<train_loss>\S+) acc (?P<train_acc>\S+) \| "
    r"val loss (?P<val_loss>\S+) acc (?P<val_acc>\S+) \[(?P<low>[^,]+), (?P<high>[^\]]+)\] auc (?P<auc>\S+)"
)
SHOWN_LINES = 12  # the run's other lines kept under the table (the latest)
STYLE = "border-collapse:collapse;font-size:12px"
CELL = "border:1px solid #ccc;padding:2px 6px;text-align:left"


def in_notebook() -> bool:
    """Running inside a Jupyter kernel (not a terminal IPython)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def table(rows: Iterable[dict], columns: list[str] | None = None) -> str:
    rows = list(rows)
    columns = columns or (list(rows[0]) if rows else [])
    head = "".join(f"<th style='{CELL}'>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td style='{CELL}'>{html.escape(_text(r.get(c)))}</td>" for c in columns) + "</tr>"
        for r in rows
    )
    return f"<table style='{STYLE}'><tr>{head}</tr>{body}</table>"


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class TrainingDisplay:
    """A log for binclass.train in a notebook: the run's lines and a table of its epochs, in one output
    that is replaced as the run goes."""

    def __init__(self) -> None:
        from IPython.display import HTML, display

        self.HTML = HTML
        self.lines: list[str] = []
        self.epochs: list[dict] = []
        self.handle = display(HTML("<i>binclass: starting</i>"), display_id=True)

    def __call__(self, line: str) -> None:
        match = EPOCH_LINE.match(line)
        if match:
            row = match.groupdict()
            self.epochs.append({
                "epoch": f"{row['epoch']}/{row['epochs']}", "train loss": row["train_loss"],
                "train acc": row["train_acc"], "val loss": row["val_loss"],
                "val acc": f"{row['val_acc']} [{row['low']}, {row['high']}]", "auc": row["auc"],
            })  # fmt: skip
        else:
            self.lines.append(line)
        self.handle.update(self.HTML(self.render()))

    def render(self) -> str:
        first, rest = self.lines[:2], self.lines[2:][-SHOWN_LINES:]
        pre = lambda lines: f"<pre style='margin:2px 0'>{html.escape(chr(10).join(lines))}</pre>" if lines else ""  # noqa: E731
        return pre(first) + (table(self.epochs) if self.epochs else "") + pre(rest)


class Rows(list):
    """A list of dicts (history rows without pandas) shown as a table."""

    def _repr_html_(self) -> str:
        return table(self)


class Findings(list):
    """The doctor's findings, shown as a table (severity, id, message, fix)."""

    def _repr_html_(self) -> str:
        if not self:
            return "<p>no findings: nothing in this history looks wrong.</p>"
        rows = [_finding(f) for f in self]
        return table(
            rows, ["severity", "id", "message", "fix"] + (["path"] if any(r.get("path") for r in rows) else [])
        )


def _finding(f: object) -> dict:
    return (
        dict(f)
        if isinstance(f, dict)
        else {k: getattr(f, k, None) for k in ("severity", "id", "message", "fix", "path")}
    )


class Predictions(list):
    """Predictions shown as a table (path, probability, label, and the ood score where there is one)."""

    def __getitem__(self, index):
        found = super().__getitem__(index)
        return Predictions(found) if isinstance(index, slice) else found

    def _repr_html_(self) -> str:
        rows = [p._asdict() for p in self]
        columns = ["path", "prob", "label"] + (
            ["ood_score", "in_distribution"] if rows and rows[0]["ood_score"] is not None else []
        )
        return table(rows, columns)


def run_html(run) -> str:
    """A Run: its final metrics with their interval, the curves, the doctor's findings, a link to the report."""
    from .run.files import CURVES_PLOT, REPORT_FILE

    path = Path(run.path)
    history = run.history  # read from metrics.csv once
    epochs = list(history.to_dict("records") if hasattr(history, "to_dict") else history)
    parts = [f"<b>binclass run</b> <code>{html.escape(str(path))}</code>: classes {html.escape(run.classes[0])} = 0, "
             f"{html.escape(run.classes[1])} = 1 (positive)"]  # fmt: skip
    if epochs:
        last = epochs[-1]
        half = (float(last["val_acc_high"]) - float(last["val_acc_low"])) / 2
        parts.append(
            f"<p>epoch {int(float(last['epoch']))}: validation accuracy <b>{float(last['val_acc']):.3f}</b> "
            f"(95% interval {float(last['val_acc_low']):.3f} to {float(last['val_acc_high']):.3f}, "
            f"±{half * 100:.1f} points), loss {float(last['val_loss']):.4f}, AUC {_text(float(last['val_auc']))}</p>"
        )
    curves = path / CURVES_PLOT
    if curves.exists():
        data = base64.b64encode(curves.read_bytes()).decode("ascii")
        parts.append(f"<img style='max-width:720px' src='data:image/png;base64,{data}'>")
    parts.append(Findings(run.findings)._repr_html_())
    if (path / REPORT_FILE).exists():
        parts.append(f"<p><a href='{html.escape(str(path / REPORT_FILE))}' target='_blank'>the run's report</a></p>")
    return "".join(parts)
