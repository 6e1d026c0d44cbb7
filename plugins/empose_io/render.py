"""`empose render`: draw an empose motion file, or a prediction beside its ground truth, as MP4, GIF
or a PNG contact sheet, with the sensors on the body.

The body comes from the file's `empose_body_model` spec (or `--body-model`), posed with its `poses` and
`betas`. Each frame is drawn with Pillow: the flat-shaded mesh by the painter's algorithm of
`empose_framework.drawing`, supersampled twice for smooth edges. One fixed orthographic camera for the
whole clip and for both panels: it looks at the body from the front-left of its first frame, a little
from above, and frames every pose of the clip (and the floor under the lowest foot), so the view never
jumps and both bodies are drawn at the same scale. Sensors: the file's recorded readings (squares with
their x/y/z axes in red/green/blue) and/or the body model's sensor sites at the posed body (rings);
filled where visible, hollow where the body hides them. MP4 is H.264 through imageio-ffmpeg (which
ships its own ffmpeg); without it, a GIF is written instead.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from empose_framework.drawing import View, normalise, shaded_faces
from empose_framework.errors import DataError, EmposeError
from empose_framework.joints import SMPL_BODY_JOINTS, SMPL_BODY_PARENTS, body_joint_index

FORMATS = (".mp4", ".gif", ".png")
SENSOR_MODES = ("auto", "readings", "sites", "both", "none")
DEFAULTS = {
    "fps": None,  # output frames per second: 30 for MP4, 15 for GIF (never above the file's rate)
    "body_model": None,  # body-model name or spec dict; None = the file's own
    "sensors": "auto",  # readings when the file has them, else the body model's sites
    "size": None,  # panel height in pixels: 640 for MP4, 400 for GIF, 360 for sheets
    "frames": 8,  # contact sheet: number of frames
    "columns": None,  # contact sheet: tiles per row (None = about 16:10 overall)
    "start": None,  # seconds
    "end": None,  # seconds
    "title": None,  # text in the footer (default: the file names)
    "overlay": True,  # draw the true skeleton over the prediction
    "quiet": False,  # no progress bar
}
#: body colours: ground truth blue, prediction orange (distinct for colour-blind viewers too)
COLOURS = {"truth": (80, 130, 200), "prediction": (230, 130, 50)}
LABELS = {"truth": "GROUND TRUTH", "prediction": "PREDICTION"}
SS = 2  # supersampling factor
SHADES = 64  # brightness levels of the flat shading
AZIMUTH, ELEVATION = 25.0, 12.0  # degrees: camera turned towards the body's left, raised
FEET = ("l_foot", "r_foot")  # not scored by the MPJPE shown, as in the `mpjpe` metric


@dataclass
class Track:
    """One body to draw, at the output frames: SMPL body joints and sensors for all of them; the mesh
    vertices computed a chunk at a time when drawn (`verts(i)`), so memory does not grow with length."""

    kind: str  # truth | prediction
    path: Path
    joints: np.ndarray  # (N, 22, 3) SMPL body joints
    root_rot0: np.ndarray  # (3, 3) root orientation of the first drawn frame
    frame_valid: np.ndarray  # (N,)
    mesh: object = None  # callable: frame indices (into the N drawn frames) -> (n, V, 3) vertices
    sites: np.ndarray | None = None  # (N, S, 3) body-model sensor sites
    site_names: tuple[str, ...] = ()
    readings: np.ndarray | None = None  # (N, S, 3)
    reading_ori: np.ndarray | None = None  # (N, S, 3, 3)
    reading_valid: np.ndarray | None = None  # (N, S)
    reading_names: tuple[str, ...] = ()
    joints_untranslated: np.ndarray | None = None  # (N, 22, 3) for the error
    chunk: int = 64
    _cache: tuple = (-1, None)

    def verts(self, i: int) -> np.ndarray:
        """(V, 3) vertices of drawn frame `i` (its chunk is posed once and kept until the next)."""
        start = i - i % self.chunk
        if self._cache[0] != start:
            self._cache = (start, self.mesh(np.arange(start, min(start + self.chunk, len(self.joints)))))
        return self._cache[1][i - start]


# ------------------------------------------------------------------------------------ entry point


def render_motion(prediction, truth=None, out="motion.mp4", options: dict | None = None) -> Path:
    """Draw the motion file `prediction` (beside the motion file `truth` when given) into `out`
    (.mp4, .gif or .png contact sheet). Returns the path written (a .gif when MP4 cannot be written)."""
    opts = dict(DEFAULTS)
    unknown = set(options or {}) - set(DEFAULTS)
    if unknown:
        raise EmposeError(f"render options {sorted(unknown)} are unknown; known: {sorted(DEFAULTS)}.")
    opts.update({k: v for k, v in (options or {}).items() if v is not None or k in ("body_model", "columns")})
    out = Path(out)
    fmt = out.suffix.lower()
    if fmt not in FORMATS:
        raise EmposeError(f"-o {out}: unknown output type '{out.suffix}'. Use .mp4 (video), .gif (animation) or "
                          ".png (contact sheet of frames).")  # fmt: skip
    if opts["sensors"] not in SENSOR_MODES:
        raise EmposeError(f"--sensors {opts['sensors']!r}: use one of {', '.join(SENSOR_MODES)}.")
    if fmt == ".mp4" and _ffmpeg() is None:
        out = out.with_suffix(".gif")
        fmt = ".gif"
        _note(f"imageio-ffmpeg is not installed, so no MP4: writing {out} instead (`pip install imageio-ffmpeg`).")
    size = int(opts["size"] or {".mp4": 640, ".gif": 400, ".png": 360}[fmt])
    if size < 120:
        raise EmposeError(f"--size {size}: a panel needs at least 120 pixels.")

    from empose_framework import motion_file

    files = [(Path(prediction), motion_file.read(prediction))]
    if truth is not None:
        files.append((Path(truth), motion_file.read(truth)))
    files = [(p, _check(p, mf)) for p, mf in files]
    fps_in = files[0][1].fps
    n_frames = len(files[0][1])
    if len(files) == 2:
        (pp, pm), (tp, tm) = files
        if abs(pm.fps - tm.fps) > 1e-6 or len(pm) != len(tm):
            raise DataError(f"{pp} ({len(pm)} frames at {pm.fps:g} fps) and --truth {tp} ({len(tm)} frames at "
                            f"{tm.fps:g} fps) do not cover the same frames; give the prediction and the truth of one "
                            "recording (as `empose predict` and `evaluate.render` write them).")  # fmt: skip
        files = [(tp, tm), (pp, pm)]  # truth on the left
        kinds = ["truth", "prediction"]
    else:
        kinds = [files[0][1].kind if files[0][1].kind in COLOURS else "prediction"]

    body, spec = _body_model(opts["body_model"], files[0])
    fps_out = fps_in
    if fmt != ".png":
        fps_out = float(opts["fps"] or (30.0 if fmt == ".mp4" else 15.0))
        if not fps_out > 0:
            raise EmposeError(f"--fps {opts['fps']}: must be a positive number of frames per second.")
        fps_out = min(fps_out, fps_in)
        if fmt == ".gif":  # GIF frame times are whole hundredths of a second (15 fps -> 7/100 s)
            fps_out = 100.0 / max(2, round(100.0 / fps_out))
    index = _frame_index(n_frames, fps_in, fmt, opts, files[0][0], fps_out)
    tracks = [_track(body, kind, path, mf, index, opts["sensors"]) for kind, (path, mf) in zip(kinds, files)]
    # readings a file lacks come from the other file (the same recording)
    donors = [t for t in tracks if t.readings is not None]
    for t in tracks:
        if t.readings is None and donors and opts["sensors"] in ("auto", "readings", "both"):
            d = donors[0]
            t.readings, t.reading_ori, t.reading_valid, t.reading_names = d.readings, d.reading_ori, d.reading_valid, d.reading_names
    scene = Scene(tracks, body, size, overlay=bool(opts["overlay"]))
    title = opts["title"] or "  vs  ".join(p.name for p, _ in files[::-1])
    times = index / fps_in
    errors = _frame_errors(tracks) if len(tracks) == 2 else None
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == ".png":
        _write_sheet(out, scene, index, times, title, errors, opts["columns"])
    else:
        frames = (scene.frame(i, times[i], index[i], title, errors) for i in range(len(index)))
        frames = _progress(frames, len(index), f"rendering {out.name}", opts["quiet"])
        (_write_mp4 if fmt == ".mp4" else _write_gif)(out, frames, fps_out)
    return out


# ------------------------------------------------------------------------------------ inputs


def _check(path: Path, mf):
    if len(mf) == 0:
        raise DataError(f"{path}: the motion has no frames; nothing to draw.")
    if not np.isfinite(mf.pose).all():
        bad = int(np.nonzero(~np.isfinite(mf.pose).reshape(len(mf), -1).all(1))[0][0])
        raise DataError(f"{path}: 'poses' holds NaN or inf (first at frame {bad}); write the file again.")
    if not mf.fps > 0:
        raise DataError(f"{path}: 'mocap_framerate' is {mf.fps}; it must be a positive number of frames per second.")
    return mf


def _body_model(override, first):
    """The body model: `override` (name or spec) or the first file's spec; errors name where it came from."""
    from empose_framework.plugins import get_registry

    path, mf = first
    if override is not None:
        spec, where = ({"use": override} if isinstance(override, str) else dict(override)), f"--body-model {override}"
    elif mf.body_model:
        spec, where = dict(mf.body_model), f"{path}: empose_body_model {json.dumps(mf.body_model)}"
    else:
        spec, where = {"use": "embedded"}, f"{path} (no empose_body_model; using the embedded body)"
    if "use" not in spec:
        raise DataError(f"{where}: the body-model spec has no 'use' key. Pass --body-model NAME (e.g. embedded).")
    try:
        body = get_registry().build("body_model", spec)
    except EmposeError as exc:
        raise EmposeError(f"{where}: cannot build the body model: {exc.message} Pass --body-model NAME to draw with "
                          "another body (e.g. --body-model embedded).") from None  # fmt: skip
    if body_joint_index(body.joint_names, int(body.n_pose_joints)) is None:
        raise EmposeError(f"{where}: body model '{spec['use']}' does not name the 22 SMPL body joints among its first "
                          f"{body.n_pose_joints} joints ({list(body.joint_names)[:5]}...), so the motion file's "
                          "joints cannot be mapped onto it. Use --body-model embedded or smplh.")  # fmt: skip
    return body, spec


