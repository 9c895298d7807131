"""A guard for any PyTorch loop: `from binclass import watch`, then `watch.batch(outputs, labels, preds)`.

It catches, as they happen, the bugs that make a reported accuracy wrong: argmax over a single
output column, a model predicting one class for everything, raw logits thresholded at 0.5, and
labels of shape (N,) meeting outputs of shape (N, 1) (which broadcast to an (N, N) comparison).
A handful of reductions per call: cheap enough to leave on. Mode "warn" (default) issues each
finding once as a BinclassWatchWarning; mode "raise" raises WatchError.

For the loops people use: a Watcher is itself a plain hook (`hook = Watcher(); hook(outputs, labels,
preds)` in any loop), and `WatchCallback` is a Lightning callback (imported only when asked for, and
only with Lightning installed): `Trainer(callbacks=[binclass.watch.WatchCallback()])`.
"""

from __future__ import annotations

import warnings

import torch

from .doctor.findings import Finding

__all__ = ["Watcher", "WatchError", "BinclassWatchWarning", "batch", "reset"]  # and WatchCallback, on first use


class WatchError(RuntimeError):
    def __init__(self, finding: Finding) -> None:
        super().__init__(f"[{finding.id}] {finding.message} Fix: {finding.fix}")
        self.finding = finding


class BinclassWatchWarning(UserWarning):
    pass


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.detach().reshape(-1).float()


class Watcher:
    """Keeps running counts across batches; use one per training run (or the module-level default)."""

    def __init__(self, mode: str = "warn", min_samples: int = 200, min_batches: int = 5) -> None:
        if mode not in ("warn", "raise"):
            raise ValueError("mode must be 'warn' or 'raise'")
        self.mode = mode
        self.min_samples = min_samples  # constant predictions need this many samples before they mean anything
        self.min_batches = min_batches
        self.reset()

    def reset(self) -> None:
        self.samples = 0
        self.batches = 0
        self.predicted_positive = 0
        self.labels_positive = 0
        self.reported: set[str] = set()
        self.findings: list[Finding] = []

    def __enter__(self) -> Watcher:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def _report(self, finding: Finding) -> Finding:
        if finding.id not in self.reported:
            self.reported.add(finding.id)
            self.findings.append(finding)
            if self.mode == "raise":
                raise WatchError(finding)
            warnings.warn(f"[{finding.id}] {finding.message} Fix: {finding.fix}", BinclassWatchWarning, stacklevel=3)
        return finding

    def batch(self, outputs: torch.Tensor, labels: torch.Tensor, preds: torch.Tensor | None = None) -> list[Finding]:
        """Check one batch: model outputs (logits or probabilities), labels, and the predictions you derived.
        The argmax check runs first: in the classic bug it is the cause, the shape mismatch its companion."""
        found = []
        single = outputs.dim() == 1 or (outputs.dim() == 2 and outputs.shape[1] == 1)
        n = outputs.shape[0]
        out = _flat(outputs)
        if preds is not None and single:
            p = _flat(preds)
            if p.numel() == out.numel() or (preds.dim() >= 1 and preds.shape[0] == n):
                p = p[:n] if p.numel() != n else p
                if n >= 2 and bool((p == 0).all()) and float(out.std()) > 1e-6:
                    found.append(
                        self._report(
                            Finding(
                                "metric-argmax-single-output",
                                "error",
                                {
                                    "outputs_shape": list(outputs.shape),
                                    "outputs_std": float(out.std()),
                                    "predictions": "all 0",
                                },
                                "Every prediction is class 0 although the single output varies: predictions come from argmax "
                                "(or max(dim=1)) over one column, which is always 0.",
                                "Predict with (torch.sigmoid(logits) >= 0.5) or (logits >= 0) for a one-output model.",
                            )
                        )
                    )
                outside = bool(((out < 0) | (out > 1)).any())
                if outside and p.numel() == n:
                    at_half = (out >= 0.5).float()
                    at_half_strict = (out > 0.5).float()
                    at_zero = (out >= 0).float()
                    matches_half = (
                        bool((p == at_half).all())
                        or bool((p == at_half_strict).all())
                        or bool((p == torch.round(out)).all())
                    )
                    # All-0 predictions are no evidence of a 0.5 threshold: argmax over one column gives them
                    # too (found above); a threshold shows itself in the positives it does give.
                    if matches_half and bool(p.any()) and not bool((p == at_zero).all()):
                        found.append(
                            self._report(
                                Finding(
                                    "threshold-on-logits",
                                    "error",
                                    {"outputs_min": float(out.min()), "outputs_max": float(out.max())},
                                    f"Outputs range from {float(out.min()):.2f} to {float(out.max()):.2f}, so they are logits, "
                                    "yet predictions threshold them at 0.5 (or round them): logits between 0 and 0.5 are "
                                    "counted as class 0 though their probability is above 0.5.",
                                    "Threshold probabilities (torch.sigmoid(logits) >= 0.5) or logits at 0 (logits >= 0).",
                                )
                            )
                        )
        for name, other in (("outputs", outputs), ("predictions", preds)):
            if other is None or n < 2:
                continue
            if (
                other.dim() != labels.dim()
                and other.numel() == labels.numel()
                and tuple(other.shape[:1]) == tuple(labels.shape[:1])
            ):
                found.append(
                    self._report(
                        Finding(
                            "label-shape-broadcast",
                            "error",
                            {name: list(other.shape), "labels": list(labels.shape)},
                            f"{name.capitalize()} of shape {tuple(other.shape)} meet labels of shape {tuple(labels.shape)}: "
                            f"a loss or == between them broadcasts to ({n}, {n}), comparing every sample with every label.",
                            "Give both the same shape: labels.float().unsqueeze(1) for (N, 1) outputs, or outputs.squeeze(1).",
                        )
                    )
                )
        if single:
            if preds is not None and _flat(preds).numel() == n:
                positive = int((_flat(preds) > 0.5).sum())
            else:
                probs_like = bool(((out >= 0) & (out <= 1)).all())
                positive = int((out >= (0.5 if probs_like else 0.0)).sum())
            self.predicted_positive += positive
            self.labels_positive += int((_flat(labels) > 0.5).sum())
            self.samples += n
            self.batches += 1
            both_classes = 0 < self.labels_positive < self.samples
            if (
                self.samples >= self.min_samples
                and self.batches >= self.min_batches
                and both_classes
                and self.predicted_positive in (0, self.samples)
            ):
                cls = 1 if self.predicted_positive else 0
                found.append(
                    self._report(
                        Finding(
                            "constant-predictions",
                            "error",
                            {
                                "samples": self.samples,
                                "batches": self.batches,
                                "predicted_class": cls,
                                "label_positive_share": self.labels_positive / self.samples,
                            },
                            f"All {self.samples} predictions so far are class {cls} while the labels hold both classes: "
                            "the model has collapsed to a constant output.",
                            "Lower the learning rate (10x), use BCEWithLogitsLoss on raw logits, and check input normalization.",
                        )
                    )
                )
        return found

    __call__ = batch  # a Watcher is the plain per-batch hook: hook(outputs, labels, preds)


