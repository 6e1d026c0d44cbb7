"""The embedded body: a licence-free, SMPL-H-compatible body model generated from a few numbers.

How it is made (deterministic, numpy only, about a second):

1. A skeleton: the 52 SMPL-H joints at SMPL-like rest positions (T-pose, y up, facing +z, the
   body's left on +x, floor near y = -1.18, about 1.74 m tall), computed from named proportions
   (stature, leg/arm/torso length, shoulder/hip width, girth, ...).
2. A solid: 29 tubes with elliptic cross-sections and rounded caps around the bones (a one-piece
   trunk whose cross-sections follow the skeleton's heights, limbs, buttocks and calves, a mitten hand
   with a thumb, feet, neck, skull, jaw, nose) merged by a smooth union (-k log sum exp(-f_i / k)).
3. A closed triangle mesh of that solid's surface by surface nets on a regular grid (one vertex per
   grid cell the surface crosses, one quad per grid edge it crosses, oriented outward), vertices then
   projected onto the surface.
4. Skinning weights: each vertex belongs softly to the tubes near it (softmax of minus the tube's
   distance); a tube passes its share to the joint whose bone it wraps (the trunk, finger and thumb
   tubes split it among their bones by distance). At most 4 joints per vertex.
5. Shape space (16 components, `SHAPE_COMPONENTS`): component k is the vertex displacement when
   proportion k changes by one standard deviation, each vertex following the tubes that own it (position along the bone, scaled
   cross-section). The J_regressor (weights on the ring of vertices around each joint) reproduces the
   rest joints exactly, so joints follow the surface under every shape component.
6. Pose blend shapes are zero (a limitation: no pose-corrective deformation; the loader skips them).
7. The 12 EM-POSE sensor sites are the outermost vertices in a fixed direction at a fixed point of a
   bone, at the anatomical places of the SMPL-H vertices of docs/method.md §2.1.

The result is written once, atomically, in the SMPL-H npz layout to `~/.cache/empose/` (or
`$EMPOSE_CACHE_DIR`) under a name keyed by a hash of this file, and read back through the same loader
as the licensed file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from empose_smplh.constants import JOINT_NAMES, PARENTS, SENSOR_SITE_NAMES

GENERATOR_VERSION = "1"
CACHE_ENV = "EMPOSE_CACHE_DIR"
GRID_STEP = 0.019  # metres between grid nodes: sets the vertex count (about 6,000)
BLEND = 0.008  # smooth-union width (m)
OWN_TAU = 0.02  # softness of tube ownership for skinning weights (m)
SHAPE_TAU = 0.01  # softness of tube ownership for shape displacements (m)

J = {name: i for i, name in enumerate(JOINT_NAMES)}

#: Shape components: (proportion, change per standard deviation, coupled changes). One unit of beta is
#: one standard deviation; +-3 stays within plausible adult ranges (stature 1.50-1.90 m at the extremes).
SHAPE_COMPONENTS = (
    ("stature", {"scale": 0.04}),
    ("weight", {"girth": 0.08, "hip_width": 0.03, "belly": 0.08, "scale": 0.008}),
    ("leg_length", {"leg": 0.045}),
    ("arm_length", {"arm": 0.045}),
    ("torso_length", {"torso": 0.05}),
    ("shoulder_width", {"shoulder_width": 0.06, "chest_width": 0.03}),
    ("hip_width", {"hip_width": 0.07, "pelvis_width": 0.05}),
    ("head_size", {"head": 0.05, "neck": 0.03}),
    ("belly", {"belly": 0.15, "scale": 0.005}),
    ("muscularity", {"limb_girth": 0.10, "shoulder_width": 0.03, "chest_width": 0.03}),
    ("neck_length", {"neck": 0.12}),
    ("hand_size", {"hand": 0.06}),
    ("foot_size", {"foot": 0.06}),
    ("chest_depth", {"chest_depth": 0.08, "shoulder_width": 0.02}),
    ("thigh_girth", {"thigh_girth": 0.10, "hip_width": 0.03}),
    ("arm_ratio", {"upper_arm": 0.04, "forearm": -0.04}),
)

#: Sensor sites: (bone start joint, bone end joint, fraction along the bone, outward direction). The
#: site is the vertex near that bone point that lies furthest along the direction. Right/left pairs
#: mirror in x. Anatomical places of the SMPL-H vertices (docs/method.md §2.1): lower back at the pelvis;
#: back of the head; dorsal forearm just above the wrist; lateral upper arm; top of the shoulder; lateral
#: mid-thigh; front of the shank below the knee.
_SITES = {
    "back": ("pelvis", "spine1", 0.55, (0.0, 0.0, -1.0)),
    "head": ("head", None, 0.0, (-0.25, 0.35, -1.0)),
    "r_forearm": ("right_elbow", "right_wrist", 0.78, (0.0, 1.0, -0.15)),
    "r_upper_arm": ("right_shoulder", "right_elbow", 0.5, (0.0, 1.0, -0.5)),
    "r_shoulder": ("right_collar", "right_shoulder", 0.75, (0.0, 1.0, -0.1)),
    "r_thigh": ("right_hip", "right_knee", 0.5, (-1.0, 0.0, 0.45)),
    "r_shank": ("right_knee", "right_ankle", 0.3, (-0.3, 0.0, 1.0)),
}
for _name in list(_SITES):
    if _name.startswith("r_"):
        a, b, t, d = _SITES[_name]
        _SITES["l_" + _name[2:]] = (a.replace("right", "left"), b.replace("right", "left"), t, (-d[0], d[1], d[2]))


# ---------------------------------------------------------------------------------------- skeleton


def _defaults() -> dict[str, float]:
    names = {"scale", "girth", "hip_width", "belly", "leg", "arm", "torso", "shoulder_width", "chest_width",
             "pelvis_width", "head", "neck", "limb_girth", "hand", "foot", "chest_depth", "thigh_girth",
             "upper_arm", "forearm"}  # fmt: skip
    return {n: 1.0 for n in names}


@dataclass
class Tube:
    """A tube along the straight axis a->b: at fraction t of the axis its cross-section is an ellipse
    (radii r1 along e1, r2 along e2) centred at the axis point plus an offset, all piecewise linear in
    t between `knots`; the ends are ellipsoidal caps of depth r3. `bones` are the (joint, start, end)
    segments that share its skinning weight (the nearest bone wins, with a falloff of `share_soft` m)."""

    a: np.ndarray
    b: np.ndarray
    r1: np.ndarray  # (n,) at the knots
    r2: np.ndarray
    r3: tuple[float, float]
    hint: np.ndarray  # direction of e1 (projected perpendicular to the axis)
    bones: list = field(default_factory=list)
    knots: np.ndarray = field(default_factory=lambda: np.array([0.0, 1.0]))
    offset: np.ndarray | None = None  # (n, 3) centre offsets (world directions) at the knots
    share_soft: float = 0.006

    def frame(self):
        axis = self.b - self.a
        length = float(np.linalg.norm(axis))
        u = axis / length if length > 1e-9 else np.array([0.0, 1.0, 0.0])
        e1 = self.hint - u * (self.hint @ u)
        if np.linalg.norm(e1) < 1e-6:
            e1 = np.cross(u, [0.0, 0.0, 1.0])
        e1 = e1 / np.linalg.norm(e1)
        return u, e1, np.cross(u, e1), length

    def at(self, t: np.ndarray):
        """Radii r1, r2 (N,) and centre offsets (N, 3) at fractions t."""
        r1, r2 = np.interp(t, self.knots, self.r1), np.interp(t, self.knots, self.r2)
        if self.offset is None:
            return r1, r2, np.zeros((len(t), 3))
        return r1, r2, np.stack([np.interp(t, self.knots, self.offset[:, c]) for c in range(3)], -1)

    def local(self, p: np.ndarray):
        """(t, d1, d2, d3, r1, r2, r3) of points p (N, 3): position along the axis in [0, 1], offsets
        from the cross-section centre in the tube frame, and the radii there (d3 != 0 only in caps)."""
        u, e1, e2, length = self.frame()
        rel = p - self.a
        s = rel @ u
        t = np.clip(s / length, 0.0, 1.0) if length > 1e-9 else np.zeros(len(p))
        r1, r2, off = self.at(t)
        d = rel - np.outer(t * length, u) - off
        r3 = np.where(s < length / 2, self.r3[0], self.r3[1])
        return t, d @ e1, d @ e2, d @ u, r1, r2, r3

    def place(self, t, d1, d2, d3, scale1, scale2, scale3):
        """World points at fraction t with tube-frame offsets d (scaled per axis): the inverse of `local`."""
        u, e1, e2, length = self.frame()
        _, _, off = self.at(t)
        return (
            self.a + np.outer(t * length, u) + off
            + np.outer(d1 * scale1, e1) + np.outer(d2 * scale2, e2) + np.outer(d3 * scale3, u)
        )  # fmt: skip

    def sdf(self, p: np.ndarray) -> np.ndarray:
        """Approximate signed distance (ellipsoid estimate rho (rho - 1) / |grad rho|)."""
        _, d1, d2, d3, r1, r2, r3 = self.local(p)
        q = np.stack([d1 / r1, d2 / r2, d3 / r3], -1)
        k0 = np.linalg.norm(q, axis=-1)
        k1 = np.linalg.norm(q / np.stack([r1, r2, r3], -1), axis=-1)
        return k0 * (k0 - 1.0) / np.maximum(k1, 1e-9)

    def bounds(self, margin: float):
        r = max(self.r1.max(), self.r2.max(), max(self.r3)) + margin
        off = np.abs(self.offset).max(0) if self.offset is not None else 0.0
        return np.minimum(self.a, self.b) - r - off, np.maximum(self.a, self.b) + r + off


def build_body(p: dict[str, float]):
    """Rest joints (52, 3) and tubes for proportions `p` (see `_defaults`)."""
    j = np.zeros((52, 3))
    s = p["scale"]
    tor = p["torso"]
    # trunk
    j[J["pelvis"]] = (0.0, -0.22, 0.02)
    j[J["spine1"]] = j[J["pelvis"]] + (0.0, 0.115 * tor, -0.04)
    j[J["spine2"]] = j[J["spine1"]] + (0.0, 0.135 * tor, 0.01)
    j[J["spine3"]] = j[J["spine2"]] + (0.0, 0.055 * tor, 0.025)
    j[J["neck"]] = j[J["spine3"]] + (0.0, 0.215 * tor, -0.035)
    j[J["head"]] = j[J["neck"]] + np.array([0.0, 0.08, 0.045]) * p["neck"]
    for side, sx in (("left", 1.0), ("right", -1.0)):
        m = np.array([sx, 1.0, 1.0])
        jj = lambda name: J[f"{side}_{name}"]  # noqa: E731
        # legs
        j[jj("hip")] = j[J["pelvis"]] + m * (0.065 * p["hip_width"], -0.09, -0.01)
        j[jj("knee")] = j[jj("hip")] + m * (0.04, -0.372, 0.005) * p["leg"]
        j[jj("ankle")] = j[jj("knee")] + m * (-0.015, -0.405, -0.035) * p["leg"]
        j[jj("foot")] = j[jj("ankle")] + m * (0.03, -0.055, 0.12) * p["foot"]
        # arms
        sw = p["shoulder_width"]
        j[jj("collar")] = j[J["spine3"]] + m * (0.075 * sw, 0.125 * tor, -0.04)
        j[jj("shoulder")] = j[jj("collar")] + m * (0.115 * sw, 0.01, 0.0)
        j[jj("elbow")] = j[jj("shoulder")] + m * (0.26 * p["upper_arm"], -0.015, -0.02) * p["arm"]
        j[jj("wrist")] = j[jj("elbow")] + m * (0.255 * p["forearm"], 0.005, 0.005) * p["arm"]
        # hand (palm down, thumb forward): finger bases across the knuckles, three joints per finger
        h = p["hand"]
        for finger, base, seg in (
            ("index", (0.092, -0.004, 0.026), (0.036, 0.024, 0.02)),
            ("middle", (0.096, -0.002, 0.007), (0.04, 0.027, 0.021)),
            ("ring", (0.092, -0.003, -0.012), (0.037, 0.025, 0.02)),
            ("pinky", (0.083, -0.005, -0.029), (0.03, 0.019, 0.017)),
        ):
            j[jj(f"{finger}1")] = j[jj("wrist")] + m * np.array(base) * h
            j[jj(f"{finger}2")] = j[jj(f"{finger}1")] + m * (seg[0] * h, -0.001, 0.0)
            j[jj(f"{finger}3")] = j[jj(f"{finger}2")] + m * (seg[1] * h, -0.001, 0.0)
        j[jj("thumb1")] = j[jj("wrist")] + m * np.array((0.022, -0.012, 0.025)) * h
        j[jj("thumb2")] = j[jj("thumb1")] + m * np.array((0.028, -0.006, 0.024)) * h
        j[jj("thumb3")] = j[jj("thumb2")] + m * np.array((0.024, -0.003, 0.012)) * h
    j *= s
    tubes = _tubes(j, p)
    return j, tubes


def _tubes(j: np.ndarray, p: dict[str, float]) -> list[Tube]:
    """The solid's tubes around rest joints `j`, in a fixed order (trunk, head, then per side arm and leg)
    that the tubes' indices in ownership and skinning follow."""
    t = _TubeSet(j, p)
    _trunk(t)
    _head(t)
    for side, sx in (("left", 1.0), ("right", -1.0)):
        _arm(t, side, sx)
        _leg(t, side, sx)
    return t.out


