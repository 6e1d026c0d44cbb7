"""The plain sensor file (npz or CSV) for users' own trackers, and the `sensor_file` sensor source.

Format (README, "Using a trained model"): per frame and named site a time stamp (seconds), a position
in metres and an orientation (quaternion x, y, z, w or a rotation matrix whose columns are the sensor
axes in the world), optionally a validity flag; per site optionally a sensor-to-skin offset.

- npz: `time (T,)` (or a scalar `fps`), `sites (S,)` str, `pos (T, S, 3)`, `quat (T, S, 4)` or
  `ori (T, S, 3, 3)`; optional `valid (T, S)` bool, `offset_t (S, 3)`, `offset_quat (S, 4)` or
  `offset_r (S, 3, 3)`.
- CSV, one row per frame and site, with a header: `time,site,x,y,z,qx,qy,qz,qw` (or `r00..r22`
  row-major instead of the quaternion); optional `valid` (1/0) and per-site constant offset columns
  `offset_x,offset_y,offset_z,offset_qx,offset_qy,offset_qz,offset_qw`. A site without a row at some
  time stamp is missing in that frame.

Checks (each a DataError naming the file, the site or frame, and the fix): unknown sites, positions that
look like millimetres or centimetres, non-unit quaternions / non-rotation matrices, uneven or
decreasing time stamps. NaN in a reading is not an error: the reading is marked missing.
Evenly sampled files at another rate are resampled to 60 fps (positions linearly, orientations by
normalised quaternion interpolation; a frame is valid when both neighbours are).

Root normalisation (what the estimators expect, as `virtual_em` produces it): the reference site
(`back`, which sits on the pelvis) stands in for the unknown root. With the mean-shape body at rest,
its rest frame (b_rest, B_rest) and rest pelvis J0: the root rotation is R_f = S_ref(f) B_rest^T, R0
the first valid frame's, and every reading becomes s' = R0^T (s - s_ref(f)) + R0^T R_f (b_rest - J0)
+ J0, S' = R0^T S. So the first frame's root is the identity, the translation is removed per frame,
and the reference sensor sits where the normalised body carries it. Frames without a valid reference
reading are marked missing.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from scipy.spatial.transform import Rotation

from empose_framework.errors import DataError, EmposeError
from empose_framework.interfaces import SensorSource
from empose_io import schema
from empose_io.schema import REFERENCE_SITE

FPS = 60.0
#: a body's sensors never lie further apart than this (metres); more means other units
MAX_SPAN_M = 3.0
UNIT_TOL = 0.02  # |‖q‖ - 1| or |R^T R - I| allowed
EVEN_TOL = 0.25  # a frame interval may differ from the median by this fraction
WHERE = "sensor source 'sensor_file'"


@dataclass
class RawSensors:
    """A plain sensor file as read: world frame, checked, at `fps`."""

    path: Path
    time: np.ndarray  # (T,) seconds
    names: tuple[str, ...]
    pos: np.ndarray  # (T, S, 3) float64, metres
    ori: np.ndarray  # (T, S, 3, 3) columns = sensor axes
    valid: np.ndarray  # (T, S) bool
    fps: float
    offset_t: np.ndarray | None = None  # (S, 3)
    offset_r: np.ndarray | None = None  # (S, 3, 3)

    def __len__(self) -> int:
        return int(self.pos.shape[0])


def _fail(path: Path, what: str, fix: str) -> DataError:
    return DataError(f"{path}: {what} Fix: {fix}")


# --------------------------------------------------------------------------- reading


def read_sensor_file(path: str | os.PathLike) -> RawSensors:
    """Read and check a plain sensor file (.npz or .csv); resampled to 60 fps when needed."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: no such sensor file. Give a .npz or .csv in the plain sensor format (README, "
                        "'Using a trained model').")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        raw = _read_npz(path)
    elif suffix == ".csv":
        raw = _read_csv(path)
    else:
        raise DataError(f"{path}: unknown sensor file type '{path.suffix}'. Use .npz or .csv in the plain sensor "
                        "format (README, 'Using a trained model').")
    _check(raw)
    if abs(raw.fps - FPS) > 0.01 * FPS:
        raw = resample(raw, FPS)
    return raw