_default = Watcher()


def batch(outputs: torch.Tensor, labels: torch.Tensor, preds: torch.Tensor | None = None) -> list[Finding]:
    """Check one batch with the module-level watcher (warns once per finding id)."""
    return _default.batch(outputs, labels, preds)


def reset() -> None:
    _default.reset()


LABEL_KEYS = ("label", "labels", "y", "target", "targets")
PRED_KEYS = ("preds", "predictions", "pred")


def labels_of(batch: object) -> torch.Tensor | None:
    """The labels of a batch as loaders give it: (inputs, labels, ...) or a dict with a label key."""
    if isinstance(batch, (tuple, list)) and len(batch) >= 2 and isinstance(batch[1], torch.Tensor):
        return batch[1]
    if isinstance(batch, dict):
        for key in LABEL_KEYS:
            if isinstance(batch.get(key), torch.Tensor):
                return batch[key]
    return None


def _lightning_callback() -> type:
    try:
        from lightning.pytorch import Callback
    except ImportError:
        try:
            from pytorch_lightning import Callback
        except ImportError:
            raise ImportError(
                "binclass.watch.WatchCallback is a Lightning callback: pip install lightning "
                "(in any other loop, call a binclass.watch.Watcher() on each batch)"
            ) from None

    class WatchCallback(Callback):
        """Watches every training and validation batch of a Lightning run: the model's output (taken by a
        forward hook), the batch's labels, and the predictions when the step returns them in a dict
        ("preds"). Findings warn once each (mode="raise": stop the run); they are kept in .findings."""

        def __init__(self, mode: str = "warn", min_samples: int = 200, min_batches: int = 5) -> None:
            self.watchers = {stage: Watcher(mode, min_samples, min_batches) for stage in ("train", "validation")}
            self._output: torch.Tensor | None = None
            self._handle = None

        @property
        def findings(self) -> list[Finding]:
            return [f for w in self.watchers.values() for f in w.findings]

        def on_fit_start(self, trainer, pl_module) -> None:  # noqa: ANN001
            def keep(module, args, output) -> None:  # noqa: ANN001
                self._output = output if isinstance(output, torch.Tensor) else None

            self._handle = pl_module.register_forward_hook(keep)

        def on_fit_end(self, trainer, pl_module) -> None:  # noqa: ANN001
            if self._handle is not None:
                self._handle.remove()
                self._handle = None

        def on_validation_epoch_start(self, trainer, pl_module) -> None:  # noqa: ANN001
            self.watchers["validation"].samples = 0  # the constant-output count is per validation pass
            self.watchers["validation"].predicted_positive = self.watchers["validation"].labels_positive = 0
            self.watchers["validation"].batches = 0

        def _check(self, stage: str, outputs: object, batch: object) -> None:
            labels, output, self._output = labels_of(batch), self._output, None
            if labels is None or output is None or output.shape[0] != labels.shape[0]:
                return
            preds = None
            if isinstance(outputs, dict):
                preds = next((outputs[k] for k in PRED_KEYS if isinstance(outputs.get(k), torch.Tensor)), None)
            if output.numel() == labels.numel():
                # How the step compares them is not visible here: only predictions it returns are checked for shape.
                output = output.reshape(labels.shape)
            self.watchers[stage].batch(output.detach(), labels.detach(), None if preds is None else preds.detach())

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
            self._check("train", outputs, batch)

        def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:  # noqa: ANN001
            self._check("validation", outputs, batch)

    return WatchCallback


def __getattr__(name: str) -> type:
    if name == "WatchCallback":  # Lightning is imported here, on first use, never by `import binclass.watch`
        cls = _lightning_callback()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module 'binclass.watch' has no attribute {name!r}")