class _TubeSet:
    """The tubes built so far around rest joints `j` for proportions `p`. Radii and rounding are given for a
    body of unit `scale` (stature): `add` scales them."""

    def __init__(self, j: np.ndarray, p: dict[str, float]):
        self.j, self.p, self.out = j, p, []
        self.s = p["scale"]
        self.g = p["girth"]
        self.lg = self.g * p["limb_girth"]

    def add(self, a, b, r1, r2, r3, hint, bones, **kw) -> None:
        s = self.s
        self.out.append(Tube(np.asarray(a, float), np.asarray(b, float), s * np.asarray(r1, float), s * np.asarray(r2, float),
                             tuple(s * np.asarray(r3)), np.asarray(hint, float), bones, **kw))  # fmt: skip

    def bone(self, name, child=None, end=None):
        """(joint index, start, end) of the bone from joint `name` to joint `child` or to the point `end`."""
        a = self.j[J[name]]
        return (J[name], a, self.j[J[child]] if child else np.asarray(end))


def _trunk(t: _TubeSet) -> None:
    """One tube with a vertical axis; its cross-sections (half-width, half-depth, centre z) sit at heights
    taken from the skeleton: crotch, hips, iliac crest, waist, lower chest, chest, armpits, base of the neck."""
    j, p, s, g = t.j, t.p, t.s, t.g
    x, _, z = np.eye(3)
    pel, sp1, sp2, sp3, nk = (j[J[n]] for n in ("pelvis", "spine1", "spine2", "spine3", "neck"))
    pw, bel, chd, chw = p["pelvis_width"] * p["hip_width"] ** 0.5, p["belly"], p["chest_depth"], p["chest_width"]
    hip_y = (j[J["left_hip"]][1] + j[J["right_hip"]][1]) / 2
    collar_y = (j[J["left_collar"]][1] + j[J["right_collar"]][1]) / 2
    heights = np.array([hip_y - 0.075 * s, hip_y, pel[1] + 0.03 * s, sp1[1], sp2[1], sp3[1] + 0.06 * s, collar_y,
                        nk[1] - 0.015 * s])  # fmt: skip
    half_w = g * np.array([0.11, 0.162 * pw, 0.16 * pw, 0.142, 0.148 * chw, 0.163 * chw, 0.158 * chw, 0.085])
    depth0 = np.array([0.08, 0.112, 0.108, 0.098, 0.103, 0.108, 0.095, 0.062])
    half_d = depth0 * g * np.array([1, 1, 1, bel, bel**0.5 * chd, chd, chd, 1])
    # belly and chest grow forward, not backward: the centre moves by half the extra depth
    centre_z = np.array([-0.015, -0.02, -0.005, 0.008, 0.012, 0.012, -0.005, -0.025]) + (half_d - depth0) / 2
    bottom, top = np.array([0.0, heights[0], 0.0]), np.array([0.0, heights[-1], 0.0])
    t.add(bottom, top, half_w, half_d, (0.07 * g, 0.04), x,
          [(J["pelvis"], np.array([0.0, hip_y - 0.06 * s, pel[2]]), sp1), t.bone("spine1", "spine2"),
           t.bone("spine2", "spine3"), t.bone("spine3", "neck")],
          knots=(heights - heights[0]) / (heights[-1] - heights[0]),
          offset=np.outer(centre_z * s, z), share_soft=0.03)  # fmt: skip


