"""Load on `binclass serve`: concurrent clients against a server on 127.0.0.1, beside `binclass predict` on
the same images. Bounded: at most --requests requests and --seconds seconds per level.

    python scripts/serve_load.py RUN_OR_ONNX IMAGES [--clients 1,8,32] [--requests 400] [--seconds 60]

Starts `binclass serve` on a free local port, checks its answers against `binclass predict` (largest
probability difference, labels that differ), sends one image per request from each of N client threads
(each waits for its answer before the next), repeats each level --repeats times, and prints a table:
throughput (images per second) and p50/p99 latency as the median of the repeats with their range,
errors. Then it drops a client mid-request and sends a malformed body, and checks the server still answers."""

from __future__ import annotations

import argparse
import csv
import io
import json
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from binclass.data.scan import find_images

TIMEOUT = 60  # seconds per request


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def multipart(files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n\r\n'.encode()
        + data
        + b"\r\n"
        for name, data in files
    )
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def post(url: str, files: list[tuple[str, bytes]]) -> dict:
    body, kind = multipart(files)
    request = urllib.request.Request(url, data=body, headers={"Content-Type": kind}, method="POST")
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        return json.loads(response.read())


def level(url: str, images: list[tuple[str, bytes]], clients: int, requests: int, seconds: float) -> dict:
    """clients threads, each sending one image at a time, until `requests` are sent or `seconds` pass."""
    latencies: list[float] = []
    errors = 0
    sent = 0
    start = time.perf_counter()

    def client(offset: int) -> None:
        nonlocal errors, sent
        n = offset
        while time.perf_counter() - start < seconds:
            if sent >= requests:
                return
            sent += 1
            began = time.perf_counter()
            try:
                answer = post(url + "/predict", [images[n % len(images)]])
                errors += sum("error" in row for row in answer["predictions"])
            except (urllib.error.URLError, OSError, ValueError):
                errors += 1
            latencies.append(time.perf_counter() - began)
            n += clients

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    wall = time.perf_counter() - start
    ordered = sorted(latencies)
    return {
        "requests": len(latencies),
        "throughput": len(latencies) / wall,
        "p50": ordered[len(ordered) // 2] * 1000,
        "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        "errors": errors,
    }


def summary(values: list[float], digits: int = 1) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("images", type=Path)
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=10)
    a = parser.parse_args()
    paths = find_images([a.images])
    images = [(str(p), p.read_bytes()) for p in paths]
    binclass = [sys.executable, "-m", "binclass"]

    began = time.perf_counter()
    predicted = subprocess.run(
        [*binclass, "predict", str(a.model), str(a.images)], capture_output=True, text=True, check=True
    )
    predict_seconds = time.perf_counter() - began
    expected = {row["path"]: row for row in csv.DictReader(io.StringIO(predicted.stdout))}

    port = free_port()
    server = subprocess.Popen(
        [
            *binclass,
            "serve",
            str(a.model),
            "--port",
            str(port),
            "--max-batch",
            str(a.max_batch),
            "--max-wait-ms",
            str(a.max_wait_ms),
        ],  # fmt: skip
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                with urllib.request.urlopen(url + "/health", timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        answers = {}
        for start in range(0, len(images), 64):
            answers.update(
                {row["name"]: row for row in post(url + "/predict", images[start : start + 64])["predictions"]}
            )
        diff = max(abs(answers[p]["prob"] - float(expected[p]["prob"])) for p in expected)
        differ = sum(answers[p]["label"] != expected[p]["label"] for p in expected)
        print(f"{len(images)} images: server against `binclass predict`: largest probability difference {diff:.2e}, "
              f"{differ} labels differ")  # fmt: skip
        print(
            f"`binclass predict` on them: {predict_seconds:.1f} s whole command, {len(images) / predict_seconds:.1f} images/s"
        )
        print("| clients | requests | images/s | p50 ms | p99 ms | errors |")
        print("| --- | --- | --- | --- | --- | --- |")
        for clients in (int(c) for c in a.clients.split(",")):
            runs = [level(url, images, clients, a.requests, a.seconds) for _ in range(a.repeats)]
            print(
                f"| {clients} | {runs[0]['requests']} x {a.repeats} | {summary([r['throughput'] for r in runs])} | "
                f"{summary([r['p50'] for r in runs])} | {summary([r['p99'] for r in runs])} | "
                f"{sum(r['errors'] for r in runs)} |"
            )
        with socket.create_connection(("127.0.0.1", port)) as dropped:  # a client gone mid-request
            dropped.sendall(
                b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 9999\r\n\r\n{"
            )
        malformed = urllib.request.Request(
            url + "/predict", data=b"{oops", headers={"Content-Type": "application/json"}
        )
        try:
            urllib.request.urlopen(malformed, timeout=TIMEOUT)
        except urllib.error.HTTPError as error:
            print(f"malformed body: {error.code} {json.loads(error.read())['error'][:60]}")
        after = post(url + "/predict", images[:1])["predictions"][0]
        print(f"after a dropped client and a malformed body: still serving ({'prob' in after})")
        with urllib.request.urlopen(url + "/info", timeout=TIMEOUT) as response:
            print("served:", json.loads(response.read())["served"])
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
