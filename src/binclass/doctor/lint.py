"""Static checks of a user's PyTorch training script (read with ast, never run) for the bugs that
make a reported number wrong. Precision first: a correct script must get no error."""

from __future__ import annotations

import ast
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BinclassError
from .findings import Finding

NN = "torch.nn"
EPOCH_SCHEDULERS = {"StepLR", "MultiStepLR", "ExponentialLR", "ReduceLROnPlateau", "CosineAnnealingLR", "PolynomialLR"}
LOSS_KINDS = {
    f"{NN}.BCELoss": "bce",
    f"{NN}.functional.binary_cross_entropy": "bce",
    f"{NN}.BCEWithLogitsLoss": "bce_logits",
    f"{NN}.functional.binary_cross_entropy_with_logits": "bce_logits",
    f"{NN}.CrossEntropyLoss": "multiclass",
    f"{NN}.NLLLoss": "multiclass",
    f"{NN}.functional.cross_entropy": "multiclass",
    f"{NN}.functional.nll_loss": "multiclass",
}
SIGMOIDS = {"torch.sigmoid", f"{NN}.functional.sigmoid", f"{NN}.Sigmoid", "torch.special.expit"}
NO_GRAD = {"torch.no_grad", "torch.inference_mode", "torch.set_grad_enabled", "torch.autograd.no_grad"}
VAL_WORDS = ("val", "valid", "test", "eval", "dev")


FLATTENING = ("squeeze", "view", "flatten", "reshape", "ravel")


def _calls(node: ast.AST, methods: tuple[str, ...]) -> bool:
    """node calls or names one of these methods somewhere (x.squeeze(1), y.view(-1), ...)."""
    return any(isinstance(c, ast.Attribute) and c.attr in methods for c in ast.walk(node))


def _is_false(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value is False


def _loop_kind_of_name(name: str) -> str | None:
    """'val' / 'train' for a data loader's name, None for other names."""
    n = name.lower()
    if "loader" not in n and n not in ("batches", "dl"):
        return None
    return "val" if any(w in n for w in VAL_WORDS) else "train"


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


@dataclass
class Context:
    aliases: dict[str, str] = field(default_factory=dict)  # local name -> qualified name
    losses: dict[str, tuple[str, int]] = field(default_factory=dict)  # kind -> (qualified, line) of first use
    linear_out1: int | None = None  # line of an nn.Linear(..., 1)
    model_classes: set[str] = field(default_factory=set)
    model_names: set[str] = field(default_factory=lambda: {"model", "net", "network", "classifier"})
    output_names: set[str] = field(default_factory=set)  # names holding raw model outputs
    sigmoid_in_model: int | None = None
    sigmoid_anywhere: int | None = None
    schedulers: dict[str, tuple[str, ast.Call]] = field(default_factory=dict)  # name -> (class, constructor)

    def qualified(self, node: ast.AST) -> str | None:
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id, node.id)
        if isinstance(node, ast.Attribute):
            base = self.qualified(node.value)
            return f"{base}.{node.attr}" if base else None
        return None

    @property
    def single_output(self) -> bool:
        return ("bce" in self.losses or "bce_logits" in self.losses or self.linear_out1 is not None) and (
            "multiclass" not in self.losses
        )


def _collect_aliases(tree: ast.AST) -> dict[str, str]:
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    return aliases


def _canon(name: str | None) -> str | None:
    """torch.nn.modules.loss.BCELoss and friends -> torch.nn.BCELoss; F.sigmoid spelled any way."""
    if name is None:
        return None
    if name.startswith("torch.nn.modules."):
        return "torch.nn." + name.rsplit(".", 1)[-1]
    if name.startswith("torch.optim.lr_scheduler."):
        return name
    return name


def _int_value(node: ast.AST | None) -> int | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value
    return None


def _arg(call: ast.Call, pos: int, name: str) -> ast.AST | None:
    if len(call.args) > pos:
        return call.args[pos]
    return next((k.value for k in call.keywords if k.arg == name), None)


def _literal_arith(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, int)
    if isinstance(node, ast.BinOp):
        return _literal_arith(node.left) and _literal_arith(node.right)
    return False