def _read_npz(path: Path) -> RawSensors:
    try:
        with np.load(path, allow_pickle=False) as z:
            a = {k: z[k] for k in z.files}
    except ValueError as exc:
        raise _fail(path, f"cannot be read without unpickling objects ({exc}).",
                    "store `sites` as a plain string array (np.array([...], dtype=str)), not an object array.") from None
    except Exception as exc:  # noqa: BLE001 - any unreadable archive is reported the same way
        raise _fail(path, f"cannot be read as an npz archive ({type(exc).__name__}: {exc}).",
                    "write it again with np.savez.") from None
    for key in ("sites", "pos"):
        if key not in a:
            raise _fail(path, f"missing key '{key}' (the file has: {', '.join(sorted(a)) or 'nothing'}).",
                        "add `sites` (S,) str and `pos` (T, S, 3) metres, plus `time` (T,) or `fps`, and `quat` or `ori`.")
    names = tuple(str(s) for s in np.asarray(a["sites"]).reshape(-1))
    pos = np.asarray(a["pos"], dtype=np.float64)
    t, s = (pos.shape[0], pos.shape[1]) if pos.ndim == 3 else (0, 0)
    if pos.ndim != 3 or pos.shape[1:] != (len(names), 3) or t == 0:
        raise _fail(path, f"key 'pos' has shape {pos.shape}, expected (frames > 0, {len(names)}, 3) for the "
                    f"{len(names)} sites {list(names)}.", "store one (x, y, z) in metres per frame and site.")
    if "quat" in a:
        q = np.asarray(a["quat"], dtype=np.float64)
        if q.shape != (t, s, 4):
            raise _fail(path, f"key 'quat' has shape {q.shape}, expected ({t}, {s}, 4).", "store (x, y, z, w) per frame and site.")
        ori = _quat_to_matrix(q, path, names, "quat")
    elif "ori" in a:
        ori = np.asarray(a["ori"], dtype=np.float64)
        if ori.shape != (t, s, 3, 3):
            raise _fail(path, f"key 'ori' has shape {ori.shape}, expected ({t}, {s}, 3, 3).",
                        "store one rotation matrix (columns = sensor axes) per frame and site.")
        _check_matrices(ori, path, names, "ori")
    else:
        raise _fail(path, "has no orientation: neither key 'quat' (x, y, z, w) nor 'ori' (3x3 matrices).",
                    "add `quat` (T, S, 4) or `ori` (T, S, 3, 3).")
    if "time" in a:
        time = np.asarray(a["time"], dtype=np.float64).reshape(-1)
        if time.shape != (t,):
            raise _fail(path, f"key 'time' has {time.size} entries for {t} frames.", "store one time stamp (seconds) per frame.")
    elif "fps" in a:
        fps = float(np.asarray(a["fps"]).reshape(()))
        if not fps > 0:
            raise _fail(path, f"key 'fps' is {fps}.", "give a positive frame rate.")
        time = np.arange(t) / fps
    else:
        raise _fail(path, "has neither 'time' (T,) nor 'fps'.", "add the time stamps in seconds, or a scalar `fps`.")
    valid = np.ones((t, s), bool)
    if "valid" in a:
        v = np.asarray(a["valid"])
        if v.shape != (t, s):
            raise _fail(path, f"key 'valid' has shape {v.shape}, expected ({t}, {s}).", "store one bool per frame and site.")
        valid = v.astype(bool)
    off_t = off_r = None
    if "offset_t" in a:
        off_t = np.asarray(a["offset_t"], dtype=np.float64)
        if off_t.shape != (s, 3):
            raise _fail(path, f"key 'offset_t' has shape {off_t.shape}, expected ({s}, 3).", "one offset (metres) per site.")
        off_r = np.broadcast_to(np.eye(3), (s, 3, 3)).copy()
    if "offset_quat" in a or "offset_r" in a:
        if "offset_quat" in a:
            oq = np.asarray(a["offset_quat"], dtype=np.float64)
            if oq.shape != (s, 4):
                raise _fail(path, f"key 'offset_quat' has shape {oq.shape}, expected ({s}, 4).", "one (x, y, z, w) per site.")
            off_r = _quat_to_matrix(oq[None], path, names, "offset_quat")[0]
        else:
            off_r = np.asarray(a["offset_r"], dtype=np.float64)
            if off_r.shape != (s, 3, 3):
                raise _fail(path, f"key 'offset_r' has shape {off_r.shape}, expected ({s}, 3, 3).", "one matrix per site.")
            _check_matrices(off_r[None], path, names, "offset_r")
        if off_t is None:
            off_t = np.zeros((s, 3))
    return RawSensors(path, time, names, pos, ori, valid, 0.0, off_t, off_r)


