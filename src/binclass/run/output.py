"""What a run prints: binclass's own lines on the terminal and in RUN_DIR/train.log; what libraries write
to stderr meanwhile (PyTorch's log lines, their warnings) in train.log only, where it is kept but does
not hide the lines that matter."""

from __future__ import annotations

import sys
import threading
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

from .files import TRAIN_LOG

PACKAGE_DIR = str(Path(__file__).resolve().parents[1])  # binclass's own warnings are shown, not captured


class _Captured:
    """Stands in for sys.stderr during a run: whole lines go to the run's log. `terminal` is the stream
    it replaced, for the progress bar, which is for the terminal only."""

    def __init__(self, output: RunOutput, terminal: TextIO) -> None:
        self.output, self.terminal, self.partial = output, terminal, ""

    def write(self, text: str) -> int:
        lines = (self.partial + text).split("\n")
        self.partial = lines.pop()
        for line in lines:
            if line.strip():
                self.output.keep(f"[library] {line}")
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def close_line(self) -> None:
        if self.partial.strip():
            self.output.keep(f"[library] {self.partial}")
        self.partial = ""


class RunOutput:
    """Use as a context around a run. log(line) prints a binclass line (through `echo`) and keeps it in
    train.log; lines from before the folder is known are kept until attach(run_dir). train.log is
    appended to, so a resumed run's lines follow those of its first part."""

    def __init__(self, echo: Callable[[str], None] = print) -> None:
        self.echo = echo
        self.pending: list[str] = []
        self.file: TextIO | None = None
        self.lock = threading.Lock()

    def log(self, line: str) -> None:
        self.echo(line)
        self.keep(line)

    def keep(self, line: str) -> None:
        with self.lock:
            if self.file is None:
                self.pending.append(line)
                return
            try:
                self.file.write(line + "\n")
                self.file.flush()
            except OSError:
                pass  # a full disk stops the run through its checkpoint, with a clear error; not here

    def attach(self, run_dir: Path) -> None:
        try:
            file = (Path(run_dir) / TRAIN_LOG).open("a", encoding="utf-8")
        except OSError:
            return  # an unwritable folder is reported by the first file the run must write
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with self.lock:
            self.file = file
            pending, self.pending = self.pending, []
        self.keep(f"== binclass train, {started}, {' '.join(sys.argv[1:]) or '(from Python)'}")
        for line in pending:
            self.keep(line)

    def _warning(self, message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
        if str(filename).startswith(PACKAGE_DIR):
            self.log(f"warning: {message}")
        else:
            self.keep(f"[library] {filename}:{lineno}: {category.__name__}: {message}")

    def __enter__(self) -> RunOutput:
        self.saved = (sys.stderr, warnings.showwarning)
        self.captured = _Captured(self, sys.stderr)
        sys.stderr = self.captured
        warnings.showwarning = self._warning
        return self

    def __exit__(self, *exc: object) -> None:
        self.captured.close_line()
        sys.stderr, warnings.showwarning = self.saved
        with self.lock:
            if self.file is not None:
                self.file.close()
                self.file = None
