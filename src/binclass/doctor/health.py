"""Findings about the data a run was trained and validated on (data.health): validation images with a
copy in training, and pictures under both classes."""

from __future__ import annotations

from ..data.health import LEAK_ERROR_SHARE, Health
from .findings import Finding

SHOWN_PAIRS = 10  # pairs named in a finding's evidence; binclass check lists them all


def health_findings(health: Health, correct: dict[str, bool] | None = None) -> list[Finding]:
    """correct: validation path -> whether the run's model got it right (val_predictions.csv); with it,
    the leakage finding gives the accuracy with and without the leaked images."""
    findings = []
    leaked = health.leaked_validation()
    val_n = sum(health.counts.get("validation", {}).values())
    if leaked and val_n:
        share = len(leaked) / val_n
        evidence: dict = {
            "leaked": len(leaked),
            "val_n": val_n,
            "share": share,
            "pairs": [f"{p.first} ~ {p.second}" for p in health.across()[:SHOWN_PAIRS]],
        }
        numbers = ""
        if correct:
            kept = [v for path, v in correct.items() if path not in set(leaked)]
            evidence["val_acc"] = sum(correct.values()) / len(correct)
            evidence["val_acc_without_leaked"] = sum(kept) / len(kept) if kept else float("nan")
            evidence["leaked_right"] = sum(correct.get(p, False) for p in leaked)
            numbers = (
                f" Validation accuracy is {evidence['val_acc']:.3f} with them and "
                f"{evidence['val_acc_without_leaked']:.3f} without them ({evidence['leaked_right']} of the "
                f"{len(leaked)} leaked images right)."
            )
        findings.append(
            Finding(
                "validation-leakage",
                "error" if share > LEAK_ERROR_SHARE else "warning",
                evidence,
                f"{len(leaked)} of the {val_n} validation images ({share:.1%}) have the same or a near-same picture "
                f"in training (re-encoded, resized or mirrored copies count): the model may have learned them, "
                f"and validation then measures memory, not generalization.{numbers}",
                "Remove the copies from train/ (or from validation/) and train again; `binclass check DATA` lists "
                "every pair.",
            )
        )
    conflicting = health.conflicting()
    if conflicting:
        findings.append(
            Finding(
                "conflicting-labels",
                "warning",
                {
                    "pairs": len(conflicting),
                    "examples": [
                        f"{p.first} ({p.first_label}) ~ {p.second} ({p.second_label})"
                        for p in conflicting[:SHOWN_PAIRS]
                    ],
                },
                f"{len(conflicting)} pairs of the same or near-same picture carry different classes: at least one "
                "of each pair is mislabelled, and no model can get both right.",
                "Look at each pair and move the wrong one to its class folder (or remove it).",
            )
        )
    return findings
