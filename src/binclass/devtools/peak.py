"""Run a module as __main__ and record its own peak resident memory (Linux VmHWM) at exit.

`binclass bench` starts each contender through this: a forked child's ru_maxrss starts at the
parent's resident size (Linux carries it across exec), so wait4 alone over-reports small children.
Usage: BINCLASS_PEAK_FILE=out.txt python -m binclass.devtools.peak MODULE [ARGS...]"""

from __future__ import annotations

import atexit
import os
import resource
import runpy
import sys


def peak_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _record() -> None:
    path = os.environ.get("BINCLASS_PEAK_FILE")
    if path:
        with open(path, "w") as f:
            f.write(f"{peak_mb()}\n")


if __name__ == "__main__":
    atexit.register(_record)
    module = sys.argv[1]
    sys.argv = [module, *sys.argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
