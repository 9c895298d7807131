"""Writes the fixtures of tests/fixtures/logs with the real tools (none is a binclass dependency: install
the one you regenerate, e.g. into a --target folder on PYTHONPATH):

- hf: the trainer_state.json files of a transformers Trainer run (a one-output model on separable points,
  3 epochs of 20 steps, evaluated and saved every epoch, logged every 5 steps), keeping only
  trainer_state.json of each checkpoint-N folder (the rest is weights and pickles);
- keras: a Keras fit (TensorFlow backend, 6 epochs) with its TensorBoard callback (tensorboard/train,
  tensorboard/validation), its CSVLogger (training.log) and history.history dumped (history.json);
- ultralytics: results.csv of an Ultralytics classify run (yolov8n-cls.yaml, no pretrained weights, 3
  epochs at 32 px, offline) on binclass's generated shapes.

    python scripts/log_fixtures.py hf|keras|ultralytics [--out tests/fixtures/logs/TOOL]"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch


class OneOutput(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(2, 1)

    def forward(self, x, labels=None):
        logits = self.fc(x).squeeze(1)
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
        return out


class Points(torch.utils.data.Dataset):
    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 2, generator=g)
        self.y = (self.x[:, 0] + 0.5 * torch.randn(n, generator=g) > 0).float()

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict:
        return {"x": self.x[i], "labels": self.y[i]}


def accuracy(prediction) -> dict:
    logits, labels = prediction
    return {"accuracy": float(np.mean((np.asarray(logits) >= 0) == (np.asarray(labels) >= 0.5)))}


def keras_fixture(out: Path) -> None:
    import json
    import os

    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 8)).astype("float32")
    y = (x[:, 0] + 0.5 * rng.normal(size=200) > 0).astype("float32")
    vx = rng.normal(size=(100, 8)).astype("float32")
    vy = (vx[:, 0] + 0.5 * rng.normal(size=100) > 0).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1, activation="sigmoid")]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="binary_crossentropy", metrics=["accuracy"])
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    callbacks = [
        keras.callbacks.TensorBoard(log_dir=str(out / "tensorboard")),
        keras.callbacks.CSVLogger(str(out / "training.log")),
    ]
    history = model.fit(x, y, validation_data=(vx, vy), epochs=6, batch_size=16, verbose=0, callbacks=callbacks)
    (out / "history.json").write_text(json.dumps({k: [float(v) for v in vs] for k, vs in history.history.items()}))


def ultralytics_fixture(out: Path) -> None:
    import os

    os.environ["YOLO_OFFLINE"] = "1"
    from ultralytics import YOLO

    from binclass.synth import make_dataset

    with tempfile.TemporaryDirectory() as tmp:
        shapes = make_dataset(Path(tmp) / "shapes", n_train=40, n_val=15, size=40, seed=1, easy=True)
        shutil.move(str(shapes / "validation"), str(shapes / "val"))  # Ultralytics' name for it
        YOLO("yolov8n-cls.yaml").train(
            data=str(shapes), epochs=3, imgsz=32, batch=16, pretrained=False, amp=False, plots=False,
            workers=0, project=tmp, name="cls", device="cpu", verbose=False,
        )  # fmt: skip
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(tmp) / "cls" / "results.csv", out / "results.csv")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tool", choices=["hf", "keras", "ultralytics"])
    parser.add_argument("--out", type=Path, default=None)
    a = parser.parse_args()
    out = a.out or Path("tests/fixtures/logs") / a.tool
    if a.tool == "keras":
        keras_fixture(out)
    elif a.tool == "ultralytics":
        ultralytics_fixture(out)
    else:
        hf_fixture(out)
    print(f"wrote {out}")


def hf_fixture(out: Path) -> None:
    from transformers import Trainer, TrainingArguments

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp,
            num_train_epochs=3,
            per_device_train_batch_size=8,
            per_device_eval_batch_size=32,
            learning_rate=0.05,
            eval_strategy="epoch",
            save_strategy="epoch",
            logging_steps=5,
            report_to=[],
            use_cpu=True,
            seed=0,
        )
        trainer = Trainer(
            model=OneOutput(),
            args=args,
            train_dataset=Points(160, 1),
            eval_dataset=Points(100, 2),
            compute_metrics=accuracy,
        )
        trainer.train()
        shutil.rmtree(out, ignore_errors=True)
        for state in sorted(Path(tmp).glob("checkpoint-*/trainer_state.json")):
            target = out / state.parent.name / state.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(state, target)
            print(target)


if __name__ == "__main__":
    main()
