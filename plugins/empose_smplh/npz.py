"""Reading and checking a body model stored in the AMASS "Extended SMPL+H" npz layout.

Both body models go through `load_model_npz`: the licensed file and the generated embedded one. The
arrays read (the ones smplx's SMPL loader reads, docs/method.md §3.1):

    v_template (V, 3)   f (F, 3)   shapedirs (V, 3, K)   posedirs (V, 3, 9 (J - 1))
    J_regressor (J, V)  weights (V, J)   kintree_table (2, J)

Optional keys written by the embedded generator: `sensor_site_names (S,)`, `sensor_site_vertices (S,)`
(named sites; SMPL-H-sized files without them get the EM-POSE sites of docs/method.md §2.1) and
`joint_names (J,)`.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from empose_framework.envvars import expand_env_path
from empose_framework.errors import DataError, EmposeError

SMPL_MODELS_ENV = "SMPL_MODELS"

REQUIRED_KEYS = ("v_template", "f", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table")
OPTIONAL_KEYS = ("sensor_site_names", "sensor_site_vertices", "joint_names")


def _how_to_get_it(path: str | None = None) -> str:
    here = f" (here: {path})" if path and "$" not in path else ""
    return (
        f"empose expects the neutral model of the AMASS \"Extended SMPL+H\" package at "
        f"${SMPL_MODELS_ENV}/smplh_amass/neutral/model.npz{here}; set ${SMPL_MODELS_ENV} to the "
        "folder that holds `smplh_amass/`, or give the file in the recipe as "
        "`body_model: {use: smplh, path: /path/to/model.npz}`. The file is licensed and not shipped: "
        "register on the MANO website (https://mano.is.tue.mpg.de, Downloads, \"Extended SMPL+H model\") "
        "and unpack the neutral model there. Without it, `body_model: {use: embedded}` runs everything "
        "with empose's built-in SMPL-H-compatible body (no download, no licence)."
    )


def resolve_smplh_path(path: str | os.PathLike) -> Path:
    """Expand `${SMPL_MODELS}` (or any `${VAR}`) and `~` in a model path; a clear error if unset."""
    text = str(path)
    return expand_env_path(text, lambda var: EmposeError(
        f"the SMPL-H body model path '{text}' uses the environment variable ${var}, which is not set. "
        + _how_to_get_it(text)
    ))[0]  # fmt: skip


def load_model_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The checked arrays of a body-model npz (float64 / int64); DataError naming the file and key."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"SMPL-H body model file not found: {path}. " + _how_to_get_it(str(path)))
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = set(data.files)
            missing = [k for k in REQUIRED_KEYS if k not in keys]
            if missing:
                raise DataError(
                    f"{path} is not a body model in the AMASS \"Extended SMPL+H\" npz layout: key "
                    f"'{missing[0]}' is missing (all missing: {', '.join(missing)}; present: "
                    f"{', '.join(sorted(keys)) or 'none'}). It needs {', '.join(REQUIRED_KEYS)}. "
                    + _how_to_get_it(str(path))
                )
            arrays = {k: _read(data, k, path) for k in REQUIRED_KEYS + OPTIONAL_KEYS if k in keys}
    except DataError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError) as exc:
        raise DataError(
            f"{path} could not be read as an npz file ({type(exc).__name__}: {exc}); it is truncated or "
            "corrupt. Download and unpack it again. " + _how_to_get_it(str(path))
        ) from exc
    check_layout(arrays, str(path))
    return arrays


def _read(data, key: str, path: Path) -> np.ndarray:
    try:
        value = data[key]
    except ValueError:  # a pickled object: only plain data is admitted (the restricted unpickler)
        import pickle

        from empose_framework import safe_pickle

        try:
            value = safe_pickle.npz_object_array(path, key)
        except (pickle.UnpicklingError, EOFError, ValueError, KeyError, OSError) as exc:
            raise DataError(
                f"{path}: key '{key}' is a pickled Python object ({exc}), not a plain array; it was not loaded, "
                "since unpickling a shared file could run code. Convert it once, in a session you trust, into plain "
                "arrays (e.g. a scipy sparse matrix with `.toarray()`) and save it with np.savez."
            ) from None
        if value.dtype == object and value.shape == ():
            value = value.item()
        try:
            value = np.asarray(value, dtype=np.float64 if key not in ("sensor_site_names", "joint_names") else None)
        except (TypeError, ValueError):
            raise DataError(f"{path}: key '{key}' holds {type(value).__name__} objects, not numbers.") from None
    if key in ("sensor_site_names", "joint_names"):
        return value.astype(str)
    if key in ("f", "kintree_table", "sensor_site_vertices"):
        return value.astype(np.int64)
    if key == "posedirs":  # the largest array; used in float32 only
        return value.astype(np.float32)
    return value.astype(np.float64)


def check_layout(a: dict[str, np.ndarray], where: str) -> None:
    """Raise DataError if the arrays disagree in shape (names the key, the shape and what was expected)."""

    def bad(key: str, expected: str):
        raise DataError(
            f"{where}: key '{key}' has shape {tuple(a[key].shape)}, expected {expected}. The file is not a "
            "body model in the AMASS \"Extended SMPL+H\" npz layout, or it is corrupt. "
            + _how_to_get_it(where)
        )

    v = a["v_template"]
    if v.ndim != 2 or v.shape[1] != 3 or v.shape[0] < 4:
        bad("v_template", "(V, 3)")
    n_v = v.shape[0]
    kt = a["kintree_table"]
    if kt.ndim != 2 or kt.shape[0] != 2 or kt.shape[1] < 1:
        bad("kintree_table", "(2, J)")
    n_j = kt.shape[1]
    if a["f"].ndim != 2 or a["f"].shape[1] != 3 or a["f"].shape[0] < 4:
        bad("f", "(F, 3)")
    if a["f"].min() < 0 or a["f"].max() >= n_v:
        raise DataError(f"{where}: key 'f' holds vertex ids outside [0, {n_v}); the file is corrupt.")
    if a["shapedirs"].ndim != 3 or a["shapedirs"].shape[:2] != (n_v, 3):
        bad("shapedirs", f"({n_v}, 3, K)")
    if a["posedirs"].shape != (n_v, 3, 9 * (n_j - 1)):
        bad("posedirs", f"({n_v}, 3, {9 * (n_j - 1)})")
    if a["J_regressor"].shape != (n_j, n_v):
        bad("J_regressor", f"({n_j}, {n_v})")
    if a["weights"].shape != (n_v, n_j):
        bad("weights", f"({n_v}, {n_j})")
    parents = kt[0].copy()
    parents[0] = -1
    if any(not 0 <= p < j for j, p in enumerate(parents) if j > 0):
        raise DataError(
            f"{where}: key 'kintree_table' row 0 must list each joint's parent with a smaller index "
            f"(got {parents.tolist()}); the file is corrupt."
        )
    if "sensor_site_names" in a or "sensor_site_vertices" in a:
        names, ids = a.get("sensor_site_names"), a.get("sensor_site_vertices")
        if names is None or ids is None or names.shape != ids.shape or ids.ndim != 1:
            raise DataError(f"{where}: keys 'sensor_site_names' and 'sensor_site_vertices' must both be (S,) arrays.")
        if ids.min() < 0 or ids.max() >= n_v:
            raise DataError(f"{where}: key 'sensor_site_vertices' holds vertex ids outside [0, {n_v}).")
    for key in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights"):
        if not np.isfinite(a[key]).all():
            raise DataError(f"{where}: key '{key}' contains NaN or infinite values; the file is corrupt.")


def save_model_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write arrays atomically (temp file in the same folder, then rename), so a crash or a concurrent
    writer never leaves a half-written model behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
