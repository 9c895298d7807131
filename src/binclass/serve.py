"""`binclass serve`: a run's model (or an exported .onnx file) behind HTTP, on FastAPI and uvicorn.

    POST /predict   images as multipart files (any field name), or JSON {"images": [{"name": ..., "data":
                    BASE64}, ...]} (or a list of base64 strings); per image the probability of the positive
                    class, the label and the threshold, as `binclass predict` gives them (and ood_score,
                    in_distribution where the run keeps a reference), or an error for that image alone
    GET  /health    {"status": "ok"}
    GET  /info      classes, image size, threshold, model, batching, served counts

Images of requests that arrive together share one forward pass: a batcher collects them up to
--max-batch images or --max-wait-ms after the first, whichever comes first. Decoding and the model run in
worker threads, so the server keeps accepting requests meanwhile.

FastAPI rather than LitServe: a request here carries several images, each of which may fail on its own,
and LitServe batches whole requests (one item each) in worker processes; FastAPI with one asyncio batcher
batches images across requests in the process that holds the model, and its request parsing
(multipart, JSON) and OpenAPI page come with it."""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations (Request) at run time.
import asyncio
import base64
import binascii
import contextlib
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .data.decode import ImageProblem, decode_bytes
from .errors import BinclassError

MAX_BATCH = 32  # images per forward pass
MAX_WAIT_MS = 10.0  # after the first image of a batch: a 10 ms wait costs little beside a forward pass
MAX_REQUEST_MB = 32.0  # a request's body; larger is refused (413) before it is read
MAX_IMAGES = 256  # per request


@dataclass
class Scorer:
    """What the server needs of a model: decode size, classes, threshold, and uint8 NHWC -> scores."""

    size: int
    classes: list[str]
    threshold: float
    ood_threshold: float | None
    describe: dict
    score: object  # Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]]


def load_scorer(model: Path, checkpoint: str = "auto", device: str = "auto") -> Scorer:
    """A run folder (PyTorch) or an exported .onnx file (onnxruntime)."""
    model = Path(model)
    if model.suffix == ".onnx":
        from .onnxpredict import OnnxPredictor

        if not model.is_file():
            raise BinclassError(f"{model}: not found; give a file written by `binclass export`")
        onnx = OnnxPredictor(model)
        facts = {"model": str(model), "runtime": "onnxruntime", "architecture": onnx.meta.get("architecture")}
        return Scorer(onnx.size, onnx.classes, onnx.threshold, onnx.ood_threshold, facts, onnx.scores)
    import torch

    from .data.sources import TensorSource
    from .engine.infer import probabilities
    from .predict import load_predictor, score_source

    predictor = load_predictor(model, checkpoint, device)

    def score(images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        source = TensorSource(torch.from_numpy(images).permute(0, 3, 1, 2))
        logits, ood = score_source(predictor, source)
        return probabilities(logits / predictor.temperature).numpy(), ood

    facts = {"model": str(model), "runtime": "pytorch", "architecture": predictor.meta.get("architecture"),
             "checkpoint": predictor.checkpoint, "device": str(predictor.device)}  # fmt: skip
    ood = predictor.ood.threshold if predictor.ood is not None else None
    return Scorer(predictor.size, predictor.meta["classes"], float(predictor.meta["threshold"]), ood, facts, score)


@dataclass
class Batcher:
    """Collects single images from every request and scores them in batches."""

    scorer: Scorer
    max_batch: int = MAX_BATCH
    max_wait: float = MAX_WAIT_MS / 1000
    batches: list[int] = field(default_factory=list)  # the size of every batch scored
    queue: asyncio.Queue | None = None
    pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1))  # the model: one at a time

    async def submit(self, image: np.ndarray) -> tuple[float, float | None]:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((image, future))
        return await future

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = [await self.queue.get()]
            deadline = loop.time() + self.max_wait
            while len(items) < self.max_batch:
                try:
                    items.append(await asyncio.wait_for(self.queue.get(), max(0.0, deadline - loop.time())))
                except TimeoutError:
                    break
            items = [(image, future) for image, future in items if not future.done()]  # clients gone
            if not items:
                continue
            self.batches.append(len(items))
            try:
                probs, ood = await loop.run_in_executor(self.pool, self.scorer.score, np.stack([i for i, _ in items]))
            except Exception as exc:  # the model failed: every image of the batch gets the error
                for _, future in items:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for n, (_, future) in enumerate(items):
                if not future.done():
                    future.set_result((float(probs[n]), None if ood is None else float(ood[n])))