def _head(t: _TubeSet) -> None:
    """The neck, and the head as a skull ellipsoid, a jaw and a nose."""
    j, p, s, g = t.j, t.p, t.s, t.g
    x = np.eye(3)[0]
    nk, hd = j[J["neck"]], j[J["head"]]
    hs = p["head"]
    t.add(nk - (0, 0.05 * s, 0.01 * s), hd + (0, 0.02 * s, -0.005 * s), (0.058 * g, 0.052), (0.055 * g, 0.05),
          (0.05, 0.05), x, [t.bone("neck", "head")])  # fmt: skip
    skull = hd + np.array([0.0, 0.078, 0.012]) * s * hs
    t.add(skull - (0, 0.02 * s * hs, 0), skull + (0, 0.02 * s * hs, 0), (0.077 * hs,) * 2, (0.097 * hs,) * 2,
          (0.085 * hs, 0.084 * hs), x, [t.bone("head", end=skull + (0, 0.1 * s, 0))])  # fmt: skip
    jaw = hd + np.array([0.0, 0.015, 0.045]) * s * hs
    t.add(jaw, jaw + np.array([0.0, 0.02, 0.03]) * s * hs, (0.052 * hs, 0.045 * hs), (0.05 * hs, 0.035 * hs),
          (0.045 * hs, 0.03 * hs), x, [t.bone("head", end=skull + (0, 0.1 * s, 0))])  # fmt: skip
    nose = hd + np.array([0.0, 0.07, 0.105]) * s * hs
    t.add(nose, nose - np.array([0.0, 0.03, -0.005]) * s * hs, (0.013 * hs,) * 2, (0.013 * hs,) * 2,
          (0.013 * hs,) * 2, x, [t.bone("head", end=skull + (0, 0.1 * s, 0))])  # fmt: skip


