"""The empose checkpoint format, written atomically.

A checkpoint is a `torch.save` dict:
`{"format": "empose-checkpoint/1", "estimator": {"use": name, **params}, "sensor_names": [...],
"body_model": spec, "model": estimator state_dict, "recipe": resolved recipe dict, "step": int,
"source": provenance text}`; training checkpoints add `"resume"` (optimizer, RNG states, data-order
position, best-so-far). `import-checkpoint` writes the same format without `"resume"`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from empose_framework.errors import DataError

FORMAT = "empose-checkpoint/1"
REQUIRED_KEYS = ("format", "estimator", "sensor_names", "body_model", "model", "step")


def save_atomic(obj: dict, path: str | os.PathLike) -> None:
    """Write to a temporary file in the same folder, flush to disk, then rename over `path`, so a
    crash or Ctrl-C never leaves a truncated checkpoint behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: str | os.PathLike, map_location="cpu") -> dict:
    """Read and check an empose checkpoint; DataError (naming the file and the fix) otherwise."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"checkpoint {path} does not exist. Give the path of a `best.pt`/`last.pt` from a run folder "
            "(`<run>/checkpoints/`) or one written by `empose import-checkpoint`."
        )
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is reported the same way
        raise DataError(f"checkpoint {path} could not be read ({type(exc).__name__}: {exc}); it is truncated or not a torch file.") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise DataError(
            f"checkpoint {path} is not an empose checkpoint (format {found!r}, expected {FORMAT!r}). Released "
            "EM-POSE `model.pth` files must be converted first with `empose import-checkpoint`."
        )
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise DataError(f"checkpoint {path} lacks the keys {missing}; it is incomplete. Re-export or re-train it.")
    return ckpt
