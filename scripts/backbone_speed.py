"""The default backbone's forward pass on the CPU, side by side in one process: PyTorch as binclass ran it
before (batch 32, channels_last), PyTorch without channels_last, onnxruntime fp32 at several images per call
and thread counts (binclass's choice: 4 images per call, PyTorch's thread count), and onnxruntime with int8
dynamic quantization; images per second (median of --repeats, with the range) and how far each one's
features are from PyTorch's.

    python scripts/backbone_speed.py DATA [--images 256] [--repeats 3] [--batch 32]

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
from binclass.engine.backbone import ONNX_BATCH, cosine_distance, export_backbone
from binclass.engine.infer import extract_features, prepare_model
from binclass.models import build_model, normalization

SIZE = 224


def timed(run, repeats: int) -> tuple[list[float], np.ndarray]:
    out, seconds = run(), []  # the first call warms up (allocations, kernel choices)
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
    parser.add_argument("--batch", type=int, default=32, help="PyTorch's images per forward pass")
    a = parser.parse_args()
    import onnxruntime
    from onnxruntime.quantization import QuantType, quantize_dynamic

    keep_freed_memory()  # as binclass train and predict run (see binclass.allocator)
    cores = torch.get_num_threads()
    images = decode_many(find_images([a.data])[: a.images], SIZE)
    model = prepare_model(build_model("efficientnet_lite0", SIZE, pretrained=True), torch.device("cpu")).eval()
    mean, std = normalization("efficientnet_lite0")
    source = TensorSource(images)
    cpu = torch.device("cpu")
    rows = []
    seconds, reference = timed(
        lambda: extract_features(model.backbone, source, mean, std, a.batch, cpu).numpy(), a.repeats
    )
    rows.append((f"PyTorch fp32, batch {a.batch}, channels_last ({cores} threads)", seconds, 0.0))
    plain = model.backbone.to(memory_format=torch.contiguous_format)
    m, s = torch.tensor(mean).reshape(1, 3, 1, 1), torch.tensor(std).reshape(1, 3, 1, 1)

    def contiguous() -> np.ndarray:
        with torch.inference_mode():
            return torch.cat([plain(((images[i : i + a.batch].contiguous().float() / 255 - m) / s).contiguous())
                              for i in range(0, len(images), a.batch)]).numpy()  # fmt: skip

    seconds, out = timed(contiguous, a.repeats)
    rows.append((f"PyTorch fp32, batch {a.batch}, contiguous (NCHW)", seconds, cosine_distance(out, reference)))
    model.backbone.to(memory_format=torch.channels_last)
    with tempfile.TemporaryDirectory() as folder:
        fp32, int8 = Path(folder) / "fp32.onnx", Path(folder) / "int8.onnx"
        export_backbone(model.backbone, mean, std, SIZE, fp32)
        quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
        runs = [(f"onnxruntime fp32, {b} per call, {t} threads{' (binclass)' if b == ONNX_BATCH and t == cores else ''}",
                 fp32, b, t) for b in (1, ONNX_BATCH, 32) for t in sorted({1, cores})]  # fmt: skip
        runs.append((f"onnxruntime int8 (dynamic), {ONNX_BATCH} per call, {cores} threads", int8, ONNX_BATCH, cores))
        for name, path, batch, threads in runs:
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = threads
            runtime = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            batches = [images[i : i + batch].contiguous().numpy() for i in range(0, len(images), batch)]
            seconds, out = timed(
                lambda s=runtime, b=batches: np.concatenate([s.run(None, {"images": x})[0] for x in b]), a.repeats
            )
            rows.append((name, seconds, cosine_distance(out, reference)))
    print(f"{len(images)} images at {SIZE} px, {cores} PyTorch threads")
    print("| backbone pass | images/s, median (range) | against the first row | largest cosine distance of features |")
    print("| --- | --- | --- | --- |")
    base = statistics.median(rows[0][1])
    for name, seconds, distance in rows:
        rates = [len(images) / s for s in seconds]
        print(f"| {name} | {statistics.median(rates):.1f} ({min(rates):.1f}-{max(rates):.1f}) | "
              f"{base / statistics.median(seconds):.2f}x | {distance:.1e} |")  # fmt: skip


if __name__ == "__main__":
    main()
