"""A finding: {id, severity, evidence, message, fix} (+ path, line for lint, and cell for a notebook's:
line is then within the cell). The ids are an API."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

SEVERITIES = ("error", "warning", "info")


@dataclass
class Finding:
    id: str
    severity: str  # error: a reported number is wrong or the model is broken; warning: likely problem; info: context
    evidence: dict
    message: str
    fix: str
    path: str | None = None
    line: int | None = None
    cell: int | None = None  # a notebook's cell, 1-based from the top, markdown cells counted
    extra: dict = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("extra")
        if self.path is None:
            d.pop("path")
            d.pop("line")
        if self.cell is None:
            d.pop("cell")
        d["evidence"] = {k: _clean(v) for k, v in self.evidence.items()}
        return d


def _clean(v: object) -> object:
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        return round(v, 6)
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return v


def sort_findings(findings: list[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (SEVERITIES.index(f.severity), f.path or "", f.cell or 0, f.line or 0))


def to_json(findings: list[Finding], **extra: object) -> str:
    return json.dumps({**extra, "findings": [f.to_dict() for f in sort_findings(findings)]}, indent=2)


def render_text(findings: list[Finding]) -> str:
    if not findings:
        return "no findings: nothing in this history looks wrong."
    out = []
    for f in sort_findings(findings):
        where = f"{f.path}:{f.line}: " if f.path else ""
        if f.path and f.cell is not None:
            where = f"{f.path}:cell {f.cell}:{f.line}: "
        evidence = ", ".join(f"{k}={_fmt(v)}" for k, v in f.evidence.items())
        out.append(f"{where}{f.severity.upper()} [{f.id}] {f.message}\n    evidence: {evidence}\n    fix: {f.fix}")
    return "\n".join(out)


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)