def _names_in(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _build_context(tree: ast.Module) -> Context:
    ctx = Context(aliases=_collect_aliases(tree))
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and any(
            (_canon(ctx.qualified(b)) or "").endswith(("nn.Module", "LightningModule")) for b in node.bases
        ):
            ctx.model_classes.add(node.name)
            for inner in ast.walk(node):
                if isinstance(inner, ast.Call) and _canon(ctx.qualified(inner.func)) in SIGMOIDS:
                    ctx.sigmoid_in_model = ctx.sigmoid_in_model or inner.lineno
                if (
                    isinstance(inner, ast.Call)
                    and isinstance(inner.func, ast.Attribute)
                    and inner.func.attr == "sigmoid"
                    and not inner.args
                    and isinstance(inner.func.value, ast.Name)
                    and inner.func.value.id not in ("torch", "F")
                ):
                    ctx.sigmoid_in_model = ctx.sigmoid_in_model or inner.lineno
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            q = _canon(ctx.qualified(node.func))
            if q in SIGMOIDS:
                ctx.sigmoid_anywhere = ctx.sigmoid_anywhere or node.lineno
            if q in LOSS_KINDS:
                ctx.losses.setdefault(LOSS_KINDS[q], (q, node.lineno))
            if q == f"{NN}.Linear" and _int_value(_arg(node, 1, "out_features")) == 1:
                ctx.linear_out1 = ctx.linear_out1 or node.lineno
            if q == f"{NN}.Sequential" and any(
                isinstance(a, ast.Call) and _canon(ctx.qualified(a.func)) in SIGMOIDS for a in node.args
            ):
                ctx.sigmoid_in_model = ctx.sigmoid_in_model or node.lineno
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
            root = node.value
            while (
                isinstance(root, ast.Call)
                and isinstance(root.func, ast.Attribute)
                and root.func.attr in ("to", "cuda", "cpu", "train", "float")
            ):
                root = root.func.value  # model = Net().to(device)
            if isinstance(root, ast.Call):
                q = _canon(ctx.qualified(root.func)) or ""
                cls = q.rsplit(".", 1)[-1]
                if cls in ctx.model_classes or q == f"{NN}.Sequential":
                    ctx.model_names.update(targets)
                if q.startswith("torch.optim.lr_scheduler.") or (
                    cls.endswith(("LR", "LROnPlateau")) and "lr_scheduler" in q
                ):
                    for t in targets:
                        ctx.schedulers[t] = (cls, root)
    # Names bound to raw model outputs: out = model(x), out = model(x).squeeze(1), ...
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            value = node.value
            while (
                isinstance(value, ast.Call)
                and isinstance(value.func, ast.Attribute)
                and value.func.attr in ("squeeze", "view", "reshape", "flatten", "float", "detach", "cpu")
            ):
                value = value.func.value
            if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id in ctx.model_names:
                ctx.output_names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return ctx


def _is_raw_output(ctx: Context, node: ast.AST) -> bool:
    """True when node is a model output that no sigmoid has touched."""
    while (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("squeeze", "view", "reshape", "flatten", "float", "detach", "cpu")
    ):
        node = node.func.value
    if isinstance(node, ast.Name):
        return node.id in ctx.output_names
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ctx.model_names


def _loop_kind(ctx: Context, node: ast.For) -> str | None:
    """'val' / 'train' for a loop over a data loader (by its name), None for other loops."""
    names = {n.lower() for n in _names_in(node.iter)} | {
        a.attr.lower() for a in ast.walk(node.iter) if isinstance(a, ast.Attribute)
    }
    loaders = [n for n in names if "loader" in n or n in ("batches", "dataset", "ds", "dl")]
    if not loaders:
        return None
    return "val" if any(w in n for n in loaders for w in VAL_WORDS) else "train"


class _Linter:
    def __init__(self, tree: ast.Module, path: str) -> None:
        self.tree = tree
        self.path = path
        self.ctx = _build_context(tree)
        self.parents = _parents(tree)
        self.findings: list[Finding] = []

    def add(self, id: str, severity: str, line: int, evidence: dict, message: str, fix: str) -> None:
        if not any(f.id == id and f.line == line for f in self.findings):
            self.findings.append(Finding(id, severity, evidence, message, fix, path=self.path, line=line))

    def ancestors(self, node: ast.AST):
        while node in self.parents:
            node = self.parents[node]
            yield node

    def enclosing_loop(self, node: ast.AST, kind: str | None = None) -> ast.For | None:
        for a in self.ancestors(node):
            if isinstance(a, ast.For) and _loop_kind(self.ctx, a) and (kind is None or _loop_kind(self.ctx, a) == kind):
                return a
            if isinstance(a, (ast.FunctionDef, ast.AsyncFunctionDef)):
                return None
        return None

    def run(self) -> list[Finding]:
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Call):
                self.check_argmax(node)
                self.check_round(node)
                self.check_scheduler(node)
            elif isinstance(node, ast.Compare):
                self.check_compare(node)
                self.check_shape_compare(node)
            elif isinstance(node, ast.For) and _loop_kind(self.ctx, node) == "val":
                self.check_validation_loop(node)
                self.check_train_mode_in_validation(node)
            elif isinstance(node, ast.ClassDef) and node.name in self.ctx.model_classes:
                self.check_flatten(node)
            elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
                self.check_mean_of_batch_accuracies(node)
            if isinstance(node, ast.Call):
                self.check_distributed_validation(node)
                self.check_torchmetrics_logits(node)
        self.check_sigmoid_bce()
        self.check_single_batch_accuracy()
        return self.findings

    # accuracy summed per batch, divided by the number of batches
    def check_mean_of_batch_accuracies(self, div: ast.BinOp) -> None:
        right = div.right
        if not (
            isinstance(right, ast.Call)
            and isinstance(right.func, ast.Name)
            and right.func.id == "len"
            and len(right.args) == 1
            and isinstance(right.args[0], ast.Name)  # len(loader), not len(loader.dataset)
            and _loop_kind_of_name(right.args[0].id) is not None
        ):
            return
        if not isinstance(div.left, ast.Name):
            return
        name = div.left.id
        added = [
            n.value
            for n in ast.walk(self.tree)
            if isinstance(n, ast.AugAssign)
            and isinstance(n.op, ast.Add)
            and isinstance(n.target, ast.Name)
            and n.target.id == name
        ]
        if not any(self._is_batch_mean(v, set()) for v in added):
            return
        self.add(
            "lint-mean-of-batch-accuracies",
            "warning",
            div.lineno,
            {"code": ast.unparse(div), "batches": ast.unparse(right)},
            f"`{ast.unparse(div)}` averages per-batch accuracies: every batch weighs the same, so a smaller last "
            "batch counts as much as a full one and the figure is not the share of images right.",
            "Sum correct predictions and images over the epoch (`correct += (pred == y).sum().item(); total += "
            "y.numel()`) and report correct / total, or divide by len(loader.dataset).",
        )

    # DistributedSampler on the validation set
    def check_distributed_validation(self, call: ast.Call) -> None:
        q = _canon(self.ctx.qualified(call.func)) or ""
        if not q.endswith("DistributedSampler") or not call.args:
            return
        names = {n.lower() for n in _names_in(call.args[0])} | {
            a.attr.lower() for a in ast.walk(call.args[0]) if isinstance(a, ast.Attribute)
        }
        assigned = self.parents.get(call)
        while assigned is not None and not isinstance(assigned, (ast.Assign, ast.stmt)):
            assigned = self.parents.get(assigned)
        if isinstance(assigned, ast.Assign):
            names |= {t.id.lower() for t in assigned.targets if isinstance(t, ast.Name)}
        if not any(w in n for n in names for w in VAL_WORDS):
            return
        self.add(
            "lint-distributed-sampler-validation",
            "warning",
            call.lineno,
            {"call": ast.unparse(call)},
            "A DistributedSampler splits the validation set between processes and pads it with repeated images "
            "until it divides evenly (or drops some with drop_last=True): images are counted twice or not at all, "
            "and each process sees only its share.",
            "Validate on one process over the whole set, or shard it without padding and add up correct and total "
            "across processes with torch.distributed.all_reduce before dividing.",
        )

    # torchmetrics' binary accuracy fed logits
    def check_torchmetrics_logits(self, call: ast.Call) -> None:
        if not self._logits_setting() or not call.args:
            return
        f = call.func
        target = f.value if isinstance(f, ast.Attribute) and f.attr in ("update", "forward") else f
        metric = self._torchmetrics_binary(target)
        if metric is None or not _is_raw_output(self.ctx, call.args[0]):
            return
        self.add(
            "lint-torchmetrics-logits",
            "warning",
            call.lineno,
            {"metric": metric, "call": ast.unparse(call), "loss": "BCEWithLogitsLoss"},
            f"{metric} gets raw logits: torchmetrics applies a sigmoid only when a batch has values outside [0, 1], "
            "so a batch of logits that all fall in [0, 1] is thresholded at 0.5 as if they were probabilities "
            "(a logit of 0.3 counts as class 0).",
            "Pass probabilities, `metric(torch.sigmoid(logits), y)`, or compare logits at 0 yourself.",
        )

    def _torchmetrics_binary(self, node: ast.AST) -> str | None:
        """The metric's name when node is (a name bound to) torchmetrics' binary accuracy."""
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
            name = node.attr
        elif isinstance(node, ast.Name):
            name = node.id
        else:
            name = None
        q = _canon(self.ctx.qualified(node)) or ""
        if q.startswith("torchmetrics") and q.rsplit(".", 1)[-1] == "binary_accuracy":
            return "torchmetrics' binary_accuracy"
        for n in ast.walk(self.tree):
            if not (isinstance(n, ast.Assign) and isinstance(n.value, ast.Call)):
                continue
            bound = {t.id for t in n.targets if isinstance(t, ast.Name)} | {
                t.attr for t in n.targets if isinstance(t, ast.Attribute)
            }
            if name not in bound:
                continue
            ctor = n.value.func
            while isinstance(ctor, ast.Attribute) and ctor.attr == "to" and isinstance(ctor.value, ast.Call):
                ctor = ctor.value.func  # BinaryAccuracy().to(device)
            cq = _canon(self.ctx.qualified(ctor)) or ""
            if not cq.startswith("torchmetrics"):
                continue
            cls = cq.rsplit(".", 1)[-1]
            task = _arg(n.value, 99, "task")
            if cls == "BinaryAccuracy" or (
                cls == "Accuracy" and isinstance(task, ast.Constant) and task.value == "binary"
            ):
                return cls
        return None

    # model.train() in force when the validation loop starts
    def check_train_mode_in_validation(self, loop: ast.For) -> None:
        scope = next(
            (a for a in self.ancestors(loop) if isinstance(a, (ast.FunctionDef, ast.AsyncFunctionDef))), self.tree
        )
        outer = next((a for a in self.ancestors(loop) if isinstance(a, (ast.For, ast.While))), None)
        region = outer if outer is not None else scope
        calls = []
        for n in ast.walk(region):
            if (
                isinstance(n, ast.Call)
                and isinstance(n.func, ast.Attribute)
                and n.func.attr in ("train", "eval")
                and isinstance(n.func.value, ast.Name)
                and n.func.value.id in self.ctx.model_names
                and not (n.func.attr == "train" and n.args and _is_false(n.args[0]))
            ):
                calls.append(n)
        inside = [c for c in calls if c.func.attr == "train" and self._within(c, loop)]
        before = [c for c in calls if c.lineno < loop.lineno and not self._within(c, loop)]
        last = max(before, key=lambda c: (c.lineno, c.col_offset), default=None)
        culprit = inside[0] if inside else last if last is not None and last.func.attr == "train" else None
        if culprit is None or not any(c.func.attr == "eval" for c in calls):
            return  # no eval() anywhere: lint-eval-mode says so
        self.add(
            "lint-train-mode-in-validation",
            "warning",
            loop.lineno,
            {"loop": ast.unparse(loop.iter), "train_call_line": culprit.lineno},
            f"`{ast.unparse(culprit)}` (line {culprit.lineno}) leaves the model in training mode for this validation "
            "loop: dropout stays on and batch norm normalizes with (and updates) each validation batch's statistics.",
            "Call `model.eval()` right before the validation loop, and `model.train()` after it.",
        )

    def _within(self, node: ast.AST, container: ast.AST) -> bool:
        return any(a is container for a in self.ancestors(node))

    # outputs (N, 1) compared with labels (N,)
    def check_shape_compare(self, node: ast.Compare) -> None:
        if self.ctx.linear_out1 is None or self._forward_flattens() or len(node.ops) != 1:
            return
        if not isinstance(node.ops[0], ast.Eq):
            return
        pairs = ((node.left, node.comparators[0]), (node.comparators[0], node.left))
        for pred, label in pairs:
            if self._column_prediction(pred) and self._flat_label(label):
                self.add(
                    "lint-shape-mismatch",
                    "error",
                    node.lineno,
                    {"code": ast.unparse(node), "output_layer_line": self.ctx.linear_out1},
                    f"`{ast.unparse(node)}` compares predictions of shape (N, 1) (the model's one output column) "
                    "with labels of shape (N,): they broadcast to an (N, N) table, and the count of matches is "
                    "not the number of right predictions.",
                    "Flatten the outputs first (`output.squeeze(1)` or `.view(-1)`), or give the labels the "
                    "outputs' shape (`labels.unsqueeze(1)`).",
                )
                return

    def _forward_flattens(self) -> bool:
        """The model's forward returns a flattened output (squeeze/view/flatten/reshape in its return)."""
        for n in ast.walk(self.tree):
            if isinstance(n, ast.ClassDef) and n.name in self.ctx.model_classes:
                for r in ast.walk(n):
                    if isinstance(r, ast.Return) and r.value is not None and _calls(r.value, FLATTENING):
                        return True
        return False

    def _column_prediction(self, node: ast.AST) -> bool:
        """node holds predictions still shaped (N, 1): from a raw model output, never flattened."""
        if _calls(node, FLATTENING):
            return False
        if isinstance(node, ast.Name):
            for value in self._assigned(node.id):
                if _calls(value, FLATTENING):
                    return False
                return node.id in self.ctx.output_names or self._column_prediction(value)
            return False
        outputs = [
            n
            for n in ast.walk(node)
            if (isinstance(n, ast.Name) and n.id in self.ctx.output_names)
            or (isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in self.ctx.model_names)
        ]
        return any(not (isinstance(o, ast.Name) and self._output_flattened(o.id)) for o in outputs) and bool(outputs)

    def _assigned(self, name: str):
        """The values assigned to `name` (`name = value`), in the order ast.walk meets them."""
        for n in ast.walk(self.tree):
            if isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in n.targets):
                yield n.value

    def _output_flattened(self, name: str) -> bool:
        return any(_calls(value, FLATTENING) for value in self._assigned(name))

    def _flat_label(self, node: ast.AST) -> bool:
        """node is a batch's labels as a loader yields them, shape (N,): a label name never reshaped."""
        while (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("float", "long", "int", "to", "cuda", "cpu", "type", "detach")
        ):
            node = node.func.value
        if not isinstance(node, ast.Name) or node.id not in self._label_names():
            return False
        return not any(
            _calls(value, FLATTENING + ("unsqueeze",)) or any(isinstance(c, ast.Subscript) for c in ast.walk(value))
            for value in self._assigned(node.id)
        )

    def _label_names(self) -> set[str]:
        """Second names of `for x, y in loader` targets: what loaders yield as labels."""
        names = set()
        for n in ast.walk(self.tree):
            if isinstance(n, ast.For) and _loop_kind(self.ctx, n) and isinstance(n.target, ast.Tuple):
                items = n.target.elts
                if len(items) >= 2 and isinstance(items[1], ast.Name):
                    names.add(items[1].id)
        return names

    # argmax / max(dim=1) on one output
    def check_argmax(self, call: ast.Call) -> None:
        if not self.ctx.single_output:
            return
        q = _canon(self.ctx.qualified(call.func)) or ""
        method = call.func.attr if isinstance(call.func, ast.Attribute) else None
        if q == "torch.argmax":
            dim = _arg(call, 1, "dim")
        elif method == "argmax" and q != "torch.argmax":
            dim = _arg(call, 0, "dim")
        elif q == "torch.max" and (len(call.args) > 1 or any(k.arg == "dim" for k in call.keywords)):
            dim = _arg(call, 1, "dim")
        elif method == "max" and q != "torch.max" and (call.args or call.keywords):
            dim = _arg(call, 0, "dim")
        else:
            return
        if _int_value(dim) not in (1, -1) and not (isinstance(dim, ast.UnaryOp) and _int_value(dim.operand) == 1):
            return
        evidence = {"call": ast.unparse(call)}
        if self.ctx.linear_out1:
            evidence["single_output_layer_line"] = self.ctx.linear_out1
        for kind in ("bce", "bce_logits"):
            if kind in self.ctx.losses:
                evidence["loss"] = self.ctx.losses[kind][0].rsplit(".", 1)[-1]
        self.add(
            "lint-argmax-single-output",
            "error",
            call.lineno,
            evidence,
            f"`{ast.unparse(call)}` takes the argmax over one column: the model has a single output, so this is "
            "always 0 and the 'accuracy' only counts class-0 labels.",
            "Use `pred = (torch.sigmoid(output) >= 0.5).long()` (or `output >= 0` on logits) and compare with "
            "labels of the same shape.",
        )

    # round / threshold on logits
    def _logits_setting(self) -> bool:
        return "bce_logits" in self.ctx.losses and self.ctx.sigmoid_in_model is None

    def check_round(self, call: ast.Call) -> None:
        if not self._logits_setting():
            return
        q = _canon(self.ctx.qualified(call.func)) or ""
        target = None
        if q == "torch.round" and call.args:
            target = call.args[0]
        elif isinstance(call.func, ast.Attribute) and call.func.attr == "round" and not call.args:
            target = call.func.value
        if target is not None and _is_raw_output(self.ctx, target):
            self._threshold_finding(call, ast.unparse(call))

    def check_compare(self, node: ast.Compare) -> None:
        if not self._logits_setting() or len(node.ops) != 1:
            return
        right = node.comparators[0]
        if (
            isinstance(node.ops[0], (ast.Gt, ast.GtE, ast.Lt, ast.LtE))
            and isinstance(right, ast.Constant)
            and right.value == 0.5
        ):
            if _is_raw_output(self.ctx, node.left):
                self._threshold_finding(node, ast.unparse(node))

    def _threshold_finding(self, node: ast.AST, code: str) -> None:
        self.add(
            "lint-threshold-on-logits",
            "error",
            node.lineno,
            {"code": code, "loss": "BCEWithLogitsLoss", "loss_line": self.ctx.losses["bce_logits"][1]},
            f"`{code}` thresholds raw logits at 0.5 (the model feeds BCEWithLogitsLoss, so its outputs are logits, "
            "not probabilities): a logit of 0.3 is a probability of 0.57 but counts as class 0.",
            "Threshold the probability, `torch.sigmoid(output) >= 0.5`, or the logit at 0, `output >= 0`.",
        )

    # epoch scheduler stepped per batch
    def check_scheduler(self, call: ast.Call) -> None:
        f = call.func
        if not (isinstance(f, ast.Attribute) and f.attr == "step" and isinstance(f.value, ast.Name)):
            return
        if f.value.id not in self.ctx.schedulers:
            return
        cls, ctor = self.ctx.schedulers[f.value.id]
        if cls not in EPOCH_SCHEDULERS:
            return
        # A schedule sized in steps (T_max=epochs * len(loader), step_size=n_steps) is stepped per batch on purpose.
        sized = ast.unparse(ctor).lower()
        if "len(" in sized or "steps" in sized or "iters" in sized:
            return
        loop = self.enclosing_loop(call, "train") or self.enclosing_loop(call)
        if loop is None:
            return
        self.add(
            "lint-scheduler-in-batch-loop",
            "error",
            call.lineno,
            {"scheduler": cls, "constructed_line": ctor.lineno, "batch_loop_line": loop.lineno},
            f"`{f.value.id}.step()` runs once per batch, but {cls} counts epochs: its schedule runs "
            f"{'hundreds of times' if cls != 'ReduceLROnPlateau' else 'per batch'} too fast and the learning rate collapses early.",
            f"Move `{f.value.id}.step()` after the batch loop (once per epoch), or use a per-step schedule such as OneCycleLR.",
        )

    # sigmoid + BCELoss
    def check_sigmoid_bce(self) -> None:
        sigmoid_line = self.ctx.sigmoid_in_model or self.ctx.sigmoid_anywhere
        if "bce" in self.ctx.losses and sigmoid_line is not None:
            q, line = self.ctx.losses["bce"]
            self.add(
                "lint-sigmoid-bceloss",
                "warning",
                line,
                {"loss": q.rsplit(".", 1)[-1], "sigmoid_line": sigmoid_line},
                "A sigmoid feeds BCELoss: in float32 the sigmoid saturates to exactly 0 "
                "or 1 and BCELoss clamps its log at -100 (the 'loss stuck near 50' of a collapsed run).",
                "Return the raw logit from forward() and use nn.BCEWithLogitsLoss (numerically stable); apply "
                "torch.sigmoid only to report probabilities.",
            )

    # accuracy of one batch reported
    def check_single_batch_accuracy(self) -> None:
        compared: set[str] = set()
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Assign) and self._is_comparison(node.value, compared):
                compared.update(t.id for t in node.targets if isinstance(t, ast.Name))
        accumulated = {
            n.target.id for n in ast.walk(self.tree) if isinstance(n, ast.AugAssign) and isinstance(n.target, ast.Name)
        }
        for node in ast.walk(self.tree):
            if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
                continue
            name = node.targets[0].id
            loop = self.enclosing_loop(node, "train")
            if loop is None or name in accumulated or not self._is_batch_mean(node.value, compared):
                continue
            for use in ast.walk(loop):
                if isinstance(use, ast.Call) and self._reports(use) and name in _names_in(use):
                    self.add(
                        "lint-single-batch-accuracy",
                        "warning",
                        node.lineno,
                        {"name": name, "reported_line": use.lineno},
                        f"`{name}` is the accuracy of one batch, and it is reported as the accuracy of the iteration: "
                        "a batch of 20 has a standard error of about ±11 points, so the curve jumps.",
                        "Accumulate correct predictions and sample counts over the whole epoch (`correct += ...; "
                        "total += len(labels)`) and report correct / total once per epoch.",
                    )
                    break

    @staticmethod
    def _reports(call: ast.Call) -> bool:
        f = call.func
        name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
        return name in ("print", "append", "log", "add_scalar", "info", "write", "set_postfix")

    def _is_comparison(self, node: ast.AST, known: set[str]) -> bool:
        for n in ast.walk(node):
            if isinstance(n, ast.Compare) and isinstance(n.ops[0], (ast.Eq, ast.NotEq)):
                return True
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "eq":
                return True
        return False

    def _is_batch_mean(self, node: ast.AST, compared: set[str]) -> bool:
        involves = self._is_comparison(node, compared) or bool(_names_in(node) & compared)
        if not involves:
            return False
        for n in ast.walk(node):
            if isinstance(n, ast.Call) and (
                (isinstance(n.func, ast.Attribute) and n.func.attr == "mean")
                or _canon(self.ctx.qualified(n.func)) == "torch.mean"
            ):
                return True
            if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Div):
                return True
        return False

    # validation loops
    def check_validation_loop(self, loop: ast.For) -> None:
        scope = next(
            (a for a in self.ancestors(loop) if isinstance(a, (ast.FunctionDef, ast.AsyncFunctionDef))), self.tree
        )
        has_eval = any(
            isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "eval" and not n.args
            for n in ast.walk(scope)
        )
        if not has_eval:
            self.add(
                "lint-eval-mode",
                "warning",
                loop.lineno,
                {"loop": ast.unparse(loop.iter)},
                "This validation loop runs without `model.eval()`: dropout stays on and batch norm uses (and updates) "
                "batch statistics, so validation numbers are noisier and lower than the model's real performance.",
                "Call `model.eval()` before the validation loop and `model.train()` before training resumes.",
            )
        guarded = any(
            isinstance(a, (ast.With, ast.AsyncWith))
            and any(
                _canon(
                    self.ctx.qualified(i.context_expr.func if isinstance(i.context_expr, ast.Call) else i.context_expr)
                )
                in NO_GRAD
                for i in a.items
            )
            for a in self.ancestors(loop)
        ) or (
            isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef))
            and any(
                _canon(self.ctx.qualified(d.func if isinstance(d, ast.Call) else d)) in NO_GRAD
                for d in scope.decorator_list
            )
        )
        if not guarded:
            self.add(
                "lint-no-grad",
                "warning",
                loop.lineno,
                {"loop": ast.unparse(loop.iter)},
                "This validation loop builds autograd graphs it never uses: slower and several times the memory.",
                "Wrap it in `with torch.no_grad():` (or `torch.inference_mode()`).",
            )

    # hard-coded flatten size
    def check_flatten(self, cls: ast.ClassDef) -> None:
        seen_conv = False
        calls = sorted((n for n in ast.walk(cls) if isinstance(n, ast.Call)), key=lambda n: (n.lineno, n.col_offset))
        for call in calls:
            q = _canon(self.ctx.qualified(call.func)) or ""
            if q.startswith(f"{NN}.Conv"):
                seen_conv = True
            elif q == f"{NN}.Linear" and seen_conv:
                first = _arg(call, 0, "in_features")
                if first is not None and _literal_arith(first) and isinstance(first, ast.BinOp):
                    self.add(
                        "lint-hardcoded-flatten",
                        "info",
                        call.lineno,
                        {"in_features": ast.unparse(first)},
                        f"The first Linear after the conv layers has a hard-coded input size ({ast.unparse(first)}): "
                        "it only fits one image size, and a different size fails with a shape error.",
                        "Compute it from the image size (or run a dummy tensor through the conv layers), or use nn.LazyLinear.",
                    )
                return


