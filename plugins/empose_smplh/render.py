"""Pictures of a body model: rest pose and a given pose, front and side, with the sensor sites.

Flat-shaded orthographic rendering with matplotlib (painter's algorithm over the triangles), sensor
sites as dots with their frame's z-axis (the skin normal) as a short line: filled where the site
faces the viewer, hollow where it is on the far side.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from empose_framework.drawing import View, shaded_faces
from empose_framework.errors import EmposeError
from empose_framework.interfaces import BodyPose

# view name -> (image right, image up, towards the viewer) in body coordinates (y up, facing +z)
VIEWS = {
    "front": View(np.array([1.0, 0, 0]), np.array([0, 1.0, 0]), np.array([0, 0, 1.0])),
    "side": View(np.array([0, 0, -1.0]), np.array([0, 1.0, 0]), np.array([1.0, 0, 0])),
    "back": View(np.array([-1.0, 0, 0]), np.array([0, 1.0, 0]), np.array([0, 0, -1.0])),
}


def random_pose(n_joints: int, seed: int) -> np.ndarray:
    """A random, plausible everyday pose (J, 3) for SMPL-H-like trees: arms lowered and bent, legs
    flexed, some torso and head motion. Joint indices follow SMPL-H's body joints."""
    rng = np.random.default_rng(seed)
    pose = np.zeros((n_joints, 3))
    u = lambda lo, hi: rng.uniform(lo, hi)  # noqa: E731
    pose[0] = (u(-0.2, 0.2), u(-0.6, 0.6), u(-0.1, 0.1))
    for j in (3, 6, 9):  # spine
        pose[j] = (u(-0.1, 0.25), u(-0.2, 0.2), u(-0.1, 0.1))
    pose[12] = (u(-0.2, 0.3), u(-0.3, 0.3), u(-0.1, 0.1))  # neck
    pose[15] = (u(-0.2, 0.3), u(-0.3, 0.3), u(-0.1, 0.1))  # head
    for side, sign in ((0, 1.0), (1, -1.0)):  # 0 = left, 1 = right
        hip, knee, ankle = 1 + side, 4 + side, 7 + side
        pose[hip] = (-u(0.0, 1.0), u(-0.2, 0.2), sign * u(0.0, 0.3))
        pose[knee] = (u(0.0, 1.3), 0.0, 0.0)
        pose[ankle] = (u(-0.3, 0.3), 0.0, 0.0)
        shoulder, elbow, collar = 16 + side, 18 + side, 13 + side
        pose[collar] = (0.0, 0.0, -sign * u(0.0, 0.2))
        pose[shoulder] = (u(-0.3, 0.3), sign * u(-0.8, 0.4), -sign * u(0.5, 1.3))
        pose[elbow] = (0.0, -sign * u(0.0, 1.8), 0.0)
    return pose


