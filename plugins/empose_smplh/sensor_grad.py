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
    joints: torch.Tensor  # (Jsub,) joint ids the needed vertices depend on (ancestor-closed, sorted)
    parents: tuple[int, ...]  # (Jsub,) parents within the subset, -1 for the root
    faces: torch.Tensor  # (Fl, 3) faces around the sites, indexing the U vertices
    incidence: torch.Tensor  # (S, Fl)
    site: torch.Tensor  # (S,)
    helper: torch.Tensor  # (S,)
    j_template: torch.Tensor  # (Jsub, 3)
    j_dirs: torch.Tensor  # (Jsub, 3, K)
    # for the backward
    descendants: torch.Tensor  # (Jsub, Jsub): 1 where column j is k or below row k
    parent_or_eye: torch.Tensor  # (Jsub,) index into [I, Rg_0, ...]: 0 for the root, parent + 1 otherwise
    scatter: torch.Tensor  # (U, 3 Fl + 2 S): adds corner / site / helper cotangents onto vertices
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
    joints = sorted(used)
    pos_in = {j: i for i, j in enumerate(joints)}
    sub_parents = tuple(pos_in[parents[j]] if j else -1 for j in joints)
    posedirs = None
    if arrays["posedirs"] is not None:
        cols = (needed[:, None] * 3 + np.arange(3)).ravel()
        posedirs = arrays["posedirs"][:, torch.as_tensor(cols)]
    n_j, n_u, n_f, n_s = len(joints), len(needed), len(local_faces), len(ids)
    desc = np.eye(n_j)
    for j in reversed(range(n_j)):  # children come after parents
        if sub_parents[j] >= 0:
            desc[sub_parents[j]] += desc[j]
    faces_l = np.vectorize(remap.get)(local_faces)
    site = [remap[v] for v in ids]
    helper = [remap[v] for v in helpers]
    scatter = np.zeros((n_u, 3 * n_f + 2 * n_s))
    for c in range(3):
        np.add.at(scatter, (faces_l[:, c], c * n_f + np.arange(n_f)), 1.0)
    np.add.at(scatter, (site, 3 * n_f + np.arange(n_s)), 1.0)
    np.add.at(scatter, (helper, 3 * n_f + n_s + np.arange(n_s)), 1.0)
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
        faces=torch.as_tensor(faces_l, dtype=torch.long, device=device),
        incidence=f32(incidence),
        site=torch.as_tensor(site, dtype=torch.long, device=device),
        helper=torch.as_tensor(helper, dtype=torch.long, device=device),
        j_template=dev(arrays["j_template"][sub]),
        j_dirs=dev(j_dirs),
        descendants=f32(desc),
        parent_or_eye=torch.as_tensor([p + 1 for p in sub_parents], dtype=torch.long, device=device),
        scatter=f32(scatter),
        shape_basis=dev(torch.cat([shapedirs, j_dirs]).reshape(-1, shapedirs.shape[-1])),
    )


def face_rows(faces: np.ndarray, ids) -> np.ndarray:
    """Indices of the faces touching any of `ids`, in stored order."""
    return np.nonzero(np.isin(faces, ids).any(axis=1))[0]


# --------------------------------------------------------------------------- forward


def frame_parts(verts, faces, incidence, site, helper) -> dict:
    """Sensor frames (docs/method.md §4.2-4.4) from posed vertices `verts (N, U, 3)`, with the intermediate
    vectors the backward needs: p (N, S, 3) and R = [x y z] (N, S, 3, 3) under "pos" and "rot"."""
    v0, v1, v2 = verts[:, faces[:, 0]], verts[:, faces[:, 1]], verts[:, faces[:, 2]]
    e1, e2 = v1 - v0, v2 - v0
    face_n = torch.linalg.cross(e1, e2)
    z, nz = _normalise(torch.einsum("sf,nfc->nsc", incidence, face_n))
    p = verts[:, site]
    u, nu = _normalise(verts[:, helper] - p)
    y, ny = _normalise(torch.linalg.cross(z, u))
    x, nx = _normalise(torch.linalg.cross(y, z))
    return {"pos": p, "rot": torch.stack([x, y, z], dim=-1), "e1": e1, "e2": e2, "x": x, "y": y, "z": z, "u": u,
            "nx": nx, "ny": ny, "nz": nz, "nu": nu}  # fmt: skip