def lint_source(source: str, path: str = "<string>") -> list[Finding]:
    try:
        tree = ast.parse(source, filename=path)
    except SyntaxError as exc:
        raise BinclassError(
            f"{path}:{exc.lineno}: not valid Python ({exc.msg}); lint reads Python source files"
        ) from None
    return sorted(_Linter(tree, path).run(), key=lambda f: f.line or 0)


def lint_file(path: Path) -> list[Finding]:
    try:
        source = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise BinclassError(f"{path}: cannot read ({exc})") from None
    return lint_source(source, str(path))


# --- notebooks and folders ---------------------------------------------------------------------------
# Cell magics whose body is Python (run as it is, timed or captured); any other (%%bash, %%writefile,
# %%html) holds no Python and its cell is skipped.
PYTHON_CELL_MAGICS = ("%%time", "%%timeit", "%%capture", "%%prun")
SKIPPED_DIRS = {"__pycache__", "site-packages", "node_modules", ".ipynb_checkpoints"}


def notebook_program(cells: list[dict]) -> tuple[str, list[tuple[int, int]]]:
    """The code cells as one program, and for each of its lines (cell, line in cell), both 1-based.
    IPython lines (%magic, !shell, `obj?` help) become `pass` at their indentation: the program keeps
    its blocks, and the line numbers stay the cell's."""
    lines: list[str] = []
    where: list[tuple[int, int]] = []
    for number, cell in enumerate(cells, start=1):
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        text = "".join(source) if isinstance(source, list) else str(source)
        cell_lines = text.splitlines()
        if cell_lines and cell_lines[0].lstrip().startswith("%%"):
            if cell_lines[0].split()[0] not in PYTHON_CELL_MAGICS:
                continue
            cell_lines[0] = ""
        for index, line in enumerate(cell_lines, start=1):
            stripped = line.lstrip()
            indent = line[: len(line) - len(stripped)]
            if stripped.startswith(("%", "!")) or (stripped.endswith("?") and not stripped.startswith("#")):
                line = f"{indent}pass"
            elif "= !" in stripped or "= %" in stripped:  # files = !ls: a shell result bound to a name
                line = f"{indent}{stripped.split('=', 1)[0].rstrip()} = None"
            lines.append(line)
            where.append((number, index))
    return "\n".join(lines) + "\n", where


