"""Run several `binclass train` configurations, some at a time, and tabulate their final validation
accuracy and wall time: the ablation and accuracy-versus-time tables of docs/benchmarks.md come from this.

    python scripts/sweep.py DATA_DIR OUT_DIR --parallel 4 --plan plan.txt

plan.txt: one run per line, `NAME: extra train arguments` (e.g. `no-ema: --ema 0 --seed 1`). Runs
that share everything but --seed are grouped into mean and standard deviation. The accuracy is the
last epoch's (the model that is saved), never the best epoch's."""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from binclass.run import history


def run_one(data: str, out: Path, name: str, args: list[str]) -> dict:
    run_dir = out / name
    cmd = [sys.executable, "-m", "binclass.cli", "train", data, "--out", str(run_dir), "--overwrite", *args]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    (out / f"{name}.log").write_text(proc.stdout + proc.stderr)
    row = {"name": name, "args": " ".join(args), "wall_s": round(wall, 1), "rc": proc.returncode}
    rows = history.read_epochs(run_dir) if proc.returncode == 0 else []
    if rows:
        row.update(val_acc=rows[-1]["val_acc"], epochs=len(rows), train_s=round(sum(r["seconds"] for r in rows), 1))
    else:
        row["error"] = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
    print(json.dumps(row), flush=True)
    return row


def group_key(row: dict) -> str:
    return re.sub(r"--seed \d+", "", row["args"]).strip()


def summarize(rows: list[dict]) -> list[dict]:
    groups: dict[str, list[dict]] = {}
    for r in rows:
        if "val_acc" in r:
            groups.setdefault(group_key(r), []).append(r)
    out = []
    for key, rs in groups.items():
        accs = [r["val_acc"] for r in rs]
        out.append(
            {
                "args": key or "(defaults)",
                "seeds": len(rs),
                "mean": statistics.mean(accs),
                "sd": statistics.stdev(accs) if len(accs) > 1 else float("nan"),
                "each": accs,
                "mean_wall_s": statistics.mean(r["wall_s"] for r in rs),
            }
        )
    return out


def render(summary: list[dict]) -> str:
    lines = [f"{'arguments':60} {'seeds':>5} {'mean':>6} {'sd':>6} {'wall s':>7}  each"]
    for s in summary:
        lines.append(
            f"{s['args'][:60]:60} {s['seeds']:>5} {s['mean']:6.3f} {s['sd']:6.3f} {s['mean_wall_s']:7.1f}  "
            + " ".join(f"{a:.3f}" for a in s["each"])
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data")
    p.add_argument("out", type=Path)
    p.add_argument("--plan", type=Path, required=True)
    p.add_argument("--parallel", type=int, default=1)
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    plan = []
    for line in a.plan.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, args = line.partition(":")
            plan.append((name.strip(), shlex.split(args)))
    with ThreadPoolExecutor(a.parallel) as pool:
        rows = list(pool.map(lambda item: run_one(a.data, a.out, *item), plan))
    summary = summarize(rows)
    (a.out / "sweep.json").write_text(json.dumps({"runs": rows, "summary": summary}, indent=2))
    print(render(summary))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
