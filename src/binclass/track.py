"""`--track mlflow` and `--track wandb`: a run in the tracker the team already uses.

Each tracker gets every resolved setting as parameters (config.json), every metrics.csv row as metrics at
its epoch as the run goes (after each checkpoint) and at its end, steps.csv at its step (MLflow), the
doctor's findings as tags, and the run folder's model, report, plots and (when exported later) ONNX file
as artifacts. The tracker's run id is kept in the run folder (tracking.json): `--resume` continues the
same tracker run, and `binclass export` and `binclass calibrate` add to it. Only process 0 of a torchrun
launch tracks: one tracker run, not one per process.

MLflow's default tracking URI needs no server: a sqlite file beside the run folders (mlruns.db, artifacts
in mlartifacts/); MLFLOW_TRACKING_URI and --experiment work as MLflow users expect. Weights & Biases
runs offline where WANDB_MODE=offline (or no login) says so. A missing package or an unreachable server
is one line before any image is read."""

from __future__ import annotations

import csv
import json
import logging
import os
import time
from pathlib import Path

from .errors import BinclassError, need
from .run.files import (
    CONFIG_FILE,
    CONFUSION_PLOT,
    CURVES_PLOT,
    DIAGNOSIS_FILE,
    LABEL_ISSUES_FILE,
    META_FILE,
    METRICS_FILE,
    MODEL_FILE,
    RELIABILITY_PLOT,
    REPORT_FILE,
    ROC_PLOT,
    STEPS_FILE,
    TRACKING_FILE,
)

TRACKERS = ("mlflow", "wandb")
DEFAULT_EXPERIMENT = "binclass"
ARTIFACTS = (MODEL_FILE, META_FILE, CONFIG_FILE, REPORT_FILE, DIAGNOSIS_FILE, CURVES_PLOT, CONFUSION_PLOT,
             ROC_PLOT, RELIABILITY_PLOT, LABEL_ISSUES_FILE, "model.onnx")  # fmt: skip
PREFLIGHT_SECONDS = "10"  # an unreachable tracking server is said within this, not after the run
METRIC_BATCH = 900  # MLflow takes at most 1000 metrics per call


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _numbers(row: dict[str, str], skip: tuple[str, ...]) -> dict[str, float]:
    out = {}
    for key, value in row.items():
        if key in skip or value in ("", None):
            continue
        try:
            out[key] = float(value)
        except ValueError:
            continue
    return out


def _params(run_dir: Path) -> dict[str, str]:
    config = json.loads((run_dir / CONFIG_FILE).read_text())
    flat = {k: v for k, v in config.items() if k != "environment"}
    flat.update({f"environment.{k}": v for k, v in (config.get("environment") or {}).items()})
    return {k: json.dumps(v) if isinstance(v, (list, dict)) else str(v) for k, v in flat.items()}


def _stored(run_dir: Path) -> dict:
    path = run_dir / TRACKING_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def _store(run_dir: Path, tracker: str, facts: dict) -> None:
    stored = _stored(run_dir)
    stored[tracker] = facts
    (run_dir / TRACKING_FILE).write_text(json.dumps(stored, indent=2) + "\n")


