"""Bad images, crashes, NaNs and untrusted files: nothing is lost, nothing unsafe is run."""

import io
import json
import os
import pickle
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import run_child, train_cli
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file
from typer.testing import CliRunner

from binclass.cli import app
from binclass.data.decode import ImageProblem, decode_image
from binclass.data.scan import scan_dataset
from binclass.errors import BinclassError
from binclass.run import history
from binclass.synth import make_dataset

runner = CliRunner()


# --- bad files ---------------------------------------------------------------------------------------
def _png_with_header_size(path: Path, width: int, height: int) -> None:
    """A tiny valid PNG whose IHDR claims width x height (a decompression bomb by its header)."""
    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr : ihdr + 17])) & 0xFFFFFFFF
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", crc)
    path.write_bytes(bytes(data))


@pytest.fixture
def messy_data(tmp_path) -> Path:
    root = make_dataset(tmp_path / "messy", n_train=12, n_val=6, size=40, seed=3, easy=True)
    cats = root / "train" / "circles"
    good = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (60, 60, 3), dtype=np.uint8)).save(good, "JPEG")
    (cats / "truncated.jpg").write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    (cats / "random.jpg").write_bytes(np.random.default_rng(1).bytes(2000))
    _png_with_header_size(cats / "bomb.png", 100_000, 100_000)
    Image.new("CMYK", (30, 30), (0, 255, 255, 0)).save(cats / "cmyk.jpg")
    grad = np.tile(np.linspace(0, 65535, 40).astype(np.uint16), (40, 1))
    Image.fromarray(grad).save(cats / "gray16.png")
    Image.new("RGBA", (30, 30), (255, 0, 0, 128)).save(cats / "rgba.png")
    pal = Image.new("P", (30, 30), 0)
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    pal.info["transparency"] = 0
    pal.save(cats / "palette.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (50, 30), (0, 0, 255)).save(cats / "rotated.jpg", exif=exif)
    (cats / ".ipynb_checkpoints").mkdir()
    Image.new("RGB", (8, 8)).save(cats / ".ipynb_checkpoints" / "x.png")
    (cats / ".DS_Store").write_bytes(b"\0\0")
    (cats / "notes.txt").write_text("not an image")
    return root


def test_check_names_every_bad_file_with_its_reason(messy_data):
    before = {p: p.read_bytes() for p in messy_data.rglob("*") if p.is_file()}
    result = runner.invoke(app, ["check", str(messy_data), "--json"])
    assert result.exit_code == 0, result.output
    import json

    report = json.loads(result.stdout)
    reasons = {Path(b["path"]).name: b["reason"] for b in report["bad"]}
    assert reasons == {"truncated.jpg": "truncated", "random.jpg": "not an image", "bomb.png": "decompression bomb"}
    assert report["ignored"] == {"hidden": 2, "not_images": 1, "links_outside": 0}
    strict = runner.invoke(app, ["check", str(messy_data), "--strict"])
    assert strict.exit_code == 2 and "truncated.jpg" in strict.output and "Traceback" not in strict.output
    assert {p: p.read_bytes() for p in messy_data.rglob("*") if p.is_file()} == before  # nothing modified


def test_train_skips_bad_files_and_strict_refuses(messy_data, tmp_path):
    result = train_cli(messy_data, tmp_path / "r", model="small", image_size=32, epochs=1, batch_size=8)
    assert result.exit_code == 0, result.output
    assert "skipped 3 bad file(s)" in result.output and "bomb.png: decompression bomb" in result.output
    assert history.read_epochs(tmp_path / "r")[0]["train_n"] == 24 + 5  # 5 odd-but-valid images kept
    strict = train_cli(messy_data, tmp_path / "s", strict=True)
    assert strict.exit_code == 2 and "--strict" in strict.output and "random.jpg" in strict.output


def test_odd_modes_become_sensible_rgb(messy_data):
    cats = messy_data / "train" / "circles"
    cmyk = decode_image(cats / "cmyk.jpg", 16).astype(int)
    assert cmyk[..., 0].mean() > 200 and cmyk[..., 1].mean() < 60  # C=0, M=Y=255: red
    rgba = decode_image(cats / "rgba.png", 16).astype(int)
    assert abs(rgba[..., 0].mean() - 255) < 3 and abs(rgba[..., 1].mean() - 127) < 4  # half red over white
    pal = decode_image(cats / "palette.png", 16)
    assert pal.min() == 255  # transparent palette entry -> white background, not black
    g16 = decode_image(cats / "gray16.png", 40)[..., 0].astype(int)
    assert g16[:, 0].mean() < 10 and g16[:, -1].mean() > 245 and 100 < g16[:, 20].mean() < 155
    rot = decode_image(cats / "rotated.jpg", 16)
    assert rot.shape == (16, 16, 3)
    with pytest.raises(ImageProblem) as info:
        decode_image(cats / "bomb.png", 16)
    assert info.value.kind == "decompression bomb"


def test_symlinks_leaving_data_dir_are_not_followed(tmp_path):
    root = make_dataset(tmp_path / "d", n_train=3, n_val=2, size=16, seed=0)
    outside = make_dataset(tmp_path / "elsewhere", n_train=5, n_val=1, size=16, seed=1)
    (root / "train" / "circles" / "linked").symlink_to(outside / "train" / "circles")
    (root / "train" / "squares" / "one.png").symlink_to(outside / "train" / "squares" / "squares_0000.png")
    inner = root / "train" / "circles" / "inner_link.png"
    inner.symlink_to(root / "validation" / "circles" / "circles_0000.png")
    (root / "train" / "circles" / "loop").symlink_to(root / "train")  # a cycle inside the data folder
    layout = scan_dataset(root)
    assert len(layout.train) == 3 + 3 + 1  # the inside link is kept, the two outside links are not
    assert layout.ignored.outside_links == 2


def test_class_folder_linked_outside_is_not_followed(tmp_path):
    from binclass.errors import BinclassError

    root = make_dataset(tmp_path / "d", n_train=3, n_val=2, size=16, seed=0)
    outside = make_dataset(tmp_path / "elsewhere", n_train=3, n_val=1, size=16, seed=1)
    import shutil

    shutil.rmtree(root / "train" / "squares")
    (root / "train" / "squares").symlink_to(outside / "train" / "squares")
    with pytest.raises(BinclassError, match="holds no images"):
        scan_dataset(root)


# --- numeric faults ----------------------------------------------------------------------------------
@pytest.mark.parametrize("autocast", [None, torch.bfloat16])
def test_extreme_logits_give_a_finite_loss_and_gradients_in_binclass_step(autocast):
    from binclass.engine.step import training_step

    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    x = torch.tensor([[1e4], [-1e4], [80.0], [-80.0]])  # the logits themselves: two confidently wrong
    y = torch.tensor([0.0, 1.0, 1.0, 0.0])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    out = training_step(model, optimizer, lambda: None, x, y, y, threshold=0.5, pos_weight=None,
                        autocast_dtype=autocast)  # fmt: skip
    assert torch.isfinite(out.loss) and torch.isfinite(model.weight.grad).all()
    # BCE of a logit z against label 0 is softplus(z): 1e4 for each wrong image, ~0 for the right ones.
    assert float(out.loss_sum) == pytest.approx(2e4, rel=1e-2) and int(out.correct) == 2


def test_non_finite_loss_stops_the_run_naming_epoch_step_and_files(tiny_data, tmp_path):
    out = tmp_path / "nan"
    result = train_cli(tiny_data, out, model="seed", image_size=32, optimizer="sgd", lr="1e30", epochs=3, batch_size=16)
    assert result.exit_code == 2
    assert "non-finite training loss" in result.output and "epoch 1, step" in result.output
    assert ".png" in result.output  # the batch's files are named
    assert not (out / "best.safetensors").exists() and history.read_epochs(out) == []


# --- untrusted files ---------------------------------------------------------------------------------
class Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def small_run(tiny_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("trusted") / "run"
    result = train_cli(tiny_data, out, model="seed", image_size=32, epochs=1, batch_size=16)
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize("target,command", [("model.safetensors", "predict"), ("state.safetensors", "resume")])
def test_pickle_payload_is_refused_without_running(small_run, tiny_data, tmp_path, target, command):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    marker = tmp_path / "pwned"
    (run / target).write_bytes(pickle.dumps(Payload(marker)))
    if command == "predict":
        args = ["predict", str(run), str(tiny_data / "validation")]
    else:
        args = ["train", str(tiny_data), "--resume", str(run)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and target in result.output and "Traceback" not in result.output
    assert not marker.exists()


def test_no_torch_load_without_weights_only():
    src = Path(__file__).resolve().parents[1] / "src"
    for path in src.rglob("*.py"):
        text = path.read_text()
        for line in text.splitlines():
            if "torch.load(" in line:
                assert "weights_only=True" in line, f"{path}: {line}"
        assert "import pickle" not in text, path


# --- crash safety ------------------------------------------------------------------------------------
# A child process (tests/child_run.py) SIGKILLs itself after epoch 3, step 2: the way an OOM killer or a
# lost machine ends a run (no cleanup, no flush).
KILLED_SETTINGS = dict(model="small", image_size=32, epochs=4, batch_size=16, augment="standard",
                       scheduler="cosine", deterministic=True, precision="fp32", save_every=0)  # fmt: skip


@pytest.mark.parametrize("compiled", ["off", "on"])  # on: a compiled optimizer step and a tensor learning rate
def test_killed_and_resumed_run_equals_uninterrupted(tiny_data, tmp_path, compiled):
    args = [
        "--model",
        "small",
        "--image-size",
        "32",
        "--epochs",
        "4",
        "--batch-size",
        "16",
        "--augment",
        "standard",
        "--scheduler",
        "cosine",
        "--deterministic",
        "--precision",
        "fp32",
        "--compile-optimizer",
        compiled,
        "--save-every",
        "0",
    ]
    cli = [sys.executable, "-m", "binclass.cli", "train", str(tiny_data)]
    whole = subprocess.run(cli + ["--out", str(tmp_path / "a"), *args], capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr
    killed = run_child(tiny_data, tmp_path / "b", {**KILLED_SETTINGS, "compile_optimizer": compiled}, "step:3:2")
    assert killed.returncode == -9  # SIGKILL mid-epoch 3: no cleanup ran
    # Epoch 2's checkpoint may still have been in writing: the state then says epoch 1 or 2, and the rows lag by one at most.
    with safe_open(str(tmp_path / "b" / "state.safetensors"), framework="pt") as f:
        saved = json.loads(f.metadata()["binclass_state"])["progress"]["epoch"]
    assert saved in (1, 2) and len(history.read_epochs(tmp_path / "b")) in (saved - 1, saved)
    resumed = subprocess.run(
        [sys.executable, "-m", "binclass.cli", "train", "--resume", str(tmp_path / "b")], capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming after epoch {saved}" in resumed.stdout
    a, b = history.read_epochs(tmp_path / "a"), history.read_epochs(tmp_path / "b")
    drop = lambda rows: [{k: v for k, v in r.items() if k not in ("seconds", "train_seconds")} for r in rows]  # noqa: E731
    assert drop(a) == drop(b)
    assert history.read_steps(tmp_path / "a") == history.read_steps(tmp_path / "b")
    wa, wb = load_file(str(tmp_path / "a" / "model.safetensors")), load_file(str(tmp_path / "b" / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_resume_refuses_a_folder_without_a_completed_epoch(tmp_path, tiny_data):
    (tmp_path / "r").mkdir()
    result = runner.invoke(app, ["train", "--resume", str(tmp_path / "r")])
    assert result.exit_code == 2 and "config.json" in result.output


def test_predict_streams_in_bounded_chunks(small_run, tiny_data, monkeypatch):
    import binclass.chunked as chunked
    import binclass.predict as predict_mod

    sizes = []
    real = predict_mod.decode_many
    monkeypatch.setattr(chunked, "CHUNK", 7)
    monkeypatch.setattr(predict_mod, "decode_many", lambda paths, size: sizes.append(len(paths)) or real(paths, size))
    seen = []
    predictor = predict_mod.load_predictor(small_run)
    rows = predict_mod.predict_files(predictor, [tiny_data / "train"], lambda done, total: seen.append((done, total)))
    first = next(rows)  # lazy: one chunk decoded, not the whole folder
    assert sizes == [7] and first[2] in ("circles", "squares")
    rest = list(rows)
    assert len(rest) == 79 and max(sizes) == 7 and sum(sizes) == 80
    assert seen[-1] == (80, 80)


def test_the_state_names_the_weights_it_resumes_with_and_never_the_file_being_replaced(tmp_path):
    from binclass.run.checkpoints import Checkpoints
    from binclass.run.files import MODEL_FILE, STATE_FILE, STATE_WEIGHTS
    from binclass.run.state import load_state, snapshot_state, write_state

    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    gens = {"shuffle": torch.Generator().manual_seed(0)}
    checkpoints = Checkpoints(tmp_path, {"classes": ["a", "b"]})
    named = []
    for epoch in (1, 2, 3):
        with torch.no_grad():
            model.weight.fill_(float(epoch))
        checkpoints.write(
            model, epoch, None, epoch, 0.5, snapshot_state(model, optimizer, None, gens, {"epoch": epoch})
        )
        checkpoints.wait()
        with safe_open(str(tmp_path / STATE_FILE), framework="pt") as f:
            meta = json.loads(f.metadata()["binclass_state"])
            assert not any(k.startswith("model/") for k in f.keys())  # noqa: SIM118 (safe_open is no mapping); not in it twice
        named.append(meta["weights_file"])
        # A second name of the model file, not a copy.
        assert os.path.samefile(tmp_path / meta["weights_file"], tmp_path / MODEL_FILE)
    assert named == [STATE_WEIGHTS[0], STATE_WEIGHTS[1], STATE_WEIGHTS[0]]
    # The file the state before named still holds that epoch's weights while the next one is made.
    assert float(load_file(str(tmp_path / STATE_WEIGHTS[1]))["weight"][0, 0]) == 2.0
    restored_model = torch.nn.Linear(3, 1)
    restored = load_state(tmp_path, restored_model, torch.optim.SGD(restored_model.parameters(), lr=0.1), None, gens)
    assert restored.weights_file == STATE_WEIGHTS[0] and float(restored_model.weight[0, 0].detach()) == 3.0
    # A state that holds its weights (as older binclass versions wrote it) still loads.
    write_state(tmp_path, snapshot_state(model, optimizer, None, gens, {"epoch": 3}))
    assert load_state(tmp_path, torch.nn.Linear(3, 1), optimizer, None, gens).weights_file is None
    # A state whose weights file is gone is one clear error.
    write_state(tmp_path, snapshot_state(model, optimizer, None, gens, {"epoch": 3}), weights_file="gone.safetensors")
    with pytest.raises(BinclassError, match="gone.safetensors: the weights of state.safetensors are missing"):
        load_state(tmp_path, torch.nn.Linear(3, 1), optimizer, None, gens)


def test_a_resume_says_when_the_thread_count_moved_since_the_run_started(tiny_data, tmp_path):
    out = tmp_path / "r"
    assert train_cli(tiny_data, out, model="small", image_size=32, epochs=1).exit_code == 0
    config = json.loads((out / "config.json").read_text())
    threads = config["environment"]["torch_threads"]
    config["environment"]["torch_threads"] = threads + 3  # as if started on a machine with more cores
    (out / "config.json").write_text(json.dumps(config))
    again = runner.invoke(app, ["train", "--resume", str(out)])
    assert again.exit_code == 0, again.output
    assert f"resume: threads {threads + 3} then, {threads} now: later epochs may differ" in again.output
    config["environment"]["torch_threads"] = threads
    (out / "config.json").write_text(json.dumps(config))
    same = runner.invoke(app, ["train", "--resume", str(out)])
    assert same.exit_code == 0 and "resume: " not in same.output
