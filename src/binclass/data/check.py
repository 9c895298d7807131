"""binclass check: scan a data folder and fully decode every file before any training starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BinclassError
from .decode import ImageProblem
from .scan import DataLayout, Ignored, scan_dataset
from .sources import check_files

CHECK_SIZE = 32  # pixels: decoding fully is what matters, not the output size


@dataclass
class CheckReport:
    layout: DataLayout
    good: int
    problems: list[ImageProblem] = field(default_factory=list)

    @property
    def ignored(self) -> Ignored:
        return self.layout.ignored

    def to_dict(self) -> dict:
        return {
            "classes": self.layout.classes,
            "train": len(self.layout.train),
            "validation": len(self.layout.val),
            "good": self.good,
            "bad": [{"path": str(p.path), "reason": p.kind, "detail": p.detail} for p in self.problems],
            "ignored": {
                "hidden": self.ignored.hidden,
                "not_images": self.ignored.other,
                "links_outside": self.ignored.outside_links,
            },
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
    data_dir: Path, val_split: float = 0.2, seed: int = 0, positive: str | None = None, workers: int = 0
) -> CheckReport:
    layout = scan_dataset(Path(data_dir), val_split, seed, positive)
    paths = layout.train.paths + layout.val.paths
    good, problems = check_files(paths, CHECK_SIZE, workers)
    return CheckReport(layout, len(good), problems)


def render(report: CheckReport) -> str:
    ig = report.ignored
    lines = [
        f"classes: {report.layout.classes[0]!r}=0, {report.layout.classes[1]!r}=1; "
        f"{len(report.layout.train)} train and {len(report.layout.val)} validation files",
        f"{report.good} images decode fully; {len(report.problems)} bad",
        f"ignored: {ig.hidden} hidden, {ig.other} without an image extension, {ig.outside_links} links leading outside",
    ]
    return "\n".join(lines + describe_problems(report.problems))
