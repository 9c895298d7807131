"""The binclass command line: each command parses options and calls one typed function."""

from __future__ import annotations

import csv
import dataclasses
import functools
import json
import sys
from pathlib import Path
from typing import Any

import typer

from .config import TrainConfig, default_of, help_of
from .errors import BinclassError
from .run.files import REPORT_FILE

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Train and use a binary image classifier.")


def user_errors(func):
    """BinclassError -> one line on stderr and exit status 2, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except BinclassError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def option(name: str, *decls: str, **kwargs: Any) -> Any:
    """A `binclass train` option whose default and help text are TrainConfig's (one place for both)."""
    return typer.Option(default_of(name), *decls, help=help_of(name), **kwargs)


@app.command()
@user_errors
def train(
    data_dir: Path | None = typer.Argument(None, help=help_of("data_dir")),
    out: Path = option("out", "--out"),
    model: str = option("model"),
    labels: Path | None = option("labels"),
    image_column: str | None = option("image_column"),
    label_column: str | None = option("label_column"),
    label_from_name: str | None = option("label_from_name"),
    val: Path | None = option("val"),
    exclude: Path | None = option("exclude"),
    image_size: int | None = option("image_size"),
    width: int | None = option("width"),
    val_split: float = option("val_split"),
    positive: str | None = option("positive"),
    augment: str | None = option("augment"),
    epochs: int | None = option("epochs"),
    batch_size: int | None = option("batch_size"),
    lr: float | None = option("lr"),
    optimizer: str | None = option("optimizer"),
    weight_decay: float | None = option("weight_decay"),
    scheduler: str | None = option("scheduler"),
    warmup: float | None = option("warmup"),
    label_smoothing: float | None = option("label_smoothing"),
    ema: float | None = option("ema"),
    step_size: int | None = option("step_size"),
    gamma: float = option("gamma"),
    seed: int = option("seed"),
    device: str = option("device"),
    early_stop: int | None = option("early_stop"),
    pos_weight: str = option("pos_weight"),
    threshold: float = option("threshold"),
    workers: int = option("workers"),
    precision: str = option("precision"),
    cache: str = option("cache"),
    cache_dir: Path | None = option("cache_dir"),
    feature_cache: bool = option("feature_cache"),
    backbone_runtime: str = option("backbone_runtime"),
    strict: bool = option("strict"),
    save_every: float = option("save_every"),
    deterministic: bool = option("deterministic"),
    tensorboard: bool = option("tensorboard"),
    track: str | None = option("track"),
    experiment: str | None = option("experiment"),
    calibrate: bool = option("calibrate"),
    calibration_split: float = option("calibration_split"),
    compile_optimizer: str = option("compile_optimizer"),
    cuda_graphs: str = option("cuda_graphs"),
    tta: bool | None = option("tta", "--tta/--no-tta"),
    finetune: int = option("finetune"),
    label_audit: bool = option("label_audit"),
    ood_accept: float = option("ood_accept"),
    time_budget: str | None = option("time_budget"),
    pretrained: bool = option("pretrained"),
    weights: Path | None = option("weights"),
    overwrite: bool = typer.Option(False, help="replace a run already in --out"),
    resume: Path | None = typer.Option(
        None, help="continue this run folder from its last completed epoch, with its own settings"
    ),
    seeds: str | None = typer.Option(
        None, help="e.g. 0,1,2: one run per seed in OUT/seed-N, summarized in OUT/seeds.json"
    ),
) -> None:
    """Train a classifier and write a run folder (metrics, model, plots, report)."""
    from .recipes.train import fit, resume_config

    if resume is not None:
        fit(resume_config(resume, data_dir), resume=True)
        return
    if data_dir is None:
        raise BinclassError("give DATA_DIR (the folder with your images), or --resume RUN_DIR")
    given = locals()
    cfg = TrainConfig(**{f.name: given[f.name] for f in dataclasses.fields(TrainConfig) if f.name in given})
    if seeds:
        from .recipes.seeds import render, run_seeds

        try:
            seed_list = [int(s) for s in seeds.split(",")]
        except ValueError:
            raise BinclassError(f"--seeds {seeds!r}: give whole numbers separated by commas, e.g. 0,1,2") from None
        typer.echo(render(run_seeds(cfg, seed_list, overwrite=overwrite)))
        return
    fit(cfg, overwrite=overwrite)


