import subprocess
import sys

import pytest

from binclass.fastexit import exit_code

# A thread still writing, an atexit handler and buffered output must all survive the fast exit, and an
# idle thread pool (as torch.compile leaves one) must not keep it waiting.
_WORK = """
import atexit, sys, threading, time
from pathlib import Path
from binclass.fastexit import exit_without_teardown
out = Path(sys.argv[1])
atexit.register(lambda: (out / "atexit").write_text("ran"))
def late():
    time.sleep(0.3)
    (out / "thread").write_text("done")
threading.Thread(target=late).start()
from concurrent.futures import ThreadPoolExecutor
pool = ThreadPoolExecutor(1)  # never shut down: its idle worker waits for the interpreter's signal
pool.submit(print, end="")
sys.stdout.write("x" * 200_000)
exit_without_teardown(int(sys.argv[2]))
"""

# Peak resident memory of `import torch` and an exit, as this process records it in its last atexit
# handler (VmHWM) and as its parent sees it after the process is gone (ru_maxrss).
_CHILD = """
import atexit, sys, torch
from binclass.fastexit import exit_without_teardown
from binclass.devtools.peak import peak_mb
atexit.register(lambda: print(peak_mb()))
exit_without_teardown(0) if sys.argv[1] == "fast" else sys.exit(0)
"""
_PARENT = """
import resource, subprocess, sys
subprocess.run([sys.executable, "-c", sys.argv[1], sys.argv[2]], check=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def test_exit_code_follows_system_exit():
    assert exit_code(None) == 0 and exit_code(2) == 2
    assert exit_code("message") == 1


@pytest.mark.parametrize("status", [0, 3])
def test_fast_exit_keeps_threads_atexit_handlers_output_and_status(tmp_path, status):
    proc = subprocess.run(
        [sys.executable, "-c", _WORK, str(tmp_path), str(status)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == status
    assert proc.stdout == "x" * 200_000
    assert (tmp_path / "atexit").read_text() == "ran"
    assert (tmp_path / "thread").read_text() == "done"


def test_console_entry_point_exits_with_the_commands_status(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "binclass.cli", "doctor", str(tmp_path / "missing")], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux's")
def test_fast_exit_skips_the_teardown_that_raised_peak_memory():
    def teardown_mb(mode: str) -> float:
        out = subprocess.run([sys.executable, "-c", _PARENT, _CHILD, mode], capture_output=True, text=True, check=True)
        at_exit_mb, seen_kb = out.stdout.split()
        return int(seen_kb) / 1024 - float(at_exit_mb)

    # Normal exit here: about 120 MB of library pages after the last atexit handler (PyTorch's
    # teardown: 124 MB by this very measurement on the development machine), 0 with the fast exit.
    # Normal exit is not asserted: what its teardown costs depends on the PyTorch build.
    assert teardown_mb("fast") < 20
