"""The one exception type the CLI turns into a one-line message (exit status 2) instead of a traceback."""


class BinclassError(Exception):
    """A problem with the user's input: the message names the file and the fix."""


def need(module: str, extra: str, what: str):
    """The optional package `module`, imported; or one line: `what` needs it, and the extra that brings it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise BinclassError(f"{what} needs the {module} package: pip install 'binclass[{extra}]'") from None