def _frame_index(n: int, fps: float, fmt: str, opts: dict, path: Path, rate: float) -> np.ndarray:
    """Source frames to draw: the output rate's time grid over [start, end), or `frames` evenly spaced ones."""
    start = float(opts["start"] or 0.0)
    end = n / fps if opts["end"] is None else min(float(opts["end"]), n / fps)
    first, last = int(math.ceil(start * fps - 1e-9)), min(n, int(math.ceil(end * fps - 1e-9))) - 1
    if start < 0 or last < first:
        raise EmposeError(f"{path}: --start {start:g} s / --end {end:g} s select no frames (the motion lasts "
                          f"{n / fps:.2f} s, {n} frames at {fps:g} fps).")  # fmt: skip
    if fmt == ".png":
        count = max(1, int(opts["frames"]))
        return np.unique(np.round(np.linspace(first, last, count)).astype(int))
    k = np.arange(int(math.floor((last - first) * rate / fps + 1e-9)) + 1)
    return np.minimum(first + np.round(k * fps / rate).astype(int), last)


def _track(body, kind: str, path: Path, mf, index: np.ndarray, sensors: str, chunk: int = 256) -> Track:
    """Pose the body at the drawn frames: joints and sensor sites now (in chunks), vertices when drawn."""
    import torch

    from empose_framework.interfaces import BodyPose

    pose, betas = mf.body_pose(body)
    pose = pose[index]
    cols = body_joint_index(body.joint_names, int(body.n_pose_joints))
    trans = mf.trans[index] if mf.trans_known else np.zeros((len(index), 3), np.float32)
    want_sites = sensors in ("sites", "both") or (sensors == "auto" and mf.sensor_names is None)
    site_names = tuple(n for n in (mf.sensor_names or body.sensor_sites) if n in body.sensor_sites) if want_sites else ()

    def body_pose(idx):
        return BodyPose(torch.as_tensor(pose[idx]), torch.as_tensor(betas).expand(len(idx), -1))

    @torch.no_grad()
    def mesh(idx):
        return body.forward(body_pose(idx), vertices=True).vertices.cpu().numpy().astype(np.float32) + trans[idx, None]

    joints, rot0, sites = [], None, []
    with torch.no_grad():
        for s in range(0, len(index), chunk):
            idx = np.arange(s, min(s + chunk, len(index)))
            o = body.forward(body_pose(idx), vertices=False)
            joints.append(o.joints[:, cols].cpu().numpy().astype(np.float32))
            if rot0 is None:
                rot0 = o.global_rot[0, cols[0]].cpu().numpy().astype(np.float64)
            if site_names:
                sites.append(body.sensor_frames(body_pose(idx), site_names)[0].cpu().numpy().astype(np.float32))
    joints = np.concatenate(joints)
    t = Track(kind, path, joints + trans[:, None], rot0, mf.frame_valid[index], mesh=mesh, joints_untranslated=joints)
    if site_names:
        t.sites, t.site_names = np.concatenate(sites) + trans[:, None], site_names
    if mf.sensor_names is not None and sensors in ("auto", "readings", "both"):
        t.readings, t.reading_ori = mf.sensor_pos[index], mf.sensor_ori[index]
        t.reading_valid = mf.sensor_valid[index] & np.isfinite(t.readings).all(-1) & np.isfinite(t.reading_ori).all((-1, -2))
        t.reading_names = tuple(mf.sensor_names)
    return t


