"""The frozen backbone's forward pass of the pretrained recipe, in PyTorch or in onnxruntime.

On a CPU, onnxruntime runs EfficientNet-Lite0's pass about twice as fast as PyTorch with features within
1e-6 (docs/benchmarks.md, "Backbone pass"), but not on every CPU and not for every backbone. `auto` measures
both once on the machine (a few batches of random images: speed does not depend on content, and the two
runtimes' features are compared on them) and keeps the answer under the cache folder, keyed by the CPU,
the library versions, the model, the input size and the thread count; the run's first lines say what was
chosen and why. The exported ONNX file is kept there too, keyed by the backbone's weights."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.sources import Source
from ..progressbar import Progress
from .infer import extract_features, inference_batches

RUNTIMES = ("auto", "torch", "onnxruntime")
RUNTIME_DIR = "runtime"
EXPORT_VERSION = 1  # bump when Pooled or the export settings change what the file computes
# Probe: 3 timed batches of 32 after a warm-up one, per runtime (about 2 s on a 2-core CPU); onnxruntime is
# chosen unless it is measurably slower, and only when its features agree with PyTorch's.
PROBE_BATCH, PROBE_REPEATS = 32, 3
MAX_COSINE_DISTANCE = 1e-4  # the features' largest allowed disagreement; fp32 reorderings give ~1e-7
# onnxruntime's images per call: small batches stay in the CPU's caches. Lite0 at 224 px on a 2-core Xeon:
# 263 images/s at 1, 293-299 at 2 and 4, 275 at 8, 233 at 32, 222 at 128 (median of 3).
ONNX_BATCH = 4


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

    def features(self, source: Source, flip: bool = False, progress: Progress | None = None) -> torch.Tensor:
        out, done = [], 0
        for batch in inference_batches(source, ONNX_BATCH, torch.device("cpu")):
            x = batch.numpy()
            out.append(self.run(x[..., ::-1] if flip else x))
            done += len(x)
            if progress is not None:
                progress(done, len(source))
        return torch.from_numpy(np.concatenate(out)) if out else torch.empty(0)


def cpu_name() -> str:
    """The CPU's model name and its instruction-set flags (what decides which kernels run)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return f"{platform.machine()} {platform.processor()}"
    fields = dict(line.split(":", 1) for line in info.splitlines()[:40] if ":" in line)
    get = lambda key: next((v.strip() for k, v in fields.items() if k.strip() == key), "")  # noqa: E731
    return f"{get('model name')} | {get('flags')}"


@dataclass(frozen=True)
class Choice:
    runtime: str  # "torch" or "onnxruntime"
    why: str  # what the run's first lines say


def _probe_key(model: str, size: int) -> str:
    import onnxruntime

    parts = (cpu_name(), torch.__version__, onnxruntime.__version__, model, size, torch.get_num_threads())
    return hashlib.sha1(repr(parts).encode()).hexdigest()


def choose_runtime(
    wanted: str, model: str, backbone: torch.nn.Module, mean, std, size: int, device: torch.device, cache_dir: Path
) -> Choice:
    """torch or onnxruntime for the backbone's pass: wanted unless it is auto; auto: onnxruntime on a CPU
    where it is installed, measured faster and agrees with PyTorch (measured once, kept under cache_dir)."""
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
    record = cache_dir / RUNTIME_DIR / f"{_probe_key(model, size)}.json"
    try:
        found = json.loads(record.read_text())
        return Choice(found["runtime"], found["why"] + f" (measured before: {record})")
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        torch_rate, onnx_rate, distance = probe(backbone, mean, std, size, cache_dir)
    except Exception as exc:  # a backbone the exporter or onnxruntime cannot take: PyTorch runs it
        return Choice("torch", f"PyTorch (onnxruntime could not run this backbone: {type(exc).__name__})")
    fast = onnx_rate >= torch_rate and distance <= MAX_COSINE_DISTANCE
    why = (
        f"{'onnxruntime' if fast else 'PyTorch'}: {onnx_rate:.0f} images/s with onnxruntime, {torch_rate:.0f} with "
        f"PyTorch on this CPU, features {distance:.0e} apart"
    )
    choice = Choice("onnxruntime" if fast else "torch", why)
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        tmp = record.with_name(f"{record.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"runtime": choice.runtime, "why": why, "cpu": cpu_name().split(" | ")[0]}))
        os.replace(tmp, record)
    except OSError:
        pass  # a read-only cache folder: measured again next time
    return choice


def probe(backbone: torch.nn.Module, mean, std, size: int, cache_dir: Path) -> tuple[float, float, float]:
    """Images per second of PyTorch and onnxruntime on random images, and their features' largest cosine
    distance."""
    from ..data.sources import TensorSource

    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (PROBE_BATCH, 3, size, size), dtype=torch.uint8, generator=gen)
    source = TensorSource(images)
    cpu = torch.device("cpu")
    onnx = exported(backbone, mean, std, size, cache_dir)

    def rate(run: Callable[[], torch.Tensor]) -> tuple[float, torch.Tensor]:
        out = run()  # warm-up: first-call allocations and kernel choices
        seconds = []
        for _ in range(PROBE_REPEATS):
            start = time.perf_counter()
            run()
            seconds.append(time.perf_counter() - start)
        return PROBE_BATCH / statistics.median(seconds), out

    torch_rate, reference = rate(lambda: extract_features(backbone, source, mean, std, PROBE_BATCH, cpu))
    onnx_rate, out = rate(lambda: onnx.features(source))
    return torch_rate, onnx_rate, cosine_distance(out.numpy(), reference.numpy())


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


def backbone_pass(
    runtime: str, backbone: torch.nn.Module, mean, std, size: int, batch_size: int, device: torch.device,
    cache_dir: Path,
) -> Callable[[Source, bool, Progress | None], torch.Tensor]:  # fmt: skip
    """compute(source, flip, progress) -> (N, F) fp32 features with the chosen runtime; onnxruntime's file is
    exported at the first call (a run whose features all come from the cache exports nothing)."""
    if runtime == "torch":
        return lambda source, flip, progress: extract_features(
            backbone, source, mean, std, batch_size, device, flip, progress
        )
    held: list[OnnxBackbone] = []

    def compute(source: Source, flip: bool, progress: Progress | None) -> torch.Tensor:
        if not held:
            held.append(exported(backbone, mean, std, size, cache_dir))
        return held[0].features(source, flip, progress).to(device)

    return compute
