"""The label audit of a data set's training images on frozen backbone features: the run's own (a
pretrained run, after its head) or the packaged EfficientNet-Lite0's (`binclass check --labels-audit`,
from-scratch data). Writes the run's label_issues.json with thumbnails for the report's gallery."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import torch

from ..data.decode import ImageProblem, open_rgb
from ..data.scan import DataLayout
from ..data.sources import make_source
from ..doctor.findings import Finding
from ..doctor.labels import label_findings
from ..engine.infer import extract_features
from ..labelaudit import LabelAudit, audit_labels
from ..models import build_model, normalization
from ..run.files import LABEL_ISSUES_FILE

AUDIT_MODEL = "efficientnet_lite0"  # shipped with the package: the audit needs no download
AUDIT_SIZE = 224  # its own input size
THUMBNAILS = 24  # flagged images shown in the report, most likely wrong first
THUMBNAIL = 128  # pixels, the longer side


def audit_layout(layout: DataLayout, device: torch.device, workers: int = 0) -> LabelAudit:
    """The training images of layout audited on the packaged backbone's features (image and mirror
    image averaged); images that do not decode are left out."""
    model = build_model(AUDIT_MODEL, AUDIT_SIZE, pretrained=True).to(device)
    source, good, _, _ = make_source(layout.train.paths, AUDIT_SIZE, "memory", device, workers)
    mean, std = normalization(AUDIT_MODEL)
    views = [extract_features(model.backbone, source, mean, std, 64, device, flip) for flip in (False, True)]
    features = (sum(views) / len(views)).cpu().numpy()
    labels = [layout.train.labels[i] for i in good]
    return audit_labels(features, labels, [layout.train.paths[i] for i in good], layout.classes)


def audit_features(views: list[torch.Tensor], layout: DataLayout, seed: int = 0) -> LabelAudit:
    """A pretrained run's training features (one tensor per view, in layout.train's order) audited."""
    features = (sum(views) / len(views)).cpu().numpy()
    return audit_labels(features, layout.train.labels, layout.train.paths, layout.classes, seed)


def record_audit(run_dir: Path, audit: LabelAudit, log) -> list[Finding]:
    """label_issues.json (every flagged image, the first THUMBNAILS with a thumbnail), a line in the log,
    and the doctor's finding."""
    record = audit.to_dict()
    for entry in record["issues"][:THUMBNAILS]:
        entry["picture"] = _thumbnail(entry["path"])
    (Path(run_dir) / LABEL_ISSUES_FILE).write_text(json.dumps(record) + "\n")
    log(
        f"labels: {len(audit.issues)} of {audit.n} training images look like the other class out of sample; "
        f"about {audit.estimated} ({audit.estimated_share:.1%}) likely wrong ({LABEL_ISSUES_FILE})"
    )
    found = label_findings(audit)
    for finding in found:
        log(f"doctor: {finding.severity} [{finding.id}] {finding.message}")
    return found


def _thumbnail(path: str) -> str | None:
    try:
        image = open_rgb(Path(path), draft=THUMBNAIL)
    except ImageProblem:
        return None
    image.thumbnail((THUMBNAIL, THUMBNAIL))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=80)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