_QUAT_COLS = ["qx", "qy", "qz", "qw"]
_MATRIX_COLS = [f"r{i}{j}" for i in range(3) for j in range(3)]
_OFFSET_COLS = ["offset_x", "offset_y", "offset_z", "offset_qx", "offset_qy", "offset_qz", "offset_qw"]


def _read_csv(path: Path) -> RawSensors:
    """One row per frame and site: `time,site,x,y,z`, a quaternion (qx..qw) or matrix (r00..r22), and optional
    `valid` and offset columns; absent (frame, site) pairs are missing readings."""
    header, rows, has_q = _csv_table(path)
    num_cols = ["time", "x", "y", "z"] + (_QUAT_COLS if has_q else _MATRIX_COLS)
    has_off = any(c in header for c in _OFFSET_COLS)
    sites, values, valid_col, offs = _csv_values(path, header, rows, num_cols, has_off)
    times, frame_of, names, site_of, present = _csv_frames(path, values[:, 0], sites)
    t, s = len(times), len(names)
    pos = np.full((t, s, 3), np.nan)
    pos[frame_of, site_of] = values[:, 1:4]
    valid = present.copy()
    valid[frame_of, site_of] &= valid_col
    if has_q:
        q = np.full((t, s, 4), np.nan)
        q[frame_of, site_of] = values[:, 4:8]
        q[~present] = (0, 0, 0, 1)  # absent rows: placeholder, invalid anyway
        ori = _quat_to_matrix(q, path, names, "qx,qy,qz,qw", times)
    else:
        m = np.full((t, s, 9), np.nan)
        m[frame_of, site_of] = values[:, 4:13]
        m[~present] = np.eye(3).reshape(9)
        ori = m.reshape(t, s, 3, 3)
        _check_matrices(ori, path, names, "r00..r22", times)
    off_t, off_r = _csv_offsets(path, names, site_of, np.array(offs)) if has_off else (None, None)
    return RawSensors(path, times, names, pos, ori, valid, 0.0, off_t, off_r)