def _frame_errors(tracks: list[Track]) -> np.ndarray:
    """Per drawn frame: mean distance (mm) of the SMPL body joints without feet, no translation, as `mpjpe`."""
    keep = [i for i, n in enumerate(SMPL_BODY_JOINTS) if n not in FEET]
    a, b = tracks[0].joints_untranslated[:, keep], tracks[1].joints_untranslated[:, keep]
    return 1000.0 * np.linalg.norm(a - b, axis=-1).mean(-1)


# ------------------------------------------------------------------------------------ drawing


def _font(px: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=px)
    except (TypeError, AttributeError, OSError):  # Pillow < 10.1 or no FreeType: the small bitmap font
        return ImageFont.load_default()


class Scene:
    """The fixed camera, floor and layout shared by every frame; `frame(i, ...)` draws one."""

    def __init__(self, tracks: list[Track], body, size: int, overlay: bool = True):
        self.tracks, self.overlay = tracks, overlay and len(tracks) == 2
        self.faces = body.faces.cpu().numpy()
        ref = tracks[0]
        up_b, front_b = _body_axes(body)
        up = _snap(ref.root_rot0 @ up_b)
        front = ref.root_rot0 @ front_b
        if np.linalg.norm(front - up * (front @ up)) < 1e-3:  # lying along the up axis: any horizontal front
            front = np.roll(up, 1)
        self.view = View.looking(up, front, AZIMUTH, ELEVATION)
        self.up = up
        # one pass over every drawn frame's mesh, a chunk at a time: its extent on screen and the floor
        # under its lowest vertex (the mesh is posed again when drawn: memory stays flat)
        lo, hi, self.floor_h = np.full(2, np.inf), np.full(2, -np.inf), np.inf
        for t in tracks:
            for start in range(0, len(t.joints), t.chunk):
                pts = t.mesh(np.arange(start, min(start + t.chunk, len(t.joints))))[:, ::3].reshape(-1, 3)
                u, v, _ = self.view.project(pts)
                lo = np.minimum(lo, [u.min(), v.min()])
                hi = np.maximum(hi, [u.max(), v.max()])
                self.floor_h = min(self.floor_h, float((pts @ up).min()))
        # a floor patch under where the feet and pelvis go (not the arms), grid lines every 0.5 m
        a = normalise(front - up * (front @ up))
        b = np.cross(up, a)
        feet = np.concatenate([t.joints[:, [0, 7, 8, 10, 11]].reshape(-1, 3) for t in tracks])
        pa, pb = feet @ a, feet @ b
        lo_a, hi_a, lo_b, hi_b = pa.min() - 0.35, pa.max() + 0.35, pb.min() - 0.45, pb.max() + 0.45
        base = up * self.floor_h
        self.floor_corners = np.array([base + a * x + b * y for x, y in ((lo_a, lo_b), (hi_a, lo_b), (hi_a, hi_b), (lo_a, hi_b))])
        step = 0.5
        self.grid = [(base + a * x + b * lo_b, base + a * x + b * hi_b) for x in np.arange(math.ceil(lo_a / step), hi_a / step) * step]
        self.grid += [(base + a * lo_a + b * y, base + a * hi_a + b * y) for y in np.arange(math.ceil(lo_b / step), hi_b / step) * step]
        # layout (final pixels): header, panel, footer; width from the projected extent (4:3 at most)
        u, v, _ = self.view.project(self.floor_corners)
        u, v = np.concatenate([u, [lo[0], hi[0]]]), np.concatenate([v, [lo[1], hi[1]]])
        self.header, self.footer = int(0.135 * size), int(0.12 * size)
        body_h = size - self.header - int(0.03 * size)
        span_u, span_v = max(np.ptp(u), 0.3), max(np.ptp(v), 0.3)
        width = int(np.clip(body_h * span_u / span_v + 0.06 * size, 0.62 * size, 1.0 * size))
        self.panel_w = width + (-width) % 8
        self.panel_h = size
        self.width = self.panel_w * len(tracks)
        self.height = size + self.footer
        self.width += (-self.width) % 16  # H.264 likes multiples of 16
        self.height += (-self.height) % 16
        self.scale = min((self.panel_w - 0.06 * size) / span_u, body_h / span_v)
        self.center = ((u.max() + u.min()) / 2, (v.max() + v.min()) / 2)
        self.size = size
        levels = np.linspace(0, 1, SHADES)[:, None]
        self.palettes = {k: [tuple(c) for c in np.clip(levels * np.array(rgb) + 25, 0, 255).astype(int).tolist()]
                         for k, rgb in COLOURS.items()}  # fmt: skip
        self.font_big, self.font, self.font_small = (_font(int(f * size * SS)) for f in (0.05, 0.036, 0.03))

    def px(self, points: np.ndarray, panel: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Supersampled pixel x, y and depth of world points in panel `panel`."""
        u, v, d = self.view.project(points)
        cx = (panel + 0.5) * self.panel_w
        cy = self.header + (self.panel_h - self.header) / 2
        return SS * (cx + (u - self.center[0]) * self.scale), SS * (cy - (v - self.center[1]) * self.scale), d

    def frame(self, i: int, time_s: float, source_frame: int, title: str, errors=None):
        """The picture of output frame `i` (a PIL RGB image at final size)."""
        from PIL import Image, ImageDraw

        img = Image.new("RGB", (self.width * SS, self.height * SS), (250, 250, 248))
        draw = ImageDraw.Draw(img)
        for p, track in enumerate(self.tracks):
            self._floor(draw, p)
            self._body(draw, p, track, i)
            if self.overlay and track.kind == "prediction":
                self._skeleton(draw, p, self.tracks[0].joints[i], COLOURS["truth"])
            self._labels(draw, p, track, i, errors)
        self._footer(draw, i, time_s, source_frame, title)
        return img.reduce(SS)

    def _floor(self, draw, p):
        x, y, _ = self.px(self.floor_corners, p)
        draw.polygon(list(zip(x.tolist(), y.tolist())), fill=(226, 226, 222))
        for a, b in self.grid:
            x, y, _ = self.px(np.stack([a, b]), p)
            draw.line(list(zip(x.tolist(), y.tolist())), fill=(200, 200, 196), width=SS)

    def _body(self, draw, p, t: Track, i):
        palette = self.palettes[t.kind]
        verts = t.verts(i)
        order, shade, _, _, _ = shaded_faces(verts, self.faces, self.view)
        x, y, depth = self.px(verts, p)
        tri = self.faces[order]
        polys = np.stack([x[tri], y[tri]], -1).reshape(len(tri), 6).astype(np.int32).tolist()
        levels = np.clip(shade * (SHADES - 1), 0, SHADES - 1).astype(np.int32).tolist()
        fill = _polygon_filler(draw, palette)
        # sensor markers join the painter's order at their depth, so the body hides those behind it
        markers = self._markers(p, t, i)
        face_depth = depth[tri].mean(1)
        cut = list(np.searchsorted(face_depth, [m[0] for m in markers])) if markers else []
        start = 0
        for m, c in zip(markers + [None], cut + [len(polys)]):
            fill(polys[start:c], levels[start:c])
            start = c
            if m is not None:
                m[1](draw, True)
        for m in markers:  # outlines of all markers on top: hidden ones show hollow
            m[1](draw, False)

    def _markers(self, p, t: Track, i) -> list:
        """(depth, draw(draw, filled)) per sensor marker, far to near: rings at the body's sensor sites,
        squares with their axes at the valid readings."""
        r = 0.012 * self.size * SS
        out = []
        if t.sites is not None:
            x, y, d = self.px(t.sites[i], p)
            out += [(d[k], _ring(x[k], y[k], r)) for k in range(len(t.site_names))]
        if t.readings is not None:
            x, y, d = self.px(t.readings[i], p)
            axis_len = 0.07  # metres
            for k in range(len(t.reading_names)):
                if t.reading_valid[i, k]:
                    ends = t.readings[i, k][None] + axis_len * t.reading_ori[i, k].T  # rows: tips of x, y, z axes
                    ex, ey, _ = self.px(ends, p)
                    out.append((d[k], _square(x[k], y[k], ex, ey, r)))
        out.sort(key=lambda m: m[0])
        return out

    def _skeleton(self, draw, p, joints, colour):
        x, y, _ = self.px(joints, p)
        dark = tuple(int(c * 0.55) for c in colour)
        for j, parent in enumerate(SMPL_BODY_PARENTS):
            if parent >= 0:
                draw.line([(x[parent], y[parent]), (x[j], y[j])], fill=dark, width=3 * SS)
        r = 2.5 * SS
        for xj, yj in zip(x, y):
            draw.ellipse((xj - r, yj - r, xj + r, yj + r), fill=dark)

    def _labels(self, draw, p, t: Track, i, errors):
        x0, x1 = p * self.panel_w * SS, (p + 1) * self.panel_w * SS
        pad = int(0.025 * self.size * SS)
        colour = tuple(int(c * 0.8) for c in COLOURS[t.kind])
        draw.text((x0 + pad, pad), LABELS[t.kind], font=self.font_big, fill=colour)
        y = pad + int(0.068 * self.size * SS)
        if t.kind == "prediction" and errors is not None:
            draw.text((x0 + pad, y), f"joint error {errors[i]:.0f} mm", font=self.font_small, fill=(40, 40, 40))
        if not t.frame_valid[i]:
            text = "sensor missing"
            draw.text((x1 - pad - draw.textlength(text, font=self.font_small), y), text, font=self.font_small, fill=(200, 30, 30))
        if p > 0:
            draw.line([(x0, 0), (x0, self.panel_h * SS)], fill=(170, 170, 170), width=SS)

    def _footer(self, draw, i, time_s, source_frame, title):
        """Two lines under the panels: time and frame, title (file names); the legend."""
        y0 = self.panel_h * SS
        draw.rectangle((0, y0, self.width * SS, self.height * SS), fill=(40, 40, 44))
        pad = int(0.025 * self.size * SS)
        line = int(0.045 * self.size * SS)
        ty = y0 + (self.footer * SS - 2 * line) // 2
        clock = f"t = {time_s:.2f} s   frame {source_frame}"
        draw.text((pad, ty), clock, font=self.font, fill=(255, 255, 255))
        x = pad * 3 + int(draw.textlength(clock, font=self.font))
        _right_text(draw, title, self.width * SS - pad, ty + SS * 2, self.width * SS - x - pad, self.font_small, (215, 215, 215))
        legend = ["dark lines: true skeleton"] if self.overlay else []
        if any(tr.readings is not None for tr in self.tracks):
            legend.append("square: sensor reading (axes x y z: red green blue)")
        if any(tr.sites is not None for tr in self.tracks):
            legend.append("ring: sensor site on the body")
        if legend:
            legend.append("hollow: hidden")
        width = self.width * SS - 2 * pad
        while len(legend) > 1 and draw.textlength("; ".join(legend), font=self.font_small) > width:
            legend.pop()  # drop whole entries from the end rather than cut words
        _right_text(draw, "; ".join(legend), self.width * SS - pad, ty + line + SS * 2, width, self.font_small, (175, 175, 175))


def _right_text(draw, text: str, right: float, y: float, width: float, font, fill) -> None:
    """`text` ending at x = `right`, cut with an ellipsis to fit `width`."""
    if draw.textlength(text, font=font) > width:
        while text and draw.textlength(text + "…", font=font) > width:
            text = text[:-1]
        text += "…"
    draw.text((right - draw.textlength(text, font=font), y), text, font=font, fill=fill)


def _ring(x: float, y: float, r: float):
    """Drawer of a sensor-site marker at pixel (x, y): a white disc when visible (`filled`), else its outline."""

    def draw_ring(draw, filled: bool) -> None:
        box = (x - r * 0.8, y - r * 0.8, x + r * 0.8, y + r * 0.8)
        draw.ellipse(box, fill=(255, 255, 255) if filled else None, outline=(20, 20, 20), width=SS)

    return draw_ring


def _square(x: float, y: float, ex: np.ndarray, ey: np.ndarray, r: float):
    """Drawer of a sensor-reading marker at pixel (x, y): when visible (`filled`) its x, y, z axes (to the tips
    ex, ey) in red, green, blue under a yellow square, else the square's outline."""

    def draw_square(draw, filled: bool) -> None:
        if filled:
            for j, col in enumerate(((220, 30, 30), (20, 160, 40), (30, 60, 220))):
                draw.line([(x, y), (ex[j], ey[j])], fill=col, width=2 * SS)
        box = (x - r, y - r, x + r, y + r)
        draw.rectangle(box, fill=(250, 215, 40) if filled else None, outline=(20, 20, 20), width=SS)

    return draw_square


def _polygon_filler(draw, palette):
    """fill(polys, levels): filled polygons coloured `palette[level]`, in order (far to near)."""

    def fill(polys, levels):
        for poly, level in zip(polys, levels):
            draw.polygon(poly, fill=palette[level])

    return fill


def _body_axes(body) -> tuple[np.ndarray, np.ndarray]:
    """The body's up (ankles to head) and facing direction in its own rest frame."""
    import torch

    from empose_framework.interfaces import BodyPose

    cols = body_joint_index(body.joint_names, int(body.n_pose_joints))
    with torch.no_grad():
        o = body.forward(BodyPose(torch.zeros(1, body.n_pose_joints, 3), torch.zeros(1, body.n_betas)), vertices=False)
    j = o.joints[0, cols].cpu().numpy().astype(np.float64)
    name = {n: k for k, n in enumerate(SMPL_BODY_JOINTS)}
    up = normalise(j[name["head"]] - (j[name["l_ankle"]] + j[name["r_ankle"]]) / 2)
    left = j[name["l_hip"]] - j[name["r_hip"]]
    return up, normalise(np.cross(left, up))


def _snap(v: np.ndarray) -> np.ndarray:
    """The world axis (with sign) nearest to `v`, so that the floor is a coordinate plane."""
    out = np.zeros(3)
    k = int(np.argmax(np.abs(v)))
    out[k] = math.copysign(1.0, v[k])
    return out


# ------------------------------------------------------------------------------------ writers


def _ffmpeg():
    """imageio-ffmpeg, or None when it is not installed."""
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    return imageio_ffmpeg


def _write_mp4(out: Path, frames, fps: float) -> None:
    """H.264 (yuv420p, crf 20: quality 6 of imageio-ffmpeg), streamed frame by frame."""
    ffmpeg = _ffmpeg()
    writer = None
    try:
        for img in frames:
            if writer is None:
                writer = ffmpeg.write_frames(str(out), img.size, fps=fps, codec="libx264", quality=6, macro_block_size=16,
                                             output_params=["-preset", "fast"])  # fmt: skip
                writer.send(None)
            writer.send(img.tobytes())
    finally:
        if writer is not None:
            writer.close()


def _write_gif(out: Path, frames, fps: float) -> None:
    images = [img.quantize(colors=128, method=2) for img in frames]  # 2 = fast octree
    images[0].save(out, save_all=True, append_images=images[1:], duration=10 * round(100 / fps), loop=0)


def _write_sheet(out: Path, scene: Scene, index, times, title, errors, columns) -> None:
    from PIL import Image

    tiles = [scene.frame(i, times[i], index[i], title, errors) for i in range(len(index))]
    w, h = tiles[0].size
    n = len(tiles)
    # columns: few empty cells first, then an overall shape near 16:10
    cols = int(columns or min(range(1, n + 1), key=lambda c: (math.ceil(n / c) * c - n > c // 3,
                                                           abs(math.log(c * w / (math.ceil(n / c) * h) / 1.6)))))
    rows = math.ceil(len(tiles) / cols)
    gap = 4
    sheet = Image.new("RGB", (cols * w + (cols - 1) * gap, rows * h + (rows - 1) * gap), (255, 255, 255))
    for k, tile in enumerate(tiles):
        sheet.paste(tile, ((k % cols) * (w + gap), (k // cols) * (h + gap)))
    sheet.quantize(colors=256, method=2).save(out, optimize=True)


def _progress(frames, total: int, label: str, quiet: bool):
    if quiet:
        yield from frames
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True) as bar:  # fmt: skip
        task = bar.add_task("frames", total=total)
        for f in frames:
            yield f
            bar.advance(task)


def _note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)
