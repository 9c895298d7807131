"""`binclass serve`: a real uvicorn server on a free port of 127.0.0.1, real HTTP requests (urllib):
parity with predict, batching across requests, per-image errors, malformed bodies and dropped clients."""

from __future__ import annotations

import base64
import json
import socket
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers import runner, train_cli

from binclass.cli import app

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
TIMEOUT = 30  # seconds per request: bounded, whatever the machine


def _post(url: str, body: bytes, content_type: str) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _multipart(files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode()
        + data
        + b"\r\n"
        for name, data in files
    )
    return parts + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _reply(connection: socket.socket) -> str:
    """A whole HTTP response read from a raw connection: the head, then Content-Length bytes of body."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += connection.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(h.split(b":")[1] for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")))
    while len(body) < length:
        body += connection.recv(65536)
    return (head + b"\r\n\r\n" + body).decode()


@pytest.fixture(scope="module")
def run(tiny_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("serve") / "run"
    assert train_cli(tiny_data, out, model="seed", image_size=32, epochs=1).exit_code == 0
    return out


@pytest.fixture(scope="module")
def server(run):
    from binclass.serve import BackgroundServer, create_app, load_scorer

    # A batch waits up to a second for its 8 images: requests sent together fill it, however slow the machine.
    app_ = create_app(load_scorer(run, device="cpu"), max_batch=8, max_wait_ms=1000, max_request_mb=1)
    with BackgroundServer(app_) as background:
        yield background, app_


def test_the_server_answers_as_predict_does(server, run, tiny_data):
    background, _ = server
    images = sorted((tiny_data / "validation").rglob("*.png"))
    expected = {
        line.split(",")[0]: line.split(",")
        for line in runner.invoke(app, ["predict", str(run), *map(str, images)]).stdout.splitlines()[1:]
    }
    body, kind = _multipart([(str(p), p.read_bytes()) for p in images])
    status, answer = _post(background.url + "/predict", body, kind)
    assert status == 200 and len(answer["predictions"]) == 30
    for row in answer["predictions"]:
        path, prob, label, ood, inside = expected[row["name"]]
        assert abs(row["prob"] - float(prob)) < 1e-6 and row["label"] == label
        assert abs(row["ood_score"] - float(ood)) < 1e-6 and row["threshold"] == 0.5
    as_json = json.dumps({"images": [{"name": "one", "data": base64.b64encode(images[0].read_bytes()).decode()}]})
    status, answer = _post(background.url + "/predict", as_json.encode(), "application/json")
    assert status == 200 and abs(answer["predictions"][0]["prob"] - float(expected[str(images[0])][1])) < 1e-6
    with urllib.request.urlopen(background.url + "/info", timeout=TIMEOUT) as response:
        info = json.loads(response.read())
    assert info["classes"] == ["circles", "squares"] and info["image_size"] == 32 and info["max_batch"] == 8


def test_requests_arriving_together_share_a_forward_pass(server, tiny_data):
    background, app_ = server
    images = sorted((tiny_data / "train").rglob("*.png"))[:8]
    before = list(app_.state.batcher.batches)

    def one(path: Path) -> int:
        body, kind = _multipart([(path.name, path.read_bytes())])
        return _post(background.url + "/predict", body, kind)[0]

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(one, images)) == [200] * 8
    batches = app_.state.batcher.batches[len(before) :]
    assert sum(batches) == 8 and max(batches) > 1  # eight requests, fewer forward passes


def test_bad_images_and_bodies_get_their_own_error_and_the_server_goes_on(server, tiny_data):
    background, _ = server
    good = sorted((tiny_data / "validation").rglob("*.png"))[0]
    body, kind = _multipart([("good.png", good.read_bytes()), ("bad.png", b"not an image at all")])
    status, answer = _post(background.url + "/predict", body, kind)
    rows = {r["name"]: r for r in answer["predictions"]}
    assert status == 200 and "prob" in rows["good.png"] and rows["bad.png"]["error"].startswith("not an image")
    status, answer = _post(background.url + "/predict", b"{not json", "application/json")
    assert status == 400 and "not JSON" in answer["error"]
    status, answer = _post(background.url + "/predict", json.dumps({"images": ["%%%"]}).encode(), "application/json")
    assert status == 200 and "not base64" in answer["predictions"][0]["error"]
    with socket.create_connection(("127.0.0.1", background.port), timeout=TIMEOUT) as big:  # refused unread
        big.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2097152\r\n\r\n"
        )
        reply = _reply(big)
    assert reply.startswith("HTTP/1.1 413") and "over 1 MB" in reply
    with socket.create_connection(("127.0.0.1", background.port), timeout=TIMEOUT) as dropped:
        dropped.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{"
        )
    status, answer = _post(background.url + "/predict", *_multipart([("good.png", good.read_bytes())]))
    assert status == 200 and "prob" in answer["predictions"][0]  # still serving
    with urllib.request.urlopen(background.url + "/health", timeout=TIMEOUT) as response:
        assert json.loads(response.read()) == {"status": "ok"}


def test_serve_refuses_bad_options_in_one_line(run, monkeypatch):
    result = runner.invoke(app, ["serve", str(run), "--max-batch", "0"])
    assert result.exit_code == 2 and "--max-batch must be above 0" in result.output
    monkeypatch.setitem(__import__("sys").modules, "uvicorn", None)  # as without the extra
    result = runner.invoke(app, ["serve", str(run)])
    assert result.exit_code == 2 and "pip install 'binclass[serve]'" in result.output