@app.command()
@user_errors
def check(
    data_dir: Path = typer.Argument(..., help="the folder you would train on"),
    val_split: float = typer.Option(0.2),
    strict: bool = typer.Option(False, help="exit 2 naming the bad files if there are any"),
    duplicates: bool = typer.Option(True, help="search exact and near duplicates (needs binclass[health])"),
    as_json: bool = typer.Option(False, "--json"),
    labels: Path | None = option("labels"),
    image_column: str | None = option("image_column"),
    label_column: str | None = option("label_column"),
    label_from_name: str | None = option("label_from_name"),
    val: Path | None = option("val"),
    labels_audit: bool = typer.Option(
        False, "--labels-audit", help="rank training labels that look wrong (needs binclass[audit]; a backbone pass)"
    ),
    device: str = typer.Option("auto", help="the label audit's backbone: auto | cpu | cuda"),
) -> None:
    """Scan a data folder and fully decode every image, in parallel; name every bad file and why; find
    duplicate pictures within and across the splits, pictures under both classes, and class imbalance;
    with --labels-audit, training images whose label looks wrong."""
    from .data.check import check_dataset, render, strict_error
    from .data.forms import DataSpec

    spec = DataSpec(labels, image_column, label_column, label_from_name, val)
    report = check_dataset(data_dir, val_split, duplicates=duplicates, spec=spec)
    if labels_audit:
        from .device import resolve_device
        from .labelaudit import need_cleanlab
        from .recipes.audit import audit_layout

        need_cleanlab()  # a missing cleanlab is one line before the backbone pass
        report.audit = audit_layout(report.layout, resolve_device(device))
    typer.echo(json.dumps(report.to_dict(), indent=2) if as_json else render(report))
    if strict and report.problems:
        raise strict_error(report.problems)


@app.command()
@user_errors
def predict(
    run_dir: Path = typer.Argument(..., help="a run folder written by `binclass train`, or a .onnx file it exported"),
    paths: list[str] = typer.Argument(
        ..., help="image files, folders, a CSV of image paths, a Hugging Face dataset, WebDataset shards"
    ),
    csv_file: Path | None = typer.Option(None, "--csv", help="write here instead of stdout"),
    checkpoint: str = typer.Option(
        "auto", help="auto (model.json's choice: last unless a fine-tune kept best) | last | best"
    ),
    device: str = typer.Option("auto"),
) -> None:
    """Write `path,prob,label` for every image (prob = probability of the positive class), and
    `ood_score,in_distribution` where the run keeps its training images' features: how unlike them the
    image is, and whether it is within the run's threshold. With a .onnx file, onnxruntime runs it on the
    CPU (PyTorch is not imported)."""
    from .progressbar import terminal_progress

    if run_dir.suffix == ".onnx":
        from .onnxpredict import OnnxPredictor, predict_onnx_files

        if not run_dir.is_file():
            raise BinclassError(f"{run_dir}: not found; give a file written by `binclass export`")
        if device not in ("auto", "cpu") or checkpoint != "auto":
            raise BinclassError(
                f"{run_dir}: an exported file holds one model and runs on the CPU; drop --device and --checkpoint"
            )
        onnx = OnnxPredictor(run_dir)
        ood_threshold = onnx.ood_threshold
        rows = predict_onnx_files(onnx, paths, terminal_progress("predict"))
    else:
        from .predict import load_predictor, predict_files

        predictor = load_predictor(run_dir, checkpoint, device)
        ood_threshold = predictor.ood.threshold if predictor.ood is not None else None
        rows = predict_files(predictor, paths, terminal_progress("predict"))
    handle = csv_file.open("w", newline="") if csv_file else sys.stdout
    unlike = total = 0
    try:
        writer = csv.writer(handle)
        writer.writerow(
            ["path", "prob", "label"] + (["ood_score", "in_distribution"] if ood_threshold is not None else [])
        )
        for row in rows:
            total += 1
            ood = [] if row.ood_score is None else [repr(row.ood_score), str(row.in_distribution).lower()]
            unlike += row.in_distribution is False
            writer.writerow([str(row.path), repr(row.prob), row.label, *ood])
    finally:
        if csv_file:
            handle.close()
    if ood_threshold is not None and unlike:
        typer.echo(
            f"{unlike} of {total} images look unlike the training images (ood_score above {ood_threshold:.4f}): "
            "their labels are a guess between two classes they may be neither of",
            err=True,
        )


