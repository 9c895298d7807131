"""The child process of the fault tests: trains one run with fit() and stops at a chosen point.

    python tests/child_run.py SPEC_JSON

SPEC_JSON: {"data": DIR, "out": DIR, "settings": {TrainConfig fields}, "stop": POINT, "wait": FILE,
"pause": POINT, "clock": "erratic"}.
POINT: "step:EPOCH:STEP" after that optimizer step, or "EVENT#N" at the N-th time fit reaches that named
point; at "stop" the process SIGKILLs itself (no cleanup, no flush: an OOM killer, a lost machine). Absent:
it runs through. FILE: at "pause" (default: after the first step), touch FILE.ready and wait until FILE
exists. "erratic": time.perf_counter runs at a speed that jumps at random between 1/100 and 100 times
the real one, as a very busy or very idle machine would make any timing look."""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
from collections import Counter

from binclass.config import TrainConfig
from binclass.recipes.train import fit


def erratic_clock(seed: int = 0):
    """A perf_counter whose speed jumps at random between 1/100 and 100 times the real one."""
    real, rng = time.perf_counter, random.Random(seed)
    last = [real(), real()]  # real time, erratic time at the last call

    def clock() -> float:
        now = real()
        last[1] += (now - last[0]) * rng.choice((0.01, 0.1, 1.0, 10.0, 100.0))
        last[0] = now
        return last[1]

    return clock


def main(spec: dict) -> None:
    stop, wait, pause, seen = spec.get("stop"), spec.get("wait"), spec.get("pause", "step:1:1"), Counter()
    if spec.get("clock") == "erratic":
        time.perf_counter = erratic_clock()

    def hold() -> None:
        open(wait + ".ready", "w").close()
        while not os.path.exists(wait):
            time.sleep(0.05)

    def on_event(name: str) -> None:
        seen[name] += 1
        if stop == f"{name}#{seen[name]}":
            os.kill(os.getpid(), signal.SIGKILL)
        if wait and pause == f"{name}#{seen[name]}":
            hold()

    def on_step(epoch: int, step: int, steps: int) -> None:
        if stop == f"step:{epoch}:{step}":
            os.kill(os.getpid(), signal.SIGKILL)
        if wait and pause == f"step:{epoch}:{step}":
            hold()

    cfg = TrainConfig(data_dir=spec["data"], out=spec["out"], **spec["settings"])
    fit(cfg, on_step=on_step, on_event=on_event)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
