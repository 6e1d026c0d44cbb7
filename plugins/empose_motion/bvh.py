"""The `bvh` motion source: BVH motion capture retargeted onto the body model's joints.

Parsing: a small reader for the BVH text format (HIERARCHY with ROOT/JOINT/End Site, OFFSET, CHANNELS in
any order; MOTION with Frames, Frame Time and one row of channel values per frame). Rotation channels
compose in the order listed (`Zrotation Yrotation Xrotation` -> R = Rz Ry Rx, degrees); a joint's
position is its parent's plus the parent's rotation applied to OFFSET (+ its position channels).

Retargeting:
1. Map body joints to BVH joints: by skeleton structure for CMU-like skeletons (`auto_joint_map`, which
   makes both CMU naming styles work), optionally overridden by a user joint map (YAML).
2. Rest alignment: the body model's rest pose is a T-pose (Y up, facing +Z); the BVH rest pose (its
   OFFSET skeleton by default, or frame 0) need not be: the 3ds-Max-style CMU files have arms down and
   legs 20 degrees apart there. Per mapped joint, Q turns the body's rest bone direction into the BVH's
   (shortest arc; the root aligns hips and spine together).
3. For a mapped joint, the body joint's global rotation is the BVH joint's global rotation relative to its
   rest, after the alignment: G_body = G_bvh(t) G_bvh(rest)^T Q. Each body bone then points where the
   captured bone points, whatever the bone lengths (the body keeps its own). Body joints without a
   counterpart (e.g. spine2 when the BVH spine has two segments, or one the user unmaps) keep an identity
   local rotation, i.e. follow their parent.
4. Local rotations: L_j = G_parent(j)^T G_j (root: G_root).
5. Root translation: the BVH root path scaled by the ratio of leg lengths (hip-knee-ankle, body over BVH)
   so that steps fit the body's legs; one height offset per clip puts the body's ankles at the scaled BVH
   ankle heights (median over frames), so the feet stay on the BVH's floor.
6. Resample to 60 fps (`resample.py`).

A first frame that is not part of the capture (the T-pose that the MotionBuilder-style CMU conversions
prepend) is detected by its jump to frame 1 and dropped (`first_frame: auto`).
"""

from __future__ import annotations

import difflib
import gzip
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from scipy.spatial.transform import Rotation

from empose_framework.errors import DataError, EmposeError
from empose_framework.interfaces import Motion, MotionSource, fit_betas
from empose_framework.joints import canonical_joint_name as canonical
from empose_motion import schema
from empose_motion.layout import pose_joint_index, select_ids
from empose_motion.resample import resample_motion

FPS = 60.0


# --------------------------------------------------------------------------- parsing


@dataclass
class BVH:
    """A parsed BVH file; rotations in degrees, lengths in the file's units."""

    path: Path
    names: list[str]
    parents: list[int]
    offsets: np.ndarray  # (J, 3)
    channels: list[list[str]]
    end_sites: dict[int, np.ndarray]  # joint -> end-site offset
    frame_time: float
    motion: np.ndarray  # (F, C)

    @property
    def fps(self) -> float:
        """Frame rate, snapped to a whole number when the file's rounded frame time is within 0.1% of one."""
        rate = 1.0 / self.frame_time
        return float(round(rate)) if abs(rate - round(rate)) < 1e-3 * rate else rate

    def children(self, j: int) -> list[int]:
        return [c for c, p in enumerate(self.parents) if p == j]

    def local_transforms(self, frames: slice | np.ndarray = slice(None)) -> tuple[np.ndarray, np.ndarray]:
        """Local rotations (F, J, 3, 3) and translations (F, J, 3) of the selected frames."""
        motion = self.motion[frames]
        f, j = motion.shape[0], len(self.names)
        rot = np.broadcast_to(np.eye(3), (f, j, 3, 3)).copy()
        trans = np.broadcast_to(self.offsets, (f, j, 3)).copy()
        col = 0
        for k, chans in enumerate(self.channels):
            rot_axes = "".join(c[0].upper() for c in chans if c.lower().endswith("rotation"))
            rot_cols = [col + i for i, c in enumerate(chans) if c.lower().endswith("rotation")]
            for i, c in enumerate(chans):
                if c.lower().endswith("position"):
                    trans[:, k, "xyz".index(c[0].lower())] += motion[:, col + i]
            if rot_axes:
                rot[:, k] = Rotation.from_euler(rot_axes, motion[:, rot_cols], degrees=True).as_matrix()
            col += len(chans)
        return rot, trans

    def global_transforms(self, frames: slice | np.ndarray = slice(None)) -> tuple[np.ndarray, np.ndarray]:
        """Global rotations (F, J, 3, 3) and positions (F, J, 3)."""
        rot, trans = self.local_transforms(frames)
        g = np.empty_like(rot)
        p = np.empty_like(trans)
        for k, par in enumerate(self.parents):
            if par < 0:
                g[:, k], p[:, k] = rot[:, k], trans[:, k]
            else:
                g[:, k] = g[:, par] @ rot[:, k]
                p[:, k] = p[:, par] + np.einsum("fab,fb->fa", g[:, par], trans[:, k])
        return g, p