def _normalise(v: torch.Tensor):
    n = v.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return v / n, n


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
    tr = torch.einsum("uj,njab->nuab", sp.weights, rel[:, :, :3, :])
    verts = (tr[..., :3] @ v[..., None])[..., 0] + tr[..., 3]
    parts = frame_parts(verts, sp.faces, sp.incidence, sp.site, sp.helper)
    parts.update(
        rot_all=rot_all,
        joints_rest=joints_rest,
        posed_joints=posed_joints,
        g_rot=rel[:, :, :3, :3],
        v=v,
        blend_rot=tr[..., :3],
    )
    return parts


# --------------------------------------------------------------------------- backward


def _cross(a, b):
    return torch.linalg.cross(a, b)


def _normalise_back(unit, norm, grad):
    """Cotangent of v from the cotangent of v / |v|."""
    return (grad - unit * (unit * grad).sum(-1, keepdim=True)) / norm


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
    dn = sp.incidence.T @ dzr
    de1, de2 = _cross(fw["e2"], dn), _cross(dn, fw["e1"])
    corners = torch.cat([-(de1 + de2), de1, de2, d_pos - dur, dur], dim=1)
    force = sp.scatter @ corners  # (N, U, 3)
    # skinning -> joints
    g_rot, c, j_rest, v = fw["g_rot"], fw["posed_joints"], fw["joints_rest"], fw["v"]
    w = sp.weights
    y_uj = torch.einsum("njab,nujb->nuja", g_rot, v[:, :, None] - j_rest[:, None]) + c[:, None]
    moment = torch.einsum("uj,nujc->njc", w, _cross(y_uj, force[:, :, None].expand_as(y_uj)))
    f_j = w.T @ force
    moment_desc, f_desc = sp.descendants @ moment, sp.descendants @ f_j
    torque = moment_desc - _cross(c, f_desc)
    d_delta_sub = (g_rot.transpose(-1, -2) @ torque[..., None])[..., 0]  # (N, Jsub, 3)
    d_v = (fw["blend_rot"].transpose(-1, -2) @ force[..., None])[..., 0]  # sum_j w_uj Rg_j^T f_u
    eye = torch.eye(3, dtype=g_rot.dtype, device=g_rot.device).expand(g_rot.shape[0], 1, 3, 3)
    parent_rot = torch.cat([eye, g_rot], dim=1)[:, sp.parent_or_eye]
    d_joint = ((parent_rot - g_rot).transpose(-1, -2) @ f_desc[..., None])[..., 0]
    d_betas = torch.cat([d_v, d_joint], dim=1).flatten(1) @ sp.shape_basis
    # rotations -> axis-angle
    n, n_posed = theta.shape[0], theta.shape[1]
    d_delta = theta.new_zeros(n, fw["rot_all"].shape[1], 3).index_add_(1, sp.joints, d_delta_sub)[:, :n_posed]
    if sp.posedirs is not None:
        rot = fw["rot_all"][:, 1:n_posed]
        d_rmat = (d_v.flatten(1) @ sp.posedirs[: 9 * (n_posed - 1)].T).view(n, n_posed - 1, 3, 3)
        a = rot.transpose(-1, -2) @ d_rmat
        vee = torch.stack([a[..., 2, 1] - a[..., 1, 2], a[..., 0, 2] - a[..., 2, 0], a[..., 1, 0] - a[..., 0, 1]], -1)
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
