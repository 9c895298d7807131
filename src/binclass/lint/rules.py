"""The lint rules, each a function registered with the node type it reads (or none: once per script).
Each looks for one bug that makes a reported number wrong, and stays silent where it cannot be sure:
a correct script must get no error."""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass

from ..doctor.argmax import ONE_OUTPUT_CAUSE, ONE_OUTPUT_FIX
from .script import (
    EPOCH_SCHEDULERS,
    FLATTENING,
    NN,
    NO_GRAD,
    VAL_WORDS,
    Script,
    arg,
    calls,
    canon,
    int_value,
    is_false,
    is_raw_output,
    literal_arith,
    loop_kind,
    loop_kind_of_name,
    names_in,
)


@dataclass(frozen=True)
class Rule:
    name: str  # the function's: the finding id it gives, without "lint-"
    visits: type[ast.AST] | None  # the node type check is called with; None: called once with the script
    check: Callable[..., None]


RULES: list[Rule] = []


def rule(visits: type[ast.AST] | None = None) -> Callable:
    def register(check: Callable[..., None]) -> Callable[..., None]:
        RULES.append(Rule(check.__name__, visits, check))
        return check

    return register


def run_rules(script: Script) -> None:
    """Every registered rule over the script, adding its findings to script.findings."""
    per_node = [r for r in RULES if r.visits is not None]
    for node in ast.walk(script.tree):
        for r in per_node:
            if isinstance(node, r.visits):
                r.check(script, node)
    for r in RULES:
        if r.visits is None:
            r.check(script)


