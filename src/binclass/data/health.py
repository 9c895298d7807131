"""Data health: exact and near-duplicate images within and across the splits (a perceptual hash from
imagehash, the image's and its mirror image's), the same image under both classes, and class balance.

Near duplicates are found without comparing every pair (then confirmed on colour thumbnails): two 64-bit hashes within NEAR_BITS bits agree
exactly on at least one of NEAR_BITS + 1 disjoint bands of bits (pigeonhole), so only images sharing a
band's value are compared. Exact duplicates are near duplicates at distance 0 whose decoded pixels are
equal."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import BinclassError
from ..progressbar import Progress, counted
from .containers import content_digest, member_bytes
from .decode import ImageProblem, decode_image, decoded_picture, open_rgb, resized
from .scan import DataLayout

# Hamming distance (of 64 bits) up to which two images count as near duplicates. On cats_and_dogs_filtered
# a copy re-encoded at JPEG quality 30 or resized to half lies 0-2 bits from its original (40 of 40) and a
# mirrored copy 0 bits from the original's mirror hash; distinct images are 12 bits or more apart from
# their nearest neighbour (8 through a mirror image, one image of 3000). Copies cropped by 5% a side lie
# 4-18 bits away: a perceptual hash does not find crops reliably.
NEAR_BITS = 6
# A perceptual hash sees luminance structure only: simple drawings of one shape in different colours share
# it. A near pair is kept when the two pictures' 16 x 16 colour thumbnails also agree, to within this mean
# absolute difference (of 255): the 41 pairs above differ by 0.1-1.7, the generated shapes of the tests that
# share a hash by 18 or more.
CONFIRM_DIFFERENCE = 6.0
THUMB = 16
# A majority class above this share gets a word on what it does to accuracy (`check`, every `train`): at
# 60/40 a model that always answers the majority already scores 0.60.
IMBALANCED = 0.6
# A validation image with a copy in training is a leak; as a share of the validation set, above this it
# moves the accuracy by more than the ~3-point 95% interval of 1000 validation images, and is an error.
LEAK_ERROR_SHARE = 0.03


def _need_imagehash():
    try:
        import imagehash
    except ImportError:
        raise BinclassError("duplicate search needs the imagehash package: pip install 'binclass[health]'") from None
    return imagehash


def _bits(h) -> int:
    return int("".join("1" if b else "0" for b in h.hash.flatten()), 2)


PHASH_INPUT = 32  # imagehash.phash's input side: hash_size 8 x highfreq_factor 4
HASH_VERSION = 1  # bump when the hashes of a picture change (decoding, hash size)


def image_hashes(
    paths: list[Path], workers: int = 2, cache_dir: Path | None = None, progress: Progress | None = None
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(phash, phash of the mirror image) as uint64 per path, and the indices that could not be read
    (their hashes are 0 and they are left out of every pair). cache_dir: hashes kept under
    cache_dir/hashes by a hash of the file's bytes, so a second search decodes nothing it saw before."""
    _need_imagehash()

    def computed(path: Path) -> tuple[int, int] | None:
        rgb = _rgb(path)
        return None if rgb is None else picture_hashes(rgb)

    def one(path: Path) -> tuple[int, int] | None:
        if cache_dir is None:
            return computed(path)
        try:
            digest = content_digest(path)
        except (OSError, KeyError, ValueError):
            return None  # unreadable: a bad file, left out of every pair
        result = cached_hashes(cache_dir, digest)
        if result is None:
            result = computed(path)
            if result is not None:
                store_hashes(cache_dir, digest, result)
        return result

    tick = counted(len(paths), progress)

    def one_counted(path: Path) -> tuple[int, int] | None:
        result = one(path)
        tick()
        return result

    with ThreadPoolExecutor(max(1, workers)) as pool:
        results = list(pool.map(one_counted, paths))
    bad = [i for i, r in enumerate(results) if r is None]
    pairs = [r or (0, 0) for r in results]
    return (
        np.array([a for a, _ in pairs], dtype=np.uint64),
        np.array([b for _, b in pairs], dtype=np.uint64),
        bad,
    )


