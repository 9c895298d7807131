"""What the model gets wrong and where it looks: the validation images with the highest loss, false
positives and false negatives apart, and Grad-CAM heatmaps (the maintained `grad-cam` package) of the
class each image was given, overlaid on the picture. Feeds the report's gallery (gallery.json),
`binclass evaluate --errors N` and `binclass explain`."""

from __future__ import annotations

import base64
import csv
import io
import json
from pathlib import Path

import numpy as np
import torch

from .chunked import images_under
from .data.decode import decode_many
from .engine.infer import prepare
from .errors import BinclassError
from .predict import Predictor, load_predictor, worst_errors
from .run.files import GALLERY_FILE, PREDICTIONS_FILE
from .run.weights import load_meta

GALLERY_PER_KIND = 16  # false positives, and false negatives, shown in the report
THUMBNAIL = 128  # pixels a side: 2 x 32 JPEG thumbnails at quality 80 stay under ~0.5 MB in the report
CAM_BATCH = 8  # images per Grad-CAM pass: the backward pass of a pretrained backbone holds their activations


def validation_errors(run_dir: Path, per_kind: int) -> dict[str, list[dict]]:
    """{"false_positives": [...], "false_negatives": [...]}: the validation images the model gets wrong,
    highest loss first, at most per_kind each (val_predictions.csv: the kept model, the stored threshold)."""
    path = Path(run_dir) / PREDICTIONS_FILE
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise BinclassError(
            f"{path}: not found; the run has not finished (train it to the end, or --resume it)"
        ) from None
    meta = load_meta(Path(run_dir))
    classes = list(meta["classes"])
    labels = np.array([classes.index(r["true_label"]) for r in rows], dtype=np.int64)
    probs = np.array([float(r["prob"]) for r in rows])
    return worst_errors([r["path"] for r in rows], labels, probs, float(meta["threshold"]), classes, per_kind)


def _need_grad_cam():
    try:
        import pytorch_grad_cam  # noqa: F401
    except ImportError:
        raise BinclassError("heatmaps need the grad-cam package: pip install 'binclass[explain]'") from None


def import_gallery_tools() -> None:
    """Import grad-cam now when it is installed (seconds on a CPU: it brings scikit-learn and
    torch._dynamo): a time budget counts it before choosing the epochs, not after the last one."""
    try:
        _need_grad_cam()
        import pytorch_grad_cam.grad_cam  # noqa: F401
    except (BinclassError, ImportError):
        pass


def cam_layer(model: torch.nn.Module) -> torch.nn.Module:
    """The last convolution: the highest-level feature map that still has a spatial layout."""
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    if not convs:
        raise BinclassError("this model has no convolution to take a heatmap from")
    return convs[-1]


class _OneLogit(torch.nn.Module):
    """The network's single logit as shape (N,), for grad-cam's per-sample targets."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).reshape(-1, 1)


def overlays(predictor: Predictor, paths: list[Path]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(picture, picture with the Grad-CAM heatmap of the class it was given) per path, uint8 (size, size, 3)."""
    _need_grad_cam()
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.image import show_cam_on_image
    from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget

    model = predictor.model.float().eval()
    wrapped = _OneLogit(model)
    out = []
    with GradCAM(model=wrapped, target_layers=[cam_layer(model)]) as cam:
        for start in range(0, len(paths), CAM_BATCH):
            images = decode_many(paths[start : start + CAM_BATCH], predictor.size)
            x = prepare(images, predictor.mean, predictor.std).to(predictor.device)
            with torch.no_grad():
                logits = wrapped(x).reshape(-1) / predictor.temperature
            given = (torch.sigmoid(logits) >= float(predictor.meta["threshold"])).long().tolist()
            heat = cam(input_tensor=x, targets=[BinaryClassifierOutputTarget(c) for c in given])
            pictures = images.permute(0, 2, 3, 1).numpy()
            rgb = pictures.astype(np.float32) / 255.0
            out += [
                (pictures[i], show_cam_on_image(rgb[i], heat[i], use_rgb=True, image_weight=0.6))
                for i in range(len(rgb))
            ]
    return out


def _thumbnail(array: np.ndarray) -> str:
    from PIL import Image

    im = Image.fromarray(array)
    im.thumbnail((THUMBNAIL, THUMBNAIL))
    buffer = io.BytesIO()
    im.save(buffer, "JPEG", quality=80)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def write_gallery(run_dir: Path, per_kind: int = GALLERY_PER_KIND) -> Path | None:
    """gallery.json: the worst errors of each kind with their picture and heatmap as base64 JPEG
    thumbnails; None (and nothing written) without grad-cam."""
    try:
        _need_grad_cam()
    except BinclassError:
        return None
    errors = validation_errors(run_dir, per_kind)
    predictor = load_predictor(run_dir, device="cpu")
    for _kind, entries in errors.items():
        paths = [Path(e["path"]) for e in entries]
        for entry, (picture, overlay) in zip(entries, overlays(predictor, paths)):
            entry["picture"] = _thumbnail(picture)
            entry["heatmap"] = _thumbnail(overlay)
    path = Path(run_dir) / GALLERY_FILE
    path.write_text(json.dumps({"method": "Grad-CAM (grad-cam), last convolution", **errors}) + "\n")
    return path


def explain_images(run_dir: Path, inputs: list[Path], out: Path, checkpoint: str = "auto") -> list[Path]:
    """One heatmap overlay per image (OUT/<name>.png, at the model's input size), the class it was
    given and its probability in OUT/explained.csv."""
    from PIL import Image

    predictor = load_predictor(run_dir, checkpoint, device="cpu")
    paths = images_under(inputs)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    rows = []
    for start in range(0, len(paths), CAM_BATCH * 4):
        chunk = paths[start : start + CAM_BATCH * 4]
        for path, (_, overlay) in zip(chunk, overlays(predictor, chunk)):
            target = out / f"{path.stem}.png"
            n = 1
            while target in written:  # the same name from two folders
                target = out / f"{path.stem}-{n}.png"
                n += 1
            Image.fromarray(overlay).save(target)
            written.append(target)
            rows.append({"image": str(path), "heatmap": str(target)})
    with open(out / "explained.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["image", "heatmap"])
        writer.writeheader()
        writer.writerows(rows)
    return written
