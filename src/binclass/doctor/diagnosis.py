"""Run the checks on a target and keep the result with the run (diagnosis.json)."""

from __future__ import annotations

import json
from pathlib import Path

from ..run import history as run_history
from ..run.files import DIAGNOSIS_FILE
from ..run.seeds import find_seed_summary
from .checks import check_seed_spread, diagnose
from .findings import SEVERITIES, Finding, sort_findings
from .logs import fill_counts, from_run_folder, load_history


def doctor(target: Path, batch_size: int | None = None, val_n: int | None = None) -> list[Finding]:
    """Findings for a run folder or a CSV/JSONL log; batch_size and val_n fill in what a log lacks."""
    h = load_history(Path(target))
    if batch_size:
        h.batch_size = batch_size
    if val_n:
        h.val_n = val_n
    findings = diagnose(h)
    if Path(target).is_dir():
        summary = find_seed_summary(Path(target))
        if summary is not None:
            findings += check_seed_spread(h, summary)
    return findings


def write_diagnosis(run_dir: Path, findings: list[Finding]) -> Path:
    path = Path(run_dir) / DIAGNOSIS_FILE
    path.write_text(json.dumps({"findings": [f.to_dict() for f in sort_findings(findings)]}, indent=2) + "\n")
    return path


def read_diagnosis(run_dir: Path) -> list[dict] | None:
    path = Path(run_dir) / DIAGNOSIS_FILE
    if not path.exists():
        return None
    return json.loads(path.read_text())["findings"]


class EpochDoctor:
    """Used by `binclass train`: after each epoch, the findings whose id has not been reported yet, or
    not at this severity or a graver one (a warning that becomes an error is reported again).
    It reads the run's history files once (a resumed run's earlier epochs) and then keeps the rows that
    training appends, exactly as they read back, so it does not re-parse a growing steps.csv every epoch."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.seen: dict[str, int] = {}  # id -> gravest severity reported (index in SEVERITIES: 0 is error)
        self.findings: list[Finding] = []
        self.history = from_run_folder(self.run_dir)

    def after_epoch(self, row: dict, steps: list[dict]) -> list[Finding]:
        """row, steps: what was just appended to metrics.csv and steps.csv."""
        self.history.epochs.append(run_history.as_read(row, run_history.METRIC_COLUMNS))
        self.history.steps += [run_history.as_read(s, run_history.STEP_COLUMNS) for s in steps]
        fill_counts(self.history)
        self.findings = diagnose(self.history)
        new = [f for f in self.findings if SEVERITIES.index(f.severity) < self.seen.get(f.id, len(SEVERITIES))]
        self.seen.update({f.id: SEVERITIES.index(f.severity) for f in new})
        return new
