"""The default backbone's forward pass on the CPU, side by side in one process: PyTorch as binclass runs it,
onnxruntime in fp32, and onnxruntime with int8 dynamic quantization; images per second (median of
--repeats, with the range) and how far each one's features are from PyTorch's.

    python scripts/backbone_speed.py DATA [--images 256] [--repeats 3] [--batch 64] [--threads 0]

DATA: a folder of images (the first --images are decoded once at 224 px). Set ONEDNN_MAX_CPU_ISA=AVX2 to
see what a CPU without AVX512 and bf16 units would get from PyTorch (onnxruntime has its own kernels)."""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from binclass.allocator import keep_freed_memory
from binclass.data.decode import decode_many
from binclass.data.scan import find_images
from binclass.data.sources import TensorSource
from binclass.engine.infer import extract_features, prepare_model
from binclass.models import build_model, normalization

SIZE = 224


class Pooled(torch.nn.Module):
    """uint8 NCHW images -> pooled features, the normalization inside as binclass.export writes it
    (engine.infer.prepare works in place through views, which a traced graph does not keep)."""

    def __init__(self, backbone: torch.nn.Module, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.backbone = backbone
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).reshape(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).reshape(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone((images.float() / 255.0 - self.mean) / self.std)


def timed(run, repeats: int) -> tuple[list[float], np.ndarray]:
    out, seconds = None, []
    for _ in range(repeats):
        start = time.perf_counter()
        out = run()
        seconds.append(time.perf_counter() - start)
    return seconds, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64, help="images per forward pass (binclass's evaluation batch)")
    parser.add_argument("--threads", type=int, default=0, help="0: PyTorch's and onnxruntime's own choice")
    a = parser.parse_args()
    import onnxruntime
    from onnxruntime.quantization import QuantType, quantize_dynamic

    keep_freed_memory()  # as binclass train and predict run (see binclass.allocator)
    if a.threads:
        torch.set_num_threads(a.threads)
    images = decode_many(find_images([a.data])[: a.images], SIZE)
    model = prepare_model(build_model("efficientnet_lite0", SIZE, pretrained=True), torch.device("cpu")).eval()
    mean, std = normalization("efficientnet_lite0")
    source = TensorSource(images)
    rows = []
    seconds, reference = timed(
        lambda: extract_features(model.backbone, source, mean, std, a.batch, torch.device("cpu")).numpy(), a.repeats
    )
    rows.append(("PyTorch fp32 (binclass)", seconds, 0.0))
    with tempfile.TemporaryDirectory() as folder:
        fp32, int8 = Path(folder) / "fp32.onnx", Path(folder) / "int8.onnx"
        example = images[:2].contiguous()
        torch.onnx.export(Pooled(model.backbone, mean, std), (example,), str(fp32), input_names=["images"],
                          output_names=["features"], dynamic_axes={"images": {0: "n"}, "features": {0: "n"}},
                          opset_version=17, dynamo=False)  # fmt: skip
        quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
        options = onnxruntime.SessionOptions()
        if a.threads:
            options.intra_op_num_threads = a.threads
        batches = [images[i : i + a.batch].contiguous().numpy() for i in range(0, len(images), a.batch)]
        for name, path in (("onnxruntime fp32", fp32), ("onnxruntime int8 (dynamic)", int8)):
            runtime = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            seconds, out = timed(
                lambda s=runtime: np.concatenate([s.run(None, {"images": b})[0] for b in batches]), a.repeats
            )
            cosine = np.sum(out * reference, 1) / (np.linalg.norm(out, axis=1) * np.linalg.norm(reference, axis=1))
            rows.append((name, seconds, float(1 - cosine.min())))
    print(f"{len(images)} images at {SIZE} px, batch {a.batch}, {torch.get_num_threads()} PyTorch threads")
    print("| backbone pass | images/s, median (range) | against PyTorch | largest cosine distance of features |")
    print("| --- | --- | --- | --- |")
    base = statistics.median(rows[0][1])
    for name, seconds, distance in rows:
        rates = [len(images) / s for s in seconds]
        print(f"| {name} | {statistics.median(rates):.1f} ({min(rates):.1f}-{max(rates):.1f}) | "
              f"{base / statistics.median(seconds):.2f}x | {distance:.2e} |")  # fmt: skip


if __name__ == "__main__":
    main()
