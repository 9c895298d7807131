"""The Python API: what the command line does, as functions that return values.

    >>> import binclass
    >>> run = binclass.train("data/", out="runs/a", model="small", epochs=5)
    >>> run.predict("new_images/")[0]            # Prediction(path=..., prob=0.93, label='dogs')
    >>> run.evaluate("labeled/")["accuracy"]
    >>> binclass.doctor("runs/a"), binclass.lint("train.py")   # the callable binclass.doctor and binclass.lint packages

Every function raises BinclassError (one line naming the file and the fix) on bad input."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .chunked import Prediction  # one image's prediction, as `binclass predict` writes it
from .config import TrainConfig
from .errors import BinclassError
from .run.files import CONFIG_FILE, DIAGNOSIS_FILE
from .run.history import read_epochs, read_steps
from .run.weights import load_meta

PathLike = str | Path


def _table(rows: list[dict]) -> Any:
    """A pandas DataFrame when pandas is installed, else the list of dicts itself (shown as a table in a
    notebook)."""
    try:
        import pandas
    except ImportError:
        from .notebook import Rows

        return Rows(rows)
    return pandas.DataFrame(rows)


class Run:
    """A run folder written by `binclass train` (or binclass.train): its settings, history, findings,
    and its model to predict, evaluate and export with. Reads the folder when asked, never caches it:
    a run still training shows its latest epochs."""

    def __init__(self, path: PathLike) -> None:
        self.path = Path(path)
        self.meta = load_meta(self.path)  # fails here, with the fix, when the folder holds no model

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    def _repr_html_(self) -> str:
        """In a notebook: the final metrics with their interval, the curves, the findings, the report."""
        from .notebook import run_html

        return run_html(self)

    @property
    def config(self) -> TrainConfig:
        return TrainConfig.load(self.path / CONFIG_FILE)

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def history(self) -> Any:
        """One row per epoch (metrics.csv): a DataFrame when pandas is installed, else a list of dicts."""
        return _table(read_epochs(self.path))

    @property
    def steps(self) -> Any:
        """One row per optimizer step (steps.csv), as `history` is given."""
        return _table(read_steps(self.path))

    @property
    def findings(self) -> list[dict]:
        """The doctor's findings saved with the run (diagnosis.json)."""
        path = self.path / DIAGNOSIS_FILE
        return json.loads(path.read_text())["findings"] if path.exists() else []

    def predict(
        self, paths: PathLike | Iterable[PathLike], checkpoint: str = "auto", device: str = "auto"
    ) -> list[Prediction]:
        """Probability and label of every image in `paths` (files or folders, searched recursively)."""
        from .notebook import Predictions
        from .predict import load_predictor, predict_files

        inputs = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
        predictor = load_predictor(self.path, checkpoint, device)
        return Predictions(predict_files(predictor, inputs))

    def evaluate(self, data_dir: PathLike, checkpoint: str = "auto", device: str = "auto") -> dict:
        """The metrics `binclass evaluate` prints for a labeled folder (also written to evaluation.json)."""
        from .predict import evaluate_folder, load_predictor, write_evaluation

        result = evaluate_folder(load_predictor(self.path, checkpoint, device), Path(data_dir))
        write_evaluation(self.path, result)
        return result

    def export(self, out: PathLike | None = None, format: str = "onnx", checkpoint: str = "auto") -> Path:
        """The model as one ONNX file (default RUN/model.onnx); see `binclass export --help`."""
        from .export import export_onnx

        if format != "onnx":
            raise BinclassError(f"format {format!r}: the one export format is onnx")
        return export_onnx(self.path, Path(out) if out is not None else None, checkpoint)


def train(
    data_dir: PathLike | None = None,
    out: PathLike = "runs/run",
    *,
    overwrite: bool = False,
    resume: bool = False,
    log: Callable[[str], None] | None = print,
    **settings: Any,
) -> Run:
    """Train as `binclass train` does and return the Run. settings: the command's options by their Python
    names (model="small", epochs=5, batch_size=32, ...). resume=True continues the run in `out` with its
    own settings. log: where the run's lines go (None: nowhere; train.log keeps them either way)."""
    from .recipes.train import fit, resume_config

    names = {f.name for f in dataclasses.fields(TrainConfig)} - {"data_dir", "out", "environment"}
    unknown = sorted(set(settings) - names)
    if unknown:
        raise BinclassError(f"unknown setting(s) {', '.join(unknown)}; the settings are: {', '.join(sorted(names))}")
    echo = log if log is not None else (lambda line: None)
    if log is print:
        from .notebook import TrainingDisplay, in_notebook

        if in_notebook():  # one table updated in place, not a scroll of lines
            echo = TrainingDisplay()
    if resume:
        return Run(fit(resume_config(out, data_dir), resume=True, log=echo))
    if data_dir is None:
        raise BinclassError("give data_dir (the folder with your images), or resume=True with out=RUN_DIR")
    cfg = TrainConfig(data_dir=str(data_dir), out=str(out), **settings)
    return Run(fit(cfg, overwrite=overwrite, log=echo))


def load(run_dir: PathLike) -> Run:
    """An existing run folder."""
    return Run(run_dir)
