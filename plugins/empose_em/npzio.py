"""Reading `.npz` files so that every problem becomes a `DataError` naming the file and the key."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from empose_framework.envvars import expand_env_path
from empose_framework.errors import DataError, EmposeError

_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, RuntimeError)


def expand_env(value: str, where: str) -> tuple[Path, list[str]]:
    """Expand `${VAR}` (and `${VAR:-default}`) in a path; an unset variable is an error naming it. Returns the path
    and the variables used (so later errors about the path can name them too)."""
    return expand_env_path(value, lambda name: EmposeError(
        f"{where}: the path '{value}' uses the environment variable {name}, which is not set. "
        f"Set {name} to the folder that holds the data (e.g. `export {name}=/data/empose`), or "
        f"give the path explicitly in the recipe."
    ))  # fmt: skip


def open_npz(path: Path) -> np.lib.npyio.NpzFile:
    """Open an npz archive (lazily); a missing, truncated or non-npz file is a DataError."""
    try:
        f = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found.") from None
    except _READ_ERRORS as exc:
        raise DataError(
            f"{path}: cannot be read as an .npz archive ({type(exc).__name__}: {exc}); the file is "
            "truncated or corrupt. Copy or download it again."
        ) from None
    if not isinstance(f, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: is a single .npy array, not an .npz archive of named arrays.")
    return f


def read_key(f: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    """One array of an open archive; a missing key or a truncated member is a DataError."""
    if key not in f.files:
        raise DataError(
            f"{path}: missing key '{key}' (the file has: {', '.join(f.files) or 'nothing'}). The file does "
            "not follow the EM-POSE layout (docs/method.md §5.2/§5.3); regenerate or replace it."
        )
    try:
        return f[key]
    except _READ_ERRORS as exc:
        raise DataError(
            f"{path}: reading key '{key}' failed ({type(exc).__name__}: {exc}); the file is truncated or "
            "corrupt. Copy or download it again."
        ) from None


def check_shape(arr: np.ndarray, shape: tuple, key: str, path: Path) -> None:
    """`shape` may hold None for any size; a mismatch is a DataError naming key and shapes."""
    ok = arr.ndim == len(shape) and all(s is None or s == a for s, a in zip(shape, arr.shape))
    if not ok:
        want = "(" + ", ".join("F" if s is None else str(s) for s in shape) + ")"
        raise DataError(f"{path}: key '{key}' has shape {arr.shape}, expected {want} (docs/method.md §5.2/§5.3).")


def check_numeric(arr: np.ndarray, key: str, path: Path) -> np.ndarray:
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise DataError(f"{path}: key '{key}' has dtype {arr.dtype}, expected a float array.")
    return arr.astype(np.float64)


def check_finite(arr: np.ndarray, key: str, path: Path) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        idx = tuple(int(i[0]) for i in np.nonzero(bad))
        raise DataError(
            f"{path}: key '{key}' contains NaN or inf (first at index {idx}). Repair or remove the file."
        )


def check_rotations(r: np.ndarray, key: str, path: Path, tol: float = 1e-3) -> None:
    """Every (..., 3, 3) entry must be a rotation (orthonormal, det +1)."""
    err = np.abs(np.swapaxes(r, -1, -2) @ r - np.eye(3)).max(axis=(-1, -2))
    det = np.linalg.det(r)
    bad = (err > tol) | (det < 0)
    if bad.any():
        i = int(np.argmax(bad.reshape(-1)))
        raise DataError(
            f"{path}: key '{key}' entry {np.unravel_index(i, bad.shape)} is not a rotation matrix "
            f"(|R^T R - I| = {err.reshape(-1)[i]:.2g}, det = {det.reshape(-1)[i]:.3f})."
        )
