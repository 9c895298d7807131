"""A script as the lint rules read it: its syntax tree, what the whole file says about the model (the
Context: imports, losses, output layer, model names, schedulers) and the queries rules share."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

from ..doctor.findings import Finding

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


def calls(node: ast.AST, methods: tuple[str, ...]) -> bool:
    """node calls or names one of these methods somewhere (x.squeeze(1), y.view(-1), ...)."""
    return any(isinstance(c, ast.Attribute) and c.attr in methods for c in ast.walk(node))


def is_false(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value is False


def loop_kind_of_name(name: str) -> str | None:
    """'val' / 'train' for a data loader's name, None for other names."""
    n = name.lower()
    if "loader" not in n and n not in ("batches", "dl"):
        return None
    return "val" if any(w in n for w in VAL_WORDS) else "train"


def parents_of(tree: ast.AST) -> dict[ast.AST, ast.AST]:
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


def collect_aliases(tree: ast.AST) -> dict[str, str]:
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    return aliases


def canon(name: str | None) -> str | None:
    """torch.nn.modules.loss.BCELoss and friends -> torch.nn.BCELoss; F.sigmoid spelled any way."""
    if name is None:
        return None
    if name.startswith("torch.nn.modules."):
        return "torch.nn." + name.rsplit(".", 1)[-1]
    if name.startswith("torch.optim.lr_scheduler."):
        return name
    return name


def int_value(node: ast.AST | None) -> int | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value
    return None


def arg(call: ast.Call, pos: int, name: str) -> ast.AST | None:
    if len(call.args) > pos:
        return call.args[pos]
    return next((k.value for k in call.keywords if k.arg == name), None)


def literal_arith(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, int)
    if isinstance(node, ast.BinOp):
        return literal_arith(node.left) and literal_arith(node.right)
    return False


def names_in(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def build_context(tree: ast.Module) -> Context:
    ctx = Context(aliases=collect_aliases(tree))
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and any(
            (canon(ctx.qualified(b)) or "").endswith(("nn.Module", "LightningModule")) for b in node.bases
        ):
            ctx.model_classes.add(node.name)
            for inner in ast.walk(node):
                if isinstance(inner, ast.Call) and canon(ctx.qualified(inner.func)) in SIGMOIDS:
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
            q = canon(ctx.qualified(node.func))
            if q in SIGMOIDS:
                ctx.sigmoid_anywhere = ctx.sigmoid_anywhere or node.lineno
            if q in LOSS_KINDS:
                ctx.losses.setdefault(LOSS_KINDS[q], (q, node.lineno))
            if q == f"{NN}.Linear" and int_value(arg(node, 1, "out_features")) == 1:
                ctx.linear_out1 = ctx.linear_out1 or node.lineno
            if q == f"{NN}.Sequential" and any(
                isinstance(a, ast.Call) and canon(ctx.qualified(a.func)) in SIGMOIDS for a in node.args
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
                q = canon(ctx.qualified(root.func)) or ""
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


def is_raw_output(ctx: Context, node: ast.AST) -> bool:
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


def loop_kind(ctx: Context, node: ast.For) -> str | None:
    """'val' / 'train' for a loop over a data loader (by its name), None for other loops."""
    names = {n.lower() for n in names_in(node.iter)} | {
        a.attr.lower() for a in ast.walk(node.iter) if isinstance(a, ast.Attribute)
    }
    loaders = [n for n in names if "loader" in n or n in ("batches", "dataset", "ds", "dl")]
    if not loaders:
        return None
    return "val" if any(w in n for n in loaders for w in VAL_WORDS) else "train"


class Script:
    """One parsed script and the findings the rules add to it."""

    def __init__(self, tree: ast.Module, path: str) -> None:
        self.tree = tree
        self.path = path
        self.ctx = build_context(tree)
        self.parents = parents_of(tree)
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
            if isinstance(a, ast.For) and loop_kind(self.ctx, a) and (kind is None or loop_kind(self.ctx, a) == kind):
                return a
            if isinstance(a, (ast.FunctionDef, ast.AsyncFunctionDef)):
                return None
        return None

    def within(self, node: ast.AST, container: ast.AST) -> bool:
        return any(a is container for a in self.ancestors(node))

    def assigned(self, name: str):
        """The values assigned to `name` (`name = value`), in the order ast.walk meets them."""
        for n in ast.walk(self.tree):
            if isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in n.targets):
                yield n.value

    def label_names(self) -> set[str]:
        """Second names of `for x, y in loader` targets: what loaders yield as labels."""
        names = set()
        for n in ast.walk(self.tree):
            if isinstance(n, ast.For) and loop_kind(self.ctx, n) and isinstance(n.target, ast.Tuple):
                items = n.target.elts
                if len(items) >= 2 and isinstance(items[1], ast.Name):
                    names.add(items[1].id)
        return names

    # round / threshold on logits
    def logits_setting(self) -> bool:
        return "bce_logits" in self.ctx.losses and self.ctx.sigmoid_in_model is None

    def is_comparison(self, node: ast.AST, known: set[str]) -> bool:
        for n in ast.walk(node):
            if isinstance(n, ast.Compare) and isinstance(n.ops[0], (ast.Eq, ast.NotEq)):
                return True
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "eq":
                return True
        return False

    def is_batch_mean(self, node: ast.AST, compared: set[str]) -> bool:
        involves = self.is_comparison(node, compared) or bool(names_in(node) & compared)
        if not involves:
            return False
        for n in ast.walk(node):
            if isinstance(n, ast.Call) and (
                (isinstance(n.func, ast.Attribute) and n.func.attr == "mean")
                or canon(self.ctx.qualified(n.func)) == "torch.mean"
            ):
                return True
            if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Div):
                return True
        return False

    @staticmethod
    def reports(call: ast.Call) -> bool:
        f = call.func
        name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
        return name in ("print", "append", "log", "add_scalar", "info", "write", "set_postfix")
