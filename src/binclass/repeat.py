"""Several seeds of one recipe: how much of a difference between two runs is just the seed?"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from . import history
from .config import TrainConfig

SEEDS_FILE = "seeds.json"


def run_seeds(cfg: TrainConfig, seeds: list[int], overwrite: bool = False, log: Callable[[str], None] = print) -> dict:
    """Train cfg once per seed into OUT/seed-N, then summarize the final validation accuracies in OUT/seeds.json."""
    from .train import fit

    out = Path(cfg.out)
    per_seed = []
    for seed in seeds:
        run_cfg = dataclasses.replace(cfg, seed=seed, out=str(out / f"seed-{seed}"), extra={})
        log(f"== seed {seed}")
        start = time.perf_counter()
        fit(run_cfg, overwrite=overwrite, log=log)
        seconds = time.perf_counter() - start  # the whole run: decoding, training, report
        last = history.read_epochs(run_cfg.out)[-1]
        per_seed.append({"seed": seed, "run": run_cfg.out, "val_acc": last["val_acc"], "val_loss": last["val_loss"],
                         "seconds": seconds})  # fmt: skip
    summary = {"seeds": per_seed, **seed_stats([r["val_acc"] for r in per_seed])}
    out.mkdir(parents=True, exist_ok=True)
    (out / SEEDS_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def seed_stats(accs: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation, min and max of per-seed validation accuracies."""
    return {
        "mean_val_acc": statistics.fmean(accs),
        "std_val_acc": statistics.stdev(accs) if len(accs) > 1 else 0.0,  # sample standard deviation
        "min_val_acc": min(accs),
        "max_val_acc": max(accs),
    }


def render(summary: dict) -> str:
    each = ", ".join(f"seed {r['seed']}: {r['val_acc']:.3f} in {r['seconds']:.0f} s" for r in summary["seeds"])
    return (f"validation accuracy over {len(summary['seeds'])} seeds: mean {summary['mean_val_acc']:.3f}, "
            f"sd {summary['std_val_acc'] * 100:.1f} points ({each})")  # fmt: skip


def find_seed_summary(run_dir: Path) -> dict | None:
    """The seeds.json of a --seeds run: in the folder itself (OUT) or its parent (OUT/seed-N)."""
    for folder in (Path(run_dir), Path(run_dir).parent):
        path = folder / SEEDS_FILE
        if path.is_file():
            try:
                summary = json.loads(path.read_text())
                if len(summary["seeds"]) >= 2 and summary["std_val_acc"] >= 0:
                    return summary
            except (OSError, ValueError, KeyError, TypeError):
                return None  # not ours or damaged: no spread rather than a crash
    return None