def load_pose(path: str, n_joints: int) -> np.ndarray:
    """A pose (J, 3) from an .npy file holding (J, 3), (J*3,), or a sequence of either (frame 0)."""
    try:
        a = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise EmposeError(f"--pose {path}: cannot read it as a .npy array ({exc}). Save the pose with np.save.") from None
    if not isinstance(a, np.ndarray):  # an .npz archive
        names = list(a.files)
        a.close()
        raise EmposeError(f"--pose {path}: is an .npz archive (keys {names}), not an .npy array; save the pose alone "
                          "with np.save(file, pose).")
    if a.dtype.kind not in "biuf":
        raise EmposeError(f"--pose {path}: holds {a.dtype} values, not numbers; a pose is axis-angle floats.")
    a = np.asarray(a, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise EmposeError(f"--pose {path}: holds NaN or infinite values; a pose needs finite axis-angle values.")
    if a.ndim >= 2 and a.shape[-1] == 3 and a.shape[-2] >= n_joints:
        a = a.reshape(-1, *a.shape[-2:])[0]
    elif a.ndim >= 1 and a.shape[-1] % 3 == 0 and a.shape[-1] // 3 >= n_joints:
        a = a.reshape(-1, a.shape[-1])[0].reshape(-1, 3)
    else:
        raise EmposeError(
            f"--pose {path}: shape {a.shape} is not a pose; expected (J, 3) or (J*3,) axis-angle with J >= {n_joints}, "
            "optionally with leading frame dims (the first frame is drawn)."
        )
    return a


def render(body_model, out: str | Path, pose: np.ndarray | None = None, betas: np.ndarray | None = None, title: str = ""):
    """Write a PNG: rest pose and `pose` (if given), front and side views, sensor sites marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = body_model.n_betas
    b = np.zeros(k) if betas is None else np.pad(np.asarray(betas, float), (0, max(0, k - len(betas))))[:k]
    poses = [("rest pose", np.zeros((body_model.n_pose_joints, 3)))]
    if pose is not None:
        poses.append(("posed", pose))
    views = ("front", "side")
    fig, axes = plt.subplots(len(poses), len(views), figsize=(5.5 * len(views), 5.8 * len(poses)), squeeze=False)
    axes = axes.ravel()
    sites = list(body_model.sensor_sites)
    faces = body_model.faces.cpu().numpy()
    for pi, (label, theta) in enumerate(poses):
        bp = BodyPose(torch.as_tensor(theta, dtype=torch.float32)[None], torch.as_tensor(b, dtype=torch.float32)[None])
        with torch.no_grad():
            out_ = body_model.forward(bp, vertices=True)
            verts = out_.vertices[0].cpu().numpy()
            joints = out_.joints[0].cpu().numpy()
            if sites:
                spos, srot = body_model.sensor_frames(bp, sites)
                spos, snorm = spos[0].cpu().numpy(), srot[0, :, :, 2].cpu().numpy()
        for vi, view in enumerate(views):
            ax = axes[pi * len(views) + vi]
            _draw(ax, verts, faces, joints, body_model.parents[: body_model.n_pose_joints], view)
            if sites:
                _draw_sites(ax, spos, snorm, sites, view)
            ax.set_title(f"{label}, {view}", fontsize=10)
        if pi == 0:
            height, span = np.ptp(verts[:, 1]), np.ptp(verts[:, 0])
    fig.suptitle(
        f"{title}: rest height {height:.2f} m, span {span:.2f} m\nsensor sites: dot = site (hollow: far side), "
        "line = skin normal (frame z)", fontsize=10,
    )  # fmt: skip
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _project(points, view):
    return VIEWS[view].project(points)


def _draw(ax, verts, faces, joints, parents, view):
    from matplotlib.collections import PolyCollection

    tri = faces
    order, shade, u, v, _ = shaded_faces(verts, faces, VIEWS[view], light=VIEWS[view].toward + np.array([0.3, 0.5, 0.0]))
    polys = np.stack([u[tri[order]], v[tri[order]]], -1)
    colors = np.clip(np.outer(shade, [0.93, 0.78, 0.66]), 0, 1)
    ax.add_collection(PolyCollection(polys, facecolors=colors, edgecolors=colors, linewidths=0.2))
    ju, jv, _ = _project(joints, view)
    for j, p in enumerate(parents):
        if p >= 0:
            ax.plot([ju[p], ju[j]], [jv[p], jv[j]], color="steelblue", lw=0.8, alpha=0.5)
    ax.set_xlim(u.min() - 0.1, u.max() + 0.1)
    ax.set_ylim(v.min() - 0.05, v.max() + 0.05)
    ax.set_aspect("equal")
    ax.axis("off")


def _draw_sites(ax, pos, normal, names, view):
    u, v, _ = _project(pos, view)
    nu, nv, nd = _project(normal, view)
    cmap = __import__("matplotlib").colormaps["tab20"]
    for i, name in enumerate(names):
        color = cmap(i % 20)
        visible = nd[i] > -0.2
        ax.plot([u[i], u[i] + 0.1 * nu[i]], [v[i], v[i] + 0.1 * nv[i]], color=color, lw=1.5)
        ax.plot(u[i], v[i], "o", ms=5, mfc=color if visible else "none", mec="k", mew=0.6)
        if visible:
            ax.annotate(name, (u[i], v[i]), xytext=(3, 3), textcoords="offset points", fontsize=6)


def render_command(body, name: str, out: str, pose_file=None, random_seed=None, betas=None):
    """The `empose render-body` command: draw the body model `body` (registered as `name`) in the pose
    the options give."""
    pose = None
    if pose_file is not None:
        pose = load_pose(pose_file, body.n_pose_joints)
    elif random_seed is not None:
        pose = random_pose(body.n_pose_joints, random_seed)
    beta_values = None
    if betas:
        try:
            beta_values = np.array([float(x) for x in betas.split(",")])
        except ValueError as exc:
            raise EmposeError(f"--betas '{betas}': expected comma-separated numbers, e.g. 2,0,-1.") from exc
    render(body, out, pose, beta_values, title=f"body model '{name}'")
    print(f"wrote {out}")
