"""What a run tells the world outside it, as one object passed down the layers: the lines for the user
(the terminal and train.log), a call after every optimizer step (progress bars, tests), and a call at
named points of the run (decoding done, a checkpoint's files, the report: the fault tests stop the
process there). One object rather than Python's logging: the lines belong to one run and its train.log,
and several runs (seeds, an API call in a notebook) must not share a global logger's handlers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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

    def event(self, name: str) -> None:
        if self.on_event is not None:
            self.on_event(name)
