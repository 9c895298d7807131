"""report.html: one self-contained page (images inlined) built from the run folder's files."""

from __future__ import annotations

import base64
import csv
import html
import json
from pathlib import Path

import numpy as np

from ..calibration import calibration_summary
from ..doctor.diagnosis import read_diagnosis
from ..metrics import format_score
from ..run import history
from ..run.files import (
    CONFIG_FILE,
    CONFUSION_PLOT,
    CURVES_PLOT,
    GALLERY_FILE,
    LABEL_ISSUES_FILE,
    META_FILE,
    PREDICTIONS_FILE,
    RELIABILITY_PLOT,
    REPORT_FILE,
    ROC_PLOT,
)
from .plots import plot_confusion, plot_curves, plot_reliability, plot_roc


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(rows: list[dict], columns: list[str]) -> str:
    def cell(v: object) -> str:
        if isinstance(v, float):  # rates never round to a perfect 1 or a 0 they did not reach
            return format_score(v, 4) if 0 <= v <= 1 else f"{v:.4f}"
        return html.escape(str(v))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(r[c])}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _read_predictions(run_dir: Path, positive: str) -> tuple[np.ndarray, np.ndarray] | None:
    path = run_dir / PREDICTIONS_FILE
    if not path.exists():  # a run that was interrupted before its end
        return None
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    labels = np.array([r["true_label"] == positive for r in rows], dtype=np.int64)
    return labels, np.array([float(r["prob"]) for r in rows])


def _diagnosis_section(run_dir: Path) -> str:
    findings = read_diagnosis(run_dir)
    if findings is None:
        return ""
    if not findings:
        return "<h2>Doctor</h2><p>No findings: nothing in this history looks wrong.</p>"
    colors = {"error": "#c0392b", "warning": "#d68910", "info": "#2e86c1"}
    items = "".join(
        f'<li><b style="color:{colors.get(f["severity"], "#222")}">{html.escape(f["severity"])}</b> '
        f"<code>{html.escape(f['id'])}</code>: {html.escape(f['message'])}<br><i>Fix:</i> {html.escape(f['fix'])}<br>"
        f"<small>evidence: {html.escape(json.dumps(f['evidence']))}</small></li>"
        for f in findings
    )
    return f'<h2>Doctor</h2><ul id="doctor">{items}</ul>'


def _calibration_section(run_dir: Path, predictions: tuple[np.ndarray, np.ndarray] | None, meta: dict) -> str:
    if predictions is None:
        return ""
    c = calibration_summary(*predictions)
    plot_reliability(c["reliability"], run_dir / RELIABILITY_PLOT)
    stored = (
        f" model.json holds a temperature of {meta['temperature']:.3f} (fitted on these validation images, so their "
        "figures after it are optimistic), which predict and evaluate apply."
        if "temperature" in meta
        else " <code>binclass calibrate RUN</code> fits a temperature for these probabilities."
    )
    return (
        f"<h2>Calibration</h2><p>Brier score {c['brier']:.4f} (0 is perfect, 0.25 a coin); expected calibration "
        f"error {c['ece']:.3f} over {html.escape(c['ece_binning'])}: how far, on average, the probabilities sit from "
        f"the share of positives among images given them.{stored}</p>"
        f"{_img(run_dir / RELIABILITY_PLOT, 'reliability diagram')}"
    )


def shown_path(path: str, data_dir: str | None) -> str:
    """An image's path as a caption shows it: relative to the data folder when it lies inside it (the
    full path stays in the caption's title and in gallery.json)."""
    if data_dir:
        try:
            return str(Path(path).relative_to(Path(data_dir)))
        except ValueError:
            pass
    return path


def _gallery_section(run_dir: Path, data_dir: str | None) -> str:
    path = run_dir / GALLERY_FILE
    if not path.exists():
        return (
            "<h2>Most wrong validation images</h2><p>Not drawn: <code>pip install 'binclass[explain]'</code> adds "
            "the gallery with heatmaps; <code>binclass evaluate RUN DATA --errors 16</code> lists them.</p>"
        )
    gallery = json.loads(path.read_text())
    parts = []
    for kind, title in (("false_positives", "False positives"), ("false_negatives", "False negatives")):
        entries = gallery.get(kind, [])
        cells = "".join(
            '<figure class="err">'
            + "".join(
                f'<img alt="{what}" src="data:image/jpeg;base64,{e[what]}">'
                for what in ("picture", "heatmap")
                if what in e
            )
            + f'<figcaption title="{html.escape(e["path"])}">{html.escape(shown_path(e["path"], data_dir))}<br>'
            f"p={e['prob']:.3f}, true {html.escape(e['true_label'])}, "
            f"loss {e['loss']:.2f}</figcaption></figure>"
            for e in entries
        )
        parts.append(
            f"<h3>{title} ({len(entries)}, highest loss first)</h3><div class='gallery'>{cells or 'none'}</div>"
        )
    return (
        "<h2>Most wrong validation images</h2><p>Each picture beside its heatmap: "
        f"{html.escape(gallery.get('method', ''))}, for the class the model gave it (red: what drove that).</p>"
        + "".join(parts)
    )


