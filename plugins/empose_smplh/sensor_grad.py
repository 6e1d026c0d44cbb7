"""The sparse sensor path of `NpzBodyModel` and its closed-form vector-Jacobian product.

Forward (docs/method.md §3.1, §4): local rotations R_j, rest joints J(beta), the kinematic chain
G_j = G_parent(j) [R_j | J_j - J_parent(j)] (`empose_framework.kinematics.rigid_transforms`, smplx's
`batch_rigid_transform` bit for bit), shaped (+ pose-corrective) vertices v_u, linear blend skinning
x_u = sum_j w_uj (Rg_j (v_u - J_j) + c_j), and the sensor frames from those few dozen vertices.

Backward, without autograd: the frame construction (normalise / cross products) is reversed by hand
to a force f_u = dE/dx_u on every skinned vertex. A body-frame rotation delta of joint k rotates
every descendant transform about the posed joint c_k by w = Rg_k delta, so

    dE/d delta_k = Rg_k^T (sum_{j in desc(k)} M_j - c_k x F_j),  M_j = sum_u w_uj y_uj x f_u,  F_j = sum_u w_uj f_u

with y_uj = Rg_j (v_u - J_j) + c_j (sums over descendants are one matrix product with a constant 0/1
matrix), plus the pose-corrective term vee(R_k^T dE/dR_k); dE/dtheta_k = J_r(theta_k)^T dE/d delta_k
(J_r: the right Jacobian of the axis-angle exponential). For the shape: dE/dv_u = sum_j w_uj Rg_j^T f_u
and dE/dJ_a = (Rg_parent(a) - Rg_a)^T sum_{j in desc(a)} F_j, pulled back through the linear shape
blend of the vertices and joints. Every step is batched over frames: no per-joint loop in the backward.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from empose_framework.kinematics import rigid_transforms


@dataclass
class Sparse:
    """Precomputed rows for skinning only the vertices a set of sensor sites needs."""

    v_template: torch.Tensor  # (U, 3)
    shapedirs: torch.Tensor  # (U, 3, K)
    posedirs: torch.Tensor | None  # (P, U * 3)
    weights: torch.Tensor  # (U, Jsub)
    joints: torch.Tensor  # (Jsub,) joint ids the needed vertices depend on (ancestor-closed, by depth)
    parents: tuple[int, ...]  # (Jsub,) parents within the subset, -1 for the root
    corners: torch.Tensor  # (3 Fl + 2 S,) `corner_index` of the Fl faces around the sites, into the U vertices
    incidence: torch.Tensor  # (S, Fl)
    j_template: torch.Tensor  # (Jsub, 3)
    j_dirs: torch.Tensor  # (Jsub, 3, K)
    # for the backward
    descendants: torch.Tensor  # (Jsub, Jsub): 1 where column j is k or below row k
    parent_or_eye: torch.Tensor  # (Jsub,) index into [I, Rg_0, ...]: 0 for the root, parent + 1 otherwise
    shape_basis: torch.Tensor  # ((U + Jsub) * 3, K): [shapedirs; j_dirs] flattened


def build_sparse(arrays: dict, parents: tuple, faces_np: np.ndarray, ids: list, helpers: list, device) -> Sparse:
    """Rows of the vertices, joints and faces that sites `ids` (with helper vertices `helpers`) need."""
    rows = face_rows(faces_np, ids)
    local_faces = faces_np[rows]
    needed = np.unique(np.concatenate([local_faces.ravel(), ids, helpers]))
    remap = {int(v): i for i, v in enumerate(needed)}
    incidence = np.stack([(local_faces == v).any(axis=1) for v in ids]).astype(np.float64)
    incidence /= incidence.sum(axis=1, keepdims=True)
    weights = arrays["weights"][needed]
    used = set(np.nonzero(weights.abs().sum(0).numpy() > 0)[0].tolist()) | {0}
    for j in list(used):  # close under ancestors so the chain is complete
        while parents[j] >= 0:
            j = parents[j]
            used.add(j)
    depth = [0] * len(parents)
    for j, p in enumerate(parents):  # parents come first
        depth[j] = depth[p] + 1 if p >= 0 else 0
    joints = sorted(used, key=lambda j: (depth[j], j))  # by depth: the chain then needs no permutation
    pos_in = {j: i for i, j in enumerate(joints)}
    sub_parents = tuple(pos_in[parents[j]] if j else -1 for j in joints)
    posedirs = None
    if arrays["posedirs"] is not None:
        cols = (needed[:, None] * 3 + np.arange(3)).ravel()
        posedirs = arrays["posedirs"][:, torch.as_tensor(cols)]
    n_j = len(joints)
    desc = np.eye(n_j)
    for j in reversed(range(n_j)):  # children come after parents
        if sub_parents[j] >= 0:
            desc[sub_parents[j]] += desc[j]
    faces_l = np.vectorize(remap.get)(local_faces)
    site = [remap[v] for v in ids]
    helper = [remap[v] for v in helpers]
    sub = torch.as_tensor(joints, dtype=torch.long)
    shapedirs = arrays["shapedirs"][needed]
    j_dirs = arrays["j_dirs"][sub]
    f32 = lambda a: torch.as_tensor(a, dtype=torch.float32, device=device)  # noqa: E731
    dev = lambda x: x.to(device) if x is not None else None  # noqa: E731
    return Sparse(
        v_template=dev(arrays["v_template"][needed]),
        shapedirs=dev(shapedirs),
        posedirs=dev(posedirs),
        weights=dev(weights[:, joints]),
        joints=sub.to(device),
        parents=sub_parents,
        corners=corner_index(*(torch.as_tensor(a, dtype=torch.long, device=device) for a in (faces_l, site, helper))),
        incidence=f32(incidence),
        j_template=dev(arrays["j_template"][sub]),
        j_dirs=dev(j_dirs),
        descendants=f32(desc),
        parent_or_eye=torch.as_tensor([p + 1 for p in sub_parents], dtype=torch.long, device=device),
        shape_basis=dev(torch.cat([shapedirs, j_dirs]).reshape(-1, shapedirs.shape[-1])),
    )


def face_rows(faces: np.ndarray, ids) -> np.ndarray:
    """Indices of the faces touching any of `ids`, in stored order."""
    return np.nonzero(np.isin(faces, ids).any(axis=1))[0]


# --------------------------------------------------------------------------- forward


def corner_index(faces: torch.Tensor, site: torch.Tensor, helper: torch.Tensor) -> torch.Tensor:
    """The vertices `frame_parts` reads, in one index: every face's first, second and third corner
    (faces (F, 3)), then the sites (S,), then their helpers (S,)."""
    return torch.cat([faces.T.reshape(-1), site, helper])


def frame_parts(verts, corners, incidence) -> dict:
    """Sensor frames (docs/method.md §4.2-4.4) from posed vertices `verts (N, U, 3)`, with the intermediate
    vectors the backward needs: p (N, S, 3) and R = [x y z] (N, S, 3, 3) under "pos" and "rot". `corners`
    (`corner_index`) names the faces around the sites, the sites and their helpers; `incidence (S, F)`
    averages the un-normalised normals of each site's faces."""
    n_s, n_f = incidence.shape
    v0, v1, v2, p, h = verts.index_select(1, corners).split([n_f, n_f, n_f, n_s, n_s], dim=1)
    e1, e2 = v1 - v0, v2 - v0
    face_n = torch.linalg.cross(e1, e2)
    z, nz = _normalise(torch.einsum("sf,nfc->nsc", incidence, face_n))
    u, nu = _normalise(h - p)
    y, ny = _normalise(torch.linalg.cross(z, u))
    x, nx = _normalise(torch.linalg.cross(y, z))
    return {"pos": p, "rot": torch.stack([x, y, z], dim=-1), "e1": e1, "e2": e2, "x": x, "y": y, "z": z, "u": u,
            "nx": nx, "ny": ny, "nz": nz, "nu": nu}  # fmt: skip


