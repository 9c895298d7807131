"""The child process of the fault tests: trains one run with fit() and stops at a chosen point.

    python tests/child_run.py SPEC_JSON

SPEC_JSON: {"data": DIR, "out": DIR, "settings": {TrainConfig fields}, "stop": POINT, "wait": FILE}.
POINT: "step:EPOCH:STEP" after that optimizer step, or "EVENT#N" at the N-th time fit reaches that named
point; there the process SIGKILLs itself (no cleanup, no flush: an OOM killer, a lost machine). Absent:
it runs through. FILE: after the first step, touch FILE.ready and wait until FILE exists."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections import Counter

from binclass.config import TrainConfig
from binclass.recipes.train import fit


def main(spec: dict) -> None:
    stop, wait, seen = spec.get("stop"), spec.get("wait"), Counter()

    def on_event(name: str) -> None:
        seen[name] += 1
        if stop == f"{name}#{seen[name]}":
            os.kill(os.getpid(), signal.SIGKILL)

    def on_step(epoch: int, step: int, steps: int) -> None:
        if stop == f"step:{epoch}:{step}":
            os.kill(os.getpid(), signal.SIGKILL)
        if wait and (epoch, step) == (1, 1):
            open(wait + ".ready", "w").close()
            while not os.path.exists(wait):
                time.sleep(0.05)

    cfg = TrainConfig(data_dir=spec["data"], out=spec["out"], **spec["settings"])
    fit(cfg, on_step=on_step, on_event=on_event)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
