"""--tensorboard: the run's history also as TensorBoard event files in the run folder, the same numbers
as metrics.csv and steps.csv, tagged as Lightning's TensorBoardLogger tags a module that logs
train_loss and train_acc with on_step and on_epoch, val_loss, val_acc and val_auc: `train_loss_step`,
`train_loss_epoch`, ..., `lr`, and `epoch` at every step (1-based, as in metrics.csv). The x axis is the
run's global optimizer step."""

from __future__ import annotations

from pathlib import Path

from ..errors import BinclassError

EVENTS_PREFIX = "events.out.tfevents."  # what SummaryWriter names its files; --overwrite removes them
STEP_TAGS = {"loss": "train_loss_step", "batch_acc": "train_acc_step", "lr": "lr"}
EPOCH_TAGS = {
    "train_loss": "train_loss_epoch",
    "train_acc": "train_acc_epoch",
    "val_loss": "val_loss",
    "val_acc": "val_acc",
    "val_auc": "val_auc",
}


def require_tensorboard() -> None:
    """Fails before any training when the tensorboard package is missing."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise BinclassError(
            "--tensorboard needs the tensorboard package: pip install 'binclass[tensorboard]'"
        ) from None


class EventLog:
    """Appends each epoch's steps and row. steps_done: the steps of the epochs a resumed run keeps;
    events an interrupted run wrote past them are purged (SummaryWriter's purge_step)."""

    def __init__(self, run_dir: Path, steps_done: int = 0) -> None:
        require_tensorboard()
        from torch.utils.tensorboard import SummaryWriter

        self.step = steps_done
        self.writer = SummaryWriter(str(run_dir), purge_step=steps_done + 1 if steps_done else None)

    def add(self, row: dict, steps: list[dict]) -> None:
        for s in steps:
            self.step += 1
            for key, tag in STEP_TAGS.items():
                if s.get(key) is not None:
                    self.writer.add_scalar(tag, float(s[key]), self.step)
            self.writer.add_scalar("epoch", float(row["epoch"]), self.step)
        for key, tag in EPOCH_TAGS.items():
            if row.get(key) is not None:
                self.writer.add_scalar(tag, float(row[key]), self.step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