def _csv_table(path: Path) -> tuple[list[str], list[list[str]], bool]:
    """The lower-case header, the non-blank rows, and whether orientations are quaternions (else matrices);
    a file without the needed columns or rows is an error that shows the expected header."""
    try:
        with path.open(newline="") as fh:
            reader = csv.reader(fh)
            header = [h.strip().lower() for h in next(reader, [])]
            rows = [r for r in reader if r and any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise _fail(path, f"cannot be read as CSV text ({type(exc).__name__}: {exc}).", "save it as UTF-8 CSV.") from None
    need = ["time", "site", "x", "y", "z"]
    missing = [c for c in need if c not in header]
    has_q = all(c in header for c in _QUAT_COLS)
    has_m = all(c in header for c in _MATRIX_COLS)
    if missing or not (has_q or has_m):
        raise _fail(path, f"the header {header} lacks the column(s) {missing + ([] if has_q or has_m else ['qx,qy,qz,qw'])}.",
                    "start the file with the header `time,site,x,y,z,qx,qy,qz,qw` (or r00..r22 instead of the "
                    "quaternion), one row per frame and site.")
    if not rows:
        raise _fail(path, "has a header but no rows.", "add one row per frame and site.")
    return header, rows, has_q


def _csv_values(path: Path, header: list[str], rows: list[list[str]], num_cols: list[str], has_off: bool):
    """Per row: the site name, the `num_cols` numbers (NaN where empty), the `valid` flag and the offset
    columns (NaN where empty or absent); errors name the line."""
    col = {h: i for i, h in enumerate(header)}
    sites, values, valid_col, offs = [], np.empty((len(rows), len(num_cols))), np.ones(len(rows), bool), []
    for i, r in enumerate(rows):
        line = i + 2
        if len(r) < len(header):
            raise _fail(path, f"line {line} has {len(r)} fields, the header {len(header)}.", "give every row all columns.")
        sites.append(r[col["site"]].strip())
        try:
            values[i] = [float(r[col[c]]) if r[col[c]].strip() else math.nan for c in num_cols]
        except ValueError:
            raise _fail(path, f"line {line} (site '{sites[-1]}') has a value that is not a number: {r}.",
                        "write numbers with a decimal point; leave a reading empty or NaN when it is missing.") from None
        if "valid" in col:
            valid_col[i] = r[col["valid"]].strip().lower() in ("1", "true", "yes", "1.0")
        if has_off:
            try:
                offs.append([float(r[col[c]]) if c in col and r[col[c]].strip() else math.nan for c in _OFFSET_COLS])
            except ValueError:
                raise _fail(path, f"line {line}: an offset value is not a number.", "write the offsets as numbers.") from None
    return sites, values, valid_col, offs


def _csv_frames(path: Path, time_all: np.ndarray, sites: list[str]):
    """Frames (the sorted distinct time stamps) and sites (in order of first appearance), each row's frame and
    site index, and which (frame, site) pairs have a row; a row without time or a pair with two rows is an error."""
    if not np.isfinite(time_all).all():
        line = int(np.nonzero(~np.isfinite(time_all))[0][0]) + 2
        raise _fail(path, f"line {line} has no time stamp.", "give every row its frame's time in seconds.")
    times, frame_of = np.unique(time_all, return_inverse=True)
    names = tuple(dict.fromkeys(sites))
    site_of = np.array([names.index(n) for n in sites])
    seen = np.zeros((len(times), len(names)), int)
    np.add.at(seen, (frame_of, site_of), 1)
    if (seen > 1).any():
        f, k = (int(v[0]) for v in np.nonzero(seen > 1))
        raise _fail(path, f"site '{names[k]}' has {seen[f, k]} rows at time {times[f]:g} s (frame {f}).",
                    "give one row per frame and site.")
    return times, frame_of, names, site_of, seen > 0


def _csv_offsets(path: Path, names: tuple[str, ...], site_of: np.ndarray, offs: np.ndarray):
    """Per-site offset translations (S, 3) and rotations (S, 3, 3); identity where the columns are empty. An
    offset belongs to the site, so its rows must all repeat the same values."""
    off_t, off_r = np.zeros((len(names), 3)), np.broadcast_to(np.eye(3), (len(names), 3, 3)).copy()
    for k, name in enumerate(names):
        rows_k = offs[site_of == k]
        first = rows_k[0]
        if not np.allclose(rows_k, first, equal_nan=True, atol=1e-9):
            raise _fail(path, f"site '{name}' has different offset values in different rows.",
                        "an offset belongs to the site: repeat the same values on each of its rows (or leave them empty).")
        if np.isfinite(first[:3]).all():
            off_t[k] = first[:3]
        if np.isfinite(first[3:]).all():
            off_r[k] = _quat_to_matrix(first[None, None, 3:], path, (name,), "offset_qx..offset_qw")[0, 0]
    return off_t, off_r


def _quat_to_matrix(q: np.ndarray, path: Path, names, key: str, times=None) -> np.ndarray:
    """(..., S, 4) quaternions (x, y, z, w) -> matrices; NaN stays NaN (missing); non-unit is an error."""
    norm = np.linalg.norm(q, axis=-1)
    finite = np.isfinite(q).all(-1)
    bad = finite & (np.abs(norm - 1.0) > UNIT_TOL)
    if bad.any():
        idx = np.argwhere(bad)[0]
        f, k = (int(idx[0]), int(idx[1])) if bad.ndim == 2 else (0, int(idx[-1]))
        when = f"frame {f}" + (f" (t = {times[f]:g} s)" if times is not None else "")
        raise _fail(path, f"site '{names[k]}', {when}: the quaternion ({key}) {np.round(q[tuple(idx)], 4).tolist()} has "
                    f"norm {norm[tuple(idx)]:.4f}, not 1 ({int(bad.sum())} such readings).",
                    "store unit quaternions in the order (x, y, z, w); a norm far from 1 often means another "
                    "order or a scaled value.")
    out = np.full(q.shape[:-1] + (3, 3), np.nan)
    if finite.any():
        out[finite] = Rotation.from_quat(q[finite] / norm[finite][..., None]).as_matrix()
    return out


def _check_matrices(r: np.ndarray, path: Path, names, key: str, times=None) -> None:
    finite = np.isfinite(r).all((-1, -2))
    rr = np.where(finite[..., None, None], r, np.eye(3))
    err = np.abs(np.swapaxes(rr, -1, -2) @ rr - np.eye(3)).max(axis=(-1, -2))
    det = np.linalg.det(rr)
    bad = (err > UNIT_TOL) | (det < 0)
    if bad.any():
        f, k = (int(v) for v in np.argwhere(bad)[0])
        when = f"frame {f}" + (f" (t = {times[f]:g} s)" if times is not None else "")
        raise _fail(path, f"site '{names[k]}', {when}: the orientation ({key}) is not a rotation matrix "
                    f"(|R^T R - I| = {err[f, k]:.3g}, det = {det[f, k]:.3f}).",
                    "store proper rotation matrices whose columns are the sensor axes in world coordinates.")


# --------------------------------------------------------------------------- checks and resampling


def _check(raw: RawSensors) -> None:
    """Time stamps, NaN (-> missing), units; fills `raw.fps`, updates `raw.valid`."""
    path, time = raw.path, raw.time
    finite = np.isfinite(raw.pos).all(-1) & np.isfinite(raw.ori).all((-1, -2))
    raw.valid &= finite
    raw.pos[~raw.valid] = 0.0
    raw.ori[~raw.valid] = np.eye(3)
    if len(time) < 2:
        raise _fail(path, f"has {len(time)} frame(s).", "give at least two frames.")
    if not np.isfinite(time).all():
        f = int(np.nonzero(~np.isfinite(time))[0][0])
        raise _fail(path, f"frame {f} has time stamp {time[f]}.", "give every frame a finite time stamp in seconds.")
    dt = np.diff(time)
    if (dt <= 0).any():
        f = int(np.nonzero(dt <= 0)[0][0]) + 1
        raise _fail(path, f"time stamps do not increase at frame {f} ({time[f - 1]:g} s, then {time[f]:g} s).",
                    "sort the frames by time and give each frame one time stamp.")
    step = float(np.median(dt))
    uneven = np.abs(dt - step) > EVEN_TOL * step
    if uneven.any():
        f = int(np.nonzero(uneven)[0][0]) + 1
        raise _fail(path, f"time stamps are uneven: frame {f} comes {dt[f - 1] * 1000:.1f} ms after frame {f - 1}, "
                    f"but the typical interval is {step * 1000:.1f} ms ({int(uneven.sum())} uneven intervals).",
                    "resample the recording to a constant rate, or keep the even time grid and write NaN for "
                    "readings that are missing (they are treated as missing sensors).")
    raw.fps = 1.0 / step
    # units: a body's sensors span at most ~2 m; a much larger spread is millimetres or centimetres
    pos = np.where(raw.valid[..., None], raw.pos, np.nan)
    lo, hi = np.nanmin(pos, axis=1), np.nanmax(pos, axis=1)  # (T, 3), NaN where a frame has no reading
    span = np.nan_to_num(np.linalg.norm(hi - lo, axis=-1), nan=0.0)
    if (span > MAX_SPAN_M).any():
        f = int(np.argmax(span))
        unit = "millimetres" if span[f] > 300 * MAX_SPAN_M / 3 else "centimetres"
        factor = 1000 if unit == "millimetres" else 100
        raise _fail(path, f"the sensors span {span[f]:.1f} (position units) in frame {f}, more than a body can "
                    f"({MAX_SPAN_M:g} m); the positions look like {unit}, but must be metres.",
                    f"divide the positions by {factor} (x, y, z in metres).")


def resample(raw: RawSensors, fps: float) -> RawSensors:
    """An evenly sampled recording at another rate, resampled to `fps`: positions linearly, orientations
    by normalised quaternion interpolation (nearest hemisphere); valid when both neighbours are."""
    t0, t1 = float(raw.time[0]), float(raw.time[-1])
    n = int(math.floor((t1 - t0) * fps + 1e-6)) + 1
    out_t = t0 + np.arange(n) / fps
    src = (out_t - t0) * raw.fps
    i0 = np.clip(np.floor(src + 1e-9).astype(int), 0, len(raw) - 1)
    i1 = np.minimum(i0 + 1, len(raw) - 1)
    w = np.clip(src - i0, 0.0, 1.0)[:, None, None]
    pos = (1 - w) * raw.pos[i0] + w * raw.pos[i1]
    s = len(raw.names)
    q0 = Rotation.from_matrix(raw.ori[i0].reshape(-1, 3, 3)).as_quat().reshape(n, s, 4)
    q1 = Rotation.from_matrix(raw.ori[i1].reshape(-1, 3, 3)).as_quat().reshape(n, s, 4)
    q1 = np.where((q0 * q1).sum(-1, keepdims=True) < 0, -q1, q1)
    q = (1 - w) * q0 + w * q1
    ori = Rotation.from_quat(q.reshape(-1, 4)).as_matrix().reshape(n, s, 3, 3)
    exact = (w[:, 0, 0] < 1e-9)[:, None]
    valid = raw.valid[i0] & (exact | raw.valid[i1])
    return replace(raw, time=out_t, pos=pos, ori=ori, valid=valid, fps=float(fps))


# --------------------------------------------------------------------------- normalisation


def normalise(raw: RawSensors, body_model, reference: str = REFERENCE_SITE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Root-normalised (pos, ori, valid) float32 through `api.RootNormaliser` (see the module docstring);
    frames whose reference reading is missing become missing."""
    from empose_framework.api import RootNormaliser

    if reference not in raw.names:
        raise _fail(raw.path, f"has no reading for the reference site '{reference}' (sites: {list(raw.names)}); "
                    "empose places the body relative to it (it stands in for the pelvis).",
                    f"record the '{reference}' sensor, or pick another site as `reference:`.")
    k = raw.names.index(reference)
    if not raw.valid[:, k].any():
        raise _fail(raw.path, f"the reference site '{reference}' is missing in every frame.",
                    "give valid readings for it (NaN or valid=0 marks a reading missing).")
    off_t = raw.offset_t[k] if raw.offset_t is not None else None
    off_r = raw.offset_r[k] if raw.offset_r is not None else None
    return RootNormaliser(body_model, raw.names, reference, off_t, off_r)(raw.pos, raw.ori, raw.valid)


def check_sites(raw: RawSensors, wanted: Sequence[str], available: Sequence[str], what: str) -> None:
    """Every site of the file must exist on the body model, and every site `wanted` must be in the file."""
    unknown = [n for n in raw.names if n not in available]
    if unknown:
        raise _fail(raw.path, f"site(s) {unknown} are not sensor sites of the body model (sites: {', '.join(available)}).",
                    "rename them to the body model's site names (e.g. 'back', 'l_forearm'), or drop those rows.")
    missing = [n for n in wanted if n not in raw.names]
    if missing:
        raise _fail(raw.path, f"{what} needs the site(s) {missing}, which the file lacks (it has {list(raw.names)}).",
                    f"add readings for {missing} (NaN where not recorded), or use a model trained for the file's sensors.")


# --------------------------------------------------------------------------- the sensor source


class SensorFileSource(SensorSource):
    """Your own trackers: a plain sensor file (.npz or .csv), root-normalised on the `back` sensor.

    One file, or a folder of *.npz / *.csv files (each a sequence, sorted by name). No ground truth:
    use it for `empose predict`, not for training or metrics."""

    params = schema.SENSOR_FILE

    def __init__(self, *, path: str, sensors, reference: str, body_model):
        from empose_framework.envvars import expand_env_path

        root, _ = expand_env_path(path, lambda name: EmposeError(
            f"{WHERE}: the path '{path}' uses the environment variable {name}, which is not set. Set it or give the path."))
        if root.is_dir():
            files = sorted(p for p in root.iterdir() if p.suffix.lower() in (".npz", ".csv") and p.is_file())
            if not files:
                raise DataError(f"{WHERE}: no *.npz or *.csv sensor files in {root}. Point `path` at a file or a folder of them.")
        else:
            files = [root]
        self.body_model = body_model
        self.reference = reference
        self.raw = [read_sensor_file(p) for p in files]
        sites = list(body_model.sensor_sites)
        if sensors is None:
            names = self.raw[0].names
        else:
            sets = {"em6": ("back", "head", "r_forearm", "r_shank", "l_forearm", "l_shank"),
                    "em12": ("back", "head", "r_forearm", "r_upper_arm", "r_shoulder", "r_thigh", "r_shank",
                             "l_forearm", "l_upper_arm", "l_shoulder", "l_thigh", "l_shank")}
            spec = {6: "em6", 12: "em12"}.get(sensors, sensors) if isinstance(sensors, int) else sensors
            if isinstance(spec, str) and spec not in sets:
                raise EmposeError(f"{WHERE}: unknown sensor set '{spec}'. Use 'em6', 'em12' or a list of site names.")
            names = sets[spec] if isinstance(spec, str) else tuple(spec)
        for r in self.raw:
            check_sites(r, names, sites, WHERE)
        self.sensor_names = tuple(names)

    def __len__(self) -> int:
        return len(self.raw)

    def windows(self, batch_size: int, window: int, *, train: bool, seed: int, device="cpu") -> Iterator:
        raise EmposeError(f"{WHERE}: a plain sensor file has no ground truth, so it cannot train or validate a model. "
                          "Use it with `empose predict`, or train on `virtual_em` / `empose_recordings`.")

    def sequences(self, device="cpu") -> Iterator:
        for raw in self.raw:
            yield self.batch(raw, device)

    def batch(self, raw: RawSensors, device="cpu"):
        """One whole sequence as a Batch (target None)."""
        import torch

        from empose_framework.interfaces import Batch, SensorFrames, SensorOffsets

        pos, ori, valid = normalise(raw, self.body_model, self.reference)
        idx = [raw.names.index(n) for n in self.sensor_names]
        sensors = SensorFrames(torch.as_tensor(pos[None][:, :, idx], device=device),
                               torch.as_tensor(ori[None][:, :, idx], device=device),
                               torch.as_tensor(valid[None][:, :, idx], device=device), self.sensor_names)
        offsets = None
        if raw.offset_t is not None:
            offsets = SensorOffsets(torch.as_tensor(raw.offset_t[idx][None], dtype=torch.float32, device=device),
                                    torch.as_tensor(raw.offset_r[idx][None], dtype=torch.float32, device=device))
        seq_len = torch.tensor([len(raw)], device=device)
        return Batch(sensors, None, seq_len, [raw.path.stem], offsets, frame_valid=sensors.valid.all(-1))
