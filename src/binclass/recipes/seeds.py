"""Several seeds of one recipe: how much of a difference between two runs is just the seed?"""

from __future__ import annotations

import time
from pathlib import Path

from ..config import TrainConfig
from ..run import history
from ..run.seeds import write_seed_summary
from .common import Log
from .train import fit


def run_seeds(cfg: TrainConfig, seeds: list[int], overwrite: bool = False, log: Log = print) -> dict:
    """Train cfg once per seed into OUT/seed-N, then summarize the final validation accuracies in OUT/seeds.json."""
    out = Path(cfg.out)
    per_seed = []
    for seed in seeds:
        run_cfg = cfg.replace(seed=seed, out=str(out / f"seed-{seed}"), environment=None)
        log(f"== seed {seed}")
        start = time.perf_counter()
        fit(run_cfg, overwrite=overwrite, log=log)
        seconds = time.perf_counter() - start  # the whole run: decoding, training, report
        last = history.read_epochs(run_cfg.out)[-1]
        per_seed.append(
            {
                "seed": seed,
                "run": run_cfg.out,
                "val_acc": last["val_acc"],
                "val_loss": last["val_loss"],
                "seconds": seconds,
            }
        )
    return write_seed_summary(out, per_seed)


def render(summary: dict) -> str:
    each = ", ".join(f"seed {r['seed']}: {r['val_acc']:.3f} in {r['seconds']:.0f} s" for r in summary["seeds"])
    return (
        f"validation accuracy over {len(summary['seeds'])} seeds: mean {summary['mean_val_acc']:.3f}, "
        f"sd {summary['std_val_acc'] * 100:.1f} points ({each})"
    )