def _arm(t: _TubeSet, side: str, sx: float) -> None:
    """Shoulder girdle, upper arm, forearm and a mitten hand (palm, one tube over the four fingers, thumb)
    of one side (`sx`: +1 left, -1 right)."""
    p, s, g, lg = t.p, t.s, t.g, t.lg
    y = np.eye(3)[1]
    n = lambda name: f"{side}_{name}"  # noqa: E731
    pj = lambda name: t.j[J[n(name)]]  # noqa: E731
    m = np.array([sx, 1.0, 1.0])
    t.add(pj("collar") - m * (0.04 * s, 0.0, 0.0), pj("shoulder"), (0.06 * g, 0.055 * lg), (0.065 * g, 0.058 * lg),
          (0.05, 0.055 * lg), y, [t.bone(n("collar"), n("shoulder"))])  # fmt: skip
    t.add(pj("shoulder"), pj("elbow"), (0.052 * lg, 0.041 * lg), (0.054 * lg, 0.043 * lg), (0.052 * lg, 0.041 * lg),
          y, [t.bone(n("shoulder"), n("elbow"))])  # fmt: skip
    t.add(pj("elbow"), pj("wrist"), (0.039 * lg, 0.022 * lg), (0.042 * lg, 0.031 * lg), (0.039 * lg, 0.024 * lg),
          y, [t.bone(n("elbow"), n("wrist"))])  # fmt: skip
    hsz = p["hand"]
    knuckle = (pj("index1") + pj("pinky1")) / 2
    t.add(pj("wrist") + m * (0.01 * s, 0, 0), knuckle, (0.02 * hsz, 0.017 * hsz), (0.033 * hsz, 0.043 * hsz),
          (0.02 * hsz, 0.014 * hsz), y, [t.bone(n("wrist"), end=knuckle)])  # fmt: skip
    tips = {f: pj(f"{f}3") + (pj(f"{f}3") - pj(f"{f}2")) * 0.85 for f in ("index", "middle", "ring", "pinky")}
    finger_bones = [
        t.bone(n(f"{f}{i}"), n(f"{f}{i + 1}") if i < 3 else None, None if i < 3 else tips[f])
        for f in ("index", "middle", "ring", "pinky")
        for i in (1, 2, 3)
    ]
    tip = (tips["index"] + tips["pinky"]) / 2 + m * (0.01 * s * hsz, 0, 0)
    t.add(knuckle, tip, (0.014 * hsz, 0.011 * hsz), (0.043 * hsz, 0.033 * hsz), (0.012 * hsz, 0.011 * hsz), y,
          finger_bones)  # fmt: skip
    thumb_tip = pj("thumb3") + (pj("thumb3") - pj("thumb2")) * 0.9
    thumb_bones = [t.bone(n("thumb1"), n("thumb2")), t.bone(n("thumb2"), n("thumb3")), t.bone(n("thumb3"), end=thumb_tip)]
    t.add(pj("thumb1"), thumb_tip, (0.014 * hsz, 0.011 * hsz), (0.016 * hsz, 0.012 * hsz),
          (0.014 * hsz, 0.011 * hsz), y, thumb_bones)  # fmt: skip


