"""The README's Python examples run as doctests, in a folder whose data/ holds a generated image set."""

from __future__ import annotations

import doctest
import re
from pathlib import Path

from binclass.synth import make_dataset

README = Path(__file__).resolve().parents[1] / "README.md"


def python_examples(text: str) -> str:
    """Every ```python block of the README that holds doctest prompts, joined in order."""
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    return "\n".join(block for block in blocks if block.lstrip().startswith(">>>"))


def test_the_readme_examples_run_as_written(tmp_path, monkeypatch):
    make_dataset(tmp_path / "data", n_train=40, n_val=15, size=48, seed=3, easy=True)
    monkeypatch.chdir(tmp_path)
    examples = python_examples(README.read_text())
    test = doctest.DocTestParser().get_doctest(examples, {}, "README.md", str(README), 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    messages: list[str] = []
    runner.run(test, out=messages.append)
    assert runner.failures == 0, "".join(messages)
    assert runner.tries >= 10  # the examples were found and run, not skipped