# accuracy summed per batch, divided by the number of batches
@rule(ast.BinOp)
def mean_of_batch_accuracies(script: Script, div: ast.BinOp) -> None:
    if not isinstance(div.op, ast.Div):
        return
    right = div.right
    if not (
        isinstance(right, ast.Call)
        and isinstance(right.func, ast.Name)
        and right.func.id == "len"
        and len(right.args) == 1
        and isinstance(right.args[0], ast.Name)  # len(loader), not len(loader.dataset)
        and loop_kind_of_name(right.args[0].id) is not None
    ):
        return
    if not isinstance(div.left, ast.Name):
        return
    name = div.left.id
    added = [
        n.value
        for n in ast.walk(script.tree)
        if isinstance(n, ast.AugAssign)
        and isinstance(n.op, ast.Add)
        and isinstance(n.target, ast.Name)
        and n.target.id == name
    ]
    if not any(script.is_batch_mean(v, set()) for v in added):
        return
    script.add(
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
@rule(ast.Call)
def distributed_sampler_validation(script: Script, call: ast.Call) -> None:
    q = canon(script.ctx.qualified(call.func)) or ""
    if not q.endswith("DistributedSampler") or not call.args:
        return
    names = {n.lower() for n in names_in(call.args[0])} | {
        a.attr.lower() for a in ast.walk(call.args[0]) if isinstance(a, ast.Attribute)
    }
    assigned = script.parents.get(call)
    while assigned is not None and not isinstance(assigned, (ast.Assign, ast.stmt)):
        assigned = script.parents.get(assigned)
    if isinstance(assigned, ast.Assign):
        names |= {t.id.lower() for t in assigned.targets if isinstance(t, ast.Name)}
    if not any(w in n for n in names for w in VAL_WORDS):
        return
    script.add(
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
@rule(ast.Call)
def torchmetrics_logits(script: Script, call: ast.Call) -> None:
    if not script.logits_setting() or not call.args:
        return
    f = call.func
    target = f.value if isinstance(f, ast.Attribute) and f.attr in ("update", "forward") else f
    metric = _torchmetrics_binary(script, target)
    if metric is None or not is_raw_output(script.ctx, call.args[0]):
        return
    script.add(
        "lint-torchmetrics-logits",
        "warning",
        call.lineno,
        {"metric": metric, "call": ast.unparse(call), "loss": "BCEWithLogitsLoss"},
        f"{metric} gets raw logits: torchmetrics applies a sigmoid only when a batch has values outside [0, 1], "
        "so a batch of logits that all fall in [0, 1] is thresholded at 0.5 as if they were probabilities "
        "(a logit of 0.3 counts as class 0).",
        "Pass probabilities, `metric(torch.sigmoid(logits), y)`, or compare logits at 0 yourself.",
    )


# model.train() in force when the validation loop starts
@rule(ast.For)
def train_mode_in_validation(script: Script, loop: ast.For) -> None:
    if loop_kind(script.ctx, loop) != "val":
        return
    scope = next(
        (a for a in script.ancestors(loop) if isinstance(a, (ast.FunctionDef, ast.AsyncFunctionDef))), script.tree
    )
    outer = next((a for a in script.ancestors(loop) if isinstance(a, (ast.For, ast.While))), None)
    region = outer if outer is not None else scope
    calls = []
    for n in ast.walk(region):
        if (
            isinstance(n, ast.Call)
            and isinstance(n.func, ast.Attribute)
            and n.func.attr in ("train", "eval")
            and isinstance(n.func.value, ast.Name)
            and n.func.value.id in script.ctx.model_names
            and not (n.func.attr == "train" and n.args and is_false(n.args[0]))
        ):
            calls.append(n)
    inside = [c for c in calls if c.func.attr == "train" and script.within(c, loop)]
    before = [c for c in calls if c.lineno < loop.lineno and not script.within(c, loop)]
    last = max(before, key=lambda c: (c.lineno, c.col_offset), default=None)
    culprit = inside[0] if inside else last if last is not None and last.func.attr == "train" else None
    if culprit is None or not any(c.func.attr == "eval" for c in calls):
        return  # no eval() anywhere: lint-eval-mode says so
    script.add(
        "lint-train-mode-in-validation",
        "warning",
        loop.lineno,
        {"loop": ast.unparse(loop.iter), "train_call_line": culprit.lineno},
        f"`{ast.unparse(culprit)}` (line {culprit.lineno}) leaves the model in training mode for this validation "
        "loop: dropout stays on and batch norm normalizes with (and updates) each validation batch's statistics.",
        "Call `model.eval()` right before the validation loop, and `model.train()` after it.",
    )


# outputs (N, 1) compared with labels (N,)
@rule(ast.Compare)
def shape_mismatch(script: Script, node: ast.Compare) -> None:
    if (
        script.ctx.linear_out1 is None
        or _forward_flattens(
            script,
        )
        or len(node.ops) != 1
    ):
        return
    if not isinstance(node.ops[0], ast.Eq):
        return
    pairs = ((node.left, node.comparators[0]), (node.comparators[0], node.left))
    for pred, label in pairs:
        if _column_prediction(script, pred) and _flat_label(script, label):
            script.add(
                "lint-shape-mismatch",
                "error",
                node.lineno,
                {"code": ast.unparse(node), "output_layer_line": script.ctx.linear_out1},
                f"`{ast.unparse(node)}` compares predictions of shape (N, 1) (the model's one output column) "
                "with labels of shape (N,): they broadcast to an (N, N) table, and the count of matches is "
                "not the number of right predictions.",
                "Flatten the outputs first (`output.squeeze(1)` or `.view(-1)`), or give the labels the "
                "outputs' shape (`labels.unsqueeze(1)`).",
            )
            return


# argmax / max(dim=1) on one output
@rule(ast.Call)
def argmax_single_output(script: Script, call: ast.Call) -> None:
    if not script.ctx.single_output:
        return
    q = canon(script.ctx.qualified(call.func)) or ""
    method = call.func.attr if isinstance(call.func, ast.Attribute) else None
    if q == "torch.argmax":
        dim = arg(call, 1, "dim")
    elif method == "argmax" and q != "torch.argmax":
        dim = arg(call, 0, "dim")
    elif q == "torch.max" and (len(call.args) > 1 or any(k.arg == "dim" for k in call.keywords)):
        dim = arg(call, 1, "dim")
    elif method == "max" and q != "torch.max" and (call.args or call.keywords):
        dim = arg(call, 0, "dim")
    else:
        return
    if int_value(dim) not in (1, -1) and not (isinstance(dim, ast.UnaryOp) and int_value(dim.operand) == 1):
        return
    evidence = {"call": ast.unparse(call)}
    if script.ctx.linear_out1:
        evidence["single_output_layer_line"] = script.ctx.linear_out1
    for kind in ("bce", "bce_logits"):
        if kind in script.ctx.losses:
            evidence["loss"] = script.ctx.losses[kind][0].rsplit(".", 1)[-1]
    script.add(
        "lint-argmax-single-output",
        "error",
        call.lineno,
        evidence,
        f"`{ast.unparse(call)}` takes the argmax over one column: {ONE_OUTPUT_CAUSE}, so the 'accuracy' "
        "only counts class-0 labels.",
        ONE_OUTPUT_FIX,
    )


@rule(ast.Call)
def threshold_on_logits_by_rounding(script: Script, call: ast.Call) -> None:
    if not script.logits_setting():
        return
    q = canon(script.ctx.qualified(call.func)) or ""
    target = None
    if q == "torch.round" and call.args:
        target = call.args[0]
    elif isinstance(call.func, ast.Attribute) and call.func.attr == "round" and not call.args:
        target = call.func.value
    if target is not None and is_raw_output(script.ctx, target):
        _threshold_finding(script, call, ast.unparse(call))


@rule(ast.Compare)
def threshold_on_logits_by_comparison(script: Script, node: ast.Compare) -> None:
    if not script.logits_setting() or len(node.ops) != 1:
        return
    right = node.comparators[0]
    if (
        isinstance(node.ops[0], (ast.Gt, ast.GtE, ast.Lt, ast.LtE))
        and isinstance(right, ast.Constant)
        and right.value == 0.5
    ) and is_raw_output(script.ctx, node.left):
        _threshold_finding(script, node, ast.unparse(node))


# epoch scheduler stepped per batch
@rule(ast.Call)
def scheduler_in_batch_loop(script: Script, call: ast.Call) -> None:
    f = call.func
    if not (isinstance(f, ast.Attribute) and f.attr == "step" and isinstance(f.value, ast.Name)):
        return
    if f.value.id not in script.ctx.schedulers:
        return
    cls, ctor = script.ctx.schedulers[f.value.id]
    if cls not in EPOCH_SCHEDULERS:
        return
    # A schedule sized in steps (T_max=epochs * len(loader), step_size=n_steps) is stepped per batch on purpose.
    sized = ast.unparse(ctor).lower()
    if "len(" in sized or "steps" in sized or "iters" in sized:
        return
    loop = script.enclosing_loop(call, "train") or script.enclosing_loop(call)
    if loop is None:
        return
    script.add(
        "lint-scheduler-in-batch-loop",
        "error",
        call.lineno,
        {"scheduler": cls, "constructed_line": ctor.lineno, "batch_loop_line": loop.lineno},
        f"`{f.value.id}.step()` runs once per batch, but {cls} counts epochs: its schedule runs "
        f"{'hundreds of times' if cls != 'ReduceLROnPlateau' else 'per batch'} too fast and the learning rate collapses early.",
        f"Move `{f.value.id}.step()` after the batch loop (once per epoch), or use a per-step schedule such as OneCycleLR.",
    )


# sigmoid + BCELoss
@rule()
def sigmoid_bceloss(script: Script) -> None:
    sigmoid_line = script.ctx.sigmoid_in_model or script.ctx.sigmoid_anywhere
    if "bce" in script.ctx.losses and sigmoid_line is not None:
        q, line = script.ctx.losses["bce"]
        script.add(
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
@rule()
def single_batch_accuracy(script: Script) -> None:
    compared: set[str] = set()
    for node in ast.walk(script.tree):
        if isinstance(node, ast.Assign) and script.is_comparison(node.value, compared):
            compared.update(t.id for t in node.targets if isinstance(t, ast.Name))
    accumulated = {
        n.target.id for n in ast.walk(script.tree) if isinstance(n, ast.AugAssign) and isinstance(n.target, ast.Name)
    }
    for node in ast.walk(script.tree):
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            continue
        name = node.targets[0].id
        loop = script.enclosing_loop(node, "train")
        if loop is None or name in accumulated or not script.is_batch_mean(node.value, compared):
            continue
        for use in ast.walk(loop):
            if isinstance(use, ast.Call) and script.reports(use) and name in names_in(use):
                script.add(
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


# validation loops
@rule(ast.For)
def eval_mode_and_no_grad(script: Script, loop: ast.For) -> None:
    if loop_kind(script.ctx, loop) != "val":
        return
    scope = next(
        (a for a in script.ancestors(loop) if isinstance(a, (ast.FunctionDef, ast.AsyncFunctionDef))), script.tree
    )
    has_eval = any(
        isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "eval" and not n.args
        for n in ast.walk(scope)
    )
    if not has_eval:
        script.add(
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
            canon(script.ctx.qualified(i.context_expr.func if isinstance(i.context_expr, ast.Call) else i.context_expr))
            in NO_GRAD
            for i in a.items
        )
        for a in script.ancestors(loop)
    ) or (
        isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef))
        and any(
            canon(script.ctx.qualified(d.func if isinstance(d, ast.Call) else d)) in NO_GRAD
            for d in scope.decorator_list
        )
    )
    if not guarded:
        script.add(
            "lint-no-grad",
            "warning",
            loop.lineno,
            {"loop": ast.unparse(loop.iter)},
            "This validation loop builds autograd graphs it never uses: slower and several times the memory.",
            "Wrap it in `with torch.no_grad():` (or `torch.inference_mode()`).",
        )


# hard-coded flatten size
@rule(ast.ClassDef)
def hardcoded_flatten(script: Script, cls: ast.ClassDef) -> None:
    if cls.name not in script.ctx.model_classes:
        return
    seen_conv = False
    calls = sorted((n for n in ast.walk(cls) if isinstance(n, ast.Call)), key=lambda n: (n.lineno, n.col_offset))
    for call in calls:
        q = canon(script.ctx.qualified(call.func)) or ""
        if q.startswith(f"{NN}.Conv"):
            seen_conv = True
        elif q == f"{NN}.Linear" and seen_conv:
            first = arg(call, 0, "in_features")
            if first is not None and literal_arith(first) and isinstance(first, ast.BinOp):
                script.add(
                    "lint-hardcoded-flatten",
                    "info",
                    call.lineno,
                    {"in_features": ast.unparse(first)},
                    f"The first Linear after the conv layers has a hard-coded input size ({ast.unparse(first)}): "
                    "it only fits one image size, and a different size fails with a shape error.",
                    "Compute it from the image size (or run a dummy tensor through the conv layers), or use nn.LazyLinear.",
                )
            return


# --- what several rules ask of a script ---------------------------------------------------------------
def _torchmetrics_binary(script: Script, node: ast.AST) -> str | None:
    """The metric's name when node is (a name bound to) torchmetrics' binary accuracy."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
        name = node.attr
    elif isinstance(node, ast.Name):
        name = node.id
    else:
        name = None
    q = canon(script.ctx.qualified(node)) or ""
    if q.startswith("torchmetrics") and q.rsplit(".", 1)[-1] == "binary_accuracy":
        return "torchmetrics' binary_accuracy"
    for n in ast.walk(script.tree):
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
        cq = canon(script.ctx.qualified(ctor)) or ""
        if not cq.startswith("torchmetrics"):
            continue
        cls = cq.rsplit(".", 1)[-1]
        task = arg(n.value, 99, "task")
        if cls == "BinaryAccuracy" or (cls == "Accuracy" and isinstance(task, ast.Constant) and task.value == "binary"):
            return cls
    return None


def _forward_flattens(script: Script) -> bool:
    """The model's forward returns a flattened output (squeeze/view/flatten/reshape in its return)."""
    for n in ast.walk(script.tree):
        if isinstance(n, ast.ClassDef) and n.name in script.ctx.model_classes:
            for r in ast.walk(n):
                if isinstance(r, ast.Return) and r.value is not None and calls(r.value, FLATTENING):
                    return True
    return False


def _column_prediction(script: Script, node: ast.AST) -> bool:
    """node holds predictions still shaped (N, 1): from a raw model output, never flattened or reduced."""
    if _drops_column(script, node):
        return False
    if isinstance(node, ast.Name):
        for value in script.assigned(node.id):
            if _drops_column(script, value):
                return False
            return node.id in script.ctx.output_names or _column_prediction(script, value)
        return False
    outputs = [
        n
        for n in ast.walk(node)
        if (isinstance(n, ast.Name) and n.id in script.ctx.output_names)
        or (isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in script.ctx.model_names)
    ]
    return any(not (isinstance(o, ast.Name) and _output_flattened(script, o.id)) for o in outputs) and bool(outputs)


def _output_flattened(script: Script, name: str) -> bool:
    return any(_drops_column(script, value) for value in script.assigned(name))


# Reductions over a dimension: without keepdim=True they drop it, (N, 1) -> (N,).
REDUCTIONS = ("argmax", "argmin", "max", "min", "amax", "amin", "sum", "mean", "prod", "any", "all", "median")


def _drops_column(script: Script, node: ast.AST) -> bool:
    """Some call in node turns an (N, 1) column into shape (N,) (or fewer dimensions): a reduction without
    keepdim=True, squeeze() or squeeze(1), a 1-D view or reshape, flatten(), ravel(). Where the shape
    cannot be told (a dimension held in a variable), it counts as dropped: the rule stays silent."""
    return any(isinstance(c, ast.Call) and _call_drops_column(script, c) for c in ast.walk(node))


def _call_drops_column(script: Script, call: ast.Call) -> bool:
    q = canon(script.ctx.qualified(call.func)) or ""
    if q.startswith("torch.") and q.count(".") == 1:  # torch.argmax(x, 1): the tensor comes first
        name, first = q.split(".")[1], 1
    elif isinstance(call.func, ast.Attribute):  # x.argmax(1)
        name, first = call.func.attr, 0
    else:
        return False
    if name in REDUCTIONS:
        keep = arg(call, first + 1, "keepdim")
        return not (isinstance(keep, ast.Constant) and keep.value is True)
    if name == "squeeze":
        dim = arg(call, first, "dim")
        return dim is None or int_value(_literal(dim)) != 0
    if name == "flatten":
        start = arg(call, first, "start_dim")
        return start is None or int_value(_literal(start)) != 1
    if name in ("view", "reshape"):
        shape = call.args[first:]
        if len(shape) == 1 and isinstance(shape[0], (ast.Tuple, ast.List)):
            shape = shape[0].elts
        return not (len(shape) >= 2 and int_value(shape[-1]) == 1)  # view(-1, 1) keeps the column
    return name == "ravel"


def _literal(node: ast.AST) -> ast.AST:
    """-1 is parsed as a unary minus on 1: the constant itself."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
        return ast.Constant(-node.operand.value)
    return node


def _flat_label(script: Script, node: ast.AST) -> bool:
    """node is a batch's labels as a loader yields them, shape (N,): a label name never reshaped."""
    while (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("float", "long", "int", "to", "cuda", "cpu", "type", "detach")
    ):
        node = node.func.value
    if not isinstance(node, ast.Name) or node.id not in script.label_names():
        return False
    return not any(
        calls(value, FLATTENING + ("unsqueeze",)) or any(isinstance(c, ast.Subscript) for c in ast.walk(value))
        for value in script.assigned(node.id)
    )


def _threshold_finding(script: Script, node: ast.AST, code: str) -> None:
    script.add(
        "lint-threshold-on-logits",
        "error",
        node.lineno,
        {"code": code, "loss": "BCEWithLogitsLoss", "loss_line": script.ctx.losses["bce_logits"][1]},
        f"`{code}` thresholds raw logits at 0.5 (the model feeds BCEWithLogitsLoss, so its outputs are logits, "
        "not probabilities): a logit of 0.3 is a probability of 0.57 but counts as class 0.",
        "Threshold the probability, `torch.sigmoid(output) >= 0.5`, or the logit at 0, `output >= 0`.",
    )