@app.command()
@user_errors
def serve(
    model: Path = typer.Argument(..., help="a run folder written by `binclass train`, or a .onnx file it exported"),
    host: str = typer.Option("127.0.0.1", help="the address to listen on (0.0.0.0: every interface)"),
    port: int = typer.Option(8000),
    max_batch: int = typer.Option(32, help="images per forward pass"),
    max_wait_ms: float = typer.Option(10.0, help="how long a batch waits for more images after its first"),
    max_request_mb: float = typer.Option(32.0, help="larger request bodies are refused (413)"),
    checkpoint: str = typer.Option("auto", help="auto | last | best"),
    device: str = typer.Option("auto"),
) -> None:
    """Serve the model over HTTP (FastAPI, uvicorn; needs binclass[serve]): POST /predict with images as
    multipart files or base64 JSON gives what `binclass predict` gives; GET /health, GET /info."""
    from .serve import serve as run_server

    typer.echo(f"serving {model} on http://{host}:{port} (POST /predict, GET /health, GET /info, /docs)")
    run_server(model, host, port, checkpoint, device, max_batch, max_wait_ms, max_request_mb)


@app.command()
@user_errors
def evaluate(
    run_dir: Path = typer.Argument(..., help="a run folder written by `binclass train`"),
    data_dir: Path = typer.Argument(
        ..., help="labelled images in any form `train` reads (class folders, a table, a dataset, shards)"
    ),
    checkpoint: str = typer.Option("auto", help="auto | last | best"),
    device: str = typer.Option("auto"),
    errors: int = typer.Option(0, "--errors", help="list the N worst false positives and false negatives"),
    labels: Path | None = option("labels"),
    image_column: str | None = option("image_column"),
    label_column: str | None = option("label_column"),
    label_from_name: str | None = option("label_from_name"),
    split: str | None = typer.Option(None, "--split", help="a Hugging Face dataset's split to score (default: all)"),
) -> None:
    """Score a labeled set (class folders, a folder of name-labelled files, a --labels table, a Hugging Face
    dataset or one of its parquet shards, WebDataset shards): metrics,
    calibration (Brier, ECE, reliability table) and, with --errors N, the worst mistakes, as JSON on
    stdout and in RUN_DIR/evaluation.json."""
    from .data.forms import DataSpec
    from .predict import evaluate_folder, load_predictor, write_evaluation

    if errors < 0:
        raise BinclassError("--errors: give a number of images (0: none)")
    spec = DataSpec(labels, image_column, label_column, label_from_name, split=split)
    result = evaluate_folder(load_predictor(run_dir, checkpoint, device), data_dir, errors, spec)
    write_evaluation(run_dir, result)
    typer.echo(json.dumps(result, indent=2))


@app.command()
@user_errors
def explain(
    run_dir: Path = typer.Argument(..., help="a run folder written by `binclass train`"),
    images: list[Path] = typer.Argument(..., help="image files or folders"),
    out: Path = typer.Option(..., "--out", help="folder for one heatmap overlay per image"),
    checkpoint: str = typer.Option("auto", help="auto | last | best"),
) -> None:
    """Grad-CAM heatmaps: where the model looked for the class it gave each image, overlaid on the image
    (OUT/<name>.png, listed in OUT/explained.csv). Needs binclass[explain]."""
    from .explain import explain_images

    written = explain_images(run_dir, images, out, checkpoint)
    typer.echo(f"wrote {len(written)} heatmaps to {out}")


@app.command()
@user_errors
def calibrate(
    run_dir: Path = typer.Argument(..., help="a finished run folder"),
    write: bool = typer.Option(True, "--write/--dry-run", help="store the temperature in model.json"),
) -> None:
    """Fit temperature scaling on the run's held-out calibration images (--calibration-split), else on its
    validation predictions: Brier score and ECE before and after, as JSON; predict, evaluate and export
    then divide the logits by the temperature."""
    from .track import add_to_tracked
    from .tuning import calibrate_run

    result = calibrate_run(run_dir, write)
    typer.echo(json.dumps(result, indent=2))
    if write:
        numbers = {k: result[k] for k in ("temperature", "ece_before", "ece_after", "brier_before", "brier_after")}
        tracked = add_to_tracked(run_dir, [], {f"calibration_{k}": v for k, v in numbers.items()})
        if tracked:
            typer.echo(tracked, err=True)


@app.command()
@user_errors
def threshold(
    run_dir: Path = typer.Argument(..., help="a finished run folder"),
    target: str = typer.Option(..., "--for", help="recall=0.95 | precision=0.9 | fpr=0.01 | balanced | f1"),
    write: bool = typer.Option(False, "--write", help="store the threshold in model.json, with its provenance"),
) -> None:
    """Pick the threshold that meets a target on the run's held-out calibration images, else on its
    validation predictions; print the metrics there with their 95% intervals (and at the stored
    threshold) as JSON."""
    from .calibration import parse_target
    from .tuning import threshold_run

    try:
        chosen = parse_target(target)
    except ValueError as exc:
        raise BinclassError(str(exc)) from None
    typer.echo(json.dumps(threshold_run(run_dir, chosen, write), indent=2))


