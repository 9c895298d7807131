"""How unlike the training images an image is: the cosine distance from its features (what the model's
last layer reads: a pretrained backbone's pooled features, a from-scratch network's penultimate ones) to
its K-th nearest training image's. A two-class model always answers one of its classes, so a photo of an
ant gets "cat" or "dog", often at a probability near 1; its features, though, lie far from every
training image's. The threshold is set on the validation images: ACCEPT of them score at or below it.

Stored with a run as ood.safetensors: the training images' unit-length features (at most MAX_REFERENCE
of them, a seeded sample) and, in its metadata, K, the threshold, the accepted share and which weights
the features belong to."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .run.files import OOD_FILE

# The 10th nearest training image: one near neighbour can be a near copy or a mislabelled oddity, ten
# describe where the training images lie. On the shared set's default features the 10th-neighbour
# distance separated generated non-photos completely (docs/mistakes-and-data.md).
K = 10
ACCEPT = 0.95  # the share of validation images the threshold accepts as like the training images (--ood-accept)
# Training images kept as the reference: 20,000 x 1280 features are 100 MB as float32, and scoring a
# batch against them one matrix product.
MAX_REFERENCE = 20_000
SCORE_CHUNK = 1024  # images scored at a time: a 1024 x 20,000 similarity matrix is 80 MB


@dataclass(frozen=True)
class OodReference:
    features: torch.Tensor  # (N, F) float32, unit rows: the training images'
    threshold: float  # a score above it: unlike the training images
    k: int = K
    accept: float = ACCEPT
    checkpoint: str = "any"  # the weights the features belong to: any (a frozen backbone), last or best

    def scores(self, features: torch.Tensor) -> torch.Tensor:
        return knn_scores(self.features, features, self.k)

    def accepts(self, scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores) <= self.threshold


def unit(features: torch.Tensor) -> torch.Tensor:
    features = features.float()
    return features / features.norm(dim=1, keepdim=True).clamp_min(1e-12)


def knn_scores(reference: torch.Tensor, features: torch.Tensor, k: int = K) -> torch.Tensor:
    """1 - the cosine similarity of each row of features to its k-th most similar reference row: 0 for
    an image among training images, up to 2 for one opposite to them all."""
    k = min(k, len(reference))
    reference = reference.to(features.device)
    out = []
    for start in range(0, len(features), SCORE_CHUNK):
        similarity = unit(features[start : start + SCORE_CHUNK]) @ reference.T
        out.append(1 - similarity.topk(k, dim=1).values[:, -1])
    return torch.cat(out).cpu() if out else torch.empty(0)


def fit_reference(
    train_features: torch.Tensor,
    val_features: torch.Tensor,
    seed: int = 0,
    checkpoint: str = "any",
    accept: float = ACCEPT,
) -> tuple[OodReference, np.ndarray]:
    """The reference from the training images' features, its threshold from the validation images' (the
    score that `accept` of them are at or below): the reference, and the validation images' scores."""
    if len(train_features) > MAX_REFERENCE:
        keep = torch.randperm(len(train_features), generator=torch.Generator().manual_seed(seed))[:MAX_REFERENCE]
        train_features = train_features[keep.sort().values]
    reference = unit(train_features.detach().cpu())
    val_scores = knn_scores(reference, val_features.detach().cpu()).numpy()
    threshold = float(np.quantile(val_scores, accept, method="higher")) if len(val_scores) else float("inf")
    return OodReference(reference, threshold, K, accept, checkpoint), val_scores


def save_reference(run_dir: Path, reference: OodReference) -> Path:
    from safetensors.torch import save_file

    path = Path(run_dir) / OOD_FILE
    metadata = {"k": str(reference.k), "threshold": repr(reference.threshold), "accept": repr(reference.accept),
                "checkpoint": reference.checkpoint, "method": "cosine distance to the k-th nearest training image"}  # fmt: skip
    save_file({"features": reference.features.contiguous()}, str(path), metadata=metadata)
    return path


def load_reference(run_dir: Path) -> OodReference | None:
    """The run's reference, or None for a run without one (written before binclass stored it)."""
    path = Path(run_dir) / OOD_FILE
    if not path.exists():
        return None
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
        features = f.get_tensor("features")
    return OodReference(
        features, float(meta["threshold"]), int(meta["k"]), float(meta["accept"]), meta.get("checkpoint", "any")
    )
