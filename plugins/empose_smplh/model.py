"""One skinned body model for every file in the SMPL-H npz layout, driven by smplx's skinning pieces.

`NpzBodyModel` poses the mesh with smplx's `blend_shapes` and `vertices2joints` and the core's
`kinematics.rigid_transforms` (smplx's `batch_rigid_transform`, bit for bit; the SMPL-H convention of
docs/method.md §3.1: shape and pose blend shapes, joints regressed from the shaped template, linear
blend skinning, the root rotating about the rest pelvis J0(beta), `trans` added afterwards; flat hands
unless a 52-joint pose is given). `SMPLH` reads the licensed file, `EmbeddedBody` the generated one; nothing else differs.

Sensor frames follow docs/method.md §4. The fast path (`sensor_frames`) skins only the vertices the sites
need: the site vertices, their helper vertices and every vertex of a face touching a site, with the
joints computed from the precomputed J_regressor·v_template and J_regressor·shapedirs.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from smplx.lbs import blend_shapes, vertices2joints

from empose_framework.errors import DataError, EmposeError
from empose_framework.geometry import aa_to_rotmat
from empose_framework.interfaces import BodyModel, BodyOutput, BodyPose, SensorOffsets
from empose_framework.kinematics import rigid_transforms
from empose_smplh import schema
from empose_smplh.constants import (
    JOINT_NAMES,
    N_POSE_JOINTS,
    PARENTS,
    SENSOR_SITE_NAMES,
    SMPLH_N_VERTICES,
    SMPLH_SENSOR_VERTICES,
)
from empose_smplh.npz import load_model_npz, resolve_smplh_path
from empose_smplh.sensor_grad import (
    Sparse,
    build_sparse,
    corner_index,
    face_rows,
    frame_parts,
    skin,
    sparse_forward,
    sparse_vjp,
)

DTYPE = torch.float32
CHUNK = 1024  # frames skinned at once when full vertices are asked for (bounds memory: CHUNK x V x 16)


def helper_vertices(faces: np.ndarray, vertex_ids: Sequence[int]) -> np.ndarray:
    """The helper (neighbour) vertex of each vertex, docs/method.md §4.3: among the faces containing v, take
    the one with the highest index, then its first vertex in stored winding order that is not v. This
    fixes the x-axis of each sensor frame and so the meaning of measured sensor offsets."""
    out = []
    for v in vertex_ids:
        rows = np.nonzero((faces == v).any(axis=1))[0]
        if rows.size == 0:
            raise EmposeError(f"sensor-site vertex {v} belongs to no face of the mesh; it cannot carry a sensor frame.")
        face = faces[rows.max()]
        out.append(int(next(u for u in face if u != v)))
    return np.asarray(out, dtype=np.int64)


def frames_from_vertices(verts, faces, incidence, site, helper):
    """Sensor frames (docs/method.md §4.2-4.4) from posed vertices `verts (N, U, 3)`: positions (N, S, 3)
    and rotations (N, S, 3, 3) with columns x, y, z. `faces (F, 3)` index `verts`; `incidence (S, F)`
    averages the un-normalised normals of the faces around each site."""
    parts = frame_parts(verts, corner_index(faces, site, helper), incidence)
    return parts["pos"], parts["rot"]


class NpzBodyModel(BodyModel):
    """A body model in the SMPL-H npz layout (see `empose_smplh.npz`), posed through smplx's skinning."""

    def __init__(self, arrays: dict[str, np.ndarray], n_betas: int, source: str):
        self.source = source
        n_shape = arrays["shapedirs"].shape[2]
        if not 1 <= n_betas <= n_shape:
            raise EmposeError(f"body model {source}: n_betas={n_betas}, but the file has {n_shape} shape components; use 1..{n_shape}.")
        self.n_betas = int(n_betas)
        parents = arrays["kintree_table"][0].astype(np.int64).copy()
        parents[0] = -1
        self.parents = tuple(int(p) for p in parents)
        n_j = len(parents)
        if "joint_names" in arrays:
            self.joint_names = tuple(str(n) for n in arrays["joint_names"])
        elif self.parents == PARENTS:
            self.joint_names = JOINT_NAMES
        else:
            self.joint_names = tuple(f"joint_{j}" for j in range(n_j))
        self.n_joints = n_j
        self.n_pose_joints = min(N_POSE_JOINTS, n_j)
        faces = arrays["f"].astype(np.int64)
        self._faces_np = faces
        if "sensor_site_names" in arrays:
            self.sensor_sites = {str(n): int(v) for n, v in zip(arrays["sensor_site_names"], arrays["sensor_site_vertices"])}
        elif arrays["v_template"].shape[0] == SMPLH_N_VERTICES:
            self.sensor_sites = dict(zip(SENSOR_SITE_NAMES, SMPLH_SENSOR_VERTICES))
        else:
            self.sensor_sites = {}
        self.helper_sites = (
            dict(zip(self.sensor_sites, helper_vertices(faces, list(self.sensor_sites.values())).tolist()))
            if self.sensor_sites
            else {}
        )

        f32 = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=DTYPE)  # noqa: E731
        v_template = f32(arrays["v_template"])
        shapedirs = f32(arrays["shapedirs"][:, :, : self.n_betas])
        # joints are linear in beta: J = J_reg v_template + (J_reg shapedirs) beta, precomputed in float64
        j_reg64 = torch.as_tensor(arrays["J_regressor"], dtype=torch.float64)
        j_template = vertices2joints(j_reg64, torch.as_tensor(arrays["v_template"], dtype=torch.float64)[None])[0]
        sd64 = torch.as_tensor(arrays["shapedirs"][:, :, : self.n_betas], dtype=torch.float64)
        j_dirs = vertices2joints(j_reg64, sd64.permute(2, 0, 1)).permute(1, 2, 0)
        posedirs = arrays["posedirs"]
        n_pose_basis = posedirs.shape[2]
        # smplx's layout: (P, V * 3); all-zero pose blend shapes (the embedded body) are skipped.
        posedirs_t = f32(posedirs.reshape(-1, n_pose_basis).T) if np.any(posedirs) else None
        self._cpu = {
            "v_template": v_template,
            "shapedirs": shapedirs,
            "posedirs": posedirs_t,
            "weights": f32(arrays["weights"]),
            "j_template": j_template.to(DTYPE),
            "j_dirs": j_dirs.to(DTYPE).contiguous(),
            "faces": torch.as_tensor(faces, dtype=torch.long),
        }
        self._device_cache: dict[str, dict] = {}
        self._sparse_cache: dict[tuple, Sparse] = {}
        self.device = torch.device("cpu")
        self.faces = self._cpu["faces"]

    # ------------------------------------------------------------------ plumbing
    @property
    def n_vertices(self) -> int:
        return int(self._cpu["v_template"].shape[0])

    def to(self, device) -> "NpzBodyModel":
        self.device = torch.device(device)
        self.faces = self._tensors(self.device)["faces"]
        return self

    def _tensors(self, device: torch.device) -> dict:
        key = str(device)
        if key not in self._device_cache:
            self._device_cache[key] = {k: (v.to(device) if v is not None else None) for k, v in self._cpu.items()}
        return self._device_cache[key]

    def _inputs(self, pose: BodyPose):
        """Flatten pose/betas/trans to (N, ...) float32 on the pose's device; returns the leading shape."""
        theta = pose.pose
        if theta.ndim < 2 or theta.shape[-1] != 3 or theta.shape[-2] not in (self.n_pose_joints, self.n_joints):
            raise EmposeError(
                f"body model {self.source}: pose has shape {tuple(theta.shape)}; expected (..., J, 3) axis-angle "
                f"with J = {self.n_pose_joints} (body joints, flat hands) or {self.n_joints} (all joints)."
            )
        lead = tuple(theta.shape[:-2])
        device = theta.device
        theta = theta.to(DTYPE).reshape(-1, theta.shape[-2], 3)
        betas = _broadcast(pose.betas.to(device, DTYPE), lead, 1, "betas", self.source)
        k = betas.shape[-1]
        if k > self.n_betas:  # docs/method.md §3.1: extra betas are ignored
            betas = betas[..., : self.n_betas]
        elif k < self.n_betas:  # missing trailing components are zero
            betas = torch.nn.functional.pad(betas, (0, self.n_betas - k))
        trans = None
        if pose.trans is not None:
            trans = _broadcast(pose.trans.to(device, DTYPE), lead, 1, "trans", self.source).reshape(-1, 3)
        return lead, device, theta, betas.reshape(-1, self.n_betas), trans

    def _rotations(self, theta: torch.Tensor) -> torch.Tensor:
        """Local rotation matrices (N, J_all, 3, 3); joints beyond the pose get the identity (flat hands)."""
        rot = aa_to_rotmat(theta)
        missing = self.n_joints - rot.shape[1]
        if missing:
            eye = torch.eye(3, dtype=rot.dtype, device=rot.device).expand(rot.shape[0], missing, 3, 3)
            rot = torch.cat([rot, eye], dim=1)
        return rot

    @staticmethod
    def _pose_offsets(rot: torch.Tensor, n_posed: int, posedirs: torch.Tensor | None, n_vertices: int):
        """Pose blend shapes (N, U, 3) from the (R - I) features of the posed non-root joints."""
        if posedirs is None:
            return None
        eye = torch.eye(3, dtype=rot.dtype, device=rot.device)
        feat = (rot[:, 1:n_posed] - eye).reshape(rot.shape[0], -1)
        return (feat @ posedirs[: feat.shape[1]]).view(rot.shape[0], n_vertices, 3)

    # ------------------------------------------------------------------ forward kinematics
    def forward(self, pose: BodyPose, vertices: bool = True) -> BodyOutput:
        lead, device, theta, betas, trans = self._inputs(pose)
        t = self._tensors(device)
        rot = self._rotations(theta)
        joints_rest = t["j_template"] + blend_shapes(betas, t["j_dirs"])
        joints, rel = rigid_transforms(rot, joints_rest, self.parents)
        verts = None
        if vertices:
            chunks = []
            for s in range(0, rot.shape[0], CHUNK):
                sl = slice(s, s + CHUNK)
                v = t["v_template"] + blend_shapes(betas[sl], t["shapedirs"])
                offsets = self._pose_offsets(rot[sl], theta.shape[1], t["posedirs"], v.shape[1])
                if offsets is not None:
                    v = v + offsets
                chunks.append(skin(v, t["weights"], rel[sl])[0])
            verts = torch.cat(chunks, 0)
        if trans is not None:
            joints = joints + trans[:, None]
            verts = verts + trans[:, None] if verts is not None else None
        n_v = self.n_vertices
        return BodyOutput(
            joints=joints.reshape(*lead, self.n_joints, 3),
            global_rot=rel[..., :3, :3].reshape(*lead, self.n_joints, 3, 3),
            vertices=verts.reshape(*lead, n_v, 3) if verts is not None else None,
        )

    # ------------------------------------------------------------------ sensors
    def site_vertices(self, sites: Sequence[str]) -> list[int]:
        unknown = [s for s in sites if s not in self.sensor_sites]
        if unknown:
            raise EmposeError(
                f"body model {self.source} has no sensor site {', '.join(repr(s) for s in unknown)}; its sites "
                f"are {', '.join(self.sensor_sites) or 'none'}."
            )
        return [self.sensor_sites[s] for s in sites]

    def sensor_frames(
        self, pose: BodyPose, sites: Sequence[str], offsets: SensorOffsets | None = None, *, full_mesh: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Positions (..., S, 3) and orientations (..., S, 3, 3) of sensors at `sites` (docs/method.md §4):
        skin-frame position p and rotation R per site, then p + R t and R r with the offsets (B, S, ...),
        broadcast over the trailing pose dims. `full_mesh=True` skins all vertices (for checks)."""
        sites = tuple(sites)
        ids = self.site_vertices(sites)
        lead, device, theta, betas, trans = self._inputs(pose)
        if full_mesh:
            out = self.forward(BodyPose(theta, betas), vertices=True)
            t = self._tensors(device)
            sp = self._sparse(sites, device)  # same site incidence, applied to the full face array
            faces = t["faces"][face_rows(self._faces_np, ids)]
            pos, rot = frames_from_vertices(
                out.vertices, faces, sp.incidence, torch.as_tensor(ids, device=device),
                torch.as_tensor([self.helper_sites[s] for s in sites], device=device),
            )
        else:
            fw = sparse_forward(self._sparse(sites, device), self._rotations(theta), theta.shape[1], betas)
            pos, rot = fw["pos"], fw["rot"]
        return self._place(pos, rot, trans, lead, offsets, device)

    def _place(self, pos, rot, trans, lead, offsets, device):
        """Skin frames (N, S, ...) -> sensor frames (*lead, S, ...): translation, then the offsets."""
        if trans is not None:
            pos = pos + trans[:, None]
        n_s = pos.shape[1]
        pos, rot = pos.reshape(*lead, n_s, 3), rot.reshape(*lead, n_s, 3, 3)
        if offsets is not None:
            off_t = _broadcast(offsets.t.to(device, DTYPE), lead, 2, "offsets.t", self.source)
            off_r = _broadcast(offsets.r.to(device, DTYPE), lead, 3, "offsets.r", self.source)
            if off_t.shape[-2] != n_s or off_r.shape[-3] != n_s:
                raise EmposeError(
                    f"body model {self.source}: offsets are for {off_t.shape[-2]} sensors but {n_s} sites were asked for."
                )
            pos = pos + (rot @ off_t[..., None])[..., 0]
            rot = rot @ off_r
        return pos, rot

    def sensor_frames_vjp(self, pose: BodyPose, sites: Sequence[str], offsets: SensorOffsets | None = None):
        """`sensor_frames` on the sparse path, with the closed-form vector-Jacobian product of
        `empose_smplh.sensor_grad` (no autograd; see `BodyModel.sensor_frames_vjp`)."""
        sites = tuple(sites)
        self.site_vertices(sites)
        lead, device, theta, betas, trans = self._inputs(pose)
        sp = self._sparse(sites, device)
        fw = sparse_forward(sp, self._rotations(theta), theta.shape[1], betas)
        pos, rot = self._place(fw["pos"], fw["rot"], trans, lead, offsets, device)
        off = None
        if offsets is not None:
            off = (_broadcast(offsets.t.to(device, DTYPE), lead, 2, "offsets.t", self.source).reshape(-1, len(sites), 3),
                   _broadcast(offsets.r.to(device, DTYPE), lead, 3, "offsets.r", self.source).reshape(-1, len(sites), 3, 3))  # fmt: skip

        def vjp(d_pos: torch.Tensor, d_ori: torch.Tensor):
            with torch.no_grad():
                d_pos = d_pos.to(device, DTYPE).reshape(-1, len(sites), 3)
                d_rot = d_ori.to(device, DTYPE).reshape(-1, len(sites), 3, 3)
                if off is not None:  # pos = p + R t, ori = R r
                    d_rot = d_rot @ off[1].transpose(-1, -2) + d_pos[..., :, None] * off[0][..., None, :]
                d_theta, d_betas = sparse_vjp(sp, _detached(fw), theta.detach(), d_pos, d_rot)
            return _grad_like(d_theta, pose.pose, lead), _grad_like(d_betas, pose.betas, lead)

        return pos, rot, vjp

    def _sparse(self, sites: tuple, device: torch.device) -> Sparse:
        key = (sites, str(device))
        if key not in self._sparse_cache:
            ids = self.site_vertices(sites)
            helpers = [self.helper_sites[s] for s in sites]
            self._sparse_cache[key] = build_sparse(self._cpu, self.parents, self._faces_np, ids, helpers, device)
        return self._sparse_cache[key]


def _detached(fw: dict) -> dict:
    return {k: v.detach() for k, v in fw.items()}


def _grad_like(grad: torch.Tensor, like: torch.Tensor, lead: tuple) -> torch.Tensor:
    """A per-frame gradient (N, n) as the gradient of `like` (*lead, ..., n) or of a broadcast prefix of it:
    summed over broadcast frames, zero for ignored (extra) components, cut for padded (missing) ones."""
    n = like.shape[-1]
    grad = grad.reshape(*lead, *grad.shape[1:])
    if grad.ndim > like.ndim:
        grad = grad.sum(dim=tuple(range(like.ndim - 1, len(lead))))
    if grad.shape[-1] < n:
        grad = torch.nn.functional.pad(grad, (0, n - grad.shape[-1]))
    return grad[..., :n].reshape(like.shape).to(like.dtype)


def _broadcast(x: torch.Tensor, lead: tuple, n_trailing: int, name: str, source: str) -> torch.Tensor:
    """Give `x (*prefix, *trailing)` the pose's leading dims: `prefix` must be a prefix of `lead` (e.g.
    betas (B, K) for a pose (B, T, J, 3)); missing trailing frame dims are broadcast."""
    prefix = tuple(x.shape[: x.ndim - n_trailing])
    trailing = tuple(x.shape[x.ndim - n_trailing :])
    if x.ndim < n_trailing or prefix != lead[: len(prefix)]:
        raise EmposeError(
            f"body model {source}: {name} has shape {tuple(x.shape)}, which does not broadcast against the pose's "
            f"leading dims {lead}: its leading dims must be a prefix of them (e.g. per sequence (B, ...) or per "
            "frame (B, T, ...))."
        )
    x = x.reshape(prefix + (1,) * (len(lead) - len(prefix)) + trailing)
    return x.expand(lead + trailing)


class SMPLH(NpzBodyModel):
    """SMPL-H (neutral, AMASS "Extended SMPL+H" file from $SMPL_MODELS) posed through smplx's skinning."""

    params = schema.SMPLH

    def __init__(self, *, path: str, n_betas: int):
        resolved = resolve_smplh_path(path)
        super().__init__(load_model_npz(resolved), n_betas=n_betas, source=str(resolved))


class EmbeddedBody(NpzBodyModel):
    """A generated SMPL-H-compatible body (same 52-joint tree, 12 sensor sites); no licensed data."""

    params = schema.EMBEDDED

    def __init__(self, *, n_betas: int):
        from empose_smplh.embedded import embedded_model_path

        path = embedded_model_path()
        try:
            arrays = load_model_npz(path)
        except DataError:  # a damaged cache file: generate it again
            path = embedded_model_path(rebuild=True)
            arrays = load_model_npz(path)
        super().__init__(arrays, n_betas=n_betas, source=f"embedded ({path})")