def _leg(t: _TubeSet, side: str, sx: float) -> None:
    """Buttock, thigh, calf, shank, heel and toes of one side (`sx`: +1 left, -1 right)."""
    p, s, g, lg = t.p, t.s, t.g, t.lg
    x = np.eye(3)[0]
    n = lambda name: f"{side}_{name}"  # noqa: E731
    pj = lambda name: t.j[J[n(name)]]  # noqa: E731
    tg = g * p["thigh_girth"] * p["limb_girth"] ** 0.5
    t.add(pj("hip") + np.array([0.01 * sx, 0.02, -0.05]) * s, pj("hip") + np.array([0.015 * sx, -0.05, -0.052]) * s,
          (0.068 * tg, 0.065 * tg), (0.065 * g, 0.06 * g), (0.065 * g, 0.06 * g), x, [t.bone(n("hip"), n("knee"))])  # fmt: skip
    t.add(pj("hip"), pj("knee"), (0.09 * tg, 0.054 * lg), (0.085 * tg, 0.056 * lg), (0.08 * tg, 0.05 * lg), x,
          [t.bone(n("hip"), n("knee"))])  # fmt: skip
    shank = pj("ankle") - pj("knee")
    calf = pj("knee") + 0.3 * shank + np.array([0.0, 0.0, -0.018]) * s
    t.add(calf + 0.12 * shank, calf - 0.12 * shank, (0.05 * lg,) * 2, (0.05 * lg,) * 2, (0.045 * lg,) * 2, x,
          [t.bone(n("knee"), n("ankle"))])  # fmt: skip
    t.add(pj("knee"), pj("ankle"), (0.052 * lg, 0.033 * lg), (0.052 * lg, 0.035 * lg), (0.05 * lg, 0.03 * lg), x,
          [t.bone(n("knee"), n("ankle"))])  # fmt: skip
    fs = p["foot"]
    heel = pj("ankle") + np.array([0.0, -0.045, -0.035]) * s * fs
    toe_tip = pj("foot") + np.array([0.008 * sx, -0.005, 0.075]) * s * fs
    t.add(heel, pj("foot"), (0.034 * fs, 0.045 * fs), (0.028 * fs, 0.028 * fs),
          (0.032 * fs, 0.03 * fs), x, [t.bone(n("ankle"), n("foot"))])  # fmt: skip
    t.add(pj("foot"), toe_tip, (0.045 * fs, 0.04 * fs), (0.028 * fs, 0.02 * fs),
          (0.03 * fs, 0.02 * fs), x, [t.bone(n("foot"), end=toe_tip + np.array([0, 0, 0.02]) * s)])  # fmt: skip


# ---------------------------------------------------------------------------------------- surface


def union_field(tubes: list[Tube], points: np.ndarray, k: float = BLEND) -> np.ndarray:
    """Smooth union (-k log sum exp(-f/k)) of the tubes' distances at `points (N, 3)`."""
    acc = np.zeros(len(points))
    for t in tubes:
        lo, hi = t.bounds(12 * k)
        inside = np.all((points >= lo) & (points <= hi), axis=1)
        if inside.any():
            acc[inside] += np.exp(-t.sdf(points[inside]) / k)
    return -k * np.log(np.maximum(acc, 1e-300))


