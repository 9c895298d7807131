"""One live run per run folder: a lock file holding the process id and host of the run that uses it."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from ..errors import BinclassError
from .files import LOCK_FILE


def _start_ticks(pid: int) -> int | None:
    """When the process started (Linux: clock ticks since boot), so that a reused process id is not
    mistaken for the run that held the lock; None where /proc is not there."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _alive(pid: int, ticks: int | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: it exists
    return ticks is None or _start_ticks(pid) in (None, ticks)


class RunLock:
    """Held from before a run touches its folder until it ends. A second `train` on the folder (with
    --overwrite or --resume) is refused while the holder lives; the lock of a process that died (a
    SIGKILL, a lost machine) is recognised and taken over, and the log says so."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self.held = False

    def acquire(self, log: Callable[[str], None]) -> RunLock:
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "start_ticks": _start_ticks(os.getpid()),
            "since": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._take_over_if_stale(log)
                continue
            except OSError as exc:
                raise BinclassError(
                    f"{self.path.parent}: cannot write in this folder ({exc.strerror}); choose another --out"
                ) from None
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return self
        raise BinclassError(f"{self.path}: another run took this folder at the same moment; try again")

    def _take_over_if_stale(self, log: Callable[[str], None]) -> None:
        try:
            holder = json.loads(self.path.read_text())
            pid, host = int(holder["pid"]), str(holder["host"])
        except FileNotFoundError:
            return  # released meanwhile: try again
        except (OSError, ValueError, KeyError, TypeError):
            log(f"{self.path}: unreadable lock file (a run stopped while writing it); taking it over")
            self.path.unlink(missing_ok=True)
            return
        where = f"process {pid} on {host}, since {holder.get('since', '?')}"
        if host != socket.gethostname():
            raise BinclassError(
                f"{self.path.parent}: in use by {where}; if that run is gone, delete {self.path} and try again"
            )
        if _alive(pid, holder.get("start_ticks")):
            raise BinclassError(
                f"{self.path.parent}: in use by a live run ({where}); wait for it to end or choose another --out"
            )
        log(f"{self.path.parent}: taking over the lock of {where}, which is no longer running")
        self.path.unlink(missing_ok=True)

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False
