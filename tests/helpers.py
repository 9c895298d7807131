"""What several test files share: one name for each thing they all do."""

from __future__ import annotations

import json
import subprocess
import sys
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


CHILD = Path(__file__).with_name("child_run.py")


def child_command(
    data: Path, out: Path, settings: dict, stop: str | None = None, wait: Path | None = None, **spec: str
) -> list:
    """The command line of a training child process (tests/child_run.py) that SIGKILLs itself at `stop`
    or, with `wait`, pauses after its first step (or at spec's `pause`) until that file exists; spec's
    `clock="erratic"` makes every timing in it come out at random."""
    spec = {"data": str(data), "out": str(out), "settings": settings, "stop": stop, **spec}
    if wait is not None:
        spec["wait"] = str(wait)
    return [sys.executable, str(CHILD), json.dumps(spec)]


def run_child(
    data: Path, out: Path, settings: dict, stop: str | None = None, **spec: str
) -> subprocess.CompletedProcess:
    """The child run to its end or to `stop`: its exit status (-SIGKILL when stopped) and its output."""
    return subprocess.run(child_command(data, out, settings, stop, **spec), capture_output=True, text=True)
