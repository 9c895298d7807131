"""Matplotlib figures of a run (Agg backend: no display needed)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..metrics import format_score, roc_auc, roc_curve  # noqa: E402


def finish_figure(fig: plt.Figure, path: Path, axes: tuple = ()) -> None:
    """Grid and legend on the given axes, then tight layout, save as PNG and free the figure."""
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _step_positions(steps: list[dict]) -> np.ndarray:
    """x position of each step in epochs: step k of an epoch with K steps sits at epoch - 1 + k/K."""
    per_epoch = Counter(s["epoch"] for s in steps)
    return np.array([s["epoch"] - 1 + s["step"] / per_epoch[s["epoch"]] for s in steps])


def plot_curves(epochs: list[dict], steps: list[dict], path: Path) -> None:
    x = [r["epoch"] for r in epochs]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4.2))
    if steps:
        ax_loss.plot(
            _step_positions(steps),
            [s["loss"] for s in steps],
            color="tab:blue",
            alpha=0.15,
            lw=0.8,
            label="train loss per batch",
        )
        ax_acc.plot(
            _step_positions(steps),
            [s["batch_acc"] for s in steps],
            color="tab:blue",
            alpha=0.15,
            lw=0.8,
            label="train accuracy per batch (noisy: one batch)",
        )
    ax_loss.plot(x, [r["train_loss"] for r in epochs], "o-", color="tab:blue", label="train (whole epoch)")
    ax_loss.plot(x, [r["val_loss"] for r in epochs], "o-", color="tab:orange", label="validation")
    ax_loss.set(xlabel="epoch", ylabel="BCE loss", title="Loss")
    # A few early batches can have losses 50x the rest: scale to the epoch curves, not to those spikes.
    epoch_losses = [v for r in epochs for v in (r["train_loss"], r["val_loss"]) if np.isfinite(v)]
    if epoch_losses:
        top = 1.3 * max(epoch_losses)
        if steps and max(s["loss"] for s in steps) > top:
            ax_loss.set_ylim(0, top)
            ax_loss.set_title("Loss (batch spikes above the frame are cut off)")
    ax_acc.fill_between(
        x,
        [r["val_acc_low"] for r in epochs],
        [r["val_acc_high"] for r in epochs],
        color="tab:orange",
        alpha=0.2,
        label="validation 95% interval (Wilson)",
    )
    ax_acc.plot(x, [r["train_acc"] for r in epochs], "o-", color="tab:blue", label="train (whole epoch)")
    ax_acc.plot(x, [r["val_acc"] for r in epochs], "o-", color="tab:orange", label="validation")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="Accuracy", ylim=(0, 1.02))
    finish_figure(fig, path, (ax_loss, ax_acc))


def plot_confusion(confusion: list[list[int]], classes: list[str], path: Path) -> None:
    cm = np.asarray(confusion)
    fig, ax = plt.subplots(figsize=(4.2, 3.8))
    ax.imshow(cm, cmap="Blues")
    for i in range(2):
        for j in range(2):
            ax.text(
                j,
                i,
                str(cm[i, j]),
                ha="center",
                va="center",
                color="white" if cm[i, j] > cm.max() / 2 else "black",
                fontsize=14,
            )
    ax.set_xticks([0, 1], classes)
    ax.set_yticks([0, 1], classes)
    ax.set(xlabel="predicted", ylabel="true", title="Validation confusion matrix")
    finish_figure(fig, path)


ZOOM_AUC = 0.98


def plot_roc(labels: np.ndarray, probs: np.ndarray, path: Path) -> None:
    """The ROC with its AUC and the count of misordered pairs behind it. Near the corner (AUC above
    ZOOM_AUC) an inset shows the top-left tenth, where the curve of a nearly perfect model leaves the
    axes: at full scale it looks perfect when it is not."""
    fpr, tpr = roc_curve(labels, probs)
    auc = roc_auc(labels, probs)
    positives = int(np.sum(labels))
    pairs = positives * (len(labels) - positives)
    wrong = round((1 - auc) * pairs) if pairs and np.isfinite(auc) else 0
    fig, ax = plt.subplots(figsize=(4.2, 4))
    label = f"AUC {format_score(auc)}" + (f" ({wrong} of {pairs} pairs misordered)" if pairs else "")
    ax.plot(fpr, tpr, color="tab:orange", label=label)
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=0.8, label="chance")
    ax.set(
        xlabel="false positive rate", ylabel="true positive rate", title="Validation ROC", xlim=(0, 1), ylim=(0, 1.01)
    )
    if np.isfinite(auc) and auc > ZOOM_AUC:
        inset = ax.inset_axes((0.4, 0.3, 0.55, 0.45))  # above the legend, right of the curve's climb
        inset.plot(fpr, tpr, color="tab:orange", drawstyle="steps-post")
        inset.set(xlim=(0, 0.1), ylim=(0.9, 1.0), title="top-left corner", xticks=[0, 0.05, 0.1], yticks=[0.9, 1.0])
        inset.tick_params(labelsize=6)
        inset.title.set_fontsize(7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    finish_figure(fig, path)


def plot_reliability(rows: list[dict], path: Path) -> None:
    """Reliability diagram: share of positives against mean probability per occupied bin, the diagonal
    being perfect calibration; bar widths are the bins, the numbers their images."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.plot([0, 1], [0, 1], color="#999", lw=1, ls="--", label="perfectly calibrated")
    for r in rows:
        ax.bar(r["low"], r["positive_share"], width=r["high"] - r["low"], align="edge", color="#5dade2",
               edgecolor="#2e86c1", alpha=0.7)  # fmt: skip
        ax.text((r["low"] + r["high"]) / 2, min(0.97, r["positive_share"] + 0.02), str(r["n"]), ha="center", fontsize=6)
    ax.plot([r["mean_prob"] for r in rows], [r["positive_share"] for r in rows], "o-", color="#c0392b", ms=3,
            label="share of positives at the bin's mean probability")  # fmt: skip
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="predicted probability of the positive class", ylabel="share positive")
    ax.legend(fontsize=7, loc="upper left")
    finish_figure(fig, path, (ax,))