class MlflowTracker:
    def __init__(self, run_dir: Path, experiment: str | None) -> None:
        self.run_dir = Path(run_dir)
        self.client, self.uri = _mlflow_client(self.run_dir)
        self.experiment = experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
        self.run_id: str | None = None
        self.logged_epochs = 0

    @property
    def where(self) -> str:
        return f"{self.uri}, experiment {self.experiment!r}"

    def start(self, resume: bool) -> str:
        stored = _stored(self.run_dir).get("mlflow", {})
        if resume and stored.get("run_id"):
            self.run_id = stored["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
            history = self.client.get_metric_history(self.run_id, "val_loss")
            self.logged_epochs = max((int(m.step) for m in history), default=0)
        else:
            found = self.client.get_experiment_by_name(self.experiment)
            if found is not None:
                experiment_id = found.experiment_id
            else:
                artifacts = _default_artifacts(self.uri)
                experiment_id = self.client.create_experiment(self.experiment, artifact_location=artifacts)
            run = self.client.create_run(experiment_id, run_name=self.run_dir.name, tags={"binclass.run_dir": str(self.run_dir.resolve())})  # fmt: skip
            self.run_id = run.info.run_id
            from mlflow.entities import Param

            params = [Param(k, v[:6000]) for k, v in _params(self.run_dir).items()]
            for start in range(0, len(params), 90):
                self.client.log_batch(self.run_id, params=params[start : start + 90])
        _store(self.run_dir, "mlflow", {"run_id": self.run_id, "tracking_uri": self.uri, "experiment": self.experiment})
        return self.run_id

    def sync(self) -> None:
        """The metrics.csv rows not logged yet, at their epoch."""
        from mlflow.entities import Metric

        rows = [r for r in _rows(self.run_dir / METRICS_FILE) if int(r["epoch"]) > self.logged_epochs]
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, int(r["epoch"])) for r in rows for k, v in _numbers(r, ("epoch",)).items()]
        self._log(metrics)
        if rows:
            self.logged_epochs = max(int(r["epoch"]) for r in rows)

    def _log(self, metrics: list) -> None:
        for start in range(0, len(metrics), METRIC_BATCH):
            self.client.log_batch(self.run_id, metrics=metrics[start : start + METRIC_BATCH])

    def finish(self, status: str = "FINISHED") -> None:
        from mlflow.entities import Metric, RunTag

        self.sync()
        if status == "FINISHED":
            now = int(time.time() * 1000)
            steps = _rows(self.run_dir / STEPS_FILE)
            logged = {int(m.step) for m in self.client.get_metric_history(self.run_id, "step_loss")}
            self._log([Metric(f"step_{k}", v, now, int(r["step"])) for r in steps if int(r["step"]) not in logged
                       for k, v in _numbers(r, ("step", "epoch")).items()])  # fmt: skip
            tags = [RunTag(f"doctor.{f['id']}", f["severity"]) for f in _findings(self.run_dir)]
            if tags:
                self.client.log_batch(self.run_id, tags=tags)
            self.artifacts()
        self.client.set_terminated(self.run_id, status)

    def artifacts(self, names: tuple[str, ...] = ARTIFACTS) -> None:
        for name in names:
            if (self.run_dir / name).exists():
                self.client.log_artifact(self.run_id, str(self.run_dir / name))


class WandbTracker:
    def __init__(self, run_dir: Path, experiment: str | None) -> None:
        self.run_dir = Path(run_dir)
        self.wandb = need("wandb", "wandb", "--track wandb")
        self.project = experiment or os.environ.get("WANDB_PROJECT") or DEFAULT_EXPERIMENT
        self.run = None
        self.logged_epochs = 0

    @property
    def run_id(self) -> str:
        return self.run.id

    @property
    def where(self) -> str:
        return f"project {self.project!r}, {self.run.dir}" + (" (offline)" if self.run.offline else "")

    def start(self, resume: bool) -> str:
        stored = _stored(self.run_dir).get("wandb", {})
        run_id = stored.get("run_id") if resume else None
        self.logged_epochs = stored.get("logged_epochs", 0) if resume else 0
        self.run = self.wandb.init(
            project=self.project,
            name=self.run_dir.name,
            id=run_id,  # None: a new run, its id chosen by wandb
            resume="allow",
            dir=str(self.run_dir),
            config=_params(self.run_dir),
            settings=self.wandb.Settings(silent=True),
        )
        self._store()
        return self.run.id

    def _store(self) -> None:
        summary = {k: v for k, v in dict(self.run.summary).items() if isinstance(v, (int, float))}
        _store(self.run_dir, "wandb", {"run_id": self.run.id, "project": self.project, "dir": str(self.run.dir),
                                       "logged_epochs": self.logged_epochs, "summary": summary})  # fmt: skip

    def sync(self) -> None:
        for row in _rows(self.run_dir / METRICS_FILE):
            epoch = int(row["epoch"])
            if epoch > self.logged_epochs:
                self.run.log(_numbers(row, ("epoch",)), step=epoch, commit=True)
                self.logged_epochs = epoch
        self._store()

    def finish(self, status: str = "FINISHED") -> None:
        self.sync()
        if status == "FINISHED":
            steps = _rows(self.run_dir / STEPS_FILE)
            if steps:  # one table: W&B's steps only go forward, and the epochs hold them
                columns = list(steps[0])
                self.run.log(
                    {"steps": self.wandb.Table(columns=columns, data=[[r[c] for c in columns] for r in steps])}
                )
            self.run.tags = tuple(f"doctor.{f['id']}" for f in _findings(self.run_dir))
            self.artifacts()
        self.run.finish(exit_code=0 if status == "FINISHED" else 1)

    def artifacts(self, names: tuple[str, ...] = ARTIFACTS) -> None:
        artifact = self.wandb.Artifact(f"run-{self.run.id}", type="binclass-run")
        for name in names:
            if (self.run_dir / name).exists():
                artifact.add_file(str(self.run_dir / name))
        self.run.log_artifact(artifact)