def _label_issues_section(run_dir: Path, data_dir: str | None) -> str:
    path = run_dir / LABEL_ISSUES_FILE
    if not path.exists():
        return ""
    audit = json.loads(path.read_text())
    shown = [e for e in audit.get("issues", []) if e.get("picture")]
    cells = "".join(
        f'<figure class="err"><img alt="picture" src="data:image/jpeg;base64,{e["picture"]}">'
        f'<figcaption title="{html.escape(e["path"])}">{html.escape(shown_path(e["path"], data_dir))}<br>'
        f"labelled {html.escape(e['given'])}, looks like {html.escape(e['suggested'])} "
        f"(p={e['prob_other']:.2f})</figcaption></figure>"
        for e in shown
    )
    return (
        f"<h2>Training labels that look wrong</h2><p>{audit['flagged']} of {audit['audited']} training images look "
        f"like the other class to a model that never saw them ({html.escape(audit['method'])}); about "
        f"{audit['estimated_wrong']} ({audit['estimated_share']:.1%}) of the labels are likely wrong. The first "
        f"{len(shown)}, most likely first; every one in <code>{LABEL_ISSUES_FILE}</code>. List the wrong ones in "
        "a file and train with <code>--exclude FILE</code>.</p>"
        f"<div class='gallery'>{cells or 'none'}</div>"
    )


def write_report(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    epochs = history.read_epochs(run_dir)
    steps = history.read_steps(run_dir)
    meta = json.loads((run_dir / META_FILE).read_text())
    config = json.loads((run_dir / CONFIG_FILE).read_text())
    last = epochs[-1]
    confusion = [[last["val_tn"], last["val_fp"]], [last["val_fn"], last["val_tp"]]]
    plot_curves(epochs, steps, run_dir / CURVES_PLOT)
    plot_confusion(confusion, meta["classes"], run_dir / CONFUSION_PLOT)
    predictions = _read_predictions(run_dir, meta["positive_class"])
    if predictions is not None:
        plot_roc(*predictions, run_dir / ROC_PLOT)

    half_width = (last["val_acc_high"] - last["val_acc_low"]) / 2
    summary = (
        f"<p>Final epoch {last['epoch']}: validation accuracy <b>{last['val_acc']:.3f}</b> "
        f"(95% interval {last['val_acc_low']:.3f} to {last['val_acc_high']:.3f}, about ±{half_width * 100:.1f} points "
        f"on {last['val_n']} images), AUC {format_score(last['val_auc'])}, F1 {last['val_f1']:.3f}. "
        f"Lowest validation loss at epoch {meta.get('best_epoch', '-')}. "
        "<code>model.safetensors</code> holds the last epoch, <code>best.safetensors</code> the lowest-loss epoch.</p>"
    )
    cols = [
        "epoch",
        "train_loss",
        "train_acc",
        "val_loss",
        "val_acc",
        "val_acc_low",
        "val_acc_high",
        "val_f1",
        "val_auc",
        "lr",
        "seconds",
    ]
    settings = {k: v for k, v in config.items() if k != "environment"}
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>binclass run {html.escape(run_dir.name)}</title>
<style>body{{font-family:sans-serif;max-width:1150px;margin:1em auto;color:#222}}
table{{border-collapse:collapse;font-size:13px}}td,th{{border:1px solid #ccc;padding:2px 6px;text-align:right}}
img{{max-width:100%}} .row img{{max-width:48%}}
.gallery{{display:flex;flex-wrap:wrap;gap:6px}} figure.err{{margin:0;width:262px;font-size:10px;word-break:break-all}}
figure.err img{{width:128px;margin-right:2px}}</style></head><body>
<h1>binclass run: {html.escape(run_dir.name)}</h1>
<p>classes: {html.escape(meta["classes"][0])} = 0, {html.escape(meta["classes"][1])} = 1 (positive);
model {html.escape(meta["architecture"])} at {meta["image_size"]} px; threshold {meta["threshold"]}</p>
{summary}
{_diagnosis_section(run_dir)}
<h2>Curves</h2>{_img(run_dir / CURVES_PLOT, "loss and accuracy curves")}
<p>Faint lines: single batches. A batch of {config.get("batch_size")} images has a binomial standard error of about
±{50 / max(1, config.get("batch_size", 1)) ** 0.5:.0f} points at 50% accuracy, so its accuracy jumps; the epoch
curves count every sample.</p>
<div class="row">{_img(run_dir / CONFUSION_PLOT, "confusion matrix")} {_img(run_dir / ROC_PLOT, "ROC curve") if predictions is not None else ""}</div>
{_calibration_section(run_dir, predictions, meta)}
{_gallery_section(run_dir, config.get("data_dir"))}
{_label_issues_section(run_dir, config.get("data_dir"))}
<h2>Epochs</h2>{_table(epochs, cols)}
<h2>Settings</h2>{_table([{"setting": k, "value": v} for k, v in settings.items()], ["setting", "value"])}
<h2>Environment</h2>{_table([{"key": k, "value": v} for k, v in (config.get("environment") or {}).items()], ["key", "value"])}
</body></html>
"""
    out = run_dir / REPORT_FILE
    out.write_text(page)
    return out
