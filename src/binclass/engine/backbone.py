"""The frozen backbone's forward pass of the pretrained recipe, in PyTorch or in onnxruntime.

An image's features must not depend on which run computed them, with what other images, or on how busy
the machine was: they are cached and shared between runs (features.py), and a head trained on features
that differ in their last bits reports other numbers. So:
- the runtime follows a fixed rule, never a timing: `auto` is onnxruntime on a CPU wherever it runs the
  backbone with features that agree with PyTorch's (a check on fixed random images, deterministic, kept
  under the cache folder), else PyTorch. A measured choice let two runs started at once on an empty
  cache take different runtimes on a busy machine (their features are ~1e-5 apart);
- every call of the backbone sees one batch shape: PyTorch's CPU kernels choose their blocking by batch
  size, so an image's features in a batch of 32 and in the few left over at the end of a set differ in
  the last bits (up to 1.2e-5 for Lite0 on a 2-core Xeon; docs/benchmarks.md, "Reproducibility"). The
  last batch is filled up with copies of its last image, whose features are dropped;
- everything else that moves the arithmetic (runtime, library versions, the CPU or GPU, the thread
  count, the batch shape) is the pass's `signature`, part of the feature cache's key.
The exported ONNX file is kept under the cache folder too, keyed by the backbone's weights."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.sources import Source
from ..progressbar import Progress
from .infer import inference_batches, prepare

RUNTIMES = ("auto", "torch", "onnxruntime")
RUNTIME_DIR = "runtime"
EXPORT_VERSION = 1  # bump when Pooled or the export settings change what the file computes
CHECK_VERSION = 2  # bump when the rule below changes: older records are not read
CHECK_IMAGES = 32  # random images on which onnxruntime's features are compared with PyTorch's
MAX_COSINE_DISTANCE = 1e-4  # the features' largest allowed disagreement; fp32 reorderings give ~1e-7
# onnxruntime's images per call: small batches stay in the CPU's caches. Lite0 at 224 px on a 2-core Xeon:
# 263 images/s at 1, 293-299 at 2 and 4, 275 at 8, 233 at 32, 222 at 128 (median of 3).
ONNX_BATCH = 4
# PyTorch's images per call: 32 was the fastest on a CPU (docs/benchmarks.md, "Measurements behind the
# code"); a GPU wants more. Fixed (not --eval-batch-size): the batch shape moves the features' last bits.
TORCH_BATCH = {"cpu": 32, "cuda": 128}


class Pooled(torch.nn.Module):
    """uint8 NCHW images -> the backbone's pooled features, normalization inside (as binclass.export writes
    it: engine.infer.prepare works in place through views, which a traced graph does not keep)."""

    def __init__(self, backbone: torch.nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.backbone = backbone
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).reshape(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).reshape(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone((images.float() / 255.0 - self.mean) / self.std)


def onnxruntime_available() -> bool:
    """onnxruntime to run the file, and onnx, which PyTorch's exporter writes it with."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def export_backbone(backbone: torch.nn.Module, mean, std, size: int, path: Path) -> Path:
    """The backbone (normalization inside) as an ONNX file at path, written to a temporary name and renamed
    (two runs at once never read half a file)."""
    import warnings

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    pooled = Pooled(backbone, mean, std).eval()
    example = torch.zeros(2, 3, size, size, dtype=torch.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(pooled, (example,), str(tmp), input_names=["images"], output_names=["features"],
                          dynamic_axes={"images": {0: "n"}, "features": {0: "n"}}, opset_version=17,
                          dynamo=False)  # fmt: skip
    os.replace(tmp, path)
    return path


class OnnxBackbone:
    """An exported backbone in onnxruntime on the CPU, with PyTorch's thread count."""

    def __init__(self, path: Path) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        self.runtime = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(self, images: np.ndarray) -> np.ndarray:
        return self.runtime.run(None, {"images": np.ascontiguousarray(images)})[0]


def padded_batches(source: Source, batch_size: int, device: torch.device) -> Iterator[tuple[torch.Tensor, int]]:
    """The source in order, batch_size images at a time, the last batch filled up with copies of its last
    image (so that every call sees one shape), each with the number of its own images."""
    for batch in inference_batches(source, batch_size, device):
        n = len(batch)
        if n < batch_size:
            batch = torch.cat([batch, batch[-1:].expand(batch_size - n, *batch.shape[1:])])
        yield batch, n


def cpu_name() -> str:
    """The CPU's model name and its instruction-set flags (what decides which kernels run)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return f"{platform.machine()} {platform.processor()}"
    fields = dict(line.split(":", 1) for line in info.splitlines()[:40] if ":" in line)
    get = lambda key: next((v.strip() for k, v in fields.items() if k.strip() == key), "")  # noqa: E731
    return f"{get('model name')} | {get('flags')}"


def batch_size(runtime: str, device: torch.device) -> int:
    """Images per call of the backbone with this runtime on this device."""
    return ONNX_BATCH if runtime == "onnxruntime" else TORCH_BATCH.get(device.type, TORCH_BATCH["cuda"])


def pass_signature(runtime: str, device: torch.device) -> str:
    """What decides the last bits of a pass's features besides the image and the weights: the runtime and
    its version, the processor (the CPU's model and flags, or the GPU), the thread count, the batch shape."""
    parts = [runtime, f"torch {torch.__version__}", f"batch {batch_size(runtime, device)}"]
    if runtime == "onnxruntime":
        import onnxruntime

        parts.append(f"onnxruntime {onnxruntime.__version__}")
    if device.type == "cuda":
        parts += [
            torch.cuda.get_device_name(device),
            f"cuda {torch.version.cuda}",
            f"cudnn {torch.backends.cudnn.version()}",
        ]
    else:
        parts.append(cpu_name())
    parts.append(f"{torch.get_num_threads()} threads")
    return " | ".join(parts)


class BackbonePass:
    """The frozen backbone's pooled features (fp32, on the CPU) with one runtime, batch by batch, every batch
    of one shape; onnxruntime's file is exported at the first batch (a run whose features all come from the
    cache exports nothing)."""

    def __init__(
        self, runtime: str, backbone: torch.nn.Module, mean, std, size: int, device: torch.device, cache_dir: Path
    ) -> None:
        self.runtime, self.backbone, self.mean, self.std, self.size = runtime, backbone, mean, std, size
        self.device = device if runtime == "torch" else torch.device("cpu")
        self.cache_dir = cache_dir
        self.signature = pass_signature(runtime, self.device)
        self._onnx: OnnxBackbone | None = None

    def batches(self, source: Source, flip: bool = False, progress: Progress | None = None) -> Iterator[torch.Tensor]:
        """(n, F) features of each batch of source's images in order (of their mirror images with flip)."""
        if self.runtime == "torch":
            self.backbone.eval()
        done = 0
        for batch, n in padded_batches(source, batch_size(self.runtime, self.device), self.device):
            out = self._run(batch, flip)[:n]
            done += n
            if progress is not None:
                progress(done, len(source))
            yield out

    def _run(self, batch: torch.Tensor, flip: bool) -> torch.Tensor:
        if self.runtime == "torch":
            with torch.inference_mode():  # per batch: a generator must not hold the mode while suspended
                x = prepare(batch, self.mean, self.std)
                return self.backbone(x.flip(-1) if flip else x).float().cpu()
        if self._onnx is None:
            self._onnx = exported(self.backbone, self.mean, self.std, self.size, self.cache_dir)
        x = batch.numpy()
        return torch.from_numpy(self._onnx.run(x[..., ::-1] if flip else x))

    def __call__(self, source: Source, flip: bool = False, progress: Progress | None = None) -> torch.Tensor:
        """(N, F) features of every image of source."""
        parts = list(self.batches(source, flip, progress))
        return torch.cat(parts) if parts else torch.empty(0)


@dataclass(frozen=True)
class Choice:
    runtime: str  # "torch" or "onnxruntime"
    why: str  # what the run's first lines say


def _check_key(backbone: torch.nn.Module, size: int) -> str:
    import onnxruntime

    from ..features import weights_digest

    parts = (cpu_name(), torch.__version__, onnxruntime.__version__, weights_digest(backbone), size,
             torch.get_num_threads(), CHECK_VERSION)  # fmt: skip
    return hashlib.sha1(repr(parts).encode()).hexdigest()


def choose_runtime(
    wanted: str, backbone: torch.nn.Module, mean, std, size: int, device: torch.device, cache_dir: Path
) -> Choice:
    """torch or onnxruntime for the backbone's pass: wanted unless it is auto; auto, by a fixed rule that no
    timing enters: onnxruntime on a CPU where it is installed and runs this backbone with features that
    agree with PyTorch's (checked once, kept under cache_dir), else PyTorch."""
    if wanted == "torch" or (wanted == "auto" and (device.type != "cpu" or not onnxruntime_available())):
        why = "PyTorch" if wanted == "torch" else ("PyTorch on the GPU" if device.type != "cpu" else
                                                   "PyTorch (pip install onnxruntime for a faster CPU pass)")  # fmt: skip
        return Choice("torch", why)
    if wanted == "onnxruntime":
        from ..errors import need

        need("onnx", "onnx", "--backbone-runtime onnxruntime")
        need("onnxruntime", "onnx", "--backbone-runtime onnxruntime")
        if device.type != "cpu":
            from ..errors import BinclassError

            raise BinclassError("--backbone-runtime onnxruntime runs on the CPU; use --device cpu or torch")
        return Choice("onnxruntime", "onnxruntime (as asked)")
    record = cache_dir / RUNTIME_DIR / f"{_check_key(backbone, size)}.json"
    try:
        found = json.loads(record.read_text())
        return Choice(found["runtime"], found["why"] + f" (checked before: {record})")
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        distance = agreement(backbone, mean, std, size, cache_dir)
    except Exception as exc:  # a backbone the exporter or onnxruntime cannot take: PyTorch runs it
        return Choice("torch", f"PyTorch (onnxruntime could not run this backbone: {type(exc).__name__})")
    if distance <= MAX_COSINE_DISTANCE:
        choice = Choice("onnxruntime", f"onnxruntime: auto on a CPU, where it runs this backbone with features "
                        f"{distance:.0e} from PyTorch's (a fixed rule, not a timing; --backbone-runtime torch for PyTorch)")  # fmt: skip
    else:
        choice = Choice("torch", f"PyTorch: onnxruntime's features are {distance:.0e} from PyTorch's on this CPU "
                        f"(more than {MAX_COSINE_DISTANCE:.0e})")  # fmt: skip
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        tmp = record.with_name(f"{record.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps({"runtime": choice.runtime, "why": choice.why, "cpu": cpu_name().split(" | ")[0]}))
        os.replace(tmp, record)
    except OSError:
        pass  # a read-only cache folder: checked again next time, with the same outcome
    return choice


def agreement(backbone: torch.nn.Module, mean, std, size: int, cache_dir: Path) -> float:
    """The largest cosine distance between onnxruntime's and PyTorch's features of fixed random images."""
    from ..data.sources import TensorSource

    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (CHECK_IMAGES, 3, size, size), dtype=torch.uint8, generator=gen)
    cpu = torch.device("cpu")
    ours, theirs = (BackbonePass(r, backbone, mean, std, size, cpu, cache_dir)(TensorSource(images))
                    for r in ("onnxruntime", "torch"))  # fmt: skip
    return cosine_distance(ours.numpy(), theirs.numpy())


def cosine_distance(a: np.ndarray, b: np.ndarray) -> float:
    """The largest cosine distance between matching rows of a and b."""
    cos = np.sum(a * b, 1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    return float(np.max(1.0 - cos)) if len(cos) else 0.0


def exported(backbone: torch.nn.Module, mean, std, size: int, cache_dir: Path) -> OnnxBackbone:
    """The backbone in onnxruntime, from its ONNX file under cache_dir (exported once per weights, size and
    export version; a file that does not load is exported again)."""
    from ..features import weights_digest

    key = hashlib.sha1(f"{weights_digest(backbone)}|{size}|{list(mean)}|{list(std)}|e{EXPORT_VERSION}".encode())
    path = cache_dir / RUNTIME_DIR / f"{key.hexdigest()}.onnx"
    if path.is_file():
        try:
            return OnnxBackbone(path)
        except Exception:  # a damaged file: exported again
            pass
    return OnnxBackbone(export_backbone(backbone, mean, std, size, path))
