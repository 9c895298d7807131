"""Duplicate pictures within and across the splits: the banded search against every pair, copies of
generated images found by `binclass check`, and the leakage finding of a run."""

import json

import numpy as np
import pytest
from PIL import Image, ImageOps
from typer.testing import CliRunner

from binclass.cli import app
from binclass.data.health import NEAR_BITS, check_health, near_pairs
from binclass.data.scan import scan_dataset

pytest.importorskip("imagehash")
runner = CliRunner()


def _brute(h, m, k):
    out = {}
    pop = lambda x: bin(int(x)).count("1")  # noqa: E731
    for i in range(len(h)):
        for j in range(i + 1, len(h)):
            plain = pop(h[i] ^ h[j])
            mirrored = min(pop(h[i] ^ m[j]), pop(m[i] ^ h[j]))
            best = min((plain, False), (mirrored, True))
            if best[0] <= k:
                out[(i, j)] = best
    return out


@pytest.mark.parametrize("seed", range(3))
def test_banded_search_finds_exactly_the_pairs_every_comparison_finds(seed):
    rng = np.random.default_rng(seed)
    n = 400
    h = rng.integers(0, 2**63, n, dtype=np.uint64) * np.uint64(2) + rng.integers(0, 2, n, dtype=np.uint64)
    m = rng.integers(0, 2**63, n, dtype=np.uint64) * np.uint64(2)
    for i in range(40):  # near copies: flip 0..8 bits of another image's hash or of its mirror hash
        src, dst = rng.integers(0, n, 2)
        flips = rng.choice(64, size=i % 9, replace=False)
        base = m[src] if i % 3 == 0 else h[src]
        h[dst] = base ^ np.uint64(sum(1 << int(f) for f in flips))
    found = near_pairs(h, m, NEAR_BITS)
    expected = _brute(h, m, NEAR_BITS)
    assert {k: v[0] for k, v in found.items()} == {k: v[0] for k, v in expected.items()}
    assert len(expected) >= 15  # the planted ones within reach


