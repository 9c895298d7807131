"""Predict throughput of an exported ONNX model on onnxruntime against `binclass predict` on the run
folder (PyTorch), on the same images, alternated in one run of this script. Both include decoding.
Prints one table: images per second (median of the repeats, with the range) per run folder.

    python scripts/onnx_throughput.py IMAGES_DIR RUN_DIR [RUN_DIR ...] [--repeats 3]"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from binclass.data.scan import find_images
from binclass.export import export_onnx
from binclass.onnxpredict import OnnxPredictor, predict_onnx_files
from binclass.predict import load_predictor, predict_paths


def timed(rows) -> float:  # noqa: ANN001 (an iterator of prediction rows)
    start = time.perf_counter()
    n = sum(1 for _ in rows)
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images")
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--repeats", type=int, default=3)
    a = parser.parse_args()
    paths = find_images([Path(a.images)])
    print(f"{len(paths)} images from {a.images}")
    print(f"{'run':32} {'binclass predict (img/s)':>26} {'onnxruntime (img/s)':>22} {'ratio':>7}")
    for run in a.runs:
        onnx_file = export_onnx(Path(run), Path(run) / "throughput.onnx")
        torch_predictor, onnx_predictor = load_predictor(Path(run)), OnnxPredictor(onnx_file)
        timed(predict_onnx_files(onnx_predictor, paths[:64]))  # first calls: allocation, not throughput
        timed(predict_paths(torch_predictor, paths[:64]))
        pt, ort = [], []
        for _ in range(a.repeats):  # alternated: the machine's drift hits both alike
            pt.append(timed(predict_paths(torch_predictor, paths)))
            ort.append(timed(predict_onnx_files(onnx_predictor, paths)))
        mp, mo = statistics.median(pt), statistics.median(ort)
        print(
            f"{Path(run).name:32} {mp:12.0f} ({min(pt):.0f}-{max(pt):.0f}) {mo:14.0f} ({min(ort):.0f}-{max(ort):.0f}) "
            f"{mo / mp:6.2f}x"
        )


if __name__ == "__main__":
    main()
