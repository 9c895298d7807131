"""binclass check: scan a data folder and fully decode every file before any training starts."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BinclassError
from ..labelaudit import LabelAudit
from .decode import PROBLEM_KINDS, ImageProblem
from .forms import DataSpec, read_data
from .health import Health, check_health, imbalance_advice, majority_share
from .scan import DataLayout, Ignored
from .sources import check_files

CHECK_SIZE = 32  # pixels: decoding fully is what matters, not the output size


@dataclass
class CheckReport:
    layout: DataLayout
    good: int
    problems: list[ImageProblem] = field(default_factory=list)
    health: Health | None = None
    health_skipped: str | None = None  # why duplicates were not searched
    audit: LabelAudit | None = None  # --labels-audit: training labels that look wrong

    @property
    def ignored(self) -> Ignored:
        return self.layout.ignored

    def bad_by_kind(self) -> dict[str, int]:
        """How many bad images of each kind (truncated, not an image, ...), in PROBLEM_KINDS' order."""
        counts = Counter(p.kind for p in self.problems)
        return {kind: counts[kind] for kind in PROBLEM_KINDS if counts[kind]}

    def to_dict(self) -> dict:
        return {
            "form": self.layout.form,
            "classes": self.layout.classes,
            "train": len(self.layout.train),
            "validation": len(self.layout.val),
            "good": self.good,
            "bad": [{"path": str(p.path), "reason": p.kind, "detail": p.detail} for p in self.problems],
            "bad_by_kind": self.bad_by_kind(),
            "ignored": {
                "hidden": self.ignored.hidden,
                "not_images": self.ignored.other,
                "links_outside": self.ignored.outside_links,
            },
            "health": health_dict(self.health) if self.health else {"skipped": self.health_skipped},
            **({"label_audit": self.audit.to_dict()} if self.audit is not None else {}),
        }


def health_dict(h: Health) -> dict:
    return {
        "counts": h.counts,
        "majority_share": {split: majority_share(c) for split, c in h.counts.items()},
        "pairs_across": [p.to_dict() for p in h.across()],
        "pairs_within_train": [p.to_dict() for p in h.within("train")],
        "pairs_within_validation": [p.to_dict() for p in h.within("validation")],
        "conflicting_labels": [p.to_dict() for p in h.conflicting()],
        "leaked_validation_images": len(h.leaked_validation()),
    }


def describe_problems(problems: list[ImageProblem], limit: int = 20) -> list[str]:
    lines = [f"  {p.path}: {p.kind} ({p.detail})" for p in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"  ... and {len(problems) - limit} more (binclass check DATA_DIR --json lists all)")
    return lines


def strict_error(problems: list[ImageProblem]) -> BinclassError:
    names = "; ".join(f"{p.path} ({p.kind})" for p in problems[:5])
    more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
    return BinclassError(f"{len(problems)} bad image file(s) (--strict): {names}{more}; remove or replace them")


def check_dataset(
    data_dir: Path,
    val_split: float = 0.2,
    seed: int = 0,
    positive: str | None = None,
    workers: int = 0,
    duplicates: bool = True,
    spec: DataSpec | None = None,
) -> CheckReport:
    layout = read_data(Path(data_dir), spec, val_split, seed, positive)
    paths = layout.train.paths + layout.val.paths
    good, problems = check_files(paths, CHECK_SIZE, workers)
    report = CheckReport(layout, len(good), problems)
    if not duplicates:
        report.health_skipped = "--no-duplicates"
        return report
    try:
        report.health = check_health(layout, workers or 2)
    except BinclassError as exc:  # imagehash missing: the rest of the check stands
        report.health_skipped = str(exc)
    return report


def render_health(h: Health, limit: int = 20) -> list[str]:
    across, conflicting = h.across(), h.conflicting()
    lines = [
        f"duplicates (same or near-same picture; mirrored copies included): {len(across)} pairs across train and "
        f"validation ({len(h.leaked_validation())} validation images with a copy in training), "
        f"{len(h.within('train'))} within train, {len(h.within('validation'))} within validation; "
        f"{len(conflicting)} under both classes"
    ]
    shown = sorted(h.pairs, key=lambda p: (p.first_split == p.second_split, p.first_label == p.second_label))
    for p in shown[:limit]:
        how = "same pixels" if p.exact else f"{p.distance} bits apart" + (", mirrored" if p.mirrored else "")
        clash = f" (labelled {p.first_label} and {p.second_label})" if p.first_label != p.second_label else ""
        lines.append(f"  {p.first} ~ {p.second}: {how}{clash}")
    if len(shown) > limit:
        lines.append(f"  ... and {len(shown) - limit} more (binclass check DATA_DIR --json lists all)")
    for split, counts in h.counts.items():
        share = majority_share(counts)
        line = f"{split}: " + ", ".join(f"{c} {n}" for c, n in counts.items()) + f" (majority {share:.0%})"
        advice = imbalance_advice(counts)
        if advice:
            line += f": {advice}"
        lines.append(line)
    return lines


def render(report: CheckReport) -> str:
    ig = report.ignored
    lines = [
        f"data: read as {report.layout.form}",
        f"classes: {report.layout.classes[0]!r}=0, {report.layout.classes[1]!r}=1; "
        f"{len(report.layout.train)} train and {len(report.layout.val)} validation files",
        f"{report.good} images decode fully; {len(report.problems)} bad"
        + "".join(f", {n} {kind}" for kind, n in report.bad_by_kind().items()),
        f"ignored: {ig.hidden} hidden, {ig.other} without an image extension, {ig.outside_links} links leading outside",
    ]
    if report.health is not None:
        lines += render_health(report.health)
    else:
        lines.append(f"duplicates: not searched ({report.health_skipped})")
    if report.audit is not None:
        lines += render_audit(report.audit)
    return "\n".join(lines + describe_problems(report.problems))


def render_audit(audit: LabelAudit, limit: int = 20) -> list[str]:
    lines = [
        f"labels: {len(audit.issues)} of {audit.n} training images look like the other class to a model that did "
        f"not see them; about {audit.estimated} ({audit.estimated_share:.1%}) likely wrong"
    ]
    lines += [
        f"  {i.rank:>4}. {i.path}: labelled {i.given}, p={1 - i.prob_given:.3f} {i.suggested}"
        for i in audit.issues[:limit]
    ]
    if len(audit.issues) > limit:
        lines.append(f"  ... {len(audit.issues) - limit} more in --json")
    return lines
