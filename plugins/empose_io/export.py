"""Exports of a predicted motion that other tools open: BVH of the body's skeleton and joints npz.

(The AMASS-layout npz is the empose motion file, `empose_framework.motion_file`.)

BVH: the 22 SMPL body joints with their smplx names, OFFSETs from the body model's rest joints for the
motion's shape (so bone lengths are the predicted body's), y up as the body's rest pose, metres by
default (`units="cm"` for tools that expect centimetres). The ROOT has OFFSET 0 0 0 and six channels
`Xposition Yposition Zposition Zrotation Xrotation Yrotation` whose positions are the absolute pelvis
position (rest pelvis + translation), so readers that add the offset and readers that do not agree;
every other joint has `Zrotation Xrotation Yrotation` (R = Rz Rx Ry, degrees, local to parent).
Leaves (head, wrists, feet) end in an `End Site` along the body's next bone (fingers, toes) or their
own bone's direction.

Joints npz: `joints (T, 22, 3)` metres (with translation), `global_rot (T, 22, 3, 3)` (local to world),
`joint_names (22,)`, `parents (22,)`, `frame_valid (T,)` bool, `fps`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from empose_framework.interfaces import BodyPose
from empose_framework.joints import BODY_JOINT_NAMES, SMPL_BODY_PARENTS
from empose_framework.motion_file import MotionFile

UNITS = {"m": 1.0, "cm": 100.0}
FK_CHUNK = 2048


def rest_joints(body_model, mf: MotionFile) -> np.ndarray:
    """Rest positions (22, 3) of the SMPL body joints for the motion's shape, float64."""
    _, betas = mf.body_pose(body_model)
    cols = _cols(body_model)
    with torch.no_grad():
        out = body_model.forward(BodyPose(torch.zeros(1, body_model.n_pose_joints, 3), torch.as_tensor(betas)[None]),
                                 vertices=False)
    return out.joints[0, cols].double().cpu().numpy(), out.joints[0].double().cpu().numpy()


def _cols(body_model) -> list[int]:
    from empose_framework.joints import body_joint_index

    return body_joint_index(body_model.joint_names, int(body_model.n_pose_joints))


def forward_joints(body_model, mf: MotionFile) -> tuple[np.ndarray, np.ndarray]:
    """Joint positions (T, 22, 3) with translation and global rotations (T, 22, 3, 3), in chunks."""
    pose, betas = mf.body_pose(body_model)
    cols = _cols(body_model)
    b = torch.as_tensor(betas)
    pos, rot = [], []
    with torch.no_grad():
        for a in range(0, len(mf), FK_CHUNK):
            p = torch.as_tensor(pose[a : a + FK_CHUNK])
            tr = torch.as_tensor(mf.trans[a : a + FK_CHUNK], dtype=torch.float32)
            out = body_model.forward(BodyPose(p, b.expand(len(p), -1), tr), vertices=False)
            pos.append(out.joints[:, cols].double().cpu().numpy())
            rot.append(out.global_rot[:, cols].double().cpu().numpy())
    return np.concatenate(pos), np.concatenate(rot)


def write_joints(body_model, mf: MotionFile, path: str | os.PathLike) -> Path:
    pos, rot = forward_joints(body_model, mf)
    path = Path(path)
    with path.open("wb") as f:
        np.savez(f, joints=pos.astype(np.float32), global_rot=rot.astype(np.float32),
                 joint_names=np.array(BODY_JOINT_NAMES, dtype=str), parents=np.array(SMPL_BODY_PARENTS, np.int64),
                 frame_valid=np.asarray(mf.frame_valid, bool), fps=np.float64(mf.fps))
    return path


def _end_sites(body_model, rest22: np.ndarray, rest_all: np.ndarray) -> dict[int, np.ndarray]:
    """Offset of an End Site for each leaf of the 22-joint tree."""
    cols = _cols(body_model)
    parents_all = list(body_model.parents)
    out = {}
    for k in range(len(BODY_JOINT_NAMES)):
        if k in SMPL_BODY_PARENTS:
            continue
        j = cols[k]
        kids = [c for c, p in enumerate(parents_all) if p == j]
        if kids:
            off = rest_all[kids].mean(0) - rest_all[j]
        else:
            off = rest22[k] - rest22[SMPL_BODY_PARENTS[k]]
            off = off * 0.5
        if np.linalg.norm(off) < 1e-4:
            off = np.array([0.0, 0.05, 0.0])
        out[k] = off
    return out


def write_bvh(body_model, mf: MotionFile, path: str | os.PathLike, units: str = "m") -> Path:
    """A BVH file of the motion (see the module docstring)."""
    scale = UNITS[units]
    rest22, rest_all = rest_joints(body_model, mf)
    ends = _end_sites(body_model, rest22, rest_all)
    children = {k: [c for c, p in enumerate(SMPL_BODY_PARENTS) if p == k] for k in range(len(BODY_JOINT_NAMES))}
    lines = ["HIERARCHY"]

    def fmt(v):
        return " ".join(f"{x * scale:.6f}" for x in v)

    def joint(k: int, depth: int) -> None:
        pad = "  " * depth
        if SMPL_BODY_PARENTS[k] < 0:
            lines.append(f"ROOT {BODY_JOINT_NAMES[k]}")
            lines.append("{")
            lines.append(f"{pad}  OFFSET 0.000000 0.000000 0.000000")
            lines.append(f"{pad}  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation")
        else:
            lines.append(f"{pad}JOINT {BODY_JOINT_NAMES[k]}")
            lines.append(f"{pad}{{")
            lines.append(f"{pad}  OFFSET {fmt(rest22[k] - rest22[SMPL_BODY_PARENTS[k]])}")
            lines.append(f"{pad}  CHANNELS 3 Zrotation Xrotation Yrotation")
        for c in children[k]:
            joint(c, depth + 1)
        if not children[k]:
            lines.append(f"{pad}  End Site")
            lines.append(f"{pad}  {{")
            lines.append(f"{pad}    OFFSET {fmt(ends[k])}")
            lines.append(f"{pad}  }}")
        lines.append(f"{pad}}}")

    joint(0, 0)
    order = []

    def visit(k):
        order.append(k)
        for c in children[k]:
            visit(c)

    visit(0)
    t = len(mf)
    euler = Rotation.from_rotvec(mf.pose[:, order].reshape(-1, 3).astype(np.float64)).as_euler("ZXY", degrees=True)
    euler = euler.reshape(t, len(order) * 3)
    root_pos = (rest22[0][None] + mf.trans.astype(np.float64)) * scale
    motion = np.concatenate([root_pos, euler], axis=1)
    lines += ["MOTION", f"Frames: {t}", f"Frame Time: {1.0 / mf.fps:.8f}"]
    path = Path(path)
    with path.open("w") as f:
        f.write("\n".join(lines) + "\n")
        np.savetxt(f, motion, fmt="%.6f")
    return path
