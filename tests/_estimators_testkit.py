"""Shared helpers of the estimator and loss tests (imported, not a conftest).

`TinyBody` is a small differentiable test double of a body model: a 5-joint tree whose rest joints
are linear in 3 betas, with every EM-POSE site rigidly attached to one joint. It keeps the LGD tests
fast and lets them check sizes that differ from SMPL-H (J = 4, K = 3). `body_model()` gives the
embedded SMPL-H-compatible body when it is installed, `TinyBody` otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from empose_framework.geometry import aa_to_rotmat
from empose_framework.interfaces import BodyModel, BodyOutput, BodyPose, SensorFrames, SensorOffsets

EM12 = ("back", "head", "r_forearm", "r_upper_arm", "r_shoulder", "r_thigh",
        "r_shank", "l_forearm", "l_upper_arm", "l_shoulder", "l_thigh", "l_shank")  # fmt: skip
EM6 = tuple(EM12[i] for i in (0, 1, 2, 6, 7, 11))
STATE_DICTS = Path(__file__).resolve().parent / "data" / "original_state_dicts.json"


def _broadcast(x: torch.Tensor, lead: tuple, n_trailing: int) -> torch.Tensor:
    """(B, *trailing) or (*lead, *trailing) -> (*lead, *trailing)."""
    trailing = x.shape[x.dim() - n_trailing:]
    prefix = x.shape[: x.dim() - n_trailing]
    x = x.reshape(tuple(prefix) + (1,) * (len(lead) - len(prefix)) + tuple(trailing))
    return x.expand(tuple(lead) + tuple(trailing))


class TinyBody(BodyModel):
    """5 joints (root, two chains of two), J = 4 estimated, K = 3 betas, 12 sites."""

    joint_names = ("root", "a1", "a2", "b1", "b2")
    parents = (-1, 0, 1, 0, 3)
    n_pose_joints = 4
    n_betas = 3

    def __init__(self, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.j_rest = torch.randn(5, 3, generator=g) * 0.3
        self.j_dirs = torch.randn(5, 3, 3, generator=g) * 0.05  # joint j, coord, beta
        self.site_joint = [i % 5 for i in range(12)]
        self.site_local = torch.randn(12, 3, generator=g) * 0.1
        self.sensor_sites = {name: i for i, name in enumerate(EM12)}
        self.faces = torch.zeros(0, 3, dtype=torch.long)

    def to(self, device):
        for k in ("j_rest", "j_dirs", "site_local"):
            setattr(self, k, getattr(self, k).to(device))
        return self

    def _global(self, pose: BodyPose):
        theta = pose.pose
        lead = tuple(theta.shape[:-2])
        rot = aa_to_rotmat(theta)
        if theta.shape[-2] < 5:
            eye = torch.eye(3, dtype=rot.dtype).expand(*lead, 5 - theta.shape[-2], 3, 3)
            rot = torch.cat([rot, eye], dim=-3)
        betas = _broadcast(pose.betas, lead, 1)
        rest = self.j_rest + torch.einsum("jck,...k->...jc", self.j_dirs, betas)
        g_rot, g_pos = [None] * 5, [None] * 5
        for j, p in enumerate(self.parents):
            if p < 0:
                g_rot[j], g_pos[j] = rot[..., j, :, :], rest[..., j, :]
            else:
                g_rot[j] = g_rot[p] @ rot[..., j, :, :]
                g_pos[j] = g_pos[p] + (g_rot[p] @ (rest[..., j, :] - rest[..., p, :])[..., None])[..., 0]
        return lead, torch.stack(g_rot, -3), torch.stack(g_pos, -2)

    def forward(self, pose: BodyPose, vertices: bool = True) -> BodyOutput:
        lead, g_rot, g_pos = self._global(pose)
        verts = None
        if vertices:
            verts, _ = self.sensor_frames(pose, EM12)
        return BodyOutput(joints=g_pos, global_rot=g_rot, vertices=verts)

    def sensor_frames(self, pose: BodyPose, sites, offsets: SensorOffsets | None = None):
        lead, g_rot, g_pos = self._global(pose)
        idx = [self.sensor_sites[s] for s in sites]
        joints = [self.site_joint[i] for i in idx]
        rot = g_rot[..., joints, :, :]
        pos = g_pos[..., joints, :] + (rot @ self.site_local[idx][..., None])[..., 0]
        if offsets is not None:
            t = _broadcast(offsets.t, lead, 2)
            r = _broadcast(offsets.r, lead, 3)
            pos = pos + (rot @ t[..., None])[..., 0]
            rot = rot @ r
        return pos, rot


def embedded_body():
    """The embedded SMPL-H-compatible body model, or None while it is not installed."""
    try:
        from empose_smplh.model import EmbeddedBody

        return EmbeddedBody()
    except Exception:  # noqa: BLE001 - not written yet / its data not generated
        return None


def random_sensors(body, names, b=2, t=5, seed=0, offsets=True):
    """Sensor frames of a random pose sequence placed by `body` itself (plus its pose), and offsets."""
    g = torch.Generator().manual_seed(seed)
    pose = BodyPose(torch.randn(b, t, body.n_pose_joints, 3, generator=g) * 0.3, torch.randn(b, body.n_betas, generator=g) * 0.5)
    off = None
    if offsets:
        off = SensorOffsets(
            torch.randn(b, len(names), 3, generator=g) * 0.02,
            aa_to_rotmat(torch.randn(b, len(names), 3, generator=g) * 0.2),
        )
    pos, ori = body.sensor_frames(pose, names, off)
    valid = torch.ones(b, t, len(names), dtype=torch.bool)
    return SensorFrames(pos.detach(), ori.detach(), valid, tuple(names)), off, pose


# ---------------------------------------------------------------------- the released models' layouts


def parse_flags(text: str) -> dict:
    """`--a 1 --b --c x` -> {"a": 1, "b": True, "c": "x"} (numbers parsed)."""
    out, tokens, i = {}, text.split(), 0
    while i < len(tokens):
        key = tokens[i].lstrip("-")
        if i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
            raw = tokens[i + 1]
            try:
                value = int(raw)
            except ValueError:
                try:
                    value = float(raw)
                except ValueError:
                    value = raw
            out[key], i = value, i + 2
        else:
            out[key], i = True, i + 1
    return out


def released_state_dicts(path: Path = STATE_DICTS) -> dict:
    """Paper model name -> {"flags": dict, "count": int (without the body model), "keys": {key: (shape, dtype)}}:
    the released models' `model_state_dict` layouts (tests/data/make_state_dicts.py wrote the file; keys in
    the original's order), independent of empose's code."""
    models = json.loads(path.read_text())["models"]
    return {name: {"flags": parse_flags(m["flags"]), "count": m["count"],
                   "keys": {key: (tuple(shape), dtype) for key, shape, dtype in m["keys"]}}
            for name, m in models.items()}  # fmt: skip


def original_layout_state_dict(table: dict, seed: int = 0) -> dict:
    """Random tensors with exactly the released keys, shapes and dtypes (body-model entries tiny:
    the converter drops them)."""
    g = torch.Generator().manual_seed(seed)
    dtypes = {"float32": torch.float32, "int64": torch.int64, "int32": torch.int32}
    out = {}
    for key, (shape, dtype) in table["keys"].items():
        if key.startswith("smpl."):
            out[key] = torch.zeros(1, dtype=dtypes[dtype])
        elif key.endswith("running_var"):
            out[key] = torch.rand(shape, generator=g) + 0.5
        elif dtypes[dtype].is_floating_point:
            out[key] = torch.randn(shape, generator=g, dtype=dtypes[dtype]) * 0.05
        else:
            out[key] = torch.randint(0, 100, shape, generator=g, dtype=dtypes[dtype])
    return out


def numpy_sum_of_norms(pred, target, seq_len, mask=None):
    """Independent numpy version of the original's reconstruction loss (docs/method.md §8.1)."""
    pred, target = np.asarray(pred, np.float64), np.asarray(target, np.float64)
    per = np.sqrt(((pred - target) ** 2).sum(-1)).sum(-1)  # (B, T)
    total = 0.0
    for n, length in enumerate(np.asarray(seq_len)):
        keep = np.arange(per.shape[1]) < length
        if mask is not None:
            keep &= np.asarray(mask[n])
        total += per[n][keep].sum() / length
    return total / per.shape[0]
