"""Run the checks on a target and keep the result with the run (diagnosis.json)."""

from __future__ import annotations

import json
from pathlib import Path

from ..run import history as run_history
from ..run.files import CONFIG_FILE, DIAGNOSIS_FILE
from ..run.seeds import find_seed_summary
from .checks import check_seed_spread, diagnose
from .findings import SEVERITIES, Finding, sort_findings
from .logs import fill_counts, from_run_folder, load_histories


def doctor(target: Path, batch_size: int | None = None, val_n: int | None = None) -> list[Finding]:
    """Findings for a run folder or a history file of any format logs reads; batch_size and val_n fill in
    what a log lacks. A folder of several runs: every run's findings, each naming its run in `path`."""
    runs = doctor_runs(target, batch_size, val_n)
    if len(runs) == 1:
        return runs[0][1]
    for source, findings in runs:
        for f in findings:
            f.path = source
    return [f for _, findings in runs for f in findings]


def doctor_runs(
    target: Path, batch_size: int | None = None, val_n: int | None = None
) -> list[tuple[str, list[Finding]]]:
    """(run, findings) for each run target holds: one for a file or a run folder, one per run found in a
    folder of runs (lightning_logs/, runs/)."""
    out = []
    for h in load_histories(Path(target)):
        if batch_size:
            h.batch_size = batch_size
        if val_n:
            h.val_n = val_n
        findings = diagnose(h)
        source = Path(h.source)
        if source.is_dir() and is_run_folder(source):
            findings += stored_data_findings(source)
        if Path(target).is_dir():  # a run of a --seeds folder: its seeds.json is beside or above it
            summary = find_seed_summary(source if source.is_dir() else source.parent)
            if summary is not None:
                findings += check_seed_spread(h, summary)
        out.append((h.source, findings))
    return out


# Findings about a run's data (doctor.health), made by `binclass train` from the images, not the history:
# kept from its diagnosis.json when the doctor reads the run again.
DATA_FINDINGS = ("validation-leakage", "conflicting-labels")


def stored_data_findings(run_dir: Path) -> list[Finding]:
    stored = read_diagnosis(run_dir) or []
    keys = ("id", "severity", "evidence", "message", "fix")
    return [Finding(**{k: f[k] for k in keys}) for f in stored if f.get("id") in DATA_FINDINGS]


def is_run_folder(folder: Path) -> bool:
    """binclass's own run folder (the doctor may write its diagnosis there), not another tool's."""
    return (folder / run_history.METRICS_FILE).is_file() and (folder / CONFIG_FILE).is_file()


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
