"""One writer per folder, and SIGTERM handled like Ctrl-C.

`FolderLock` is an advisory `fcntl.flock` on `<folder>/.empose.lock`, held for as long as a run or a
preprocessing writes there. The kernel drops a flock when its process dies (also on kill -9), so the
lock of a dead process is simply taken over; the file only records who holds it (pid, host, command,
start time) for the message a second writer gets. Readers never lock. On a system without `fcntl`
(Windows) the lock does nothing.

`Stopped` is what a second Ctrl-C or a SIGTERM raises; `terminate_as_interrupt()` turns SIGTERM into
it (schedulers send SIGTERM before SIGKILL), so the same cleanup runs as for Ctrl-C and the process
exits with 128 + the signal number (130 for Ctrl-C, 143 for SIGTERM).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from empose_framework.errors import EmposeError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK_NAME = ".empose.lock"


def make_folder(path: Path, what: str, fix: str) -> bool:
    """Create `path` (and its parents) for a writer; True when this call created it. A place that cannot
    be created is an EmposeError naming `what` (the setting that chose it), the reason and the `fix`."""
    created = not path.exists()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EmposeError(f"{what}: cannot create the folder {path} ({exc.strerror or exc}). {fix}") from None
    return created


class FolderLock:
    """Exclusive advisory lock on a folder: `with FolderLock(folder, "training run"): ...`."""

    def __init__(self, folder: str | os.PathLike, what: str):
        self.folder = Path(folder)
        self.what = what
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> "FolderLock":
        if fcntl is None or self._fd is not None:
            return self
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise EmposeError(f"cannot write in {self.folder} ({exc.strerror or exc}); the {self.what} needs a writable "
                              "folder. Check its permissions or choose another folder.") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder(fd)
            os.close(fd)
            raise EmposeError(
                f"{self.folder} is in use by another empose process ({holder}). Only one {self.what} may write "
                "there at a time, or their files would mix. Wait for it to finish, stop it (`kill PID` saves and "
                "exits), or choose another folder."
            ) from None
        except OSError:  # a file system without flock support: go on unlocked rather than refuse to work
            os.close(fd)
            return self
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S"),
                "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:500]}  # fmt: skip
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(info).encode())
        self._fd = fd
        return self

    @staticmethod
    def _holder(fd: int) -> str:
        try:
            info = json.loads(os.pread(fd, 4096, 0) or b"{}")
            return f"pid {info['pid']} on {info['host']}, since {info['since']}: {info['command']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "holder unknown"

    def release(self) -> None:
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
            except OSError:
                pass
            os.close(self._fd)  # closing drops the flock; the empty file stays (unlinking would race)
            self._fd = None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


class Stopped(KeyboardInterrupt):
    """Stop at once: a SIGTERM, or a second Ctrl-C during training. `signum` gives the exit status."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def exit_code(exc: BaseException) -> int:
    """128 + signal number for a `Stopped`, 130 for a plain KeyboardInterrupt."""
    return exc.exit_code if isinstance(exc, Stopped) else 130


@contextmanager
def terminate_as_interrupt():
    """Within the block, SIGTERM raises `Stopped` (like Ctrl-C raises KeyboardInterrupt)."""

    def handle(signum, frame):
        raise Stopped(signum)

    try:
        previous = signal.signal(signal.SIGTERM, handle)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