@app.command()
@user_errors
def export(
    run_dir: Path = typer.Argument(..., help="a run folder written by `binclass train`"),
    format: str = typer.Option("onnx", "--format", help="onnx (the one format)"),
    out: Path | None = typer.Option(None, "--out", help="the file to write (default: RUN_DIR/model.onnx)"),
    checkpoint: str = typer.Option("auto", help="auto (model.json's choice) | last | best"),
) -> None:
    """Export the model as ONNX: input uint8 (N, H, W, 3) RGB images at the model's size, output the
    probability of the positive class; normalization inside, model.json's facts as metadata."""
    from .export import export_onnx
    from .track import add_to_tracked

    if format != "onnx":
        raise BinclassError(f"--format {format!r}: the one export format is onnx")
    written = export_onnx(run_dir, out, checkpoint)
    tracked = add_to_tracked(run_dir, [written])
    typer.echo(f"wrote {written}" + (f"; {tracked}" if tracked else ""))


@app.command("doctor")
@user_errors
def doctor_command(
    target: Path = typer.Argument(
        ...,
        help="a binclass run folder, another tool's history (CSV, JSON, trainer_state.json, TensorBoard events), "
        "or a folder of runs (lightning_logs/, runs/)",
    ),
    batch_size: int | None = typer.Option(None, help="batch size, when the log does not say (for the noise check)"),
    val_size: int | None = typer.Option(None, help="validation images, when the log does not say"),
    as_json: bool = typer.Option(False, "--json", help='print {"findings": [...]}'),
) -> None:
    """Explain a training history: bugs, collapse, divergence, overfitting, or just noise. Exit 1 on errors."""
    from .doctor.diagnosis import doctor_runs, is_run_folder, write_diagnosis
    from .doctor.findings import render_text, sort_findings, to_json

    runs = doctor_runs(target, batch_size, val_size)
    if target.is_dir() and is_run_folder(target):
        from .report.html import write_report

        write_diagnosis(target, runs[0][1])
        write_report(target)
    if as_json and len(runs) == 1:
        typer.echo(to_json(runs[0][1]))
    elif as_json:
        runs_json = [{"run": s, "findings": [f.to_dict() for f in sort_findings(found)]} for s, found in runs]
        typer.echo(json.dumps({"runs": runs_json}, indent=2))
    elif len(runs) == 1:
        typer.echo(render_text(runs[0][1]))
    else:
        typer.echo("\n".join(f"== {source}\n{render_text(findings)}" for source, findings in runs))
    if any(f.severity == "error" for _, findings in runs for f in findings):
        raise typer.Exit(1)


@app.command()
@user_errors
def lint(
    scripts: list[Path] = typer.Argument(
        ..., help="Python scripts, Jupyter notebooks, or folders of them (read, never run)"
    ),
    as_json: bool = typer.Option(
        False, "--json", help='print {"findings": [...]} with path and line (and cell, in a notebook)'
    ),
) -> None:
    """Find metric and training bugs in your own PyTorch script or notebook. Exit 1 when any error is found."""
    from .doctor.findings import render_text, to_json
    from .lint import lint_path

    findings = [f for script in scripts for f in lint_path(script)]
    if as_json:
        typer.echo(to_json(findings))
    else:
        typer.echo(render_text(findings) if findings else f"no findings in {len(scripts)} file(s).")
    if any(f.severity == "error" for f in findings):
        raise typer.Exit(1)


