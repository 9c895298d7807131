"""The label audit's finding: how many training labels look wrong, and the most likely ones."""

from __future__ import annotations

from ..labelaudit import SHOWN, LabelAudit
from .findings import Finding

# cleanlab estimated 0 wrong labels among the shared set's 2000 training images as published, and 85
# (4.3%) with 5% of them flipped: from one in a hundred the audit is a warning, below it context.
WARNING_SHARE = 0.01


def label_findings(audit: LabelAudit, exclude_hint: str = "--exclude FILE") -> list[Finding]:
    if not audit.issues:
        return []
    top = audit.issues[:SHOWN]
    shown = "; ".join(f"{i.path} (labelled {i.given}, {i.prob_given:.2f} for it)" for i in top[:3])
    return [
        Finding(
            "label-issues",
            "warning" if audit.estimated_share >= WARNING_SHARE else "info",
            {
                "flagged": len(audit.issues),
                "audited": audit.n,
                "estimated_wrong": audit.estimated,
                "estimated_share": audit.estimated_share,
                "top": [i.to_dict() for i in top],
            },
            f"{len(audit.issues)} of {audit.n} training images look like the other class to a model that did not "
            f"see them; about {audit.estimated} ({audit.estimated_share:.1%}) of the labels are likely wrong. "
            f"Most likely: {shown}.",
            f"Look at the flagged images (the report's gallery, label_issues.json); list those whose label is "
            f"wrong, one path per line, and train with {exclude_hint} (or fix their labels).",
        )
    ]
