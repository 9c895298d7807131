"""The doctor: read a training history (ours or another tool's), a script, or live batches, and
explain what is wrong with numbers. Findings share one shape and one set of ids.

The package is also the API's `binclass.doctor(path)`: calling it returns the findings for a run
folder or a history file (binclass.doctor.diagnosis.doctor), so the name has one meaning."""

from __future__ import annotations

import sys
import types
from pathlib import Path


class _CallableModule(types.ModuleType):
    def __call__(self, target: str | Path, batch_size: int | None = None, val_size: int | None = None) -> list:
        """The doctor's findings for a run folder or a history file of any tool; batch_size and val_size
        fill in what a log does not say. Reads only: nothing is written."""
        from ..notebook import Findings
        from .diagnosis import doctor

        return Findings(doctor(Path(target), batch_size, val_size))  # a list, shown as a table in a notebook


sys.modules[__name__].__class__ = _CallableModule