def _copy(src, dst, how):
    with Image.open(src) as im:
        rgb = im.convert("RGB")
    if how == "mirror":
        rgb = ImageOps.mirror(rgb)
    elif how == "resize":
        rgb = rgb.resize((rgb.width * 3 // 2, rgb.height * 3 // 2))
    rgb.save(dst)


@pytest.fixture
def leaky(tmp_path):
    from binclass.synth import make_dataset

    root = make_dataset(tmp_path / "leaky", n_train=40, n_val=15, size=40, seed=3, easy=False)
    classes = sorted(p.name for p in (root / "validation").iterdir())
    val = sorted((root / "validation" / classes[0]).iterdir())
    planted = {}
    for i, how in enumerate(("same", "mirror", "resize")):
        dst = root / "train" / classes[0] / f"copy-{i}.png"
        _copy(val[i], dst, how)
        planted[str(val[i])] = how
    _copy(val[3], root / "train" / classes[1] / "wrong-class.png", "same")  # under the other class
    return root, planted, str(val[3])


def test_check_finds_copies_across_the_splits_and_under_both_classes(leaky):
    root, planted, wrong = leaky
    health = check_health(scan_dataset(root))
    leaked = set(health.leaked_validation())
    assert set(planted) | {wrong} <= leaked
    assert [p for p in health.conflicting() if wrong in (p.first, p.second)]
    same = next(p for p in health.across() if list(planted)[0] in (p.first, p.second))
    assert same.exact and same.distance == 0
    mirrored = next(p for p in health.across() if list(planted)[1] in (p.first, p.second))
    assert mirrored.mirrored
    result = runner.invoke(app, ["check", str(root), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)["health"]
    assert report["leaked_validation_images"] == len(leaked) and report["conflicting_labels"]
    text = runner.invoke(app, ["check", str(root)]).output
    assert "pairs across train and validation" in text and "labelled" in text


def test_a_run_reports_leakage_with_and_without_the_leaked_images(leaky, tmp_path):
    from binclass.api import train

    root, _, _ = leaky
    run = train(root, out=tmp_path / "run", model="seed", epochs=2, image_size=32)
    found = {f["id"]: f for f in json.loads((run.path / "diagnosis.json").read_text())["findings"]}
    leak = found["validation-leakage"]
    assert leak["severity"] == "error"  # 4 of 30 validation images: far above 3%
    rows = [line.split(",") for line in (run.path / "val_predictions.csv").read_text().splitlines()[1:]]
    correct = {r[0]: r[1] == r[3] for r in rows}
    leaked = set(check_health(scan_dataset(root)).leaked_validation())
    kept = [v for k, v in correct.items() if k not in leaked]
    assert leak["evidence"]["val_acc_without_leaked"] == pytest.approx(sum(kept) / len(kept))
    assert leak["evidence"]["val_acc"] == pytest.approx(sum(correct.values()) / len(correct))
    assert "conflicting-labels" in found
    assert "validation-leakage" in (run.path / "report.html").read_text()
    again = runner.invoke(app, ["doctor", str(run.path), "--json"])  # reading the run again keeps them
    assert {"validation-leakage", "conflicting-labels"} <= {f["id"] for f in json.loads(again.stdout)["findings"]}
    kept = {f["id"] for f in json.loads((run.path / "diagnosis.json").read_text())["findings"]}
    assert {"validation-leakage", "conflicting-labels"} <= kept


def test_feature_pairs_find_alike_features_and_join_the_hash_pairs(leaky):
    from binclass.data.health import FEATURE_SIMILARITY, feature_pairs, with_feature_pairs

    root, planted, _ = leaky
    layout = scan_dataset(root)
    rng = np.random.default_rng(0)
    train = rng.normal(size=(len(layout.train), 64)).astype(np.float32)
    val = rng.normal(size=(len(layout.val), 64)).astype(np.float32)
    val[5] = train[7] + 0.05 * rng.normal(size=64)  # a validation image whose features match a training one
    mirror = rng.normal(size=train.shape).astype(np.float32)
    val[6] = mirror[9]  # ... and one matching a training image's mirror image
    pairs = feature_pairs(layout, train, mirror, val)
    assert {(p.first, p.second) for p in pairs} == {
        (str(layout.train.paths[7]), str(layout.val.paths[5])),
        (str(layout.train.paths[9]), str(layout.val.paths[6])),
    }
    assert all(p.similarity >= FEATURE_SIMILARITY and p.method == "features" for p in pairs)
    assert [p.mirrored for p in sorted(pairs, key=lambda p: p.second)] == [False, True]
    health = check_health(layout)
    joined = with_feature_pairs(health, pairs + [health.across()[0]])
    assert len(joined.pairs) == len(health.pairs) + 2  # a pair the hash found already is not counted twice
    assert len(joined.leaked_validation()) == len(health.leaked_validation()) + 2


def test_check_says_what_an_imbalance_does_to_accuracy(tmp_path):
    from binclass.synth import make_dataset

    root = make_dataset(tmp_path / "imb", n_train=40, n_val=15, size=40, seed=4, easy=True)
    first = sorted((root / "train").iterdir())[0]
    for path in sorted(first.iterdir())[:30]:  # 10 of one class against 40 of the other: majority 80%
        path.unlink()
    report = json.loads(runner.invoke(app, ["check", str(root), "--json"]).stdout)["health"]
    assert report["majority_share"]["train"] == pytest.approx(0.8)
    text = runner.invoke(app, ["check", str(root)]).output
    assert "(majority 80%): always answering" in text and "scores 0.80" in text and "--pos-weight auto" in text
    assert "validation: " in text and "(majority 50%)" in text and "(majority 50%):" not in text
    from binclass.api import train

    run = train(root, out=tmp_path / "run", model="seed", epochs=1, image_size=32)
    log = (run.path / "train.log").read_text()
    assert "imbalance: training has" in log and "(80% one class)" in log


def test_decoding_keeps_the_hashes_the_search_would_compute(tmp_path, tiny_data):
    from binclass.data.decode import decode_image
    from binclass.data.health import hashing_decoder, image_hashes

    paths = sorted((tiny_data / "train").rglob("*.png"))[:6]
    big = tmp_path / "big.jpg"  # JPEG's draft mode decodes it at an eighth of its size for 24 px
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)).save(big, quality=90)
    paths.append(big)
    decode = hashing_decoder(24, tmp_path / "cache")
    for path in paths:
        assert np.array_equal(decode(path), decode_image(path, 24))  # the pixels training gets, unchanged
    assert len(list((tmp_path / "cache" / "hashes").rglob("*.v1"))) == 6  # not the reduced JPEG's
    kept, kept_mirror, _ = image_hashes(paths, 2, tmp_path / "cache")
    own, own_mirror, _ = image_hashes(paths, 2, None)
    assert (kept == own).all() and (kept_mirror == own_mirror).all()
    (tmp_path / "cache" / "hashes").rename(tmp_path / "gone")  # a search without them decodes every picture
    again, _, _ = image_hashes(paths, 2, tmp_path / "cache")
    assert (again == own).all() and len(list((tmp_path / "cache" / "hashes").rglob("*.v1"))) == 7