def _grid_field(tubes: list[Tube], origin: np.ndarray, shape: tuple, h: float) -> np.ndarray:
    """The union field on the grid nodes origin + h (i, j, k), evaluated tube by tube in its box."""
    acc = np.zeros(shape)
    axes = [origin[d] + h * np.arange(shape[d]) for d in range(3)]
    for t in tubes:
        lo, hi = t.bounds(12 * BLEND)
        sl = []
        for d in range(3):
            i0 = max(int(np.floor((lo[d] - origin[d]) / h)), 0)
            i1 = min(int(np.ceil((hi[d] - origin[d]) / h)) + 1, shape[d])
            sl.append(slice(i0, i1))
        pts = np.stack(np.meshgrid(axes[0][sl[0]], axes[1][sl[1]], axes[2][sl[2]], indexing="ij"), -1)
        acc[tuple(sl)] += np.exp(-t.sdf(pts.reshape(-1, 3)).reshape(pts.shape[:3]) / BLEND)
    return -BLEND * np.log(np.maximum(acc, 1e-300))


def _resolve_saddles(f: np.ndarray, max_rounds: int = 20) -> np.ndarray:
    """Nudge node values so that no grid face has a checkerboard sign pattern (inside on one diagonal,
    outside on the other): such a face would make surface nets glue four quads to one edge. The node of
    the face closest to the surface changes side (by a hair)."""
    f = f.copy()
    for _ in range(max_rounds):
        changed = False
        for a, b in ((0, 1), (0, 2), (1, 2)):
            inside = f < 0
            def corner(da, db):
                sl = [slice(None)] * 3
                sl[a] = slice(da, f.shape[a] - 1 + da)
                sl[b] = slice(db, f.shape[b] - 1 + db)
                return tuple(sl)
            c00, c01, c10, c11 = corner(0, 0), corner(0, 1), corner(1, 0), corner(1, 1)
            saddle = (inside[c00] == inside[c11]) & (inside[c01] == inside[c10]) & (inside[c00] != inside[c01])
            for idx in np.argwhere(saddle):
                nodes = []
                for da, db in ((0, 0), (0, 1), (1, 0), (1, 1)):
                    n = idx.copy()
                    n[a] += da
                    n[b] += db
                    nodes.append(tuple(n))
                s00, s01, s10, s11 = (f[n] < 0 for n in nodes)
                if not (s00 == s11 and s01 == s10 and s00 != s01):
                    continue  # already broken by an earlier nudge this round
                n = min(nodes, key=lambda n: abs(f[n]))
                f[n] = 1e-9 if f[n] < 0 else -1e-9
                changed = True
        if not changed:
            return f
    return f


def surface_nets(f: np.ndarray, origin: np.ndarray, h: float):
    """Closed, outward-oriented triangle mesh of {f < 0} from node values `f` whose border is outside.
    One vertex per crossed cell (mean of its edge crossings), one quad per crossed grid edge."""
    inside = f < 0
    shape = np.array(f.shape)
    cell_sum = np.zeros(tuple(shape - 1) + (3,))
    cell_cnt = np.zeros(tuple(shape - 1))
    edge_masks = []
    for ax in range(3):
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[ax], hi[ax] = slice(0, -1), slice(1, None)
        f0, f1 = f[tuple(lo)], f[tuple(hi)]
        cross = inside[tuple(lo)] != inside[tuple(hi)]
        edge_masks.append((cross, inside[tuple(lo)]))
        t = np.where(cross, f0 / np.where(cross, f0 - f1, 1.0), 0.0)
        idx = np.stack(np.meshgrid(*[np.arange(n) for n in f0.shape], indexing="ij"), -1).astype(float)
        idx[..., ax] += t
        pts = idx * cross[..., None]
        # each edge borders the cells offset by 0/-1 in the two other axes
        others = [d for d in range(3) if d != ax]
        for o1 in (0, 1):
            for o2 in (0, 1):
                src = [slice(None)] * 3
                src[others[0]] = slice(o1, o1 + shape[others[0]] - 1)
                src[others[1]] = slice(o2, o2 + shape[others[1]] - 1)
                cell_sum += pts[tuple(src)]
                cell_cnt += cross[tuple(src)]
    active = cell_cnt > 0
    vid = -np.ones(active.shape, dtype=np.int64)
    vid[active] = np.arange(active.sum())
    verts = origin + h * (cell_sum[active] / cell_cnt[active][:, None])
    quads = []
    for ax, (cross, lower_inside) in enumerate(edge_masks):
        others = [d for d in range(3) if d != ax]
        e = np.argwhere(cross)
        e = e[(e[:, others[0]] > 0) & (e[:, others[1]] > 0)]
        # the four cells around the edge, counter-clockwise seen from +ax: (others[0], others[1]) offsets
        ring = []
        for d1, d2 in ((-1, -1), (0, -1), (0, 0), (-1, 0)):
            c = e.copy()
            c[:, others[0]] += d1
            c[:, others[1]] += d2
            ring.append(vid[c[:, 0], c[:, 1], c[:, 2]])
        q = np.stack(ring, 1)
        flip = ~lower_inside[e[:, 0], e[:, 1], e[:, 2]]
        if ax == 1:  # (z, x) is the counter-clockwise pair seen from +y
            flip = ~flip
        q[flip] = q[flip][:, ::-1]
        quads.append(q)
    q = np.concatenate(quads)
    # split each quad along its shorter diagonal
    d02 = np.linalg.norm(verts[q[:, 0]] - verts[q[:, 2]], axis=1)
    d13 = np.linalg.norm(verts[q[:, 1]] - verts[q[:, 3]], axis=1)
    use02 = d02 <= d13
    tris = np.concatenate([
        np.where(use02[:, None], q[:, [0, 1, 2]], q[:, [0, 1, 3]]),
        np.where(use02[:, None], q[:, [0, 2, 3]], q[:, [1, 2, 3]]),
    ])  # fmt: skip
    return verts, tris


