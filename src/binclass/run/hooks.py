"""What a run tells the world outside it, as one object passed down the layers: the lines for the user
(the terminal and train.log), a call after every optimizer step (progress bars, tests), and a call at
named points of the run (decoding done, a checkpoint's files, the report: the fault tests stop the
process there). One object rather than Python's logging: the lines belong to one run and its train.log,
and several runs (seeds, an API call in a notebook) must not share a global logger's handlers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..progressbar import Progress, progress

Log = Callable[[str], None]
# Called after every optimizer step with (epoch, step, steps in the epoch).
StepHook = Callable[[int, int, int], None]
# Called with the name of a point of the run.
EventHook = Callable[[str], None]


def silent(line: str) -> None:
    """A Log that drops its lines: data-parallel ranks other than 0."""


@dataclass(frozen=True)
class RunHooks:
    log: Log = print
    on_step: StepHook | None = None
    on_event: EventHook | None = None
    keep: Log | None = None  # train.log alone: progress lines while the terminal shows them in place

    def progress(self, label: str, unit: str = "images") -> Progress:
        """A long phase's progress (progressbar.progress) through this run's lines; none where they are
        silent (torchrun ranks but the first)."""
        if self.log is silent:
            return lambda done, total: None
        return progress(label, unit, self.log, self.keep)

    def event(self, name: str) -> None:
        if self.on_event is not None:
            self.on_event(name)
