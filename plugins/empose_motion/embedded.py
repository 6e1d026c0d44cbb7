"""The `embedded` motion source: procedurally generated motions of the EM-POSE activities.

No download and no licence: every motion is computed from (seed, split, index). Activities follow the
EM-POSE recording protocol (docs/method.md §5.1): slow and fast arm movements, head and shoulders, jumping
jacks, lower-body exercises, lunges, sitting down and standing up, and walking. Each motion randomises
tempo (including slow drifts within the clip), amplitudes, phases, the order of sub-movements, a
small idle sway on every joint, the heading, and the body shape (betas ~ N(0, 1) clipped to +-2).
Every motion starts from its own relaxed stance drawn within the ranges real people show (measured on
motion capture with `bench/joint_ranges.py`): hanging arms below raised or dropped collars, humeral and
forearm twist, elbow carrying angle, a thoracic curve, hip turn-out, soft knees, ankle and toe set.

Joint angles are written as intrinsic Euler angles per joint (`JOINT_LIMITS`, degrees, in SMPL's rest
frame: x to the body's left, y up, z forward) and clipped to per-joint limits before conversion to
axis-angle, so no motion leaves the limits. Translation comes from the feet: the body is posed with
forward kinematics and the root moves so that the supporting (lower) foot does not slide and the lowest
foot point touches the floor (y = 0), plus a flight arc for jumps. Walking therefore moves forward at the
speed its strides produce, and sitting lowers the pelvis.

Splits never share a sequence: the random stream of item i of a split is seeded with (seed, split, i).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.spatial.transform import Rotation

from empose_framework.errors import EmposeError
from empose_framework.interfaces import Motion, MotionSource
from empose_framework.joints import SMPL_BODY_JOINTS, SMPL_BODY_PARENTS
from empose_motion import schema
from empose_motion.layout import BodyLayout
from empose_motion.schema import ACTIVITIES, EMBEDDED_SPLITS

FPS = 60.0

#: Per joint: intrinsic Euler sequence (scipy, upper case) and (low, high) limits per angle, in the order
#: of the sequence, degrees. Left/right limbs mirror (sign flips of the y and z angles). The middle angle
#: of each sequence stays well inside +-90 degrees, so the decomposition is unique. The ranges cover what
#: real motion capture reaches (measured by `bench/joint_ranges.py` on the retargeted CMU corpus and the
#: shipped CMU clips): hanging arms with raised collars need the shoulder near -100..-140 degrees (z),
#: deep squats flex the hip past -120, and elbows keep a carrying angle (z) of 10-40 degrees.
JOINT_LIMITS: dict[str, tuple[str, tuple[float, float, float], tuple[float, float, float]]] = {
    "root": ("YXZ", (-180.0, -30.0, -25.0), (180.0, 80.0, 25.0)),  # heading, forward lean, side lean
    "l_hip": ("XZY", (-140.0, -30.0, -40.0), (35.0, 50.0, 40.0)),  # flexion (-), abduction (+z), twist
    "r_hip": ("XZY", (-140.0, -50.0, -40.0), (35.0, 30.0, 40.0)),
    "l_knee": ("XYZ", (0.0, -8.0, -5.0), (150.0, 10.0, 10.0)),  # flexion (+)
    "r_knee": ("XYZ", (0.0, -10.0, -10.0), (150.0, 8.0, 5.0)),
    "l_ankle": ("XYZ", (-50.0, -40.0, -55.0), (50.0, 35.0, 25.0)),  # plantarflexion (+), z: inversion
    "r_ankle": ("XYZ", (-50.0, -35.0, -25.0), (50.0, 40.0, 55.0)),
    "l_foot": ("XYZ", (-40.0, -15.0, -12.0), (50.0, 15.0, 12.0)),  # toes
    "r_foot": ("XYZ", (-40.0, -15.0, -12.0), (50.0, 15.0, 12.0)),
    "spine1": ("XYZ", (-30.0, -20.0, -20.0), (45.0, 20.0, 20.0)),  # forward bend (+), twist, side bend
    "spine2": ("XYZ", (-30.0, -20.0, -15.0), (30.0, 20.0, 15.0)),
    "spine3": ("XYZ", (-15.0, -20.0, -15.0), (45.0, 20.0, 15.0)),
    "neck": ("XYZ", (-75.0, -40.0, -30.0), (40.0, 40.0, 30.0)),  # nod (+), turn, tilt
    "head": ("XYZ", (-45.0, -60.0, -30.0), (35.0, 60.0, 30.0)),
    "l_collar": ("XYZ", (-20.0, -25.0, -25.0), (15.0, 15.0, 40.0)),  # y: protraction (-), z: elevation (+)
    "r_collar": ("XYZ", (-20.0, -15.0, -40.0), (15.0, 25.0, 25.0)),
    "l_shoulder": ("XYZ", (-170.0, -80.0, -145.0), (60.0, 35.0, 88.0)),  # z: raise sideways (+), x: raise forward (-)
    "r_shoulder": ("XYZ", (-170.0, -35.0, -88.0), (60.0, 80.0, 145.0)),
    "l_elbow": ("YXZ", (-150.0, -60.0, -15.0), (0.0, 60.0, 50.0)),  # y: flexion (-), x: twist, z: carrying angle
    "r_elbow": ("YXZ", (0.0, -60.0, -50.0), (150.0, 60.0, 15.0)),
    "l_wrist": ("XYZ", (-90.0, -55.0, -65.0), (70.0, 55.0, 65.0)),
    "r_wrist": ("XYZ", (-90.0, -55.0, -65.0), (70.0, 55.0, 65.0)),
}

SPLIT_CODES = {split: i for i, split in enumerate(EMBEDDED_SPLITS)}


# --------------------------------------------------------------------------- curve helpers


def smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def drifting_phase(t: np.ndarray, period: float, rng: np.random.Generator, drift: float = 0.12) -> np.ndarray:
    """Cycles completed by time t when the tempo wanders by about +-drift around 1/period."""
    f = (1.0 / period) * (1.0 + drift * np.sin(2 * np.pi * rng.uniform(0.03, 0.12) * t + rng.uniform(0, 2 * np.pi)))
    return np.concatenate([[0.0], np.cumsum(f[1:] * np.diff(t))]) + rng.uniform(0, 1)


def bump(phase: np.ndarray, centre: float, width: float) -> np.ndarray:
    """A periodic Gaussian bump (period 1) centred at `centre`."""
    d = (phase - centre + 0.5) % 1.0 - 0.5
    return np.exp(-0.5 * (d / width) ** 2)


def sway(t: np.ndarray, rng: np.random.Generator, amplitude: float) -> np.ndarray:
    """Slow idle motion (degrees): two random sinusoids between 0.1 and 0.6 Hz."""
    out = np.zeros_like(t)
    for _ in range(2):
        out += amplitude * rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * rng.uniform(0.1, 0.6) * t + rng.uniform(0, 2 * np.pi))
    return out


def segments(t: np.ndarray, rng: np.random.Generator, n_moves: int, fade: float = 0.6) -> list[np.ndarray]:
    """Weights (summing to one) that hand over between `n_moves` consecutive sub-movements of random
    length, with smooth cross-fades of `fade` seconds."""
    duration = t[-1] + 1e-9
    cuts = np.sort(rng.uniform(0.2, 0.8, n_moves - 1)) if n_moves > 1 else np.array([])
    cuts = np.concatenate([[0.0], cuts * duration, [np.inf]])
    steps = [smoothstep((t - c + fade / 2) / fade) for c in cuts[1:-1]]
    weights = []
    for k in range(n_moves):
        on = steps[k - 1] if k > 0 else np.ones_like(t)
        off = steps[k] if k < n_moves - 1 else np.zeros_like(t)
        weights.append(on * (1 - off))
    return weights


# --------------------------------------------------------------------------- poses as Euler angles


class Angles:
    """Euler angles (T, 3) per joint in `JOINT_LIMITS` order, set by joint and axis letter."""

    def __init__(self, n: int):
        self.a = {name: np.zeros((n, 3)) for name in JOINT_LIMITS}
        self.lift = {"l": 0.0, "r": 0.0}  # set by `standing`

    def add(self, joint: str, axis: str, curve) -> None:
        self.a[joint][:, JOINT_LIMITS[joint][0].index(axis.upper())] += curve

    def side(self, side: str, joint: str, axis: str, curve, mirror: bool = False) -> None:
        """Add to `l_joint`/`r_joint`; `mirror` negates the curve on the right (y and z angles)."""
        sign = -1.0 if (mirror and side == "r") else 1.0
        self.add(f"{side}_{joint}", axis, sign * np.asarray(curve))

    def blend(self, others: list["Angles"], weights: list[np.ndarray]) -> None:
        for name in self.a:
            self.a[name] += sum(w[:, None] * o.a[name] for o, w in zip(others, weights))

    def clipped(self) -> dict[str, np.ndarray]:
        out = {}
        for name, (_, lo, hi) in JOINT_LIMITS.items():
            a = self.a[name]
            if name == "root":  # heading wraps freely
                a = a.copy()
                a[:, 0] = (a[:, 0] + 180.0) % 360.0 - 180.0
            out[name] = np.clip(a, lo, hi)
        return out


def lean(a: Angles, degrees) -> None:
    """Tilt the trunk forward about the hips, the thighs keeping their orientation in the world."""
    a.add("root", "x", degrees)
    for side in "lr":
        a.side(side, "hip", "x", -np.asarray(degrees))


def standing(t: np.ndarray, rng: np.random.Generator, a: Angles, arms_down: bool = True) -> None:
    """Relaxed upright posture with idle sway.

    Each motion draws its own posture, with the spread measured on real motion capture
    (`bench/joint_ranges.py`): collars raised or dropped with the arms hanging (so the shoulder takes
    whatever the collar leaves, down to -140 degrees), humeral twist, elbow carrying angle and forearm
    twist, wrist set, a thoracic curve that the neck compensates, side lean, hip turn-out, soft knees
    and ankle/toe set. `a.lift[side]` is how far the hanging shoulder sits below the generator's old
    reference (-73 degrees): activities that raise the arms to absolute heights add it."""
    a.lift = {}
    for side in "lr":
        elevation = rng.uniform(-18, 28)  # collar: dropped (-) or raised (+)
        a.side(side, "collar", "z", elevation + sway(t, rng, 1.0), mirror=True)
        a.side(side, "collar", "y", rng.uniform(-10, 8) + sway(t, rng, 1.0), mirror=True)
        a.side(side, "collar", "x", rng.uniform(-15, 5))
        base = -(90.0 + elevation) + rng.uniform(-10, 22)  # arm hangs 10 deg across to 22 deg out
        a.lift[side] = -73.0 - base
        if arms_down:
            a.side(side, "shoulder", "z", base + sway(t, rng, 2.0), mirror=True)
            a.side(side, "shoulder", "x", rng.uniform(-12, 6) + sway(t, rng, 2.0))
            a.side(side, "shoulder", "y", rng.uniform(-60, 10) + sway(t, rng, 3.0), mirror=True)  # humeral twist
            a.side(side, "elbow", "y", -rng.uniform(5, 40) + sway(t, rng, 2.0), mirror=True)
        a.side(side, "elbow", "x", rng.uniform(-10, 40) + sway(t, rng, 6.0))  # forearm twist
        a.side(side, "elbow", "z", rng.uniform(0, 35) + sway(t, rng, 2.0), mirror=True)  # carrying angle
        a.side(side, "hip", "z", rng.uniform(-4, 6) + sway(t, rng, 0.7), mirror=True)
        a.side(side, "hip", "y", rng.uniform(-18, 18) + sway(t, rng, 2.0), mirror=True)  # turn-out
        a.side(side, "hip", "x", -rng.uniform(0, 10))
        a.side(side, "knee", "x", rng.uniform(0, 12) + sway(t, rng, 1.0))
        a.side(side, "knee", "y", rng.uniform(0, 5), mirror=True)
        a.side(side, "knee", "z", rng.uniform(0, 8), mirror=True)
        a.side(side, "ankle", "x", rng.uniform(-25, 5))
        a.side(side, "ankle", "y", rng.uniform(-15, 10), mirror=True)
        a.side(side, "ankle", "z", rng.uniform(-30, 6) + sway(t, rng, 1.5), mirror=True)
        a.side(side, "foot", "x", rng.uniform(-10, 20))
        a.side(side, "foot", "y", rng.uniform(-8, 8))
        for axis, lo, hi in (("x", -40.0, 25.0), ("y", -20.0, 20.0), ("z", -30.0, 30.0)):
            a.side(side, "wrist", axis, rng.uniform(lo, hi) + sway(t, rng, 4.0))
    curve = (rng.uniform(-10, 12), rng.uniform(-18, 5), rng.uniform(0, 38))  # spine1..3 flexion
    for j, bend in zip(("spine1", "spine2", "spine3"), curve):
        a.add(j, "x", bend + sway(t, rng, 1.5))
        for axis in "yz":
            a.add(j, axis, rng.uniform(-4, 4) + sway(t, rng, 1.5))
    a.add("root", "z", rng.uniform(-5, 5) + sway(t, rng, 1.0))
    lean(a, rng.uniform(-5, 8))
    a.add("neck", "x", -sum(curve) * rng.uniform(0.8, 1.3) + rng.uniform(-25, 8) + sway(t, rng, 2.0))
    a.add("neck", "z", sway(t, rng, 1.5))
    a.add("head", "x", rng.uniform(-20, 15))
    a.add("head", "y", rng.uniform(-15, 15))
    a.add("head", "y", sway(t, rng, 3.0))


# --------------------------------------------------------------------------- activities


def arms(t, rng, a: Angles, fast: bool) -> None:
    """Raises sideways, forward and overhead, elbow curls, arm circles and horizontal swings."""
    standing(t, rng, a)
    period = rng.uniform(0.8, 1.6) if fast else rng.uniform(2.5, 5.0)
    moves = rng.permutation(5)[: rng.integers(2, 4)]
    parts = []
    for m in moves:
        b = Angles(len(t))
        ph = drifting_phase(t, period * rng.uniform(0.85, 1.15), rng)
        alternate = rng.random() < 0.35
        for side in "lr":
            p = 2 * np.pi * (ph + (0.5 if alternate and side == "r" else 0.0))
            up = (1 - np.cos(p)) / 2  # 0 -> 1 -> 0 per cycle
            if m == 0:  # lateral raise, up to shoulder height or overhead
                b.side(side, "shoulder", "z", (rng.uniform(70, 160) + a.lift[side]) * up, mirror=True)
            elif m == 1:  # forward raise
                b.side(side, "shoulder", "x", -rng.uniform(70, 165) * up)
            elif m == 2:  # elbow curls
                b.side(side, "elbow", "y", -rng.uniform(80, 125) * up, mirror=True)
                b.side(side, "shoulder", "x", -rng.uniform(0, 25) * up)
            elif m == 3:  # arm circles, arms out to the side
                b.side(side, "shoulder", "z", 70 + a.lift[side] + rng.uniform(10, 30) * np.sin(p), mirror=True)
                b.side(side, "shoulder", "x", rng.uniform(15, 35) * np.cos(p))
            else:  # horizontal swings at shoulder height: front to side
                b.side(side, "shoulder", "z", 72.0 + a.lift[side], mirror=True)
                b.side(side, "shoulder", "y", -rng.uniform(40, 75) * up, mirror=True)
                b.side(side, "elbow", "y", -rng.uniform(0, 30) * up, mirror=True)
        parts.append(b)
    a.blend(parts, segments(t, rng, len(parts)))


def head_shoulders(t, rng, a: Angles) -> None:
    """Nodding, turning and tilting the head; shrugging and rolling the shoulders."""
    standing(t, rng, a)
    period = rng.uniform(1.8, 4.0)
    parts = []
    for m in rng.permutation(4)[: rng.integers(2, 5)]:
        b = Angles(len(t))
        p = 2 * np.pi * drifting_phase(t, period * rng.uniform(0.8, 1.2), rng)
        if m == 0:  # nod
            amp = rng.uniform(15, 30)
            b.add("neck", "x", amp * 0.6 * np.sin(p))
            b.add("head", "x", amp * 0.4 * np.sin(p))
        elif m == 1:  # turn left-right
            amp = rng.uniform(25, 60)
            b.add("neck", "y", amp * 0.5 * np.sin(p))
            b.add("head", "y", amp * 0.5 * np.sin(p))
        elif m == 2:  # shrug, both or alternating
            alt = 0.5 if rng.random() < 0.4 else 0.0
            for side, off in (("l", 0.0), ("r", alt)):
                b.side(side, "collar", "z", rng.uniform(12, 25) * (1 - np.cos(p + 2 * np.pi * off)) / 2, mirror=True)
        else:  # shoulder rolls
            for side in "lr":
                b.side(side, "collar", "z", rng.uniform(8, 18) * (1 + np.sin(p)) / 2, mirror=True)
                b.side(side, "collar", "y", -rng.uniform(8, 18) * np.cos(p), mirror=True)
        parts.append(b)
    a.blend(parts, segments(t, rng, len(parts)))


def jumping_jacks(t, rng, a: Angles) -> dict:
    """Legs and arms open and close together; a hop at every change. The pelvis stays in place."""
    standing(t, rng, a)
    period = rng.uniform(0.9, 1.5)
    ph = drifting_phase(t, period, rng, drift=0.08)
    p = 2 * np.pi * ph
    open_ = (1 - np.cos(p)) / 2
    arm_top = rng.uniform(140, 160)
    legs = rng.uniform(12, 22)
    for side in "lr":
        a.side(side, "shoulder", "z", (arm_top + a.lift[side]) * open_, mirror=True)
        a.side(side, "hip", "z", legs * open_, mirror=True)
        landing = np.abs(np.cos(p)) ** 4  # knees give at both landings
        a.side(side, "knee", "x", rng.uniform(8, 20) * landing)
        a.side(side, "hip", "x", -rng.uniform(4, 10) * landing)
        a.side(side, "ankle", "x", rng.uniform(5, 15) * np.abs(np.sin(p)))
        a.side(side, "elbow", "y", -rng.uniform(0, 15) * open_, mirror=True)
    height = rng.uniform(0.04, 0.10)
    return {"flight": height * np.abs(np.sin(p)) ** 1.5, "travel": False}


def lower_body(t, rng, a: Angles) -> None:
    """Knee raises, side leg raises, squats and heel raises."""
    standing(t, rng, a)
    period = rng.uniform(1.6, 3.2)
    parts = []
    for m in rng.permutation(4)[: rng.integers(2, 4)]:
        b = Angles(len(t))
        ph = drifting_phase(t, period * rng.uniform(0.85, 1.15), rng)
        if m == 0:  # alternating knee raises
            for side, off in (("l", 0.0), ("r", 0.5)):
                up = np.clip(np.sin(2 * np.pi * (ph / 2 + off)), 0, None) ** 1.5
                b.side(side, "hip", "x", -rng.uniform(60, 95) * up)
                b.side(side, "knee", "x", rng.uniform(70, 110) * up)
        elif m == 1:  # alternating side leg raises
            for side, off in (("l", 0.0), ("r", 0.5)):
                up = np.clip(np.sin(2 * np.pi * (ph / 2 + off)), 0, None) ** 1.5
                b.side(side, "hip", "z", rng.uniform(20, 40) * up, mirror=True)
                b.side("r" if side == "l" else "l", "hip", "z", -3 * up, mirror=True)
        elif m == 2:  # squats
            down = (1 - np.cos(2 * np.pi * ph)) / 2
            depth = rng.uniform(0.5, 1.3)  # 1.3: a deep squat, hip flexed to the -140 degree limit
            for side in "lr":
                b.side(side, "hip", "x", -80 * depth * down)
                b.side(side, "knee", "x", 115 * depth * down)
                b.side(side, "ankle", "x", -25 * depth * down)
                b.side(side, "shoulder", "x", -rng.uniform(40, 80) * down)
            lean(b, 30 * depth * down)
            b.add("spine1", "x", -10 * depth * down)
        else:  # heel raises
            up = (1 - np.cos(2 * np.pi * ph)) / 2
            for side in "lr":
                b.side(side, "ankle", "x", rng.uniform(25, 40) * up)
                b.side(side, "foot", "x", -rng.uniform(20, 30) * up)
        parts.append(b)
    a.blend(parts, segments(t, rng, len(parts)))


def lunges(t, rng, a: Angles) -> None:
    """Forward lunges on alternating legs: step out, lower until the front thigh is near horizontal and
    the back knee near the floor (back heel up), rise, step back."""
    standing(t, rng, a)
    period = rng.uniform(2.2, 3.5)  # one lunge
    ph = drifting_phase(t, period, rng, drift=0.08)
    k = np.floor(ph).astype(int)
    f = ph - k
    lead_left = (k + rng.integers(0, 2)) % 2 == 0
    step = smoothstep(f / 0.25) * (1 - smoothstep((f - 0.75) / 0.25))  # legs split and back together
    lift = np.sin(np.pi * np.clip(f / 0.25, 0, 1)) + np.sin(np.pi * np.clip((f - 0.75) / 0.25, 0, 1))
    down = np.sin(np.pi * np.clip((f - 0.25) / 0.5, 0, 1))  # lower and rise
    depth = rng.uniform(0.6, 1.0)
    split = rng.uniform(14, 22)  # hip angle of each leg once stepped out
    for side in "lr":
        front = np.where(lead_left if side == "l" else ~lead_left, 1.0, 0.0)
        back = 1.0 - front
        # front thigh and knee bend together (shank stays vertical); the back thigh ends near vertical
        a.side(side, "hip", "x", front * (-split * step - (90 * depth - split) * down - 25 * lift)
               + back * (split * step + (15 * depth - split) * down))
        a.side(side, "knee", "x", front * (90 * depth * down + 45 * lift) + back * (90 * depth * down))
        a.side(side, "ankle", "x", back * (25 * depth * down))
        a.side(side, "foot", "x", back * (-30 * depth * down))
    lean(a, 5 * depth * down)


def sitting(t, rng, a: Angles) -> None:
    """Sit down, stay seated (with small movements), stand up, stand; repeated."""
    standing(t, rng, a)
    n = len(t)
    level = np.zeros(n)  # 0 standing, 1 seated
    bend = np.zeros(n)  # forward lean while getting up or down
    time = rng.uniform(0.3, 1.5)
    while time < t[-1]:
        go = rng.uniform(1.2, 2.0)
        seated = rng.uniform(1.5, 4.0)
        stand = rng.uniform(1.0, 3.0)
        level += smoothstep((t - time) / go) - smoothstep((t - time - go - seated) / go)
        bend += np.sin(np.pi * np.clip((t - time) / go, 0, 1)) + np.sin(np.pi * np.clip((t - time - go - seated) / go, 0, 1))
        time += 2 * go + seated + stand
    hip = rng.uniform(80, 95)
    knee = rng.uniform(80, 100)
    for side in "lr":
        a.side(side, "hip", "x", -hip * level)
        a.side(side, "knee", "x", knee * level)
        a.side(side, "hip", "z", rng.uniform(0, 10) * level, mirror=True)
        a.side(side, "shoulder", "x", -rng.uniform(15, 35) * level)  # hands towards the lap
        a.side(side, "elbow", "y", -rng.uniform(30, 60) * level, mirror=True)
    lean(a, rng.uniform(25, 40) * bend + rng.uniform(-5, 5) * level)
    a.add("neck", "x", sway(t, rng, 6.0) * level)
    a.add("head", "y", sway(t, rng, 12.0) * level)


def walking(t, rng, a: Angles) -> dict:
    """Gait cycles with arm swing, pelvis rotation and a gently curving heading. Each foot supports the
    body during its stance phase (60% of the cycle, so both do around the hand-overs)."""
    standing(t, rng, a)
    period = rng.uniform(0.95, 1.25)  # one stride (two steps)
    ph = drifting_phase(t, period, rng, drift=0.06)
    amp = rng.uniform(0.8, 1.15)
    contact = []
    for side, off in (("l", 0.0), ("r", 0.5)):
        g = (ph + off) % 1.0  # 0 = heel strike of this leg
        contact.append(smoothstep(g / 0.05) * (1 - smoothstep((g - 0.55) / 0.05)) + 1e-3)
        hip = -6.5 - 18.5 * np.cos(2 * np.pi * g) - 8 * bump(g, 0.85, 0.08)
        knee = 5 + 12 * bump(g, 0.13, 0.07) + 55 * bump(g, 0.72, 0.11)
        ankle = -8 * bump(g, 0.4, 0.12) + 18 * bump(g, 0.62, 0.06) - 6 * bump(g, 0.85, 0.08)
        a.side(side, "hip", "x", amp * hip)
        a.side(side, "knee", "x", amp * knee)
        a.side(side, "ankle", "x", amp * ankle)
        a.side(side, "foot", "x", -15 * amp * bump(g, 0.58, 0.06))
        swing = rng.uniform(12, 25) * np.cos(2 * np.pi * (g + 0.5))  # opposite to the same-side leg
        a.side(side, "shoulder", "x", swing)
        a.side(side, "elbow", "y", -(8 + 10 * (1 - np.cos(2 * np.pi * (g + 0.5))) / 2), mirror=True)
    pelvis = 2 * np.pi * ph
    a.add("root", "y", 5 * amp * np.sin(pelvis))  # pelvis rotation
    a.add("spine2", "y", -5 * amp * np.sin(pelvis))  # counter-rotation of the chest
    lean(a, rng.uniform(0, 6))  # slight forward lean
    turn_rate = rng.uniform(-20, 20) * np.sin(2 * np.pi * rng.uniform(0.02, 0.08) * t + rng.uniform(0, 6.3))
    a.add("root", "y", np.concatenate([[0.0], np.cumsum(turn_rate[1:] * np.diff(t))]))
    return {"contact": np.stack(contact, 1)}


PROGRAMS: dict[str, Callable] = {
    "arms_slow": lambda t, rng, a: arms(t, rng, a, fast=False),
    "arms_fast": lambda t, rng, a: arms(t, rng, a, fast=True),
    "head_shoulders": head_shoulders,
    "jumping_jacks": jumping_jacks,
    "lower_body": lower_body,
    "lunges": lunges,
    "sitting": sitting,
    "walking": walking,
}


# --------------------------------------------------------------------------- motion assembly


def angles_to_pose(angles: dict[str, np.ndarray]) -> np.ndarray:
    """Euler angles per SMPL joint -> local axis-angle (T, 22, 3) in SMPL body order."""
    n = next(iter(angles.values())).shape[0]
    pose = np.zeros((n, len(SMPL_BODY_JOINTS), 3))
    for k, name in enumerate(SMPL_BODY_JOINTS):
        seq = JOINT_LIMITS[name][0]
        pose[:, k] = Rotation.from_euler(seq, angles[name], degrees=True).as_rotvec()
    return pose


def fk_smpl(pose: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """Joint positions (T, 22, 3) of SMPL-order poses on rest joints (22, 3), root at its rest place."""
    local = Rotation.from_rotvec(pose.reshape(-1, 3)).as_matrix().reshape(pose.shape[:-1] + (3, 3))
    glob = np.empty_like(local)
    pos = np.empty(pose.shape)
    for k, par in enumerate(SMPL_BODY_PARENTS):
        if par < 0:
            glob[:, k], pos[:, k] = local[:, k], rest[k]
        else:
            glob[:, k] = glob[:, par] @ local[:, k]
            pos[:, k] = pos[:, par] + glob[:, par] @ (rest[k] - rest[par])
    return pos


#: Height of the lowest foot joint above the floor when standing (the toe joint sits a few cm above the sole).
SOLE = 0.04
_FEET = [SMPL_BODY_JOINTS.index(n) for n in ("l_ankle", "l_foot", "r_ankle", "r_foot")]


def ground_translation(joints: np.ndarray, flight: np.ndarray | None = None, contact: np.ndarray | None = None,
                       travel: bool = True, sole: float = SOLE) -> np.ndarray:
    """Root translation (T, 3) that keeps the supporting foot in place and the lowest foot joint `sole`
    above the floor (y = 0), plus an optional flight height.

    `joints` come from FK with zero translation. The support weights (T, 2) over the left and right foot
    are `contact` when the activity knows them (walking), else a soft minimum over the two feet's lowest
    joints (2 cm softness), so hand-overs are smooth. `travel=False` keeps the root in place horizontally
    (jumps in place, where neither foot supports the body in the air)."""
    n = joints.shape[0]
    feet = joints[:, _FEET].reshape(n, 2, 2, 3)  # (T, side, joint, xyz)
    low = feet[..., 1].min(-1)  # (T, 2) lowest joint height per foot
    if contact is None:
        contact = np.exp(-(low - low.min(-1, keepdims=True)) / 0.02)
    w = contact / contact.sum(-1, keepdims=True)
    trans = np.zeros((n, 3))
    if travel:
        vel = np.diff(feet.mean(2), axis=0)  # foot centres' motion relative to the root
        support = np.einsum("ts,tsc->tc", 0.5 * (w[1:] + w[:-1]), vel)
        trans[1:, [0, 2]] = -np.cumsum(support[:, [0, 2]], axis=0)
    trans[:, 1] = sole - low.min(-1) + (0.0 if flight is None else flight)
    return trans


CACHE_BYTES = 512 * 2**20


class EmbeddedMotions(MotionSource):
    """Generated motions of the EM-POSE activities; deterministic from (seed, split, index), no download.

    Activities: arms_slow, arms_fast, head_shoulders, jumping_jacks, lower_body, lunges, sitting,
    walking (item i of a split performs activity i mod len(activities)). Tempo, amplitudes, phases,
    sub-movement order, heading and body shape are random, joint angles stay within `JOINT_LIMITS`.
    Splits use separate random streams, so train, valid and test never share a sequence.
    """

    params = schema.EMBEDDED

    def __init__(self, *, split, count, seed, seconds, activities, shape_std, body_model):
        where = "embedded motions"
        acts = tuple(activities) if activities else ACTIVITIES
        unknown = [x for x in acts if x not in ACTIVITIES]
        if unknown:
            raise EmposeError(f"{where}: unknown activities {unknown}; choose from {', '.join(ACTIVITIES)}.")
        self.split, self.count, self.seed, self.seconds = split, int(count), int(seed), float(seconds)
        self.activities, self.shape_std = acts, float(shape_std)
        self.layout = BodyLayout(body_model, where)
        self._rest0, self._rest_dirs = self._rest_model(body_model)
        self.ids = [f"embedded/{split}/{seed}/{i:05d}_{acts[i % len(acts)]}" for i in range(self.count)]
        # Generating a motion costs ~15 ms, most of a training step's data time: keep generated motions
        # (read-only, so no consumer can alter the cached copy) up to CACHE_BYTES per process.
        frame_bytes = 4 * 3 * (body_model.n_pose_joints + 1)
        self._cache: dict[int, Motion] = {}
        self._cache_size = min(self.count, CACHE_BYTES // max(1, int(1.2 * self.seconds * FPS) * frame_bytes))

    def _rest_model(self, body_model):
        """Rest joints of the SMPL body joints as J0 + betas @ dJ (linear in the betas, as in SMPL),
        so that the source needs no body model after construction and pickles cheaply."""
        import torch

        from empose_framework.interfaces import BodyPose

        k, j = body_model.n_betas, body_model.n_pose_joints
        betas = torch.cat([torch.zeros(1, k), torch.eye(k)])
        with torch.no_grad():
            joints = body_model.forward(BodyPose(torch.zeros(k + 1, j, 3), betas, torch.zeros(k + 1, 3)), vertices=False).joints
        joints = joints[:, self.layout.columns].double().cpu().numpy()
        return joints[0], joints[1:] - joints[0]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_cache": {}}  # workers regenerate; pickles stay small

    def __len__(self) -> int:
        return self.count

    def generate(self, index: int) -> tuple[Motion, dict[str, np.ndarray]]:
        """Motion `index` and its clipped Euler angles (degrees, per SMPL joint)."""
        rng = np.random.default_rng([self.seed, SPLIT_CODES[self.split], index])
        activity = self.activities[index % len(self.activities)]
        n = int(round(self.seconds * rng.uniform(0.8, 1.2) * FPS))
        t = np.arange(n) / FPS
        betas = np.clip(rng.normal(0.0, self.shape_std, self.layout.n_betas), -2.0, 2.0)
        a = Angles(n)
        a.add("root", "y", rng.uniform(-180, 180))  # heading
        extra = PROGRAMS[activity](t, rng, a) or {}
        angles = a.clipped()
        pose = angles_to_pose(angles)
        rest = self._rest0 + np.einsum("k,kjc->jc", betas, self._rest_dirs)
        joints = fk_smpl(pose, rest)
        trans = ground_translation(joints, **extra)
        motion = Motion(self.ids[index], self.layout.from_smpl(pose.astype(np.float32)), betas.astype(np.float32),
                        trans.astype(np.float32), FPS)
        return motion, angles

    def __getitem__(self, index: int) -> Motion:
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        index %= len(self)
        motion = self._cache.get(index)
        if motion is None:
            motion = self.generate(index)[0]
            if len(self._cache) < self._cache_size:
                for array in (motion.pose, motion.betas, motion.trans):
                    array.flags.writeable = False
                self._cache[index] = motion
        return motion
