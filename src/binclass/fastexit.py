"""End the process without the interpreter's teardown, once the command's work is done.

Tearing down an interpreter that imported PyTorch pages library code back in and takes about a second
after the last file is written; it was the peak memory of a short `binclass train` (docs/benchmarks.md,
"Measurements behind the code"). What a normal exit does that matters is kept, in its order: thread
pools are told to stop and other threads finish, atexit handlers run (logging, the peak-memory recorder
of `binclass bench`), the standard streams are flushed; every file binclass writes is closed before its
command returns."""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
from typing import NoReturn


def exit_code(code: object) -> int:
    """The status SystemExit(code) would give: None -> 0, an int as is, anything else printed -> 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def finish_threads() -> None:
    """The interpreter's own first step at exit (CPython's threading._shutdown): tell thread pools to
    stop (their threading-atexit callbacks), then wait for every non-daemon thread. Joining the threads
    without that first part waits forever on an idle pool, such as the one torch.compile leaves."""
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None and threading.current_thread() is threading.main_thread():
        shutdown()


def exit_without_teardown(code: object = 0) -> NoReturn:
    """Exit with SystemExit(code)'s status after what a normal exit does first, in its order: threads,
    atexit handlers, flushed streams."""
    status = exit_code(code)
    finish_threads()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe (`binclass ... | head`) or a closed stream
            stream.flush()
    os._exit(status)