def create_app(
    scorer: Scorer,
    max_batch: int = MAX_BATCH,
    max_wait_ms: float = MAX_WAIT_MS,
    max_request_mb: float = MAX_REQUEST_MB,
    max_images: int = MAX_IMAGES,
):
    try:
        from fastapi import FastAPI, Request
        from fastapi.responses import JSONResponse
    except ImportError:
        raise BinclassError("binclass serve needs fastapi and uvicorn: pip install 'binclass[serve]'") from None

    batcher = Batcher(scorer, max_batch, max_wait_ms / 1000)
    decoders = ThreadPoolExecutor(2)
    limit = int(max_request_mb * 1024 * 1024)
    counts = {"requests": 0, "images": 0, "image_errors": 0, "refused": 0}

    @contextlib.asynccontextmanager
    async def lifespan(_):
        batcher.queue = asyncio.Queue()
        task = asyncio.create_task(batcher.run())
        yield
        task.cancel()

    app = FastAPI(title="binclass", summary="a binary image classifier", lifespan=lifespan)

    def refuse(status: int, message: str) -> JSONResponse:
        counts["refused"] += 1
        return JSONResponse({"error": message}, status_code=status)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/info")
    async def info() -> dict:
        return {
            "classes": scorer.classes,
            "positive_class": scorer.classes[1],
            "image_size": scorer.size,
            "threshold": scorer.threshold,
            "ood_threshold": scorer.ood_threshold,
            **scorer.describe,
            "max_batch": max_batch,
            "max_wait_ms": max_wait_ms,
            "max_request_mb": max_request_mb,
            "max_images": max_images,
            "served": {**counts, "batches": len(batcher.batches), "largest_batch": max(batcher.batches, default=0)},
        }

    @app.post("/predict")
    async def predict(request: Request):
        length = request.headers.get("content-length")
        if length is None:
            return refuse(411, "send the body with a Content-Length")
        if not length.isdigit() or int(length) > limit:
            return refuse(413, f"the body is over {max_request_mb:g} MB; send fewer or smaller images")
        kind = request.headers.get("content-type", "")
        try:
            if kind.startswith("multipart/form-data"):
                form = await request.form(max_files=max_images, max_fields=max_images, max_part_size=limit)
                uploads = [(getattr(v, "filename", None) or k, await v.read()) for k, v in form.multi_items()
                           if hasattr(v, "read")]  # fmt: skip
            else:
                uploads = _json_images(await request.body())
        except ValueError as exc:
            return refuse(400, str(exc))
        except Exception as exc:  # the multipart parser's own errors: a malformed body
            return refuse(400, f"a malformed body ({type(exc).__name__}: {exc})")
        if not uploads:
            return refuse(422, 'no images: send multipart files, or JSON {"images": [{"name", "data"}]}')
        if len(uploads) > max_images:
            return refuse(413, f"{len(uploads)} images; send at most {max_images} per request")
        counts["requests"] += 1
        loop = asyncio.get_running_loop()

        async def one(name: str, data: bytes | None) -> dict:
            counts["images"] += 1
            try:
                if data is None:
                    raise ValueError("its data is not base64")
                image = await loop.run_in_executor(decoders, decode_bytes, data, scorer.size, name)
            except (ImageProblem, ValueError) as exc:
                counts["image_errors"] += 1
                detail = f"{exc.kind} ({exc.detail})" if isinstance(exc, ImageProblem) else str(exc)
                return {"name": name, "error": detail}
            prob, ood = await batcher.submit(image)
            row = {"name": name, "prob": prob, "label": scorer.classes[int(prob >= scorer.threshold)],
                   "threshold": scorer.threshold}  # fmt: skip
            if ood is not None and scorer.ood_threshold is not None:
                row.update(ood_score=ood, in_distribution=ood <= scorer.ood_threshold)
            return row

        return {"predictions": await asyncio.gather(*(one(name, data) for name, data in uploads))}

    app.state.batcher = batcher
    return app


def _json_images(body: bytes) -> list[tuple[str, bytes | None]]:
    """{"images": [{"name": ..., "data": BASE64}, ...]} or {"images": [BASE64, ...]}: (name, bytes or None
    where the data is not base64). Raises ValueError for a body that is not that."""
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"the body is not JSON ({exc}); send multipart files or JSON with base64 images") from None
    images = payload.get("images") if isinstance(payload, dict) else None
    if not isinstance(images, list):
        raise ValueError('JSON without an "images" list; send {"images": [{"name": ..., "data": BASE64}]}')
    found = []
    for n, item in enumerate(images):
        name, data = (
            (item.get("name") or f"image-{n}", item.get("data")) if isinstance(item, dict) else (f"image-{n}", item)
        )
        try:
            found.append((str(name), base64.b64decode(data, validate=True) if isinstance(data, str) else None))
        except (binascii.Error, ValueError):
            found.append((str(name), None))
    return found


def serve(
    model: Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    checkpoint: str = "auto",
    device: str = "auto",
    max_batch: int = MAX_BATCH,
    max_wait_ms: float = MAX_WAIT_MS,
    max_request_mb: float = MAX_REQUEST_MB,
) -> None:
    """Serve until interrupted."""
    for value, name in ((max_batch, "--max-batch"), (max_request_mb, "--max-request-mb")):
        if value <= 0:
            raise BinclassError(f"{name} must be above 0")
    if max_wait_ms < 0:
        raise BinclassError("--max-wait-ms must be 0 or more")
    try:
        import uvicorn
    except ImportError:
        raise BinclassError("binclass serve needs fastapi and uvicorn: pip install 'binclass[serve]'") from None
    app = create_app(load_scorer(model, checkpoint, device), max_batch, max_wait_ms, max_request_mb)
    uvicorn.run(app, host=host, port=port, log_level="warning")


class BackgroundServer:
    """A server in a thread of this process, on a free port of 127.0.0.1: for tests and the load script."""

    def __init__(self, app) -> None:
        import socket

        import uvicorn

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "BackgroundServer":  # noqa: UP037
        import time

        self.thread.start()
        for _ in range(500):  # up to 10 s
            if self.server.started:
                return self
            time.sleep(0.02)
        raise RuntimeError("the server did not start")

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
