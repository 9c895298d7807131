"""`binclass export`: a run's model as one ONNX file that needs neither PyTorch nor binclass to run.

The graph takes what `binclass predict` has after decoding, and nothing else:
    input  "images": uint8, (N, H, W, 3) RGB, H = W = the model's image size (model.json's image_size),
           each image decoded as binclass decodes it (EXIF orientation, RGB, square bilinear resize);
    output "prob":   float32, (N,): the probability of the positive class (metadata positive_class);
    output "ood_score": float32, (N,), where the run keeps an out-of-distribution reference for the
           exported weights: the cosine distance to the 10th nearest training image (binclass.ood; the
           training images' features travel inside the file), above metadata ood_threshold: unlike them.
The normalization (x / 255 - mean) / std, the layout change to NCHW and, for a run trained with
--tta, the mirror-image average of logits are inside the graph. model.json's facts travel in the
file's metadata (see META_KEYS); `binclass predict FILE.onnx images/` reads them back."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from torch import nn

from .errors import BinclassError
from .ood import OodReference, load_reference
from .run.weights import load_meta, load_model, temperature_of
from .version import __version__

OPSET = 17  # supported by onnxruntime since 1.11 and by every maintained runtime
INPUT, OUTPUT, OOD_OUTPUT = "images", "prob", "ood_score"
INPUT_LAYOUT = "uint8 NHWC RGB at image_size, decoded as binclass decodes (EXIF, RGB, square bilinear resize)"
OUTPUT_MEANING = "float32 (N,): probability of the positive class"
# Metadata keys; lists and dicts are JSON text (ONNX metadata values are strings).
META_KEYS = (
    "classes",
    "positive_class",
    "threshold",
    "image_size",
    "normalization",
    "architecture",
    "tta",
    "temperature",
    "checkpoint",
    "binclass_version",
    "opset",
    "input",
    "output",
    "ood_threshold",
    "ood_k",
)


class Deployed(nn.Module):
    """uint8 NHWC images -> probability of the positive class: the network with binclass's input
    preparation (engine.infer.prepare: x / 255, minus mean, divided by std) and TTA in front and behind."""

    def __init__(
        self,
        model: nn.Module,
        mean: list[float],
        std: list[float],
        tta: bool,
        temperature: float = 1.0,
        reference: OodReference | None = None,
    ) -> None:
        super().__init__()
        self.model, self.tta, self.temperature = model, tta, float(temperature)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).reshape(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).reshape(1, 3, 1, 1))
        self.k = reference.k if reference is not None else 0
        if reference is not None:  # the training images' unit features, transposed for one matrix product
            self.register_buffer("reference", reference.features.float().T.contiguous())

    def forward(self, images: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        x = images.permute(0, 3, 1, 2).float() / 255.0
        x = (x - self.mean) / self.std
        features = self.model.embed(x)
        logits = self.model.logit(features).reshape(-1)
        if self.tta:
            logits = (logits + self.model(x.flip(-1)).reshape(-1)) / 2
        if self.temperature != 1.0:  # a calibrated run (model.json's temperature)
            logits = logits / self.temperature
        if not self.k:
            return torch.sigmoid(logits)
        unit = features / features.norm(dim=1, keepdim=True).clamp_min(1e-12)  # binclass.ood.knn_scores
        nearest = torch.topk(unit @ self.reference, self.k, dim=1).values[:, -1]
        return torch.sigmoid(logits), 1 - nearest


def metadata(meta: dict, checkpoint: str, reference: OodReference | None = None) -> dict[str, str]:
    facts = {
        "classes": meta["classes"],
        "positive_class": meta["classes"][1],
        "threshold": float(meta["threshold"]),
        "image_size": int(meta["image_size"]),
        "normalization": meta["normalization"],
        "architecture": meta["architecture"],
        "tta": bool(meta.get("tta", False)),
        "temperature": temperature_of(meta),
        "checkpoint": checkpoint,
        "binclass_version": __version__,
        "opset": OPSET,
        "input": INPUT_LAYOUT,
        "output": OUTPUT_MEANING,
    }
    if reference is not None:
        facts.update(ood_threshold=reference.threshold, ood_k=reference.k)
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in facts.items()}


def export_onnx(run_dir: Path, out: Path | None = None, checkpoint: str = "auto") -> Path:
    """Write RUN_DIR's model (last, best, or auto: model.json's choice) as ONNX to `out` (default
    RUN_DIR/model.onnx), atomically; returns the path."""
    try:
        import onnx
    except ImportError:
        raise BinclassError("binclass export needs the onnx package: pip install 'binclass[onnx]'") from None
    run_dir = Path(run_dir)
    if checkpoint == "auto":
        checkpoint = load_meta(run_dir).get("default_checkpoint", "last")
    model, meta = load_model(run_dir, checkpoint)
    norm = meta["normalization"]
    reference = load_reference(run_dir)
    if reference is not None and reference.checkpoint not in ("any", checkpoint):
        reference = None  # kept for the other weights file
    tta, temperature = bool(meta.get("tta", False)), temperature_of(meta)
    deployed = Deployed(model, norm["mean"], norm["std"], tta, temperature, reference).eval()
    outputs = [OUTPUT, OOD_OUTPUT] if reference is not None else [OUTPUT]
    size = int(meta["image_size"])
    out = Path(out) if out is not None else run_dir / "model.onnx"
    if out.suffix != ".onnx":
        raise BinclassError(f"--out {out}: give a file name ending in .onnx")
    if not out.parent.is_dir():
        raise BinclassError(f"--out {out}: the folder {out.parent} does not exist")
    example = torch.zeros(2, size, size, 3, dtype=torch.uint8)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's notes on its own internals
            torch.onnx.export(
                deployed,
                (example,),
                str(tmp),
                input_names=[INPUT],
                output_names=outputs,
                dynamic_axes={INPUT: {0: "batch"}, **{name: {0: "batch"} for name in outputs}},
                opset_version=OPSET,
                dynamo=False,  # the TorchScript exporter: one self-contained file, no onnxscript needed
            )
        graph = onnx.load(str(tmp))
        onnx.helper.set_model_props(graph, metadata(meta, checkpoint, reference))
        onnx.checker.check_model(graph)
        onnx.save(graph, str(tmp))
        tmp.replace(out)
    except OSError as exc:
        raise BinclassError(f"{out}: cannot write ({exc.strerror or exc}); choose another --out") from None
    finally:
        tmp.unlink(missing_ok=True)
    return out