def edge_manifold(faces: np.ndarray) -> bool:
    """Every directed edge once and its reverse once: closed, consistently oriented, edge-manifold."""
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    n = faces.max() + 1
    key = e[:, 0] * n + e[:, 1]
    rev = e[:, 1] * n + e[:, 0]
    return len(np.unique(key)) == len(key) and np.isin(rev, key).all()


def _project(tubes, verts, steps: int = 3):
    """Move vertices onto the zero level set (Newton steps along the numerical gradient)."""
    eps = 1e-4
    for _ in range(steps):
        f = union_field(tubes, verts)
        grad = np.stack([(union_field(tubes, verts + eps * e) - f) / eps for e in np.eye(3)], -1)
        verts = verts - (f / np.maximum((grad**2).sum(-1), 1e-9))[:, None] * grad
    return verts


def make_mesh(tubes: list[Tube], h: float = GRID_STEP):
    """Closed mesh of the body (vertices (V, 3), faces (F, 3)); tries a few grid offsets until the
    surface-nets mesh is edge-manifold (a rare ambiguous grid face can pinch it)."""
    lo = np.min([t.bounds(0.03)[0] for t in tubes], 0)
    hi = np.max([t.bounds(0.03)[1] for t in tubes], 0)
    for shift in (0.0, 0.31, 0.57, 0.83):
        origin = lo - h * (1.0 + shift)
        shape = tuple(np.ceil((hi - origin) / h).astype(int) + 2)
        f = _resolve_saddles(_grid_field(tubes, origin, shape, h))
        verts, faces = surface_nets(f, origin, h)
        if edge_manifold(faces):
            return _project(tubes, verts), faces
    raise RuntimeError("embedded body: could not extract an edge-manifold surface; change GRID_STEP")


# ---------------------------------------------------------------------------------------- model


def _ownership(tubes, verts, tau):
    """Soft tube ownership (V, T): softmax over tubes of minus their distance."""
    d = np.stack([t.sdf(verts) for t in tubes], 1)
    w = np.exp(-(d - d.min(1, keepdims=True)) / tau)
    return w / w.sum(1, keepdims=True)


def _seg_dist(p, a, b):
    ab = b - a
    t = np.clip(((p - a) @ ab) / max(ab @ ab, 1e-12), 0, 1)
    return np.linalg.norm(p - (a + np.outer(t, ab)), axis=1)


def skinning_weights(tubes, verts, n_joints=52, max_influences=4):
    own = _ownership(tubes, verts, OWN_TAU)
    w = np.zeros((len(verts), n_joints))
    for ti, t in enumerate(tubes):
        if len(t.bones) == 1:
            share = np.ones((len(verts), 1))
        else:
            d = np.stack([_seg_dist(verts, a, b) for _, a, b in t.bones], 1)
            share = np.exp(-((d - d.min(1, keepdims=True)) / t.share_soft) ** 2)
            share /= share.sum(1, keepdims=True)
        for bi, (jid, _, _) in enumerate(t.bones):
            w[:, jid] += own[:, ti] * share[:, bi]
    # keep the strongest influences, drop tiny ones, renormalise
    order = np.argsort(-w, axis=1)
    keep = np.zeros_like(w, dtype=bool)
    np.put_along_axis(keep, order[:, :max_influences], True, axis=1)
    w = np.where(keep & (w > 0.01), w, 0.0)
    return w / w.sum(1, keepdims=True)


def _deform(tubes0, tubes1, verts, own):
    """Where each vertex goes when the tubes change from tubes0 to tubes1 (ownership-blended): same
    knot-relative position along the axis, cross-section offsets scaled with the radii."""
    out = np.zeros_like(verts)
    for ti, (t0, t1) in enumerate(zip(tubes0, tubes1)):
        sel = own[:, ti] > 1e-4
        if not sel.any():
            continue
        tt, d1, d2, d3, r1, r2, r3 = t0.local(verts[sel])
        tn = np.interp(tt, t0.knots, t1.knots)
        n1, n2, _ = t1.at(tn)
        n3 = np.where(tt < 0.5, t1.r3[0], t1.r3[1])
        out[sel] += own[sel, ti, None] * t1.place(tn, d1, d2, d3, n1 / r1, n2 / r2, n3 / r3)
    return out / own.sum(1, keepdims=True)