@app.command()
@user_errors
def bench(
    data_dir: Path = typer.Argument(
        ..., help="train/ + validation/ folders (e.g. ../shared/data/cats_and_dogs_filtered)"
    ),
    model: str = typer.Option("seed"),
    epochs: int = typer.Option(3, help="epochs per contender; s/epoch is the mean after the first"),
    batch_size: int = typer.Option(20),
    device: str = typer.Option("auto"),
    compile: bool = typer.Option(False, "--compile", help="also time a torch.compile floor (compile time included)"),
    cuda_graphs: bool = typer.Option(False, "--cuda-graphs", help="also time binclass train --cuda-graphs on (GPU)"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Time the posted loop, `binclass train` (fp32 and auto precision) and the compute floor, side by side."""
    from .devtools.bench import render, run_bench

    result = run_bench(
        data_dir,
        model=model,
        epochs=epochs,
        batch_size=batch_size,
        device=device,
        compile=compile,
        cuda_graphs=cuda_graphs,
    )
    typer.echo(json.dumps(result, indent=2) if as_json else render(result))


@app.command("scale-bench")
@user_errors
def scale_bench(
    base: int = typer.Option(100, help="images per class at 1x (validation: a quarter of that)"),
    factors: str = typer.Option("1,4,16", help="comma-separated multiples of the base set"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Time and peak memory of `binclass train` on generated sets of growing size."""
    from .devtools.bench import render_scale, run_scale

    results = run_scale(base, tuple(int(f) for f in factors.split(",")))
    typer.echo(json.dumps(results, indent=2) if as_json else render_scale(results))


@app.command()
@user_errors
def compare(
    run_dirs: list[Path] = typer.Argument(..., help="two or more finished run folders on the same validation data"),
    plot: Path = typer.Option(Path("compare.png"), help="validation curves of all runs overlaid"),
    seed_sd: float | None = typer.Option(
        None,
        help="seed-to-seed sd of validation accuracy in points, for every "
        "run (default: from the seeds.json of --seeds runs)",
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Overlay runs' curves and test, pair by pair, whether their validation accuracies really differ:
    McNemar's exact test on the same images, and the difference against the seed-to-seed spread."""
    from .compare import compare_runs, plot_compare, render

    if seed_sd is not None and not seed_sd >= 0:
        raise BinclassError("--seed-sd must be zero or a positive number of points")
    result = compare_runs(run_dirs, None if seed_sd is None else seed_sd / 100)
    plot_compare(run_dirs, plot)
    typer.echo(json.dumps(result, indent=2) if as_json else render(result) + f"\nplot: {plot}")


@app.command("lr-find")
@user_errors
def lr_find(
    data_dir: Path = typer.Argument(..., help="the folder you would train on"),
    model: str = typer.Option("small"),
    optimizer: str = typer.Option("adamw"),
    batch_size: int = typer.Option(32),
    image_size: int | None = typer.Option(None),
    augment: str = typer.Option("none"),
    steps: int = typer.Option(100, help="batches, the learning rate growing from --start to --end"),
    start: float = typer.Option(1e-7),
    end: float = typer.Option(10.0),
    seed: int = typer.Option(0),
    plot: Path = typer.Option(Path("lr_find.png"), help="where to draw loss against learning rate"),
    labels: Path | None = option("labels"),
    image_column: str | None = option("image_column"),
    label_column: str | None = option("label_column"),
    label_from_name: str | None = option("label_from_name"),
) -> None:
    """The learning-rate range test: loss against an exponentially growing learning rate, and a suggestion."""
    from .lrfind import lr_range_test, plot_lr_find

    cfg = TrainConfig(
        data_dir=str(data_dir),
        out=".",
        model=model,
        optimizer=optimizer,
        batch_size=batch_size,
        image_size=image_size,
        augment=augment,
        seed=seed,
        labels=labels,
        image_column=image_column,
        label_column=label_column,
        label_from_name=label_from_name,
    )
    result = lr_range_test(cfg, start, end, steps)
    plot_lr_find(result, plot, f"lr-find: {model}, {optimizer}, batch {batch_size}")
    typer.echo(
        f"suggested learning rate: {result.suggestion:.2g} ({result.rule}); the loss starts to rise at "
        f"{result.rise_lr:.2g}; {len(result.lrs)} steps up to {result.lrs[-1]:.2g}; plot: {plot}"
    )


@app.command()
@user_errors
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="run folder to write"),
    data: Path = typer.Option(Path("runs/demo-data"), help="where the generated images go"),
    epochs: int = typer.Option(20),
) -> None:
    """Generate a small two-class image set and train on it: a look at everything in under a minute."""
    from .recipes.train import fit
    from .synth import make_dataset

    if not (data / "train").exists():
        make_dataset(data, n_train=300, n_val=100, size=64, seed=0)
        typer.echo(f"generated demo images in {data}")
    # The small recipe otherwise, at a fifth of its peak lr: with 600 images a run is only ~200 steps, and
    # at lr 0.1 these 20 epochs ended at chance (0.475 validation accuracy; 0.02: 0.965).
    cfg = TrainConfig(
        data_dir=str(data),
        out=str(out),
        model="small",
        image_size=64,
        epochs=epochs,
        batch_size=32,
        augment="flip",
        lr=0.02,
    )
    run_dir = fit(cfg, overwrite=True)
    typer.echo(f"open {run_dir / REPORT_FILE} in a browser")


def main() -> None:
    """Console entry point (and `python -m binclass.cli`): the command, then an exit that skips the
    interpreter's teardown (see fastexit). Tests call `app` through a CLI runner instead."""
    from .fastexit import exit_without_teardown

    try:
        app()
        code: object = 0
    except SystemExit as exc:
        code = exc.code
    exit_without_teardown(code)


if __name__ == "__main__":
    main()