def lint_notebook(path: Path) -> list[Finding]:
    try:
        cells = json.loads(Path(path).read_text())["cells"]
        if not isinstance(cells, list):
            raise TypeError
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        raise BinclassError(f"{path}: not a Jupyter notebook (.ipynb JSON with a cells list)") from None
    program, where = notebook_program(cells)
    try:
        tree = ast.parse(program, filename=str(path))
    except SyntaxError as exc:
        cell, line = where[min(max(exc.lineno or 1, 1), len(where)) - 1] if where else (0, 0)
        raise BinclassError(f"{path}: cell {cell}, line {line}: not valid Python ({exc.msg})") from None
    findings = _Linter(tree, str(path)).run()
    for f in findings:
        if f.line is not None and 1 <= f.line <= len(where):
            f.cell, f.line = where[f.line - 1]
        f.evidence = {k: _cell_line(v, where) if k.endswith("_line") else v for k, v in f.evidence.items()}
    return sorted(findings, key=lambda f: (f.cell or 0, f.line or 0))


def _cell_line(value: object, where: list[tuple[int, int]]) -> object:
    """A program line named in evidence, as "cell C, line L"."""
    if isinstance(value, int) and 1 <= value <= len(where):
        cell, line = where[value - 1]
        return f"cell {cell}, line {line}"
    return value


def lint_path(path: Path) -> list[Finding]:
    """A .py script, a .ipynb notebook, or a folder: every .py and .ipynb under it (hidden folders,
    __pycache__, site-packages and notebook checkpoints left out)."""
    path = Path(path)
    if path.is_dir():
        return [f for file in scripts_under(path) for f in lint_path(file)]
    if path.suffix.lower() == ".ipynb":
        return lint_notebook(path)
    return lint_file(path)


def scripts_under(folder: Path) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIPPED_DIRS)
        found += [Path(root) / f for f in sorted(files) if f.endswith((".py", ".ipynb")) and not f.startswith(".")]
    return found
