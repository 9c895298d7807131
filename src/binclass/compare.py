"""binclass compare: do two or more runs really differ? Curves overlaid, and for each pair McNemar's
exact test on the per-image correctness over the same validation images (a paired test: far more
sensitive than comparing two accuracies with their separate intervals)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from .errors import BinclassError
from .metrics import wilson_interval
from .run import history
from .run.files import PREDICTIONS_FILE, SEEDS_FILE
from .run.seeds import find_seed_summary

ALPHA = 0.05  # significance level of the per-pair test


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: b images only the first model gets right, c only the second.
    Under 'no difference' each discordant image is a fair coin: p = 2 * P(Binomial(b + c, 1/2) <= min(b, c))."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def correctness(run_dir: Path) -> dict[str, bool]:
    path = Path(run_dir) / PREDICTIONS_FILE
    if not path.exists():
        raise BinclassError(f"{path}: not found; compare needs finished binclass runs")
    with path.open(newline="") as f:
        return {r["path"]: r["true_label"] == r["pred_label"] for r in csv.DictReader(f)}


# Two single runs of recipes whose seed-to-seed standard deviations are sd_a and sd_b differ by chance
# with sd sqrt(sd_a^2 + sd_b^2); beyond 2 of those (about 95% for a normal spread) the seed alone is an
# unlikely explanation.
SEED_Z = 2.0


def seed_noise(sd_a: float | None, sd_b: float | None) -> float | None:
    """Standard deviation of the accuracy difference of two single runs; one known spread stands for both."""
    known = [sd for sd in (sd_a, sd_b) if sd is not None]
    if not known:
        return None
    a, b = (sd_a if sd_a is not None else known[0]), (sd_b if sd_b is not None else known[0])
    return math.sqrt(a * a + b * b)


def compare_runs(run_dirs: list[Path], seed_sd: float | None = None) -> dict:
    """seed_sd: the seed-to-seed standard deviation of validation accuracy (a fraction) for every run;
    None: each run's own, from the seeds.json of a `--seeds` run it belongs to, where there is one."""
    if len(run_dirs) < 2:
        raise BinclassError("compare needs at least two run folders")

    runs, correct = [], {}
    for run in map(Path, run_dirs):
        rows = history.read_epochs(run)
        if not rows and (run / SEEDS_FILE).is_file():
            raise BinclassError(
                f"{run}: holds a --seeds run; compare its seed folders ({run}/seed-N), which "
                "then carry that recipe's seed spread"
            )
        if not rows:
            raise BinclassError(f"{run}: no metrics.csv rows; compare needs finished binclass runs")
        correct[run] = correctness(run)
        n, k = len(correct[run]), sum(correct[run].values())
        low, high = wilson_interval(k, n)
        summary = find_seed_summary(run) if seed_sd is None else None
        sd = seed_sd if seed_sd is not None else (summary["std_val_acc"] if summary else None)
        runs.append(
            {
                "run": str(run),
                "n": n,
                "accuracy": k / n if n else float("nan"),
                "low": low,
                "high": high,
                "best_val_loss": min(r["val_loss"] for r in rows),
                "epochs": len(rows),
                "seed_sd": sd,
                "seeds": len(summary["seeds"]) if summary else None,
            }
        )
    pairs = []
    names = [Path(r["run"]) for r in runs]
    by_name = {Path(r["run"]): r for r in runs}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            common = sorted(set(correct[a]) & set(correct[b]))
            if not common:
                raise BinclassError(f"{a} and {b} share no validation images; compare runs on the same data")
            a_only = sum(correct[a][p] and not correct[b][p] for p in common)
            b_only = sum(correct[b][p] and not correct[a][p] for p in common)
            p = mcnemar_exact(a_only, b_only)
            diff = by_name[a]["accuracy"] - by_name[b]["accuracy"]
            noise = seed_noise(by_name[a]["seed_sd"], by_name[b]["seed_sd"])
            pairs.append(
                {
                    "a": str(a),
                    "b": str(b),
                    "common_images": len(common),
                    "only_a_right": a_only,
                    "only_b_right": b_only,
                    "p_value": p,
                    "differ": p < ALPHA,
                    "difference": diff,
                    "seed_noise_sd": noise,
                    "beyond_seed_noise": None if noise is None else abs(diff) > SEED_Z * noise,
                }
            )
    return {"runs": runs, "pairs": pairs, "alpha": ALPHA}


def render(result: dict) -> str:
    lines = [f"{'run':40} {'val acc':>8} {'95% interval':>16} {'best val loss':>14}"]
    for r in result["runs"]:
        lines.append(
            f"{r['run'][-40:]:40} {r['accuracy']:8.3f} {r['low']:7.3f}-{r['high']:.3f} {r['best_val_loss']:14.4f}"
        )
    for p in result["pairs"]:
        verdict = "differ beyond noise" if p["differ"] else "not distinguishable from noise"
        lines.append(
            f"{Path(p['a']).name} vs {Path(p['b']).name}: on {p['common_images']} images, {p['only_a_right']} only the "
            f"first gets right, {p['only_b_right']} only the second; McNemar exact p = {p['p_value']:.3g}: {verdict} "
            f"(alpha {result['alpha']})"
        )
        if p["seed_noise_sd"] is not None:
            beyond = "beyond" if p["beyond_seed_noise"] else "within"
            lines.append(
                f"  difference {p['difference'] * 100:+.1f} points; two single runs of these recipes differ by "
                f"{p['seed_noise_sd'] * 100:.1f} points (sd) from the seed alone: {beyond} seed-to-seed noise "
                f"(|difference| {'>' if p['beyond_seed_noise'] else '<='} {SEED_Z:g} sd)"
            )
        else:
            lines.append(
                "  seed-to-seed spread unknown: train each with --seeds 0,1,2 (or pass --seed-sd) to "
                "tell a better recipe from a lucky seed"
            )
    return "\n".join(lines)


def plot_compare(run_dirs: list[Path], path: Path) -> None:
    import matplotlib.pyplot as plt

    from .report.plots import finish_figure  # first: it selects the Agg backend

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4.2))
    for run in map(Path, run_dirs):
        rows = history.read_epochs(run)
        x = [r["epoch"] for r in rows]
        line = ax_loss.plot(x, [r["val_loss"] for r in rows], "o-", label=run.name)[0]
        ax_acc.plot(x, [r["val_acc"] for r in rows], "o-", color=line.get_color(), label=run.name)
        ax_acc.fill_between(
            x, [r["val_acc_low"] for r in rows], [r["val_acc_high"] for r in rows], color=line.get_color(), alpha=0.12
        )
    ax_loss.set(xlabel="epoch", ylabel="validation loss", title="Validation loss")
    ax_acc.set(xlabel="epoch", ylabel="validation accuracy", title="Validation accuracy (95% bands)")
    finish_figure(fig, path, (ax_loss, ax_acc))
