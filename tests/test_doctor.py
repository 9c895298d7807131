"""Each doctor id fires on a history that has the problem and stays silent on a healthy one."""

import json
import math

import numpy as np
import pytest
from helpers import finding_ids
from typer.testing import CliRunner

from binclass.cli import app
from binclass.doctor.checks import diagnose
from binclass.doctor.diagnosis import doctor
from binclass.doctor.logs import History, from_rows, load_history

runner = CliRunner()


def diagnosed(h: History, severities=("error", "warning", "info")) -> set[str]:
    return finding_ids(diagnose(h), severities)


def healthy_epochs(n=12, val_n=None):
    rows = []
    for e in range(1, n + 1):
        t = e / n
        rows.append(
            {
                "epoch": e,
                "train_loss": 0.69 - 0.3 * t,
                "train_acc": 0.55 + 0.25 * t,
                "val_loss": 0.68 - 0.12 * t + 0.003 * (-1) ** e,
                "val_acc": 0.56 + 0.14 * t,
                "lr": 1e-3,
            }
        )
    return rows


def write_csv(path, rows):
    cols = list(dict.fromkeys(k for r in rows for k in r))
    lines = [",".join(cols)] + [",".join("" if r.get(c) is None else str(r[c]) for c in cols) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_healthy_history_has_no_error_or_warning():
    assert diagnosed(History(epochs=healthy_epochs()), ("error", "warning")) == set()


# --- metric-argmax-single-output
def _argmax_steps(seed=0, n=15, real=False):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        loss = 0.69 - 0.25 * i / (n - 1)
        share0 = rng.binomial(20, 0.5) / 20
        acc = rng.binomial(20, 0.5 + 0.3 * i / (n - 1)) / 20 if real else share0
        rows.append({"epoch": i + 1, "iteration": 100 * (i + 1), "loss": loss, "acc": acc})
    return rows


@pytest.mark.parametrize("seed", range(5))
def test_argmax_fires_on_posted_style_log(seed):
    h = from_rows(_argmax_steps(seed), "posted")
    assert "metric-argmax-single-output" in diagnosed(h)
    assert "metric-argmax-single-output" not in diagnosed(from_rows(_argmax_steps(seed, real=True), "fixed"))


def test_argmax_fires_on_fastai_style_constant_accuracy(tmp_path):
    rows = [
        {"epoch": e, "train_loss": 0.70 - 0.03 * e, "valid_loss": 0.68 - 0.025 * e, "accuracy": 0.5, "time": "00:05"}
        for e in range(8)
    ]
    h = load_history(write_csv(tmp_path / "fastai.csv", rows))
    assert h.epochs[0]["val_acc"] == 0.5  # fastai's metric column is a validation metric
    assert "metric-argmax-single-output" in diagnosed(h)


# --- constant-predictions
def test_constant_predictions_from_counts_and_from_logs():
    rows = [dict(r, val_n=100, val_tn=50, val_fp=0, val_fn=50, val_tp=0, val_acc=0.5) for r in healthy_epochs(5)]
    h = History(epochs=rows, counts=True, val_n=100, val_positive_rate=0.5)
    assert "constant-predictions" in diagnosed(h)
    collapsed = [{"epoch": e, "loss": 49.6, "accuracy": 0.5, "val_loss": 50.0, "val_accuracy": 0.5} for e in range(6)]
    assert "constant-predictions" in diagnosed(from_rows(collapsed, "keras"))
    saturated_steps = [{"step": i + 1, "loss": 49.6} for i in range(40)]  # a script that logs only its loss
    (steps,) = [f for f in diagnose(History(steps=saturated_steps)) if f.id == "constant-predictions"]
    assert steps.severity == "error" and steps.evidence["saturated_steps"] == 40
    frozen = [{"epoch": e, "loss": 0.6931, "val_loss": 0.6932, "val_accuracy": 0.5} for e in range(6)]
    assert "constant-predictions" in diagnosed(from_rows(frozen, "keras"))
    assert "constant-predictions" not in diagnosed(History(epochs=healthy_epochs()))


def test_constant_epochs_are_listed_as_ranges():
    from binclass.doctor.checks import _ranges

    assert _ranges([1, 2, 3, 5, 7, 8]) == "1-3, 5, 7-8" and _ranges([4]) == "4"


def test_one_constant_first_epoch_is_too_early_to_call_but_two_are_not():
    def rows(n_constant, n):
        out = []
        for r in healthy_epochs(n):
            if r["epoch"] <= n_constant:
                r.update(val_n=100, val_tn=50, val_fp=0, val_fn=50, val_tp=0, val_acc=0.5)
            else:
                r.update(val_n=100, val_tn=40, val_fp=10, val_fn=10, val_tp=40, val_acc=0.8)
            out.append(r)
        return History(epochs=out, counts=True, val_n=100, val_positive_rate=0.5)

    assert "constant-predictions" not in diagnosed(rows(1, 1))  # what training's doctor sees after epoch 1
    assert "constant-predictions" in diagnosed(rows(2, 2))
    late = rows(4, 4)
    for r in late.epochs[:2]:  # the last two of four epochs constant: a collapse at the end is an error
        r.update(val_fp=10, val_tp=40, val_tn=40, val_fn=10)
    assert [f.severity for f in diagnose(late) if f.id == "constant-predictions"] == ["error"]
    late.epochs[2].update(val_fp=10, val_tp=40, val_tn=40, val_fn=10)  # only the latest: a warning, no verdict
    (one,) = [f for f in diagnose(late) if f.id == "constant-predictions"]
    assert one.severity == "warning" and one.evidence["epochs"] == [4] and "epoch 4" in one.message


def test_brief_collapse_that_recovers_is_not_reported():
    rows = healthy_epochs(8)
    for r in rows[:2]:
        r.update(val_acc=0.5, val_loss=0.6932)
    assert "constant-predictions" not in diagnosed(History(epochs=rows))


# --- not-learning
def test_not_learning():
    flat = [
        {
            "epoch": e,
            "train_loss": 0.693 + 0.002 * (-1) ** e,
            "train_acc": 0.5,
            "val_loss": 0.694,
            "val_acc": 0.51 + 0.01 * (e % 2),
        }
        for e in range(1, 9)
    ]
    assert "not-learning" in diagnosed(History(epochs=flat))
    assert "not-learning" in diagnosed(History(epochs=flat, val_n=1000))  # 0.52 on 1000 images: chance
    assert "not-learning" not in diagnosed(History(epochs=healthy_epochs()))
    # A warm-up: the loss hovers at ln 2 for three epochs while validation accuracy already climbs.
    warm = [dict(r) for r in flat[:3]]
    for r, acc in zip(warm, (0.57, 0.67, 0.62)):
        r["val_acc"] = acc
    assert "not-learning" not in diagnosed(History(epochs=warm, val_n=1000))
    assert "not-learning" in diagnosed(History(epochs=warm, val_n=20))  # on 20 images 0.62 proves nothing


# --- diverging
def test_diverging_on_nan_and_on_rising_loss():
    rows = healthy_epochs(6)
    rows[-1]["train_loss"] = math.nan
    assert "diverging" in diagnosed(History(epochs=rows))
    rising = healthy_epochs(8)
    for i, r in enumerate(rising[4:]):
        r["train_loss"] = 0.6 + 0.3 * (i + 1)
    assert "diverging" in diagnosed(History(epochs=rising))
    assert "diverging" not in diagnosed(History(epochs=healthy_epochs()))


# --- lr-schedule-collapse
def test_lr_schedule_collapse():
    steps = [{"step": i + 1, "loss": 0.6, "lr": 1e-3 * 0.9**i} for i in range(300)]
    assert "lr-schedule-collapse" in diagnosed(History(steps=steps))
    cosine = [{"step": i + 1, "loss": 0.6, "lr": 1e-3 * (1 + math.cos(math.pi * i / 300)) / 2} for i in range(300)]
    assert "lr-schedule-collapse" not in diagnosed(History(steps=cosine))


# --- overfitting
def test_overfitting_from_keras_csvlogger(tmp_path):
    # Keras' CSVLogger writes epoch (from 0) and the compiled metric names, sorted.
    lines = ["epoch,accuracy,loss,val_accuracy,val_loss"]
    for e in range(12):
        val_loss = 0.62 - 0.03 * e if e <= 4 else 0.50 + 0.05 * (e - 4)
        val_acc = 0.70 + 0.01 * e if e <= 4 else 0.74 - 0.005 * (e - 4)
        lines.append(f"{e},{0.6 + 0.035 * e:.3f},{0.66 - 0.05 * e:.3f},{val_acc:.3f},{val_loss:.3f}")
    path = tmp_path / "training.log"
    path.write_text("\n".join(lines) + "\n")
    h = load_history(path)
    assert len(h.epochs) == 12 and h.epochs[0]["val_loss"] == 0.62
    (found,) = [f for f in diagnose(h) if f.id == "overfitting"]
    assert found.severity == "warning" and found.evidence["best_epoch"] == 4
    assert "overfitting" not in diagnosed(History(epochs=healthy_epochs()))


def test_rising_val_loss_with_rising_val_accuracy_does_not_advise_going_back():
    # As in a from-scratch run without label smoothing: the loss turns up while accuracy keeps climbing, so
    # the best-loss epoch's weights would be the less accurate ones.
    rows = [
        {
            "epoch": e,
            "train_loss": 0.6 - 0.04 * e,
            "val_loss": 0.5 - 0.02 * e if e <= 5 else 0.4 + 0.02 * (e - 5),
            "val_acc": 0.70 + 0.01 * e,
        }
        for e in range(1, 13)
    ]
    (found,) = [f for f in diagnose(History(epochs=rows)) if f.id == "overfitting"]
    assert found.severity == "warning" and found.evidence["best_epoch"] == 5
    assert (found.evidence["val_acc_at_best"], found.evidence["val_acc_last"]) == (
        rows[4]["val_acc"],
        rows[-1]["val_acc"],
    )
    assert "would not raise accuracy" in found.fix and "best.safetensors" not in found.fix
    rows[-1]["val_acc"] = rows[4]["val_acc"] - 0.01  # accuracy below its value at the best loss: go back to it
    (back,) = [f for f in diagnose(History(epochs=rows)) if f.id == "overfitting"]
    assert "best.safetensors" in back.fix and "val_acc_at_best" not in back.evidence


def test_unsteady_val_loss_is_not_overfitting():
    # A warm-up at a high learning rate: validation loss jumps around while training loss barely moves.
    val = [0.71, 0.70, 0.64, 0.98, 0.75, 0.90, 0.85]
    rows = [{"epoch": e + 1, "train_loss": 0.685 - 0.0005 * e, "val_loss": v} for e, v in enumerate(val)]
    assert "overfitting" not in diagnosed(History(epochs=rows))
    for e, r in enumerate(rows):
        r["train_loss"] = 0.685 - 0.05 * e  # a falling training loss, but the validation loss only jitters
    assert "overfitting" not in diagnosed(History(epochs=rows))
    for e, r in enumerate(rows[3:], start=1):
        r["val_loss"] = 0.64 + 0.06 * e  # the same rise, steady: a trend
    (found,) = [f for f in diagnose(History(epochs=rows)) if f.id == "overfitting"]
    assert found.evidence["best_epoch"] == 3


def test_overfitting_from_accuracy_gap():
    rows = healthy_epochs(4)
    for r in rows[-3:]:
        r.update(train_acc=0.99, val_acc=0.70, train_n=2000)
    (gap,) = [f for f in diagnose(History(epochs=rows, val_n=1000)) if f.id == "overfitting"]
    assert gap.severity == "info" and gap.evidence["val_loss_rising"] is False  # val loss still at its lowest
    rows[-1]["val_loss"] = rows[0]["val_loss"] + 0.1
    (worse,) = [f for f in diagnose(History(epochs=rows, val_n=1000)) if f.id == "overfitting"]
    assert worse.severity == "warning" and worse.evidence["val_loss_rising"] is True
    for i in (-3, -2, -1):  # a gap missing from any of the last three epochs: validation dips, no finding
        rows[i].update(train_acc=0.72)
        assert "overfitting" not in diagnosed(History(epochs=rows, val_n=1000))
        rows[i].update(train_acc=0.99)
    jumpy = healthy_epochs(6)
    for r, acc in zip(jumpy[-5:], (0.85, 0.55, 0.80, 0.60, 0.75)):  # a gap in each epoch, but val acc jumps more
        r.update(train_acc=0.99, val_acc=acc, train_n=2000)
    assert "overfitting" not in diagnosed(History(epochs=jumpy, val_n=1000))
    for r in jumpy[-5:]:
        r.update(val_acc=0.75)  # the same last epoch, steady: a gap
    assert "overfitting" in diagnosed(History(epochs=jumpy, val_n=1000))


# --- within-sampling-noise and small-validation-set
def test_within_sampling_noise_for_batches():
    rng = np.random.default_rng(0)
    noisy = [{"step": i + 1, "loss": 0.5, "batch_acc": rng.binomial(20, 0.7) / 20} for i in range(200)]
    assert "within-sampling-noise" in diagnosed(History(steps=noisy, batch_size=20))
    wild = [{"step": i + 1, "loss": 0.5, "batch_acc": float(i % 2)} for i in range(200)]
    assert "within-sampling-noise" not in diagnosed(History(steps=wild, batch_size=20))


def test_small_validation_set():
    rows = healthy_epochs()
    assert "small-validation-set" in diagnosed(History(epochs=rows, val_n=1000))
    assert "small-validation-set" not in diagnosed(History(epochs=rows, val_n=20000))


# --- formats
def test_lightning_csvlogger_sparse_rows(tmp_path):
    text = """lr-Adam,epoch,step,train_loss_step,train_acc_step,val_loss,val_acc,train_loss_epoch,train_acc_epoch
0.001,0,49,0.69,0.5,,,,
0.001,0,99,0.66,0.6,,,,
,0,124,,,0.65,0.62,,
,0,124,,,,,0.67,0.57
0.001,1,149,0.61,0.65,,,,
,1,249,,,0.60,0.68,,
,1,249,,,,,0.60,0.66
"""
    path = tmp_path / "metrics.csv"
    path.write_text(text)
    h = load_history(path)
    assert [r["epoch"] for r in h.epochs] == [0, 1]
    assert h.epochs[1]["val_acc"] == 0.68 and h.epochs[1]["train_loss"] == 0.60
    assert [s["loss"] for s in h.steps] == [0.69, 0.66, 0.61]
    assert h.steps[0]["lr"] == 0.001


def test_jsonl_and_missing_columns(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text("\n".join(json.dumps({"epoch": e, "val_loss": 0.5}) for e in range(3)) + "\n")
    h = load_history(path)
    assert len(h.epochs) == 3
    diagnose(h)  # nothing to say, and no crash
    only_loss = tmp_path / "loss.csv"
    only_loss.write_text("loss\n0.7\n0.6\n0.5\n0.4\n")
    assert [r["train_loss"] for r in load_history(only_loss).epochs] == [0.7, 0.6, 0.5, 0.4]


def test_doctor_cli(tmp_path):
    bad = write_csv(tmp_path / "posted.csv", _argmax_steps(1))
    result = runner.invoke(app, ["doctor", str(bad), "--json", "--batch-size", "20"])
    assert result.exit_code == 1
    findings = json.loads(result.stdout)["findings"]
    assert findings[0]["id"] == "metric-argmax-single-output"
    assert set(findings[0]) == {"id", "severity", "evidence", "message", "fix"}
    good = write_csv(tmp_path / "good.csv", healthy_epochs())
    result = runner.invoke(app, ["doctor", str(good)])
    assert result.exit_code == 0 and "ERROR" not in result.output
    missing = runner.invoke(app, ["doctor", str(tmp_path / "nope.csv")])
    assert missing.exit_code == 2 and "nope.csv" in missing.output
    unknown = tmp_path / "weird.csv"
    unknown.write_text("foo,bar\n1,2\n")
    result = runner.invoke(app, ["doctor", str(unknown)])
    assert result.exit_code == 2 and "no known columns" in result.output
    assert (
        "saw: bar, foo" in result.output and "eval_accuracy" in result.output and len(result.output.splitlines()) == 1
    )


def test_argmax_silent_on_a_real_accuracy_that_rises_from_chance():
    # seen on a real tiny run: validation accuracy 0.5, 0.5, 0.53, 0.83 while the loss fell
    rows = [
        {"epoch": e + 1, "val_loss": loss, "val_acc": acc}
        for e, (loss, acc) in enumerate([(0.70, 0.5), (0.69, 0.5), (0.55, 0.533), (0.40, 0.833)])
    ]
    assert "metric-argmax-single-output" not in diagnosed(History(epochs=rows))


# --- seed-spread: fires only with a seeds.json summary; its numbers are the summary's -------------------
def test_seed_spread_reports_mean_sd_and_where_this_run_lies():
    from binclass.doctor.checks import check_seed_spread

    accs = [0.90, 0.92, 0.94]
    summary = {"seeds": [{"seed": i, "val_acc": a} for i, a in enumerate(accs)]}
    rows = healthy_epochs()
    rows[-1]["val_acc"] = 0.90
    (f,) = check_seed_spread(History(epochs=rows), summary)
    sd = float(np.std(accs, ddof=1))
    assert f.id == "seed-spread" and f.severity == "info"
    assert f.evidence["mean"] == pytest.approx(0.92) and f.evidence["sd"] == pytest.approx(sd)
    assert f.evidence["pair_sd"] == pytest.approx(math.sqrt(2) * sd)
    assert "-1.0 sd from their mean" in f.message
    assert check_seed_spread(History(epochs=rows), {"seeds": summary["seeds"][:1]}) == []


def test_seed_spread_is_silent_without_a_seeds_file(tmp_path):
    from binclass.doctor.diagnosis import doctor

    run = tmp_path / "run"
    run.mkdir()
    write_csv(run / "metrics.csv", healthy_epochs())
    assert "seed-spread" not in {f.id for f in doctor(run)}
    (tmp_path / "seeds.json").write_text(
        json.dumps({"seeds": [{"val_acc": 0.7}, {"val_acc": 0.74}], "std_val_acc": 0.028})
    )
    assert "seed-spread" in {f.id for f in doctor(run)}
    (tmp_path / "seeds.json").write_text("not json")
    assert "seed-spread" not in {f.id for f in doctor(run)}  # a damaged summary is ignored, not a crash


def test_training_doctor_reports_a_finding_again_when_it_becomes_graver(tmp_path):
    from binclass.doctor.diagnosis import EpochDoctor
    from binclass.run.history import METRIC_COLUMNS

    doc = EpochDoctor(tmp_path)  # a fresh run folder: no history yet
    doc.history.counts, doc.history.val_n, doc.history.val_positive_rate = True, 100, 0.5

    def epoch(e, constant):
        tp, fp = (0, 0) if constant else (40, 10)
        row = dict.fromkeys(METRIC_COLUMNS, 1) | {
            "epoch": e,
            "train_loss": 0.6,
            "val_loss": 0.6,
            "val_n": 100,
            "val_acc": 0.5 if constant else 0.8,
            "val_tp": tp,
            "val_fp": fp,
            "val_tn": 50 - fp,
            "val_fn": 50 - tp,
        }
        return [(f.id, f.severity) for f in doc.after_epoch(row, []) if f.id == "constant-predictions"]

    assert epoch(1, False) == [] and epoch(2, False) == [] and epoch(3, False) == []
    assert epoch(4, True) == [("constant-predictions", "warning")]  # one constant epoch after good ones
    assert epoch(5, True) == [("constant-predictions", "error")]  # it lasts: reported again, graver
    assert epoch(6, True) == []  # already reported at this severity


# --- unstable-validation
def test_unstable_validation_fires_on_jumps_beyond_sampling_noise():
    # The first 8 epochs of a from-scratch run at lr 0.1 without a weight average (1000 validation images);
    # the check looks at the last 6.
    accs = [0.590, 0.542, 0.645, 0.565, 0.631, 0.538, 0.468, 0.565]
    rows = [{"epoch": e + 1, "train_loss": 0.68, "val_loss": 0.7, "val_acc": a} for e, a in enumerate(accs)]
    (found,) = [f for f in diagnose(History(epochs=rows, val_n=1000)) if f.id == "unstable-validation"]
    window = np.array(accs[-6:])
    p = window.mean()
    assert found.evidence["noise_limit"] == pytest.approx(3 * math.sqrt(2 * p * (1 - p) / 1000))
    assert found.evidence["epochs"] == [3, 8] and found.evidence["largest_change"] == pytest.approx(0.097)
    assert "unstable-validation" not in diagnosed(History(epochs=rows))  # without the number of images: no noise scale
    steady = [dict(r, val_acc=0.60 + 0.01 * (-1) ** r["epoch"]) for r in rows]  # +-1 point: sampling noise
    assert "unstable-validation" not in diagnosed(History(epochs=steady, val_n=1000))
    rising = [dict(r, val_acc=0.30 + 0.07 * r["epoch"]) for r in rows]  # 7-point steps, but one way only
    assert "unstable-validation" not in diagnosed(History(epochs=rising, val_n=1000))
    assert "unstable-validation" not in diagnosed(History(epochs=healthy_epochs(), val_n=1000))


def _lightning_csv(val_acc, val_loss, train_every=10, steps_per_epoch=25):
    """Lightning CSVLogger's layout: step rows with train_loss every train_every steps, and each epoch's
    validation on a row of its own."""
    rows, step = [], 0
    for epoch, (acc, loss) in enumerate(zip(val_acc, val_loss)):
        for _ in range(steps_per_epoch):
            step += 1
            if step % train_every == 0:
                rows.append(
                    {
                        "epoch": epoch,
                        "step": step - 1,
                        "train_loss": 0.7 - 0.01 * step / 10,
                        "val_acc": "",
                        "val_loss": "",
                    }
                )
        rows.append({"epoch": epoch, "step": step - 1, "train_loss": "", "val_acc": acc, "val_loss": loss})
    return rows


def test_argmax_error_on_five_epochs_exactly_at_the_share(tmp_path):
    """The 5-epoch Lightning run: val_acc exactly 0.5 at every epoch while val_loss fell 0.68 -> 0.59."""
    path = write_csv(tmp_path / "metrics.csv", _lightning_csv([0.5] * 5, [0.68, 0.67, 0.65, 0.62, 0.59]))
    found = doctor(path)
    argmax = [f for f in found if f.id == "metric-argmax-single-output"]
    assert argmax and argmax[0].severity == "error" and argmax[0].evidence["exact"] is True
    assert doctor(path, val_n=200)[0].id == "metric-argmax-single-output"  # 0.5 is a whole number of 200 images


@pytest.mark.parametrize(
    ("val_acc", "val_loss"),
    [
        ([0.5] * 5, [0.70, 0.695, 0.694, 0.693, 0.693]),  # collapsed: no better than a constant
        ([0.5, 0.5], [0.68, 0.59]),  # two epochs are not yet a pattern
        ([0.5, 0.52, 0.5, 0.5, 0.51], [0.68, 0.67, 0.65, 0.62, 0.59]),  # a real accuracy near chance moves
        ([0.5] * 5, [0.60, 0.605, 0.60, 0.60, 0.605]),  # a loss that did not move: no model change seen
        ([0.8] * 5, [0.5, 0.48, 0.46, 0.45, 0.44]),  # exactly constant, but not at a class share
    ],
)
def test_exact_share_stays_silent_without_the_evidence(tmp_path, val_acc, val_loss):
    path = write_csv(tmp_path / "metrics.csv", _lightning_csv(val_acc, val_loss))
    assert "metric-argmax-single-output" not in {f.id for f in doctor(path)}


@pytest.mark.parametrize(("steps_per_epoch", "verdict"), [(8, None), (16, None), (25, "error"), (100, "error")])
def test_one_class_from_the_start_is_a_collapse_only_after_enough_steps(steps_per_epoch, verdict):
    """The seed network on 250 images: one class for its first two epochs of 8 steps, then learning."""
    epochs, steps = [], []
    for r in healthy_epochs(2):
        r.update(val_n=100, val_tn=0, val_fp=50, val_fn=0, val_tp=50, val_acc=0.5)
        epochs.append(r)
        steps += [{"epoch": r["epoch"], "step": i + 1, "loss": 0.69, "batch_acc": 0.5} for i in range(steps_per_epoch)]
    h = History(epochs=epochs, steps=steps, counts=True, val_n=100, val_positive_rate=0.5)
    found = [f.severity for f in diagnose(h) if f.id == "constant-predictions"]
    assert found == ([verdict] if verdict else [])
    three = History(epochs=healthy_epochs(3), counts=True, val_n=100, val_positive_rate=0.5)
    for r in three.epochs:
        r.update(val_n=100, val_tn=0, val_fp=50, val_fn=0, val_tp=50, val_acc=0.5)
    three.steps = [{"epoch": e, "step": i + 1, "loss": 0.69} for e in (1, 2, 3) for i in range(steps_per_epoch)]
    expected = "error" if 3 * steps_per_epoch >= 50 else None
    assert [f.severity for f in diagnose(three) if f.id == "constant-predictions"] == ([expected] if expected else [])
