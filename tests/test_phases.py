"""The closing line's breakdown of a run's wall time."""

from binclass import phases as phases_module
from binclass.phases import Phases


def test_marks_charge_the_time_since_the_previous_mark_and_repeats_add_up(monkeypatch):
    clock = iter([10.0, 11.5, 14.0, 14.25, 20.0])
    monkeypatch.setattr(phases_module.time, "perf_counter", lambda: next(clock))
    p = Phases()  # starts at 10.0
    p.mark("images")  # 11.5
    p.mark("training")  # 14.0
    p.mark("images")  # 14.25
    p.mark("report")  # 20.0
    assert p.seconds == {"images": 1.75, "training": 2.5, "report": 5.75}
    assert p.total() == 10.0 == sum(p.seconds.values())
    assert p.summary() == "10.0s since the start: images 1.8s, training 2.5s, report 5.8s"


def test_no_marks_is_only_the_total(monkeypatch):
    monkeypatch.setattr(phases_module.time, "perf_counter", lambda: 3.0)
    assert Phases().summary() == "0.0s since the start"
