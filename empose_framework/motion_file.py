"""The empose motion file: a predicted (or true) body motion as an AMASS-layout `*.npz`.

One file is both an AMASS SMPL-H `*_poses.npz` (`poses` (T, 156), `betas`, `trans`,
`mocap_framerate`, `gender`: what `empose preprocess amass` and other AMASS tools read) and empose's
own exchange format between `empose predict` and `empose render` (the `empose_*` keys below). Written
with np.savez (no object arrays), so it loads with `allow_pickle=False`.

| key | shape | meaning |
|---|---|---|
| poses | (T, 156) float32 | SMPL-H local axis-angle: root, 21 body joints, 30 hand joints (zeros) |
| betas | (16,) float32 | the body model's K shape coefficients, then zeros |
| trans | (T, 3) float32 | root translation in metres; zeros when unknown |
| mocap_framerate | () float64 | frames per second |
| gender | () str | `neutral` |
| empose_kind | () str | `prediction` or `truth` |
| empose_body_model | () str | JSON of the body-model spec, e.g. `{"use": "embedded"}` |
| empose_trans_known | () bool | whether `trans` is real |
| empose_frame_valid | (T,) bool | frames whose sensor readings were all valid |
| empose_sensor_names/pos/ori/valid | (S,), (T, S, 3), (T, S, 3, 3), (T, S) | optional: the input sensors |

Poses are in empose's normalised frame (first-frame root orientation = identity). Joints are the 22
SMPL body joints; a body model is mapped onto them by joint name (`empose_framework.joints`).
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from empose_framework.errors import DataError, EmposeError
from empose_framework.joints import SMPL_BODY_JOINTS, body_joint_index

N_SMPLH_POSE = 156  # 52 joints x 3
N_BODY = len(SMPL_BODY_JOINTS)  # 22
N_BETAS_FILE = 16
KINDS = ("prediction", "truth")


@dataclass
class MotionFile:
    """An empose motion file in memory (numpy, SMPL body layout)."""

    pose: np.ndarray  # (T, 22, 3) local axis-angle, SMPL body-joint order
    betas: np.ndarray  # (16,)
    trans: np.ndarray  # (T, 3)
    fps: float
    kind: str = "prediction"
    body_model: dict | None = None
    trans_known: bool = False
    frame_valid: np.ndarray | None = None  # (T,) bool
    sensor_names: tuple[str, ...] | None = None
    sensor_pos: np.ndarray | None = None  # (T, S, 3)
    sensor_ori: np.ndarray | None = None  # (T, S, 3, 3)
    sensor_valid: np.ndarray | None = None  # (T, S)

    def __len__(self) -> int:
        return int(self.pose.shape[0])

    def body_pose(self, body_model) -> tuple[np.ndarray, np.ndarray]:
        """Pose (T, J, 3) in `body_model`'s pose joints (extra joints zero) and betas (K,)."""
        cols = _columns(body_model)
        out = np.zeros((len(self), int(body_model.n_pose_joints), 3), dtype=np.float32)
        out[:, cols] = self.pose
        k = int(body_model.n_betas)
        betas = np.zeros(k, dtype=np.float32)
        betas[: min(k, len(self.betas))] = self.betas[:k]
        return out, betas


def _columns(body_model) -> list[int]:
    cols = body_joint_index(body_model.joint_names, int(body_model.n_pose_joints))
    if cols is None:
        raise EmposeError(
            f"the empose motion file stores the 22 SMPL body joints, but body model {type(body_model).__name__} "
            f"lacks some of them among its first {body_model.n_pose_joints} joints "
            f"({list(body_model.joint_names)[:6]}...). Use an SMPL-H-compatible body model (`embedded`, `smplh`)."
        )
    return cols


def from_body_pose(pose: np.ndarray, betas: np.ndarray, body_model, body_model_spec: dict | None, fps: float,
                   kind: str = "prediction", trans: np.ndarray | None = None, frame_valid: np.ndarray | None = None,
                   sensors: dict | None = None) -> MotionFile:
    """A MotionFile from a body model's pose (T, J, 3) and betas (K,); `sensors` optionally holds
    `names`, `pos`, `ori`, `valid` of the input sensors (same frame as the pose)."""
    pose = np.asarray(pose, dtype=np.float32)
    cols = _columns(body_model)
    b = np.zeros(N_BETAS_FILE, dtype=np.float32)
    betas = np.asarray(betas, dtype=np.float32).reshape(-1)[:N_BETAS_FILE]
    b[: len(betas)] = betas
    t = len(pose)
    mf = MotionFile(
        pose=pose[:, cols], betas=b, trans=np.zeros((t, 3), np.float32) if trans is None else np.asarray(trans, np.float32),
        fps=float(fps), kind=kind, body_model=body_model_spec, trans_known=trans is not None,
        frame_valid=np.ones(t, bool) if frame_valid is None else np.asarray(frame_valid, bool),
    )
    if sensors is not None:
        mf.sensor_names = tuple(sensors["names"])
        mf.sensor_pos = np.asarray(sensors["pos"], np.float32)
        mf.sensor_ori = np.asarray(sensors["ori"], np.float32)
        mf.sensor_valid = np.asarray(sensors["valid"], bool)
    return mf


