"""Flat-shaded orthographic mesh drawing shared by the picture commands (`render-body`, `render`).

Drawing is the painter's algorithm: the triangles that face the viewer, far to near, each filled with
one colour shaded by a directional light. No z-buffer and no GPU, so it runs anywhere matplotlib or
Pillow does; at a few thousand triangles it is fast enough for video. Kept free of torch and of any
plugin so that every plugin may use it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def normalise(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@dataclass(frozen=True)
class View:
    """An orthographic view: unit vectors of image right, image up and towards the viewer (world)."""

    right: np.ndarray
    up: np.ndarray
    toward: np.ndarray

    @classmethod
    def looking(cls, up: np.ndarray, front: np.ndarray, azimuth_deg: float = 0.0, elevation_deg: float = 0.0) -> "View":
        """The view of a body whose `up` and facing direction `front` are given, from in front of it,
        turned `azimuth_deg` about `up` (positive: towards the body's left) and raised `elevation_deg`."""
        up = normalise(np.asarray(up, float))
        front = normalise(np.asarray(front, float) - up * (np.asarray(front, float) @ up))
        side = np.cross(up, front)  # the body's left for a right-handed (x left, y up, z front) body
        az, el = np.radians(azimuth_deg), np.radians(elevation_deg)
        toward = np.cos(el) * (np.cos(az) * front + np.sin(az) * side) + np.sin(el) * up
        right = normalise(np.cross(up, toward))
        return cls(right, np.cross(toward, right), toward)

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Image coordinates (u right, v up) and depth (larger = nearer the viewer) of (..., 3) points."""
        return points @ self.right, points @ self.up, points @ self.toward


def shaded_faces(verts: np.ndarray, faces: np.ndarray, view: View, light: np.ndarray | None = None):
    """The triangles of a mesh to draw, far to near, and their brightness.

    Returns `order` (indices into `faces` of the front-facing triangles, farthest first), `shade`
    (brightness 0.2-0.95 of those triangles, in `order`), and the vertices' image coordinates `u`, `v`
    and `depth` (V,). The light comes from the viewer's upper right unless `light` is given."""
    u, v, depth = view.project(verts)
    p0, p1, p2 = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    n = np.cross(p1 - p0, p2 - p0)
    n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-12
    light = normalise(view.toward + 0.3 * view.right + 0.5 * view.up) if light is None else normalise(light)
    facing = n @ view.toward > 0
    order = np.argsort(depth[faces].mean(1), kind="stable")
    order = order[facing[order]]
    shade = np.clip(n[order] @ light, 0, 1) * 0.75 + 0.2
    return order, shade, u, v, depth


def render_motion_file(prediction, truth=None, out="motion.mp4", options: dict | None = None, registry=None):
    """Render motion files through the `render_motion` hook (what `evaluate.render` and
    `predict --render` call); an EmposeError when no installed plugin implements it. Returns the path
    written (it may differ from `out`, e.g. a .gif when MP4 cannot be written)."""
    from pathlib import Path

    from empose_framework.errors import EmposeError
    from empose_framework.plugins import get_registry

    registry = registry or get_registry()
    written = registry.pm.hook.render_motion(prediction=str(prediction), truth=None if truth is None else str(truth),
                                             out=str(out), options=dict(options or {}))  # fmt: skip
    if written is None:
        raise EmposeError(
            "no installed plugin renders motion files (the `render_motion` hook): the built-in plugin `render` "
            "(module empose_io.render_plugin) is disabled or failed to load. Re-enable it (drop `-p no:render` / "
            "EMPOSE_DISABLE_PLUGINS=render) or reinstall empose (`pip install -e .`)."
        )
    return Path(written)
