"""seeds.json: the summary of one recipe trained with several seeds (`binclass train --seeds`)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from .files import SEEDS_FILE


def seed_stats(accs: list[float]) -> dict[str, float]:
    """Mean, sample standard deviation, min and max of per-seed validation accuracies."""
    return {
        "mean_val_acc": statistics.fmean(accs),
        "std_val_acc": statistics.stdev(accs) if len(accs) > 1 else 0.0,  # sample standard deviation
        "min_val_acc": min(accs),
        "max_val_acc": max(accs),
    }


def write_seed_summary(out: Path, per_seed: list[dict]) -> dict:
    summary = {"seeds": per_seed, **seed_stats([r["val_acc"] for r in per_seed])}
    out.mkdir(parents=True, exist_ok=True)
    (out / SEEDS_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


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