def _j_regressor(verts, joints, parents):
    """Joint regressor (J, V): for each joint, weights on the ring of vertices around it (a slab across
    its bone, within about twice the distance to the nearest vertex), shifted by the smallest change
    that makes them sum to one and reproduce the rest joint exactly. Joints then follow the surrounding
    cross-section under every shape component."""
    children = {j: [c for c, p in enumerate(parents) if p == j] for j in range(len(joints))}
    reg = np.zeros((len(joints), len(verts)))
    for j, joint in enumerate(joints):
        axis = joints[children[j][0]] - joint if children[j] else joint - joints[parents[j]]
        axis = axis / np.linalg.norm(axis)
        rel = verts - joint
        along = rel @ axis
        radial = np.linalg.norm(rel - np.outer(along, axis), axis=1)
        nearest = np.linalg.norm(rel, axis=1).min()
        for grow in (1.0, 1.5, 2.0, 3.0):
            ring = np.nonzero((np.abs(along) < 0.015 * grow) & (radial < (2.2 * nearest + 0.01) * grow))[0]
            if len(ring) >= 8:
                break
        prior = np.exp(-((along[ring] / 0.015) ** 2))
        prior /= prior.sum()
        a = np.concatenate([verts[ring].T, np.ones((1, len(ring)))])
        b = np.concatenate([joint, [1.0]])
        reg[j, ring] = prior + a.T @ np.linalg.lstsq(a @ a.T, b - a @ prior, rcond=None)[0]
    return reg


def _site_vertices(verts, joints):
    """Vertex id of each sensor site (see `_SITES`): the vertex furthest along the site's direction
    among those within 2 cm of the site's cross-section of its bone."""
    ids = []
    for name in SENSOR_SITE_NAMES:
        ja, jb, frac, direction = _SITES[name]
        a = joints[J[ja]]
        b = joints[J[jb]] if jb else a
        q = a + frac * (b - a)
        direction = np.asarray(direction) / np.linalg.norm(direction)
        axis = b - a
        if np.linalg.norm(axis) > 1e-9:
            axis = axis / np.linalg.norm(axis)
            along = np.abs((verts - q) @ axis) < 0.02
        else:
            along = np.linalg.norm(verts - q, axis=1) < 0.25
        score = (verts - q) @ direction - 10.0 * ~along
        ids.append(int(np.argmax(score)))
    return np.asarray(ids, dtype=np.int64)


def generate() -> dict[str, np.ndarray]:
    """All arrays of the embedded body in the SMPL-H npz layout (plus named sensor sites)."""
    base = _defaults()
    joints, tubes = build_body(base)
    verts, faces = make_mesh(tubes)
    own_shape = _ownership(tubes, verts, SHAPE_TAU)
    shapedirs = np.zeros((len(verts), 3, len(SHAPE_COMPONENTS)))
    for k, (_, change) in enumerate(SHAPE_COMPONENTS):
        p = dict(base)
        for key, delta in change.items():
            p[key] += delta
        shapedirs[:, :, k] = _deform(tubes, build_body(p)[1], verts, own_shape) - verts
    weights = skinning_weights(tubes, verts)
    j_reg = _j_regressor(verts, joints, PARENTS)
    kintree = np.stack([np.asarray(PARENTS, dtype=np.int64), np.arange(52, dtype=np.int64)])
    return {
        "v_template": verts.astype(np.float64),
        "f": faces.astype(np.int64),
        "shapedirs": shapedirs,
        "posedirs": np.zeros((len(verts), 3, 9 * 51), dtype=np.float32),
        "J_regressor": j_reg,
        "weights": weights,
        "kintree_table": kintree,
        "joint_names": np.asarray(JOINT_NAMES),
        "sensor_site_names": np.asarray(SENSOR_SITE_NAMES),
        "sensor_site_vertices": _site_vertices(verts, joints),
        "shape_component_names": np.asarray([name for name, _ in SHAPE_COMPONENTS]),
        "generator": np.asarray(f"empose embedded SMPL-H-compatible body v{GENERATOR_VERSION}"),
    }


# ---------------------------------------------------------------------------------------- cache


def _cache_key() -> str:
    src = Path(__file__).read_bytes()
    return hashlib.sha1(GENERATOR_VERSION.encode() + src).hexdigest()[:12]


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "empose")


def embedded_model_path(rebuild: bool = False) -> Path:
    """Path of the generated model npz, generating it (and caching it atomically) when needed. An
    unwritable cache folder falls back to a per-process temporary folder."""
    from empose_smplh.npz import save_model_npz

    name = f"embedded-smplh-{_cache_key()}.npz"
    path = cache_dir() / name
    if path.is_file() and not rebuild:
        return path
    arrays = generate()
    try:
        save_model_npz(path, arrays)
    except OSError:
        path = Path(tempfile.mkdtemp(prefix="empose-")) / name
        save_model_npz(path, arrays)
    return path