def picture_hashes(rgb) -> tuple[int, int]:
    """(phash, phash of the mirror image) of a picture decoded at its own size. phash's own first step
    (grey, LANCZOS to 32 x 32) is done once: the mirror image's hash comes from the mirrored 32 x 32
    picture, the same 64 bits as from the mirrored photo (all 4000 hashes of 2000 photos of the shared set)
    at half the cost."""
    imagehash = _need_imagehash()
    from PIL import Image, ImageOps

    small = rgb.convert("L").resize((PHASH_INPUT, PHASH_INPUT), Image.Resampling.LANCZOS)
    return _bits(imagehash.phash(small)), _bits(imagehash.phash(ImageOps.mirror(small)))


def _hash_entry(cache_dir: Path, digest: str) -> Path:
    return cache_dir / "hashes" / digest[:2] / f"{digest}.v{HASH_VERSION}"


def cached_hashes(cache_dir: Path, digest: str) -> tuple[int, int] | None:
    """The hashes kept for the file whose bytes hash to digest; None when absent or damaged."""
    try:
        text = _hash_entry(cache_dir, digest).read_text().split()
        return (int(text[0], 16), int(text[1], 16)) if len(text) == 2 else None
    except (OSError, ValueError):
        return None


def store_hashes(cache_dir: Path, digest: str, hashes: tuple[int, int]) -> None:
    _store_text(_hash_entry(cache_dir, digest), f"{hashes[0]:016x} {hashes[1]:016x}")


def hashing_decoder(size: int, cache_dir: Path) -> Callable[[Path], np.ndarray]:
    """decode_image(path, size) that also keeps the duplicate search's hashes of the picture in cache_dir
    when it was decoded at its own size (JPEG's draft mode reduces only pictures over twice the size a
    side; those are hashed by the search from a decode of their own), so the search decodes nothing again."""
    imagehash_found = True
    try:
        _need_imagehash()
    except BinclassError:
        imagehash_found = False

    def decode(path: Path) -> np.ndarray:
        try:
            data = member_bytes(path)
            if data is None:
                data = Path(path).read_bytes()
        except (OSError, KeyError, ValueError):
            return decode_image(path, size)  # the decoder names the problem
        rgb, full = decoded_picture(data, Path(path), size)
        if full and imagehash_found:
            try:
                digest = content_digest(path, data)
            except OSError:  # gone since it was read: the search will say so
                return resized(rgb, size)
            if cached_hashes(cache_dir, digest) is None:
                store_hashes(cache_dir, digest, picture_hashes(rgb))
        return resized(rgb, size)

    return decode


