"""The empose checkpoint format, written atomically.

A checkpoint is a `torch.save` dict:
`{"format": "empose-checkpoint/1", "estimator": {"use": name, **params}, "sensor_names": [...],
"body_model": spec, "model": estimator state_dict, "recipe": resolved recipe dict, "step": int,
"source": provenance text}`; training checkpoints add `"resume"` (optimizer, RNG states, data-order
position, best-so-far). `import-checkpoint` writes the same format without `"resume"`.

Only plain data goes in (tensors, str, numbers, lists, tuples, dicts, None): RNG states are stored as
tensors and tuples, so `load` reads with `torch.load(weights_only=True)` and a planted pickle cannot run
code. Checkpoints written before that held numpy's RNG state as a numpy array: the few numpy globals
that needs are allowed explicitly (`_NUMPY_GLOBALS`), nothing else.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import time
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


def _numpy_globals() -> list:
    """numpy arrays and scalars of plain dtypes, under both numpy 1 and numpy 2 module names."""
    import numpy as np

    core = getattr(np, "_core", None) or np.core
    plain = [type(np.dtype(t)) for t in ("bool", "uint8", "int32", "int64", "uint32", "float32", "float64")]
    out = [np.ndarray, np.dtype, *plain]
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        out += [(core.multiarray._reconstruct, f"{mod}._reconstruct"), (core.multiarray.scalar, f"{mod}.scalar")]
    return out


def remove_stray_temporaries(folder: str | os.PathLike, older_than_s: float = 0.0) -> list[Path]:
    """Delete `.<name>.*.tmp` files that a killed `save_atomic` left in `folder` (call it only while
    holding the folder's lock, so no other process is writing one); returns what was removed."""
    removed = []
    folder = Path(folder)
    if folder.is_dir():
        for tmp in folder.glob(".*.pt.*.tmp"):
            try:
                if time.time() - tmp.stat().st_mtime >= older_than_s:
                    tmp.unlink()
                    removed.append(tmp)
            except OSError:
                pass
    return removed


def load_weights(estimator, ckpt: dict, path) -> None:
    """`estimator.load_state_dict(ckpt["model"])`, or a DataError naming the file when they do not fit."""
    try:
        estimator.load_state_dict(ckpt["model"])
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0][:300]
        raise DataError(
            f"checkpoint {path}: its weights do not fit the estimator {ckpt.get('estimator', {}).get('use')!r} with "
            f"{len(ckpt.get('sensor_names', []))} sensors it describes ({first}). The file was changed or comes from "
            "another estimator, width or sensor set; use the checkpoint written with this recipe."
        ) from None


def load(path: str | os.PathLike, map_location="cpu") -> dict:
    """Read and check an empose checkpoint (a path, or `pretrained:NAME` for registered weights);
    DataError (naming the file and the fix) otherwise. Half-precision weights load as they are:
    `load_state_dict` casts them to the estimator's dtype."""
    from empose_framework import pretrained

    path = pretrained.resolve(path)
    if not path.is_file():
        raise DataError(
            f"checkpoint {path} does not exist. Give the path of a `best.pt`/`last.pt` from a run folder "
            "(`<run>/checkpoints/`) or one written by `empose import-checkpoint`."
        )
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = str(exc).split("\n")
        found = next((line.strip() for line in detail if "GLOBAL" in line or "Unsupported" in line), detail[0])[:200]
        raise DataError(
            f"checkpoint {path} holds objects that are not part of the empose checkpoint format ({found}). It was "
            "not loaded: loading it could run code. Use only checkpoints written by `empose run` or "
            "`empose import-checkpoint`, or re-create this one from its run."
        ) from None
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
    wrong = [k for k, t in (("estimator", dict), ("body_model", dict), ("model", dict), ("sensor_names", (list, tuple)),
                            ("step", int)) if not isinstance(ckpt[k], t)]  # fmt: skip
    if wrong or not isinstance(ckpt["estimator"].get("use"), str):
        raise DataError(f"checkpoint {path}: the keys {wrong or ['estimator']} have the wrong type; the file is damaged. "
                        "Re-export or re-train it.")
    return ckpt
