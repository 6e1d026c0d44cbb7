"""Training batches made ahead in a worker thread, so that synthesis and reads overlap the model's step.

Used for seekable sensor sources only (`SensorSource.seekable`): they draw from their own generator,
never the global RNGs, so a batch is the same whichever thread makes it and however far ahead, and the
training thread's RNG state (dropout, exact resume) is untouched. torch releases the GIL inside its
operators, so the worker synthesises while the step computes. On CUDA both threads queue work on the
device's default stream, so a batch is complete before the step that reads it.

The worker stops at `close()` (the trainer closes it when training ends, on Ctrl-C / SIGTERM and on
errors) after at most the batch it is making; an error in the worker is raised in the training thread.
"""

from __future__ import annotations

import queue
import threading
from typing import Iterator

import torch

_ITEM, _END, _ERROR = range(3)


class Prefetcher:
    """Iterate `items` in a daemon thread, holding up to `depth` results ready."""

    def __init__(self, items: Iterator, depth: int, device: torch.device | None = None):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._work, args=(items, device), name="empose-prefetch", daemon=True)
        self._thread.start()

    def _work(self, items: Iterator, device) -> None:
        try:
            if device is not None and device.type == "cuda":
                torch.cuda.set_device(device)  # the training thread's device, not cuda:0
            for item in items:
                if not self._put((_ITEM, item)):
                    return
            self._put((_END, None))
        except BaseException as exc:  # noqa: BLE001 - every exit of the worker (Ctrl-C too) is handed to the training thread
            self._put((_ERROR, exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    def _put(self, entry) -> bool:
        """Queue `entry` unless closed meanwhile (False)."""
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=0.05)
                return True
            except queue.Full:
                pass
        return False

    def __iter__(self) -> "Prefetcher":
        return self

    def __next__(self):
        if self._done:
            raise StopIteration
        kind, value = self._queue.get()
        if kind == _ITEM:
            return value
        self._done = True
        if kind == _ERROR:
            raise value
        raise StopIteration

    def close(self) -> None:
        """Stop the worker and wait for it (at most the batch it is making)."""
        self._stop.set()
        self._thread.join()
        self._done = True
