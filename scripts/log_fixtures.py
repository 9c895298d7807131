"""Writes tests/fixtures/logs/hf: the trainer_state.json files of a real transformers Trainer run (a
one-output model on separable points, 3 epochs of 20 steps, evaluated and saved every epoch, logged
every 5 steps), keeping only trainer_state.json of each checkpoint-N folder (the rest is weights and
pickles). transformers and accelerate are not binclass dependencies: install them to run this.

    python scripts/log_fixtures.py [--out tests/fixtures/logs/hf]"""

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


def main() -> None:
    from transformers import Trainer, TrainingArguments

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("tests/fixtures/logs/hf"))
    a = parser.parse_args()
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
        shutil.rmtree(a.out, ignore_errors=True)
        for state in sorted(Path(tmp).glob("checkpoint-*/trainer_state.json")):
            target = a.out / state.parent.name / state.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(state, target)
            print(target)


if __name__ == "__main__":
    main()