def _store_text(entry: Path, text: str) -> None:
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = entry.with_name(f"{entry.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, entry)
    except OSError:
        pass  # a read-only or full cache folder costs the next search a decode, not this one


def _bands(max_bits: int) -> list[tuple[int, int]]:
    """max_bits + 1 disjoint bit ranges covering the 64 bits."""
    count = max_bits + 1
    edges = np.linspace(0, 64, count + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def near_pairs(hashes: np.ndarray, mirrors: np.ndarray, max_bits: int = NEAR_BITS, skip: Iterable[int] = ()) -> dict:
    """{(i, j): (distance, through_mirror)} for i < j within max_bits, through the mirror hash when
    that is closer."""
    skip = set(skip)
    n = len(hashes)
    keep = np.array([i not in skip for i in range(n)], dtype=bool)
    both = np.concatenate([hashes, mirrors])  # index k < n: image k; k >= n: mirror of image k - n
    owner = np.concatenate([np.arange(n), np.arange(n)])
    valid = np.concatenate([keep, keep])
    found: dict[tuple[int, int], tuple[int, bool]] = {}
    for low, high in _bands(max_bits):
        mask = np.uint64(((1 << (high - low)) - 1) << low)
        keys = (both & mask) >> np.uint64(low)
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
        ends = np.r_[starts[1:], len(order)]
        for s, e in zip(starts, ends):
            if e - s < 2:
                continue
            members = order[s:e]
            members = members[valid[members]]
            originals = members[members < n]
            if len(originals) == 0:
                continue
            # every pair with at least one original side: image-image, and image-mirror (a mirrored copy)
            a, b = np.meshgrid(originals, members, indexing="ij")
            a, b = a.ravel(), b.ravel()
            pick = owner[a] != owner[b]
            a, b = a[pick], b[pick]
            if len(a) == 0:
                continue
            d = np.bitwise_count(both[a] ^ both[b])
            close = d <= max_bits
            for x, y, dist, mirrored in zip(owner[a][close], owner[b][close], d[close], (b >= n)[close]):
                key = (int(min(x, y)), int(max(x, y)))
                if key not in found or (dist, mirrored) < found[key]:
                    found[key] = (int(dist), bool(mirrored))
    return found


def _rgb(path: Path):
    """The picture as training decodes it (data.decode.open_rgb), at its own size; None when unreadable."""
    try:
        return open_rgb(path)
    except ImageProblem:
        return None


@dataclass(frozen=True)
class _Look:
    """What a near pair is confirmed with, from one decode of each picture."""

    thumbnail: np.ndarray  # THUMB x THUMB x 3 float32
    mirrored: np.ndarray  # the same of the mirror image
    digest: str  # of the decoded pixels and size


def _look(path: Path) -> _Look | None:
    from PIL import Image, ImageOps

    rgb = _rgb(path)
    if rgb is None:
        return None
    small = rgb.resize((THUMB, THUMB), Image.BOX)
    return _Look(
        np.asarray(small, dtype=np.float32),
        np.asarray(ImageOps.mirror(rgb).resize((THUMB, THUMB), Image.BOX), dtype=np.float32),
        hashlib.blake2b(rgb.tobytes() + str(rgb.size).encode(), digest_size=16).hexdigest(),
    )


@dataclass
class Pair:
    first: str  # path of the first image (in scan order: training before validation)
    second: str
    first_split: str
    second_split: str
    first_label: str
    second_label: str
    distance: int  # bits of 64
    mirrored: bool
    exact: bool  # the same decoded pixels
    colour_difference: float  # of the 16 x 16 thumbnails, of 255
    method: str = "hash"  # "hash": perceptual hash; "features": a pretrained backbone's features
    similarity: float | None = None  # cosine of the features (method "features")

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Health:
    pairs: list[Pair] = field(default_factory=list)
    counts: dict = field(default_factory=dict)  # split -> {class: images}
    unreadable: int = 0

    def across(self) -> list[Pair]:
        return [p for p in self.pairs if p.first_split != p.second_split]

    def within(self, split: str) -> list[Pair]:
        return [p for p in self.pairs if p.first_split == p.second_split == split]

    def conflicting(self) -> list[Pair]:
        return [p for p in self.pairs if p.first_label != p.second_label]

    def leaked_validation(self) -> list[str]:
        """Validation images with a (near) copy in training."""
        out = set()
        for p in self.across():
            out.add(p.first if p.first_split == "validation" else p.second)
        return sorted(out)


def check_health(
    layout: DataLayout,
    workers: int = 2,
    max_bits: int = NEAR_BITS,
    cache_dir: Path | None = None,
    progress: Progress | None = None,
) -> Health:
    splits = [("train", layout.train), ("validation", layout.val)]
    paths = [p for _, s in splits for p in s.paths]
    split_of = [name for name, s in splits for _ in s.paths]
    label_of = [layout.classes[y] for _, s in splits for y in s.labels]
    hashes, mirrors, bad = image_hashes(paths, workers, cache_dir, progress)
    found = near_pairs(hashes, mirrors, max_bits, bad)
    looks: dict[int, _Look | None] = {}  # each picture of a pair decoded once, however many pairs it is in

    def look(k: int) -> _Look | None:
        if k not in looks:
            looks[k] = _look(paths[k])
        return looks[k]

    pairs = []
    for (i, j), (dist, mirrored) in sorted(found.items()):
        a, b = look(i), look(j)
        if a is None or b is None:
            continue
        difference = float(np.abs(a.thumbnail - (b.mirrored if mirrored else b.thumbnail)).mean())
        if difference > CONFIRM_DIFFERENCE:
            continue
        exact = dist == 0 and not mirrored and a.digest == b.digest
        pairs.append(
            Pair(
                str(paths[i]), str(paths[j]), split_of[i], split_of[j], label_of[i], label_of[j], dist, mirrored,
                exact, round(difference, 2),
            )
        )  # fmt: skip
    counts = {
        name: {c: int(sum(1 for y in s.labels if layout.classes[y] == c)) for c in layout.classes} for name, s in splits
    }
    return Health(pairs, counts, len(bad))


# Cosine similarity of a pretrained backbone's pooled features (EfficientNet-Lite0, the default) above
# which a training and a validation image count as the same picture. On cats_and_dogs_filtered the 40
# planted copies scored 0.905-1.0, copies cropped by 5% a side 0.911-0.970 (by 10%: 0.81-0.93), and no two
# distinct photos of the 2 million train-validation pairs more than 0.90: 0.95 keeps a margin from the
# distinct and finds about half of the 5% crops, which the hash misses.
FEATURE_SIMILARITY = 0.95


def feature_pairs(
    layout: DataLayout,
    train: np.ndarray,
    train_mirror: np.ndarray | None,
    val: np.ndarray,
    limit: float = FEATURE_SIMILARITY,
) -> list[Pair]:
    """Train-validation pairs whose features (rows in layout order) are at least `limit` alike, the
    training image or its mirror image."""

    def unit(x: np.ndarray) -> np.ndarray:
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    t, v = unit(np.asarray(train, dtype=np.float32)), unit(np.asarray(val, dtype=np.float32))
    m = unit(np.asarray(train_mirror, dtype=np.float32)) if train_mirror is not None else None
    pairs = []
    for start in range(0, len(v), 1024):  # val rows in blocks: memory stays at 1024 x train
        block = v[start : start + 1024]
        plain = block @ t.T
        mirrored = block @ m.T if m is not None else np.full_like(plain, -1.0)
        best = np.maximum(plain, mirrored)
        for i, j in zip(*np.nonzero(best >= limit)):
            vi = start + int(i)
            pairs.append(
                Pair(
                    str(layout.train.paths[j]), str(layout.val.paths[vi]), "train", "validation",
                    layout.classes[layout.train.labels[j]], layout.classes[layout.val.labels[vi]],
                    -1, bool(mirrored[i, j] > plain[i, j]), False, float("nan"), "features",
                    round(float(best[i, j]), 4),
                )
            )  # fmt: skip
    return pairs


def with_feature_pairs(health: Health, extra: list[Pair]) -> Health:
    """health with the feature pairs that the hash did not already find."""
    known = {frozenset((p.first, p.second)) for p in health.pairs}
    new = [p for p in extra if frozenset((p.first, p.second)) not in known]
    return Health(health.pairs + new, health.counts, health.unreadable)


def majority_share(counts: dict) -> float:
    total = sum(counts.values())
    return max(counts.values()) / total if total else 0.0


def imbalance_advice(counts: dict) -> str | None:
    """What a class share above IMBALANCED does to accuracy, and what to do; None when balanced enough."""
    share = majority_share(counts) if counts else 0.0
    if share <= IMBALANCED:
        return None
    major = max(counts, key=counts.get)
    return (
        f"always answering {major!r} scores {share:.2f}; judge the model by balanced accuracy and AUC, "
        "and weigh the classes in the loss (--pos-weight auto)"
    )
