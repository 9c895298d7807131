"""The graphed training step (binclass.graphstep) must train exactly as the eager step does. On the CPU
the graph is replaced by RecordedBackend (replay = call the captured function again), which checks all
the bookkeeping around a CUDA graph: static buffers, the warm-up that must leave no trace, the short
last batch, a learning rate changed by a schedule, batch-norm buffers, a resumed optimizer. On a CUDA
machine the real capture is compared with the eager step too."""

from __future__ import annotations

import copy

import pytest
import torch
from helpers import train_cli

from binclass.config import TrainConfig
from binclass.data.sources import TensorSource
from binclass.engine.graphstep import CudaGraphBackend, RecordedBackend, graphs_wanted
from binclass.engine.loop import train_one_epoch
from binclass.engine.optim import make_optimizer, make_scheduler
from binclass.errors import BinclassError
from binclass.models import build_model
from binclass.recipes.resolve import resolve
from binclass.recipes.scratch import graph_runner

N, SIZE = 50, 32  # 50 images in batches of 16: three full batches and a short one of 2


def _setup(
    model_name: str,
    optimizer: str,
    device: torch.device,
    capturable: bool = False,
    tensor_lr: bool = True,
    scheduler: str = "cosine",
):
    torch.manual_seed(0)
    model = build_model(model_name, SIZE, width=4 if model_name == "small" else None).to(device)
    cfg = TrainConfig(
        data_dir=".",
        out=".",
        model=model_name,
        optimizer=optimizer,
        lr=3e-3,
        epochs=3,
        batch_size=16,
        scheduler=scheduler,
        warmup=1,
        weight_decay=1e-4,
    )
    cfg = resolve(cfg)
    # A tensor learning rate in both runs, so that both step with the same float32 value.
    opt = make_optimizer(model, cfg, tensor_lr=tensor_lr, capturable=capturable)
    schedule = make_scheduler(opt, cfg, steps_per_epoch=-(-N // 16))
    return model, opt, schedule


def _epoch(model, opt, schedule, epoch: int, runner=None, label_smoothing: float = 0.0):
    torch.manual_seed(100 + epoch)  # dropout's draws: the same for both runs
    g = torch.Generator().manual_seed(epoch)
    device = next(model.parameters()).device
    images = torch.randint(0, 256, (N, 3, SIZE, SIZE), dtype=torch.uint8, generator=g).to(device)
    labels = (torch.arange(N) % 2).float().to(device)
    stats = train_one_epoch(
        model,
        TensorSource(images),
        labels,
        inputs=lambda b: (b.float() / 255 - 0.5) * 4,
        optimizer=opt,
        schedule=schedule,
        batch_size=16,
        threshold=0.5,
        pos_weight=torch.tensor(1.5, device=device),
        shuffle_gen=torch.Generator().manual_seed(epoch),
        epoch=epoch,
        label_smoothing=label_smoothing,
        runner=runner,
    )
    schedule.after_epoch()
    return stats


def _runner(model, opt, backend):
    return graph_runner(
        model,
        opt,
        opt.step,
        threshold=0.5,
        pos_weight=torch.tensor(1.5, device=opt.param_groups[0]["params"][0].device),
        autocast_dtype=None,
        backend=backend,
    )


def _same_training(a, b, exact: bool) -> None:
    (model_a, stats_a), (model_b, stats_b) = a, b
    for (name, x), y in zip(model_a.state_dict().items(), model_b.state_dict().values()):
        if exact:
            assert torch.equal(x, y), name
        else:
            assert torch.allclose(x.float(), y.float(), rtol=1e-3, atol=1e-5), name
    for sa, sb in zip(stats_a, stats_b):
        assert [s["batch_acc"] for s in sa.steps] == [s["batch_acc"] for s in sb.steps]
        assert [s["lr"] for s in sa.steps] == pytest.approx([s["lr"] for s in sb.steps], rel=1e-6)
        if exact:
            assert [s["loss"] for s in sa.steps] == [s["loss"] for s in sb.steps]
            assert sa.loss == sb.loss
        else:
            assert [s["loss"] for s in sa.steps] == pytest.approx([s["loss"] for s in sb.steps], rel=1e-3)


@pytest.mark.parametrize("model_name,optimizer", [("seed", "rmsprop"), ("small", "adamw")])
def test_graphed_step_trains_exactly_as_the_eager_step(model_name, optimizer):
    """Three epochs of each: the same weights (batch-norm buffers included), losses, accuracies and
    learning rates to the last bit. A warm-up that left its updates (or its dropout draws) behind, a
    static buffer not refreshed, or a schedule the graph did not see would each change them."""
    cpu = torch.device("cpu")
    eager = _setup(model_name, optimizer, cpu)
    graphed = _setup(model_name, optimizer, cpu)
    runner = _runner(graphed[0], graphed[1], RecordedBackend())
    a = [_epoch(*eager, epoch=e, label_smoothing=0.1) for e in (1, 2, 3)]
    b = [_epoch(*graphed, epoch=e, runner=runner, label_smoothing=0.1) for e in (1, 2, 3)]
    _same_training((eager[0], a), (graphed[0], b), exact=True)
    assert runner.failed is None and runner.graph is not None
    assert runner.batch == 16 and runner.eager_steps == 3  # the short last batch of each epoch
    assert a[0].steps[0]["lr"] < a[0].steps[-1]["lr"]  # the warm-up schedule did change the rate


def test_graphed_step_continues_a_resumed_optimizer_exactly():
    """The capture happens after a resume: the optimizer already has state, which the warm-up must not move."""
    cpu = torch.device("cpu")
    eager = _setup("seed", "rmsprop", cpu)
    graphed = _setup("seed", "rmsprop", cpu)
    first = [_epoch(*run, epoch=1) for run in (eager, graphed)]
    assert graphed[1].state  # the optimizer has its running averages now
    runner = _runner(graphed[0], graphed[1], RecordedBackend())
    a = [first[0], _epoch(*eager, epoch=2)]
    b = [first[1], _epoch(*graphed, epoch=2, runner=runner)]
    _same_training((eager[0], a), (graphed[0], b), exact=True)


def test_warmup_without_restore_would_be_caught(monkeypatch):
    """The comparison above can fail: with the snapshot's restore disabled, the warm-up's three extra
    updates stay in the weights and the runs differ."""
    from binclass.engine import graphstep

    monkeypatch.setattr(graphstep._Snapshot, "restore", lambda self: None)
    cpu = torch.device("cpu")
    eager = _setup("seed", "rmsprop", cpu)
    graphed = _setup("seed", "rmsprop", cpu)
    runner = _runner(graphed[0], graphed[1], RecordedBackend())
    a, b = _epoch(*eager, epoch=1), _epoch(*graphed, epoch=1, runner=runner)
    assert not torch.equal(eager[0].fc1.weight, graphed[0].fc1.weight)
    assert a.steps[0]["loss"] != b.steps[0]["loss"]


def test_a_learning_rate_set_by_assignment_reaches_the_graph():
    """A graph reads the learning-rate tensor it captured. Schedulers fill it in place; anything that
    assigns a new value instead (a float) is written into that tensor before the next replay."""
    model, opt, schedule = _setup("seed", "rmsprop", torch.device("cpu"), scheduler="none")
    runner = _runner(model, opt, RecordedBackend())
    _epoch(model, opt, schedule, epoch=1, runner=runner)
    captured = runner.lrs[0]
    assert opt.param_groups[0]["lr"] is captured and float(captured) == pytest.approx(3e-3)
    opt.param_groups[0]["lr"] = 0.0
    before = [p.detach().clone() for p in model.parameters()]
    stats = _epoch(model, opt, schedule, epoch=2, runner=runner)
    assert opt.param_groups[0]["lr"] is captured and float(captured) == 0.0
    assert all(s["lr"] == 0.0 for s in stats.steps)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # a rate of 0 moved nothing


def test_a_failed_capture_warns_and_trains_eagerly_from_where_it_was():
    """An operation that cannot be captured: a warning, the warm-up undone, then the eager step, which
    trains exactly as without graphs."""

    class Failing(RecordedBackend):
        def warmup(self, fn, times):
            fn()  # one warm-up step changes the weights, then the failure
            raise RuntimeError("operation not permitted when stream is capturing")

    cpu = torch.device("cpu")
    eager = _setup("seed", "rmsprop", cpu)
    graphed = _setup("seed", "rmsprop", cpu)
    runner = _runner(graphed[0], graphed[1], Failing())
    a = _epoch(*eager, epoch=1)
    with pytest.warns(UserWarning, match="CUDA graph failed .RuntimeError: operation not permitted"):
        b = _epoch(*graphed, epoch=1, runner=runner)
    assert runner.graph is None and runner.eager_steps == len(b.steps)
    _same_training((eager[0], [a]), (graphed[0], [b]), exact=True)


def test_cuda_graphs_setting_is_checked():
    cpu = torch.device("cpu")
    assert graphs_wanted("off", cpu, "rmsprop") is False
    with pytest.raises(BinclassError, match="needs a CUDA device"):
        graphs_wanted("on", cpu, "rmsprop")
    if torch.cuda.is_available():
        with pytest.raises(BinclassError, match="sgd"):
            graphs_wanted("on", torch.device("cuda"), "sgd")
    with pytest.raises(BinclassError, match="cuda-graphs"):
        resolve(TrainConfig(data_dir=".", out=".", cuda_graphs="yes"))


def test_cli_refuses_cuda_graphs_without_a_gpu(tiny_data, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    result = train_cli(tiny_data, tmp_path / "r", model="small", epochs=1, device="cpu", cuda_graphs="on")
    assert result.exit_code == 2
    assert "--cuda-graphs on needs a CUDA device" in result.output
    assert not (tmp_path / "r").exists()  # refused before the run folder or any decoding


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("model_name,optimizer", [("seed", "rmsprop"), ("small", "adamw")])
def test_real_cuda_graph_matches_the_eager_step(model_name, optimizer):
    """The real capture on a GPU: the same training within float tolerance (the capturable optimizer and
    cuDNN's kernel choice may differ in the last bits)."""
    cuda = torch.device("cuda")
    eager = _setup(model_name, optimizer, cuda, tensor_lr=False)  # as fit makes it for a GPU without graphs
    graphed = _setup(model_name, optimizer, cuda, capturable=True)
    for model, _, _ in (eager, graphed):  # a graph draws dropout masks from its own offsets: not comparable
        for m in model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
    runner = _runner(graphed[0], graphed[1], CudaGraphBackend())
    a = [_epoch(*eager, epoch=e) for e in (1, 2)]
    b = [_epoch(*graphed, epoch=e, runner=runner) for e in (1, 2)]
    _same_training((eager[0], a), (graphed[0], b), exact=False)
    assert runner.failed is None and runner.graph is not None  # graphed indeed, not the eager fallback
    assert runner.eager_steps == 2


def test_graphed_model_state_is_the_one_restored():
    """The snapshot writes values back into the same tensors (a graph holds their addresses)."""
    from binclass.engine.graphstep import _Snapshot

    model = build_model("small", SIZE, width=4)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    ptrs = [t.data_ptr() for t in model.state_dict().values()]
    before = copy.deepcopy(model.state_dict())
    snap = _Snapshot(model, opt)
    model(torch.randn(4, 3, SIZE, SIZE)).sum().backward()
    opt.step()
    snap.restore()
    assert [t.data_ptr() for t in model.state_dict().values()] == ptrs
    for (name, x), y in zip(model.state_dict().items(), before.values()):
        assert torch.equal(x, y), name
    assert all(torch.count_nonzero(t) == 0 for s in opt.state.values() for t in s.values())