def _findings(run_dir: Path) -> list[dict]:
    path = run_dir / DIAGNOSIS_FILE
    return json.loads(path.read_text()).get("findings", []) if path.exists() else []


def _default_artifacts(uri: str) -> str | None:
    """Beside a sqlite database: its folder's mlartifacts/ (MLflow would use the working directory)."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///") :]).parent / "mlartifacts").resolve().as_uri()
    return None


def default_uri(run_dir: Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(Path(run_dir).resolve().parent / 'mlruns.db')}"


def _mlflow_client(run_dir: Path):
    need("mlflow", "mlflow", "--track mlflow")
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # its database notes are not the user's
    from mlflow.tracking import MlflowClient

    uri = _stored(run_dir).get("mlflow", {}).get("tracking_uri") or default_uri(run_dir)
    return MlflowClient(uri), uri


def preflight(track: str | None, out: Path) -> None:
    """One line now for what would fail later: an unknown tracker, a missing package, an unreachable
    tracking server."""
    if track is None:
        return
    if track not in TRACKERS:
        raise BinclassError(f"--track {track!r}: choose mlflow or wandb")
    if track == "wandb":
        need("wandb", "wandb", "--track wandb")
        return
    quick = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": PREFLIGHT_SECONDS}
    before = {k: os.environ.get(k) for k in quick}
    os.environ.update({k: v for k, v in quick.items() if before[k] is None})  # the run itself keeps MLflow's retries
    try:
        client, uri = _mlflow_client(Path(out))
        client.search_experiments(max_results=1)
    except BinclassError:
        raise
    except Exception as exc:  # MLflow raises its own and requests' types for a server it cannot reach
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        uri = default_uri(Path(out))
        raise BinclassError(
            f"--track mlflow: cannot reach the tracking server {uri} ({reason}); start it or fix MLFLOW_TRACKING_URI"
        ) from None
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)


def open_tracker(track: str, run_dir: Path, experiment: str | None, resume: bool):
    tracker = MlflowTracker(run_dir, experiment) if track == "mlflow" else WandbTracker(run_dir, experiment)
    tracker.start(resume)
    return tracker


def add_to_tracked(run_dir: Path, files: list[Path] = (), metrics: dict | None = None) -> str | None:
    """A later command's files and numbers (export, calibrate) added to the run's MLflow run, where the
    run folder names one; returns a line saying so, or None."""
    stored = _stored(Path(run_dir)).get("mlflow")
    if stored is None:
        return None
    client, _ = _mlflow_client(Path(run_dir))
    if metrics:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        client.log_batch(stored["run_id"], metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])
    for path in files:
        client.log_artifact(stored["run_id"], str(path))
    return f"added to MLflow run {stored['run_id']}"
