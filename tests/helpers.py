"""What several test files share: one name for each thing they all do."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from typer.testing import CliRunner, Result

from binclass.cli import app

runner = CliRunner()


def finding_ids(findings: Iterable, severities: Iterable[str] = ("error", "warning", "info")) -> set[str]:
    """The ids of the findings (doctor's, lint's, watch's) of these severities."""
    wanted = set(severities)
    return {f.id for f in findings if f.severity in wanted}


def train_cli(data: Path | str, out: Path | str, *args: str, **options: object) -> Result:
    """`binclass train DATA --out OUT` with options given as keywords (image_size=32 -> --image-size 32;
    True -> the flag alone) and any further arguments as they are."""
    argv = ["train", str(data), "--out", str(out)]
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        argv += [flag] if value is True else [flag, str(value)]
    return runner.invoke(app, [*argv, *args])