def write(mf: MotionFile, path: str | os.PathLike) -> Path:
    """Write `mf` as an AMASS-layout npz (the name should end in `.npz`; AMASS tools look for `*_poses.npz`)."""
    if mf.kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {mf.kind!r}")
    path = Path(path)
    t = len(mf)
    poses = np.zeros((t, N_SMPLH_POSE), dtype=np.float32)
    poses[:, : 3 * N_BODY] = mf.pose.reshape(t, 3 * N_BODY)
    arrays = {
        "poses": poses,
        "betas": np.asarray(mf.betas, np.float32),
        "trans": np.asarray(mf.trans, np.float32).reshape(t, 3),
        "mocap_framerate": np.float64(mf.fps),
        "gender": np.array("neutral"),
        "empose_kind": np.array(mf.kind),
        "empose_body_model": np.array(json.dumps(mf.body_model or {})),
        "empose_trans_known": np.bool_(mf.trans_known),
        "empose_frame_valid": np.asarray(mf.frame_valid if mf.frame_valid is not None else np.ones(t, bool), bool),
    }
    if mf.sensor_names is not None:
        arrays["empose_sensor_names"] = np.array(list(mf.sensor_names), dtype=str)
        arrays["empose_sensor_pos"] = np.asarray(mf.sensor_pos, np.float32)
        arrays["empose_sensor_ori"] = np.asarray(mf.sensor_ori, np.float32)
        arrays["empose_sensor_valid"] = np.asarray(mf.sensor_valid, bool)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        np.savez(f, **arrays)
    return path


def read(path: str | os.PathLike) -> MotionFile:
    """Read an empose motion file, or any AMASS SMPL-H `*_poses.npz` (then kind `truth`, trans known);
    DataError naming the file, the key and the fix otherwise."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such motion file. Give an `.npz` written by `empose predict` (or an AMASS *_poses.npz).")
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            rate_key = "mocap_framerate" if "mocap_framerate" in keys else "mocap_frame_rate"
            missing = [k for k in ("poses", "betas", "trans", rate_key) if k not in keys]
            if missing:
                raise DataError(f"{path}: missing key(s) {missing} (keys: {sorted(keys)}); it is not an empose motion "
                                "file or AMASS *_poses.npz. Write one with `empose predict`.")
            a = {k: z[k] for k in keys}
    except DataError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot be read as an npz archive ({type(exc).__name__}: {exc}); it is truncated, "
                        "corrupt or holds pickled objects. Write it again with `empose predict`.") from None
    poses = np.asarray(a["poses"], np.float32)
    if poses.ndim != 2 or poses.shape[1] < 3 * N_BODY:
        raise DataError(f"{path}: key 'poses' has shape {poses.shape}, expected (frames, 156) SMPL-H axis-angle.")
    t = poses.shape[0]
    trans = np.asarray(a["trans"], np.float32)
    if trans.shape != (t, 3):
        raise DataError(f"{path}: key 'trans' has shape {trans.shape}, expected ({t}, 3).")

    def text(key, default):
        return str(a[key].item()) if key in a else default

    kind = text("empose_kind", "truth")
    spec = json.loads(text("empose_body_model", "{}")) or None
    mf = MotionFile(
        pose=poses[:, : 3 * N_BODY].reshape(t, N_BODY, 3), betas=np.asarray(a["betas"], np.float32).reshape(-1),
        trans=trans, fps=float(np.asarray(a[rate_key]).reshape(())), kind=kind, body_model=spec,
        trans_known=bool(a["empose_trans_known"]) if "empose_trans_known" in a else True,
        frame_valid=np.asarray(a["empose_frame_valid"], bool) if "empose_frame_valid" in a else np.ones(t, bool),
    )
    if "empose_sensor_names" in a:
        mf.sensor_names = tuple(str(n) for n in a["empose_sensor_names"])
        mf.sensor_pos, mf.sensor_ori = a["empose_sensor_pos"], a["empose_sensor_ori"]
        mf.sensor_valid = np.asarray(a["empose_sensor_valid"], bool)
    return mf