_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def _is_float(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def parse_bvh(path: Path) -> BVH:
    """Read a BVH file; any problem is a DataError naming the file and line."""
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rt", encoding="utf-8", errors="replace") as fh:
                text = fh.read()
        else:
            text = path.read_text(encoding="utf-8", errors="replace")
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot read BVH file {path}: {exc}. Check the path in `path`.") from exc
    tokens = _Tokens(path, text)
    tokens.take("HIERARCHY")
    tokens.take("ROOT")
    skeleton = _Skeleton()
    _parse_joint(tokens, -1, skeleton)
    frame_time, motion = _parse_motion(tokens, sum(len(c) for c in skeleton.channels))
    return BVH(path, skeleton.names, skeleton.parents, np.array(skeleton.offsets, dtype=np.float64), skeleton.channels,
               skeleton.end_sites, frame_time, motion)


class _Tokens:
    """The whitespace-separated tokens of a BVH text with their line numbers, read front to back, so that
    every error can name the line it found."""

    def __init__(self, path: Path, text: str):
        self.path = path
        self.items = [(tok, n + 1) for n, line in enumerate(text.splitlines()) for tok in line.split()]
        self.pos = 0

    def fail(self, msg: str, line: int | None = None) -> DataError:
        where = f" (line {line})" if line else ""
        return DataError(f"{self.path}{where}: {msg}. The file is not valid BVH; re-export it or fix that line.")

    def take(self, expected: str | None = None) -> tuple[str, int]:
        if self.pos >= len(self.items):
            raise self.fail(f"file ends early{f', expected {expected!r}' if expected else ''}",
                            self.items[-1][1] if self.items else None)
        tok, line = self.items[self.pos]
        self.pos += 1
        if expected is not None and tok.upper() != expected.upper():
            raise self.fail(f"expected {expected!r}, found {tok!r}", line)
        return tok, line

    def number(self) -> float:
        tok, line = self.take()
        if not _NUMBER.match(tok):
            raise self.fail(f"expected a number, found {tok!r}", line)
        return float(tok)

    def rest(self) -> list[tuple[str, int]]:
        return self.items[self.pos:]


@dataclass
class _Skeleton:
    """The HIERARCHY section as it is read, joints in file order (parents before children)."""

    names: list[str] = field(default_factory=list)
    parents: list[int] = field(default_factory=list)
    offsets: list[list[float]] = field(default_factory=list)
    channels: list[list[str]] = field(default_factory=list)
    end_sites: dict[int, np.ndarray] = field(default_factory=dict)


_CHANNELS = {f"{a}{k}" for a in "xyz" for k in ("position", "rotation")}


def _parse_joint(tokens: _Tokens, parent: int, skeleton: _Skeleton) -> None:
    """One ROOT or JOINT block (its name is the next token), with its child joints and end sites."""
    name, _ = tokens.take()
    index = len(skeleton.names)
    skeleton.names.append(name)
    skeleton.parents.append(parent)
    tokens.take("{")
    tokens.take("OFFSET")
    skeleton.offsets.append([tokens.number(), tokens.number(), tokens.number()])
    tokens.take("CHANNELS")
    count_tok, line = tokens.take()
    if not count_tok.isdigit():
        raise tokens.fail(f"expected a channel count, found {count_tok!r}", line)
    chans = [tokens.take()[0] for _ in range(int(count_tok))]
    bad = [c for c in chans if c.lower() not in _CHANNELS]
    if bad:
        raise tokens.fail(f"unknown channel(s) {bad} of joint {name!r}", line)
    skeleton.channels.append(chans)
    while True:
        tok, line = tokens.take()
        if tok.upper() == "JOINT":
            _parse_joint(tokens, index, skeleton)
        elif tok.upper() == "END":
            tokens.take("Site")
            tokens.take("{")
            tokens.take("OFFSET")
            skeleton.end_sites[index] = np.array([tokens.number(), tokens.number(), tokens.number()])
            tokens.take("}")
        elif tok == "}":
            return
        else:
            raise tokens.fail(f"expected JOINT, End Site or '}}' in joint {name!r}, found {tok!r}", line)


def _parse_motion(tokens: _Tokens, n_chan: int) -> tuple[float, np.ndarray]:
    """The MOTION section: frame time and the (frames, n_chan) channel values."""
    tokens.take("MOTION")
    tokens.take("Frames:")
    n_tok, line = tokens.take()
    if not n_tok.isdigit():
        raise tokens.fail(f"expected the frame count, found {n_tok!r}", line)
    tokens.take("Frame")
    tokens.take("Time:")
    frame_time = tokens.number()
    if not frame_time > 0:
        raise tokens.fail(f"Frame Time is {frame_time}; it must be positive")
    n_frames = int(n_tok)
    rows = _frame_rows(tokens, n_frames, n_chan)
    try:
        motion = np.array([r for _, r in rows], dtype=np.float64).reshape(n_frames, n_chan)
    except ValueError:
        line, tok = next((ln, t) for ln, r in rows for t in r if not _is_float(t))
        raise tokens.fail(f"non-numeric motion value {tok!r}", line) from None
    bad = ~np.isfinite(motion)
    if bad.any():
        k = int(np.nonzero(bad)[0][0])
        raise tokens.fail(f"frame {k} contains NaN or infinite values", rows[k][0])
    if n_frames < 2:
        raise tokens.fail(f"has {n_frames} frame(s); a motion needs at least 2")
    return frame_time, motion


def _frame_rows(tokens: _Tokens, n_frames: int, n_chan: int) -> list[tuple[int, list[str]]]:
    """The remaining tokens as (line, values) rows, checked to be `n_frames` rows of `n_chan` values: BVH has
    one frame per line, and a row with a value too many or too few would shift every later channel."""
    rows: list[tuple[int, list[str]]] = []
    for tok, line in tokens.rest():
        if rows and rows[-1][0] == line:
            rows[-1][1].append(tok)
        else:
            rows.append((line, [tok]))
    if len(rows) < n_frames and all(len(r) == n_chan for _, r in rows[:-1]):
        complete = len(rows) - (len(rows[-1][1]) != n_chan if rows else 0)
        raise tokens.fail(f"truncated: {n_frames} frames of {n_chan} channels declared but only {complete} complete "
                          "frames present", rows[-1][0] if rows else None)
    for k, (line, row) in enumerate(rows[:n_frames]):
        if len(row) != n_chan:
            raise tokens.fail(f"frame {k} has {len(row)} values but the HIERARCHY declares {n_chan} channels", line)
    if len(rows) > n_frames:
        raise tokens.fail(f"{len(rows)} frame rows follow `Frames: {n_frames}`; fix the frame count or remove the extra "
                          "rows", rows[n_frames][0])
    return rows


# --------------------------------------------------------------------------- joint maps

#: Body joints the retargeting fills (SMPL names); any the map leaves out follow their parent.
MAPPED = ("root", "l_hip", "r_hip", "spine1", "l_knee", "r_knee", "spine2", "l_ankle", "r_ankle", "spine3", "l_foot",
          "r_foot", "neck", "l_collar", "r_collar", "head", "l_shoulder", "r_shoulder", "l_elbow", "r_elbow", "l_wrist",
          "r_wrist")


def _rest_points(bvh: BVH, rest: np.ndarray) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Joint positions (J, 3) and end-site positions for local rotations `rest` (J, 3, 3)."""
    g = np.empty_like(rest)
    p = np.empty((len(bvh.names), 3))
    for k, par in enumerate(bvh.parents):
        g[k] = rest[k] if par < 0 else g[par] @ rest[k]
        p[k] = bvh.offsets[k] if par < 0 else p[par] + g[par] @ bvh.offsets[k]
    ends = {k: p[k] + g[k] @ off for k, off in bvh.end_sites.items()}
    return p, ends


def auto_joint_map(bvh: BVH, rest: np.ndarray) -> dict[str, int]:
    """SMPL joint -> BVH joint index, from the skeleton's structure in its rest pose (Y up, facing +Z,
    the body's left on +X): the root's children are two legs (lowest) and a spine (highest); the spine
    rises to a branching chest joint whose children are the neck chain (highest) and two arm chains.
    Legs: the ankle is the first joint whose bone points more forward than down; knee and hip precede it,
    a toe joint may follow. Spine: first segment -> spine1, last (the chest) -> spine3, a middle one ->
    spine2. Neck chain: the head is its last joint, the neck the one below. Arms: [clavicle,] upper arm,
    forearm, hand, up to the hand's branching into fingers."""
    pos, ends = _rest_points(bvh, rest)
    n = len(bvh.names)
    kids = [bvh.children(j) for j in range(n)]

    def subtree(j: int) -> list[int]:
        out, stack = [], [j]
        while stack:
            k = stack.pop()
            out.append(k)
            stack.extend(kids[k])
        return out

    def points(j: int) -> np.ndarray:
        sub = subtree(j)
        return np.array([pos[k] for k in sub] + [ends[k] for k in sub if k in ends])

    def chain(j: int) -> list[int]:
        """j and its descendants down to the first joint without exactly one child."""
        out = [j]
        while len(kids[out[-1]]) == 1:
            out.append(kids[out[-1]][0])
        return out

    def bone(k: int) -> np.ndarray:
        return pos[kids[k][0]] - pos[k] if kids[k] else ends.get(k, np.zeros(3))

    def fail(msg: str) -> EmposeError:
        return EmposeError(
            f"{bvh.path}: cannot map the skeleton to the body model automatically: {msg}. Give a `joint_map` (YAML "
            f"file or mapping, body joint -> BVH joint); the BVH joints are {bvh.names}."
        )

    root = bvh.parents.index(-1)
    top = kids[root]
    if len(top) < 3:
        raise fail(f"the root {bvh.names[root]!r} has {len(top)} children, expected two legs and a spine")
    spine_top = max(top, key=lambda c: points(c)[:, 1].max())
    legs = sorted((c for c in top if c != spine_top), key=lambda c: points(c)[:, 1].min())[:2]
    jmap = {"root": root}
    for side, leg in zip(_sides(legs, points), legs):
        c = chain(leg)
        ankle = next((i for i, k in enumerate(c) if abs(bone(k)[2]) > abs(bone(k)[1])), None)
        if ankle is None or ankle < 2:
            raise fail(f"no hip-knee-ankle chain found under {bvh.names[leg]!r}")
        jmap[f"{side}_hip"], jmap[f"{side}_knee"], jmap[f"{side}_ankle"] = c[ankle - 2], c[ankle - 1], c[ankle]
        if ankle + 1 < len(c):
            jmap[f"{side}_foot"] = c[ankle + 1]
    spine = chain(spine_top)
    chest = spine[-1]
    if len(kids[chest]) < 3:
        raise fail(f"the spine {[bvh.names[k] for k in spine]} does not branch into a neck and two arms")
    jmap["spine3"] = chest
    if len(spine) >= 2:
        jmap["spine1"] = spine[0]
    if len(spine) >= 3:
        jmap["spine2"] = spine[len(spine) // 2]
    neck_top = max(kids[chest], key=lambda c: points(c)[:, 1].max())
    neck = chain(neck_top)
    jmap["head"] = neck[-1]
    if len(neck) >= 2:  # the joint below the head: mid-neck, like SMPL's neck joint (CMU: Neck1 / Neck)
        jmap["neck"] = neck[-2]
    arms = [c for c in kids[chest] if c != neck_top][:2]
    if len(arms) < 2:
        raise fail("the chest joint has fewer than two arm chains")
    for side, arm in zip(_sides(arms, points), arms):
        c = chain(arm)
        if len(c) < 3:
            raise fail(f"the arm chain {[bvh.names[k] for k in c]} is shorter than shoulder-elbow-wrist")
        names = ["shoulder", "elbow", "wrist"] if len(c) == 3 else ["collar", "shoulder", "elbow", "wrist"]
        for name, k in zip(names, c):
            jmap[f"{side}_{name}"] = k
    return jmap


def _sides(pair: list[int], points) -> list[str]:
    """'l'/'r' for two limbs: the body's left is +X when facing +Z with Y up."""
    xs = [points(c)[:, 0].mean() for c in pair]
    return ["l", "r"] if xs[0] > xs[1] else ["r", "l"]


def load_joint_map(spec: Any, where: str) -> dict[str, str | None]:
    """A user joint map (YAML file path or mapping) as {canonical body joint: BVH joint name or None}."""
    if spec is None:
        return {}
    if isinstance(spec, (str, Path)):
        import yaml

        p = Path(spec).expanduser()
        if not p.is_file():
            raise DataError(f"{where}: joint_map file {p} does not exist. Give a YAML file mapping body joints to BVH joints.")
        try:
            spec = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise DataError(f"{where}: joint_map file {p} is not valid YAML ({exc}).") from exc
        where = f"{where} ({p})"
    if not isinstance(spec, dict) or not all(isinstance(v, (str, type(None))) for v in spec.values()):
        raise EmposeError(f"{where}: joint_map must map body joint names to BVH joint names (or null), e.g. "
                          "`l_shoulder: LeftArm`.")
    out = {}
    for body, bvh_name in spec.items():
        key = canonical(str(body))
        if key not in MAPPED:
            close = difflib.get_close_matches(key, MAPPED, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise EmposeError(f"{where}: joint_map key {body!r} is not a body joint that retargeting fills.{hint} "
                              f"Valid: {', '.join(MAPPED)}.")
        out[key] = bvh_name
    return out


def resolve_joint_map(bvh: BVH, rest: np.ndarray, user: dict[str, str | None]) -> dict[str, int]:
    """The automatic map with the user's entries applied (a null entry unmaps a joint)."""
    try:
        jmap = auto_joint_map(bvh, rest)
    except EmposeError:
        if "root" not in user:
            raise
        jmap = {}
    for body, name in user.items():
        if name is None:
            jmap.pop(body, None)
            continue
        if name not in bvh.names:
            close = difflib.get_close_matches(name, bvh.names, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise EmposeError(f"{bvh.path}: joint_map maps {body!r} to {name!r}, which is not a joint of this file.{hint}")
        jmap[body] = bvh.names.index(name)
    if "root" not in jmap:
        raise EmposeError(f"{bvh.path}: the joint map must map the body's root; the BVH root is {bvh.names[0]!r}.")
    for need in ("l_hip", "l_knee", "l_ankle", "r_hip", "r_knee", "r_ankle"):
        if need not in jmap:
            raise EmposeError(f"{bvh.path}: the joint map lacks {need!r}, which the translation scaling needs (leg length).")
    return jmap


# --------------------------------------------------------------------------- retargeting

#: The body child whose direction defines each body joint's bone (for the rest-pose alignment).
_BONE_CHILD = {"l_hip": "l_knee", "r_hip": "r_knee", "l_knee": "l_ankle", "r_knee": "r_ankle", "l_ankle": "l_foot",
               "r_ankle": "r_foot", "spine1": "spine2", "spine2": "spine3", "spine3": "neck", "neck": "head",
               "l_collar": "l_shoulder", "r_collar": "r_shoulder", "l_shoulder": "l_elbow", "r_shoulder": "r_elbow",
               "l_elbow": "l_wrist", "r_elbow": "r_wrist"}


@dataclass
class BodySkeleton:
    """What retargeting needs from a body model (picklable, no tensors)."""

    parents: list[int]  # among the pose joints
    index: dict[str, int]  # canonical SMPL name -> pose joint
    rest: np.ndarray  # (J, 3) rest joint positions of the pose joints for `betas`
    betas: np.ndarray

    @classmethod
    def of(cls, body_model, betas: np.ndarray, what: str) -> "BodySkeleton":
        import torch

        from empose_framework.interfaces import BodyPose

        index = pose_joint_index(body_model, what)
        j = body_model.n_pose_joints
        with torch.no_grad():
            out = body_model.forward(BodyPose(torch.zeros(1, j, 3), torch.from_numpy(betas)[None], torch.zeros(1, 3)),
                                     vertices=False)
        rest = out.joints[0, :j].double().cpu().numpy()
        parents = [int(p) for p in list(body_model.parents)[:j]]
        return cls(parents, index, rest, betas)

    def fk(self, glob: np.ndarray) -> np.ndarray:
        """Joint positions (F, J, 3) for global rotations (F, J, 3, 3), root at its rest position."""
        pos = np.empty(glob.shape[:-1])
        for k, par in enumerate(self.parents):
            pos[:, k] = self.rest[k] if par < 0 else pos[:, par] + glob[:, par] @ (self.rest[k] - self.rest[par])
        return pos


def has_added_first_frame(bvh: BVH, jmap: dict[str, int]) -> bool:
    """True when frame 0 is not part of the capture (e.g. the T-pose CMU conversions prepend): some mapped
    joint turns by more than 20 degrees and 5 times the capture's typical largest step between frames 0 and 1."""
    g, _ = bvh.global_transforms(slice(0, min(len(bvh.motion), 241)))
    joints = sorted(set(jmap.values()))
    rel = np.einsum("fjba,fjbc->fjac", g[:-1, joints], g[1:, joints])
    step = np.degrees(Rotation.from_matrix(rel.reshape(-1, 3, 3)).magnitude()).reshape(rel.shape[:2]).max(1)
    typical = np.percentile(step[1:], 99) if len(step) > 1 else 0.0
    return bool(step[0] > max(20.0, 5.0 * typical))


def _unit(v: np.ndarray) -> np.ndarray | None:
    n = np.linalg.norm(v)
    return v / n if n > 1e-9 else None


def rest_alignment(bvh_rest: np.ndarray, body: BodySkeleton, jmap: dict[str, int]) -> dict[str, np.ndarray]:
    """Per mapped body joint, the rotation Q (3, 3) that turns the body's rest bone direction into the BVH's
    rest bone direction (shortest arc). Bones are measured between mapped joints (body joint -> its bone
    child, BVH counterpart -> the child's counterpart), skipping zero-length BVH segments further down the
    chain. The root aligns two directions (hips left-right and pelvis-to-chest up), so a BVH whose rest
    pose faces elsewhere is still handled. Joints without a bone (wrists, head, toes) take their parent's Q."""
    ix = body.index
    out: dict[str, np.ndarray] = {}

    def direction(name: str, child_name: str):
        while child_name is not None and child_name in ix:
            if child_name in jmap:
                d_c = _unit(bvh_rest[jmap[child_name]] - bvh_rest[jmap[name]])
                d_b = _unit(body.rest[ix[child_name]] - body.rest[ix[name]])
                if d_c is not None and d_b is not None:
                    return d_b, d_c
            child_name = _BONE_CHILD.get(child_name)
        return None

    up_name = next((n for n in ("spine3", "spine2", "neck", "head") if n in jmap), None)
    b_vecs = [body.rest[ix["l_hip"]] - body.rest[ix["r_hip"]]]
    c_vecs = [bvh_rest[jmap["l_hip"]] - bvh_rest[jmap["r_hip"]]]
    if up_name is not None:
        b_vecs.append(body.rest[ix[up_name]] - body.rest[ix["root"]])
        c_vecs.append(bvh_rest[jmap[up_name]] - bvh_rest[jmap["root"]])
    rot, _ = Rotation.align_vectors(np.array(c_vecs), np.array(b_vecs))
    out["root"] = rot.as_matrix()
    names = {k: n for n, k in ix.items()}
    for k, par in enumerate(body.parents):
        name = names.get(k)
        if name is None or name == "root" or name not in jmap:
            continue
        pair = direction(name, _BONE_CHILD.get(name)) if name in _BONE_CHILD else None
        if pair is None:
            parent = names.get(par)
            while parent is not None and parent not in out:  # nearest mapped ancestor
                parent = names.get(body.parents[ix[parent]])
            out[name] = out.get(parent, np.eye(3))
        else:
            d_b, d_c = pair
            out[name] = Rotation.align_vectors(d_c[None], d_b[None])[0].as_matrix()
    return out


def retarget(bvh: BVH, body: BodySkeleton, jmap: dict[str, int], rest: str, drop_first: bool):
    """Pose (F, J, 3) axis-angle in the body's pose joints and translation (F, 3), at the BVH's rate.

    `rest`: "offsets" (zero rotations: the skeleton as written in the HIERARCHY) or "first_frame"."""
    n_bvh = len(bvh.names)
    if rest == "first_frame":
        g_rest, p_rest = (a[0] for a in bvh.global_transforms(slice(0, 1)))
    else:
        g_rest = np.broadcast_to(np.eye(3), (n_bvh, 3, 3))
        p_rest, _ = _rest_points(bvh, g_rest)
    g, p = bvh.global_transforms(slice(1, None) if drop_first else slice(None))
    align = rest_alignment(p_rest, body, jmap)

    f, j = g.shape[0], len(body.parents)
    names = {k: n for n, k in body.index.items()}
    glob = np.empty((f, j, 3, 3))
    for k, par in enumerate(body.parents):  # parents come before children in SMPL-style trees
        name = names.get(k)
        if name in jmap:
            b = jmap[name]
            glob[:, k] = g[:, b] @ g_rest[b].T @ align[name]
        else:
            glob[:, k] = glob[:, par] if par >= 0 else np.eye(3)
    local = glob.copy()
    for k, par in enumerate(body.parents):
        if par >= 0:
            local[:, k] = np.swapaxes(glob[:, par], -1, -2) @ glob[:, k]
    pose = Rotation.from_matrix(local.reshape(-1, 3, 3)).as_rotvec().reshape(f, j, 3)

    ix = body.index

    def legs(pts, index):
        return sum(np.linalg.norm(pts[index[f"{s}_knee"]] - pts[index[f"{s}_hip"]])
                   + np.linalg.norm(pts[index[f"{s}_ankle"]] - pts[index[f"{s}_knee"]]) for s in "lr")

    bvh_leg = legs(p_rest, jmap)
    if bvh_leg <= 0:
        raise EmposeError(f"{bvh.path}: the mapped legs have zero length; check the joint map.")
    scale = legs(body.rest, ix) / bvh_leg
    trans = scale * p[:, jmap["root"]] - body.rest[ix["root"]]
    # one height offset for the whole clip: the body's ankles at the scaled BVH ankles (median over frames)
    ankles_body = body.fk(glob)[:, [ix["l_ankle"], ix["r_ankle"]], 1] + trans[:, None, 1]
    ankles_bvh = scale * p[:, [jmap["l_ankle"], jmap["r_ankle"]], 1]
    trans[:, 1] += np.median(ankles_bvh - ankles_body)
    return pose, trans, scale


# --------------------------------------------------------------------------- the source


class BVHMotions(MotionSource):
    """BVH motion capture (e.g. CMU), resampled to 60 fps and retargeted onto the body model.

    Give one file or a folder (every `*.bvh` below it, sorted). CMU-like skeletons are mapped to the
    body model automatically (both CMU naming styles); other skeletons need `joint_map`, a YAML file or
    mapping from body joint names (SMPL names, e.g. `l_shoulder`) to BVH joint names, which also
    overrides single entries of the automatic map (`null` unmaps a joint: it then follows its parent).
    Global joint rotations are carried over relative to the BVH rest pose after aligning each rest bone
    with the body's T-pose bone; the root path is scaled by the leg-length ratio. A prepended T-pose frame
    (CMU conversions) is detected and dropped.
    """

    params = schema.BVH

    #: Retargeted motions kept in memory (a CMU clip at 60 fps is about 0.3 MB).
    cache_size: ClassVar[int] = 256

    def __init__(self, *, path, joint_map, betas, rest, first_frame, split, include, exclude, body_model):
        self.path = Path(path).expanduser()
        where = f"bvh source {self.path}"
        if self.path.is_file():
            files, base = [self.path], self.path.parent
        elif self.path.is_dir():
            files, base = sorted([*self.path.rglob("*.bvh"), *self.path.rglob("*.bvh.gz")]), self.path
            if not files:
                raise DataError(f"{where}: no *.bvh files in that folder. Point `path` at a .bvh file or a folder of them.")
        else:
            raise DataError(f"{where}: no such file or folder. Point `path` at a .bvh file or a folder of them.")
        ids = [f.relative_to(base).as_posix().removesuffix(".gz") for f in files]  # compressed or not, one id
        keep = select_ids(ids, split, include, exclude, where)
        self.files = [files[i] for i in keep]
        self.ids = [ids[i] for i in keep]
        self.user_map = load_joint_map(joint_map, where)
        b = fit_betas(np.asarray(betas if betas is not None else [], dtype=np.float32), body_model.n_betas)
        self.body = BodySkeleton.of(body_model, b, where)
        self.rest = rest
        self.first_frame = first_frame
        self._cache: dict[int, Motion] = {}

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_cache"] = {}
        return state

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int) -> tuple[Motion, dict[str, str], float]:
        """Parse and retarget one file: the motion, the joint map used (body -> BVH name) and the root scale."""
        bvh = parse_bvh(self.files[index])
        if self.rest == "first_frame":
            rest_rot = bvh.local_transforms(slice(0, 1))[0][0]
        else:
            rest_rot = np.broadcast_to(np.eye(3), (len(bvh.names), 3, 3))
        jmap = resolve_joint_map(bvh, rest_rot, self.user_map)
        drop = self.first_frame == "drop" or (self.first_frame == "auto" and has_added_first_frame(bvh, jmap))
        pose, trans, scale = retarget(bvh, self.body, jmap, self.rest, drop)
        pose60, trans60 = resample_motion(pose, trans, bvh.fps, FPS)
        motion = Motion(self.ids[index], pose60, self.body.betas.copy(), trans60, FPS)
        return motion, {k: bvh.names[v] for k, v in jmap.items()}, scale

    def __getitem__(self, index: int) -> Motion:
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        index %= len(self)
        if index not in self._cache:
            if len(self._cache) >= self.cache_size:
                self._cache.pop(next(iter(self._cache)))
            self._cache[index] = self.load(index)[0]
        return self._cache[index]


#: The three real CMU clips shipped with empose (gzipped BVH; acknowledgement in that folder's README).
CMU_CLIPS = Path(__file__).parent / "data" / "cmu"


class CMUClips(BVHMotions):
    """The three real CMU clips shipped with empose: 01_01 (playground jumps), 131_01 and 131_02 (walks).

    Subjects 01 and 131 are not in the CMU training corpus, so these are real motions of people a
    model trained on that corpus has never seen. The data was obtained from mocap.cs.cmu.edu; the
    database was created with funding from NSF EIA-0196217."""

    params = schema.CMU_CLIPS

    def __init__(self, *, joint_map, betas, rest, first_frame, split, include, exclude, body_model):
        super().__init__(path=str(CMU_CLIPS), joint_map=joint_map, betas=betas, rest=rest, first_frame=first_frame,
                         split=split, include=include, exclude=exclude, body_model=body_model)
