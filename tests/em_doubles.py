"""Test doubles for the EM sensor-source tests: a tiny skinned mesh body model, an in-memory motion
source, an independent numpy/scipy computation of virtual sensors (§4), and a writer of EM-POSE
recording files in the exact §5.2/§5.3 layout.

The tiny body has the 22 SMPL body joints (names/parents of docs/method.md §2.2), 11 hexagonal-prism
segments (154 vertices) skinned with linear blend skinning (blended rings near the joints), a linear
shape space of K=3 betas, and the 12 EM-POSE sites plus a 'chest' site.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from empose_framework.geometry import aa_to_rotmat
from empose_framework.interfaces import BodyModel, BodyOutput, BodyPose, Motion, MotionSource, SensorOffsets
from empose_framework.kinematics import chain

JOINTS = [
    ("pelvis", -1, (0.0, 0.0, 0.0)), ("l_hip", 0, (0.1, -0.08, 0.0)), ("r_hip", 0, (-0.1, -0.08, 0.0)),
    ("spine1", 0, (0.0, 0.1, 0.0)), ("l_knee", 1, (0.1, -0.5, 0.0)), ("r_knee", 2, (-0.1, -0.5, 0.0)),
    ("spine2", 3, (0.0, 0.25, 0.0)), ("l_ankle", 4, (0.1, -0.9, 0.0)), ("r_ankle", 5, (-0.1, -0.9, 0.0)),
    ("spine3", 6, (0.0, 0.35, 0.0)), ("l_foot", 7, (0.1, -0.95, 0.1)), ("r_foot", 8, (-0.1, -0.95, 0.1)),
    ("neck", 9, (0.0, 0.5, 0.0)), ("l_collar", 9, (0.08, 0.45, 0.0)), ("r_collar", 9, (-0.08, 0.45, 0.0)),
    ("head", 12, (0.0, 0.6, 0.0)), ("l_shoulder", 13, (0.18, 0.45, 0.0)), ("r_shoulder", 14, (-0.18, 0.45, 0.0)),
    ("l_elbow", 16, (0.45, 0.45, 0.0)), ("r_elbow", 17, (-0.45, 0.45, 0.0)), ("l_wrist", 18, (0.7, 0.45, 0.0)),
    ("r_wrist", 19, (-0.7, 0.45, 0.0)),
]  # fmt: skip
# (joint, segment end point, radius): a prism from the joint to the end point, skinned to the joint
SEGMENTS = [
    (0, (0.0, 0.12, 0.0), 0.10), (9, (0.0, 0.5, 0.0), 0.09), (15, (0.0, 0.8, 0.0), 0.07),
    (16, (0.45, 0.45, 0.0), 0.04), (18, (0.7, 0.45, 0.0), 0.035), (17, (-0.45, 0.45, 0.0), 0.04),
    (19, (-0.7, 0.45, 0.0), 0.035), (1, (0.1, -0.5, 0.0), 0.06), (4, (0.1, -0.9, 0.0), 0.045),
    (2, (-0.1, -0.5, 0.0), 0.06), (5, (-0.1, -0.9, 0.0), 0.045),
]  # fmt: skip
# site -> (segment index, ring (0 = blended start ring, 1 = rigid end ring), vertex of the ring)
SITES = {
    "back": (0, 1, 4), "head": (2, 1, 1), "r_forearm": (6, 1, 2), "r_upper_arm": (5, 0, 3),
    "r_shoulder": (1, 1, 3), "r_thigh": (9, 0, 5), "r_shank": (10, 1, 0), "l_forearm": (4, 1, 2),
    "l_upper_arm": (3, 0, 3), "l_shoulder": (1, 1, 0), "l_thigh": (7, 0, 5), "l_shank": (8, 1, 0),
    "chest": (1, 0, 1),
}  # fmt: skip
N_RING = 6


def _build_mesh():
    j_rest = np.array([p for _, _, p in JOINTS], dtype=np.float64)
    parents = [p for _, p, _ in JOINTS]
    verts, faces, weights, site_ids = [], [], [], {}
    for si, (j, end, radius) in enumerate(SEGMENTS):
        start, end = j_rest[j], np.array(end)
        axis = (end - start) / np.linalg.norm(end - start)
        u = np.cross(axis, [0.0, 0.0, 1.0] if abs(axis[2]) < 0.9 else [1.0, 0.0, 0.0])
        u /= np.linalg.norm(u)
        w = np.cross(axis, u)
        base = len(verts)
        for ring, centre in enumerate((start + 0.02 * axis, end)):
            for k in range(N_RING):
                ang = 2 * np.pi * k / N_RING
                verts.append(centre + radius * (np.cos(ang) * u + np.sin(ang) * w))
                wt = np.zeros(len(JOINTS))
                if ring == 0 and parents[j] >= 0:
                    wt[j], wt[parents[j]] = 0.7, 0.3
                else:
                    wt[j] = 1.0
                weights.append(wt)
        verts += [start, end]
        weights += [np.eye(len(JOINTS))[j], np.eye(len(JOINTS))[j]]
        c0, c1 = base + 2 * N_RING, base + 2 * N_RING + 1
        mid = (start + end) / 2
        seg_faces = []
        for k in range(N_RING):
            a0, b0 = base + k, base + (k + 1) % N_RING
            a1, b1 = a0 + N_RING, b0 + N_RING
            seg_faces += [(a0, b0, b1), (a0, b1, a1), (c0, b0, a0), (c1, a1, b1)]
        vv = np.array(verts)
        for f in seg_faces:  # orient every face outward (away from the segment's middle)
            n = np.cross(vv[f[1]] - vv[f[0]], vv[f[2]] - vv[f[0]])
            faces.append(f if n @ (vv[list(f)].mean(0) - mid) > 0 else (f[0], f[2], f[1]))
        for name, (seg, ring, k) in SITES.items():
            if seg == si:
                site_ids[name] = base + ring * N_RING + k
    return j_rest, parents, np.array(verts), np.array(faces), np.array(weights), site_ids


def helper_vertex(faces: np.ndarray, v: int) -> int:
    """§4 step 3: the highest-index face containing v, then its first vertex (winding order) != v."""
    f = faces[np.nonzero((faces == v).any(1))[0].max()]
    return int(next(x for x in f if x != v))


class TinyBody(BodyModel):
    """A tiny skinned mesh body with the SMPL body-joint tree and named EM sites (test double)."""

    def __init__(self, n_betas: int = 3, seed: int = 0):
        j_rest, parents, verts, faces, weights, sites = _build_mesh()
        rng = np.random.default_rng(seed)
        self.joint_names = [n for n, _, _ in JOINTS]
        self.parents = parents
        self.n_pose_joints = 22
        self.n_betas = n_betas
        self.sensor_sites = sites
        # numpy copies for the independent reference computation
        self.np_j_rest, self.np_verts, self.np_weights = j_rest, verts, weights
        self.np_faces = faces
        self.np_jdirs = rng.normal(scale=0.01, size=(len(j_rest), 3, n_betas))
        self.np_shapedirs = self.np_jdirs[weights.argmax(1)] + rng.normal(scale=0.003, size=(len(verts), 3, n_betas))
        self.helpers = {name: helper_vertex(faces, v) for name, v in sites.items()}
        t = lambda a: torch.as_tensor(a, dtype=torch.float32)  # noqa: E731
        self.j_rest, self.verts, self.weights = t(j_rest), t(verts), t(weights)
        self.jdirs, self.shapedirs = t(self.np_jdirs), t(self.np_shapedirs)
        self.faces = torch.as_tensor(faces, dtype=torch.long)
        self.forward_calls = 0

    def to(self, device):
        for k in ("j_rest", "verts", "weights", "jdirs", "shapedirs", "faces"):
            setattr(self, k, getattr(self, k).to(device))
        return self

    def forward(self, pose: BodyPose, vertices: bool = True) -> BodyOutput:
        self.forward_calls += 1
        theta = pose.pose
        lead = theta.shape[:-2]
        betas = _expand(pose.betas, len(lead), 1).expand(*lead, -1)
        rot = chain(aa_to_rotmat(theta), self.parents)  # (..., J, 3, 3)
        jr = self.j_rest + torch.einsum("jck,...k->...jc", self.jdirs, betas)
        pos = [None] * len(self.parents)
        for j, p in enumerate(self.parents):
            pos[j] = jr[..., 0, :] if p < 0 else pos[p] + (rot[..., p, :, :] @ (jr[..., j, :] - jr[..., p, :])[..., None])[..., 0]
        joints = torch.stack(pos, -2)
        trans = pose.trans if pose.trans is not None else torch.zeros_like(joints[..., 0, :])
        verts = None
        if vertices:
            vr = self.verts + torch.einsum("vck,...k->...vc", self.shapedirs, betas)
            # each joint's transform applied to every rest vertex: G_j (v - J_j) + p_j
            local = vr[..., None, :, :] - jr[..., :, None, :]  # (..., J, V, 3)
            per_joint = torch.einsum("...jab,...jvb->...jva", rot, local) + joints[..., :, None, :]
            verts = torch.einsum("vj,...jva->...va", self.weights, per_joint) + trans[..., None, :]
        return BodyOutput(joints + trans[..., None, :], rot, verts)

    def sensor_frames(self, pose, sites, offsets: SensorOffsets | None = None):
        out = self.forward(pose, vertices=True)
        v = out.vertices
        ids = [self.sensor_sites[s] for s in sites]
        p = v[..., ids, :]
        tri = v[..., self.faces, :]  # (..., F, 3, 3)
        fn = torch.cross(tri[..., 1, :] - tri[..., 0, :], tri[..., 2, :] - tri[..., 0, :], dim=-1)
        inc = torch.stack([(self.faces == i).any(1) for i in ids]).float()  # (S, F)
        n = torch.einsum("sf,...fc->...sc", inc / inc.sum(1, keepdim=True), fn)
        z = n / n.norm(dim=-1, keepdim=True)
        u = v[..., [self.helpers[s] for s in sites], :] - p
        y = torch.cross(z, u / u.norm(dim=-1, keepdim=True), dim=-1)
        y = y / y.norm(dim=-1, keepdim=True)
        x = torch.cross(y, z, dim=-1)
        x = x / x.norm(dim=-1, keepdim=True)
        rot = torch.stack([x, y, z], dim=-1)
        if offsets is None:
            return p, rot
        lead = p.dim() - 2
        t = _expand(offsets.t, lead, 2)
        r = _expand(offsets.r, lead, 3)
        return p + (rot @ t[..., None])[..., 0], rot @ r


def _expand(x: torch.Tensor, n_lead: int, n_trail: int) -> torch.Tensor:
    """Insert singleton dims before the trailing `n_trail` dims until x has n_lead leading dims."""
    while x.dim() - n_trail < n_lead:
        x = x.unsqueeze(x.dim() - n_trail)
    return x


class ListMotions(MotionSource):
    """An in-memory motion source (test double) that counts item reads."""

    def __init__(self, motions: list[Motion]):
        self.motions = motions
        self.reads = 0

    def __len__(self):
        return len(self.motions)

    def __getitem__(self, i):
        self.reads += 1
        return self.motions[i]


def random_motion(rng: np.random.Generator, t: int, n_betas: int = 3, name: str = "m", j: int = 22) -> Motion:
    """A smooth random motion with a large, tilted root rotation and a wandering translation."""
    phase = rng.uniform(0, 2 * np.pi, size=(j, 3))
    amp = rng.uniform(0.05, 0.5, size=(j, 3))
    freq = rng.uniform(0.02, 0.1, size=(j, 3))
    f = np.arange(t)[:, None, None]
    pose = amp * np.sin(freq * f + phase)
    pose[:, 0] = (Rotation.from_rotvec(rng.normal(size=3)) * Rotation.from_rotvec(pose[:, 0])).as_rotvec()
    trans = np.cumsum(rng.normal(scale=0.01, size=(t, 3)), axis=0) + rng.normal(size=3)
    return Motion(name, pose.astype(np.float32), rng.normal(size=n_betas).astype(np.float32), trans.astype(np.float32))


# ------------------------------------------------------------------ independent reference (numpy)


def reference_skin(body: TinyBody, pose: np.ndarray, betas: np.ndarray, trans: np.ndarray | None):
    """Per frame, in plain numpy/scipy loops: vertices (T, V, 3) of the tiny body (LBS of §3)."""
    jr = body.np_j_rest + body.np_jdirs @ betas
    vr = body.np_verts + body.np_shapedirs @ betas
    out = []
    for f in range(pose.shape[0]):
        g, p = [None] * len(body.parents), [None] * len(body.parents)
        for j, par in enumerate(body.parents):
            local = Rotation.from_rotvec(pose[f, j]).as_matrix()
            g[j] = local if par < 0 else g[par] @ local
            p[j] = jr[j] if par < 0 else p[par] + g[par] @ (jr[j] - jr[par])
        v = np.zeros_like(vr)
        for j in range(len(body.parents)):
            v += body.np_weights[:, j : j + 1] * ((vr - jr[j]) @ g[j].T + p[j])
        out.append(v + (0 if trans is None else trans[f]))
    return np.stack(out)


def reference_sensors(body, verts: np.ndarray, sites, t=None, r=None):
    """§4 on given vertices (T, V, 3) of `body` (any model with `faces` and `sensor_sites`): skin frames
    and offsets -> positions (T,S,3), orientations (T,S,3,3). `t` (S,3) or (T,S,3) and `r` (S,3,3) are
    the offsets (None = zero/identity)."""
    faces = np.asarray(body.faces.cpu())
    vids = [body.sensor_sites[s] for s in sites]
    incident = [faces[(faces == vid).any(1)] for vid in vids]
    helpers = [helper_vertex(faces, vid) for vid in vids]
    pos, ori = np.zeros((len(verts), len(sites), 3)), np.zeros((len(verts), len(sites), 3, 3))
    for f, v in enumerate(verts):
        for k, vid in enumerate(vids):
            n = np.mean([np.cross(v[a] - v[b0], v[c] - v[b0]) for b0, a, c in incident[k]], axis=0)
            z = n / np.linalg.norm(n)
            u = v[helpers[k]] - v[vid]
            y = np.cross(z, u / np.linalg.norm(u))
            y /= np.linalg.norm(y)
            x = np.cross(y, z)
            rk = np.stack([x, y, z], axis=1)
            tk = np.zeros(3) if t is None else (t[f, k] if t.ndim == 3 else t[k])
            pos[f, k] = v[vid] + rk @ tk
            ori[f, k] = rk if r is None else rk @ r[k]
    return pos, ori


def normalise_reference(pose: np.ndarray) -> np.ndarray:
    """Root of every frame relative to frame 0 (R0^T R_f), with scipy."""
    out = pose.astype(np.float64).copy()
    r0 = Rotation.from_rotvec(out[0, 0])
    out[:, 0] = (r0.inv() * Rotation.from_rotvec(out[:, 0])).as_rotvec()
    return out


# ------------------------------------------------------------------ files in the EM-POSE layout


def random_offsets(rng: np.random.Generator, scale: float = 0.015):
    means = rng.normal(scale=scale, size=(12, 3))
    a = rng.normal(scale=0.004, size=(12, 3, 3))
    covs = a @ np.swapaxes(a, -1, -2)
    r = Rotation.from_rotvec(rng.normal(scale=0.15, size=(12, 3))).as_matrix()
    return means, covs, r


def write_offsets(path: Path, means, covs, r, vertex_ids=None):
    ids = np.arange(12) if vertex_ids is None else vertex_ids
    np.savez(path, means=means, covs=covs, r=r, vertex_ids=np.asarray(ids, dtype=np.int64))


def write_recording(path: Path, seq_id: str, pos, ori, masks, poses66, shape10, trans, means, covs, r):
    """One `<subject>_<task>_M_clean.npz` with the keys, dtypes and shapes of §5.2."""
    np.savez(
        path,
        id=np.array(seq_id),
        sensor_pos=np.asarray(pos, dtype=np.float64).reshape(len(pos), 12, 3),
        sensor_oris=np.asarray(ori, dtype=np.float64).reshape(len(ori), 12, 3, 3),
        sensor_masks=np.asarray(masks, dtype=bool),
        smpl_poses=np.asarray(poses66, dtype=np.float64).reshape(len(poses66), 66),
        smpl_shape=np.asarray(shape10, dtype=np.float64),
        smpl_trans=np.asarray(trans, dtype=np.float64),
        offset_means=np.asarray(means, dtype=np.float64),
        offset_covs=np.asarray(covs, dtype=np.float64),
        offset_r=np.asarray(r, dtype=np.float64),
    )
