"""binclass: train a binary image classifier from two folders of pictures, with honest metrics.

    import binclass
    run = binclass.train("data/", out="runs/a", model="small", epochs=5)
    run.predict("new_images/"); run.evaluate("labeled/"); run.history
    binclass.load("runs/a"); binclass.doctor("runs/a"); binclass.lint("train.py")

The names below are imported on first use: `import binclass` loads neither PyTorch nor anything else."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .version import __version__

# name -> the module that defines it ("" for a submodule of that name)
_LAZY = {
    "train": "binclass.api",
    "load": "binclass.api",
    "doctor": "",  # the binclass.doctor package, which is callable: binclass.doctor(path) -> findings
    "lint": "",  # the binclass.lint package, callable too: binclass.lint(*scripts) -> findings
    "Run": "binclass.api",
    "Prediction": "binclass.api",
    "BinclassError": "binclass.errors",
    "watch": "",
}

__all__ = ["__version__", "train", "load", "doctor", "lint", "Run", "Prediction", "BinclassError", "watch"]

if TYPE_CHECKING:
    from . import doctor, lint, watch
    from .api import Prediction, Run, load, train
    from .errors import BinclassError


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'binclass' has no attribute {name!r}")
    module = _LAZY[name]
    value = (
        importlib.import_module(f"binclass.{name}") if not module else getattr(importlib.import_module(module), name)
    )
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