def _normalise(v: torch.Tensor):
    n = v.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return v / n, n


def skin(v_posed: torch.Tensor, weights: torch.Tensor, rel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Linear blend skinning (as in smplx.lbs, and bit for bit its numbers): blend the joints' transforms
    `rel (N, J, 4, 4)` with `weights (U, J)` in one matrix product and apply them to `v_posed (N, U, 3)`
    by multiply-and-sum, vertex index last so that every elementwise kernel runs over contiguous
    vertices (tens of thousands of 3x3 products are many times slower as batched matmuls). Returns the
    vertices (N, U, 3) and the blended rotations as (N, 3, 3, U)."""
    n, j = rel.shape[:2]
    blended = (rel[..., :3, :].flatten(-2).transpose(1, 2).reshape(-1, j) @ weights.T).view(n, 3, 4, -1)
    rot = blended[:, :, :3]
    return ((rot * v_posed.transpose(1, 2)[:, None]).sum(2) + blended[:, :, 3]).transpose(1, 2), rot


def sparse_forward(sp: Sparse, rot_all: torch.Tensor, n_posed: int, betas: torch.Tensor) -> dict:
    """Sensor frames of the sparse subset from local rotations of all joints (N, J_all, 3, 3) and betas
    (N, K), keeping what `sparse_vjp` needs."""
    rot = rot_all[:, sp.joints]
    joints_rest = sp.j_template + torch.einsum("bl,mkl->bmk", betas, sp.j_dirs)
    posed_joints, rel = rigid_transforms(rot, joints_rest, sp.parents)
    v = sp.v_template + torch.einsum("bl,mkl->bmk", betas, sp.shapedirs)
    if sp.posedirs is not None:
        eye = torch.eye(3, dtype=rot_all.dtype, device=rot_all.device)
        feat = (rot_all[:, 1:n_posed] - eye).reshape(rot_all.shape[0], -1)
        v = v + (feat @ sp.posedirs[: feat.shape[1]]).view(rot_all.shape[0], v.shape[1], 3)
    verts, blend_rot = skin(v, sp.weights, rel)
    parts = frame_parts(verts, sp.corners, sp.incidence)
    parts.update(rot_all=rot_all, joints_rest=joints_rest, posed_joints=posed_joints, rel=rel[..., :3, :], v=v,
                 blend_rot=blend_rot)  # fmt: skip
    return parts


# --------------------------------------------------------------------------- backward


def _cross(a, b):
    return torch.linalg.cross(a, b)


def _normalise_back(unit, norm, grad):
    """Cotangent of v from the cotangent of v / |v|."""
    return (grad - unit * (unit * grad).sum(-1, keepdim=True)) / norm


def _rotate_t(rot: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """rot^T v for stacks of 3x3 matrices (..., 3, 3) and vectors (..., 3), by multiply-and-sum."""
    return (rot * v[..., :, None]).sum(-2)


def sparse_vjp(sp: Sparse, fw: dict, theta: torch.Tensor, d_pos: torch.Tensor, d_rot: torch.Tensor):
    """dE/dtheta (N, J, 3) and dE/dbetas (N, K) given dE/dp (N, S, 3) and dE/dR (N, S, 3, 3) of the
    skin frames (`fw` from `sparse_forward` at axis-angle `theta`)."""
    x, y, z, u = fw["x"], fw["y"], fw["z"], fw["u"]
    # frames -> vertices
    dxr = _normalise_back(x, fw["nx"], d_rot[..., 0])
    dy = d_rot[..., 1] + _cross(z, dxr)
    dz = d_rot[..., 2] + _cross(dxr, y)
    dyr = _normalise_back(y, fw["ny"], dy)
    dz = dz + _cross(u, dyr)
    dur = _normalise_back(u, fw["nu"], _cross(dyr, z))
    dzr = _normalise_back(z, fw["nz"], dz)
    dn = torch.einsum("sf,nsc->nfc", sp.incidence, dzr)
    de1, de2 = _cross(fw["e2"], dn), _cross(dn, fw["e1"])
    corners = torch.cat([-(de1 + de2), de1, de2, d_pos - dur, dur], dim=1)
    force = corners.new_zeros(corners.shape[0], fw["v"].shape[1], 3).index_add_(1, sp.corners, corners)  # (N, U, 3)
    # skinning -> joints: M_j = sum_u w_uj y_uj x f_u with y_uj = Rg_j v_u + t_j (t_j: the skinning
    # translation) is vee(Rg_j P_j) + t_j x F_j with P_j = sum_u w_uj v_u f_u^T: no (N, U, J) terms
    rel, c, w = fw["rel"], fw["posed_joints"], sp.weights
    g_rot = rel[..., :3]
    outer = torch.cat([force, (fw["v"][..., :, None] * force[..., None, :]).flatten(-2)], dim=-1)
    f_j, p_j = torch.einsum("uj,nuk->njk", w, outer).split([3, 9], dim=-1)  # one product per constant matrix
    m = g_rot @ p_j.unflatten(-1, (3, 3))
    moment = torch.stack([m[..., 1, 2] - m[..., 2, 1], m[..., 2, 0] - m[..., 0, 2], m[..., 0, 1] - m[..., 1, 0]], -1)
    moment = moment + _cross(rel[..., 3], f_j)
    moment_desc, f_desc = torch.einsum("kj,njc->nkc", sp.descendants, torch.cat([moment, f_j], dim=-1)).split(3, dim=-1)
    torque = moment_desc - _cross(c, f_desc)
    d_delta_sub = _rotate_t(g_rot, torque)  # (N, Jsub, 3)
    d_v = (fw["blend_rot"] * force.transpose(1, 2)[:, :, None]).sum(1).transpose(1, 2)  # sum_j w_uj Rg_j^T f_u
    eye = torch.eye(3, dtype=g_rot.dtype, device=g_rot.device).expand(g_rot.shape[0], 1, 3, 3)
    parent_rot = torch.cat([eye, g_rot], dim=1)[:, sp.parent_or_eye]
    d_joint = _rotate_t(parent_rot - g_rot, f_desc)
    d_betas = torch.cat([d_v, d_joint], dim=1).flatten(1) @ sp.shape_basis
    # rotations -> axis-angle
    n, n_posed = theta.shape[0], theta.shape[1]
    d_delta = theta.new_zeros(n, fw["rot_all"].shape[1], 3).index_add_(1, sp.joints, d_delta_sub)[:, :n_posed]
    if sp.posedirs is not None:
        rot = fw["rot_all"][:, 1:n_posed]
        d_rmat = (d_v.flatten(1) @ sp.posedirs[: 9 * (n_posed - 1)].T).view(n, n_posed - 1, 3, 3)
        vee = _cross(d_rmat, rot).sum(-2)  # (a21 - a12, a02 - a20, a10 - a01) of a = R^T D: sum_k D[k] x R[k]
        d_delta = torch.cat([d_delta[:, :1], d_delta[:, 1:] + vee], dim=1)
    return _right_jacobian_t(theta, d_delta), d_betas


def _right_jacobian_t(theta: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """J_r(theta)^T g for axis-angle theta (..., 3): J_r = I - a [theta]x + b [theta]x^2 with
    a = (1 - cos phi) / phi^2 = sinc^2(phi / 2) / 2 and b = (phi - sin phi) / phi^3 (its series below
    phi = 0.5, where float32 would cancel); J_r^T = J_r(-theta)."""
    phi2 = (theta * theta).sum(-1, keepdim=True)
    phi = phi2.sqrt()
    a = 0.5 * torch.sinc(phi / (2 * torch.pi)) ** 2
    big = torch.where(phi < 0.5, torch.ones_like(phi), phi)
    series = 1 / 6 - phi2 / 120 * (1 - phi2 / 42 * (1 - phi2 / 72))
    b = torch.where(phi < 0.5, series, (big - torch.sin(big)) / big**3)
    tg = _cross(theta, g)
    return g + a * tg + b * _cross(theta, tg)
