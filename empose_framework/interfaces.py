"""The six component kinds and the data that flows between them.

Conventions (see README, "Conventions"): metres; rotation matrices map local to parent/world
coordinates (p_world = R p_local + t); poses are local axis-angle per joint with joint 0 the root
(global orientation); float32; any leading batch dimensions. Sizes (joints J, shape K, sensors S)
always come from the components, never from constants.

Constructor keywords by kind (the engine passes them; declared `params` come from the recipe):
- BodyModel(**params)
- MotionSource(**params, body_model)
- SensorSource(**params, body_model)
- Estimator(**params, body_model, sensor_names)
- Loss(**params, body_model)
- Metric(**params, body_model)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar, Iterator, Sequence

import numpy as np
import torch

from empose_framework.params import Param


class Component(ABC):
    """Base of every component: declared parameters and a one-line description (the docstring's)."""

    params: ClassVar[tuple[Param, ...]] = ()

    @classmethod
    def summary(cls) -> str:
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


def _map_tensors(obj, fn):
    """Apply fn to every tensor field of a dataclass (recursing into nested dataclasses)."""
    changes = {}
    for f in fields(obj):
        v = getattr(obj, f.name)
        if isinstance(v, torch.Tensor):
            changes[f.name] = fn(v)
        elif hasattr(v, "__dataclass_fields__"):
            changes[f.name] = _map_tensors(v, fn)
    return replace(obj, **changes)


# --------------------------------------------------------------------------- data contracts


@dataclass
class BodyPose:
    """A body configuration: local axis-angle `pose (..., J, 3)` (joint 0 = root orientation),
    shape `betas (..., K)` (per sequence or per frame), optional translation `trans (..., 3)`."""

    pose: torch.Tensor
    betas: torch.Tensor
    trans: torch.Tensor | None = None

    def to(self, device) -> "BodyPose":
        return _map_tensors(self, lambda t: t.to(device))


@dataclass
class BodyOutput:
    """What a body model computes: joint positions (..., J_all, 3), global joint rotations
    (..., J_all, 3, 3) and, when asked for, vertices (..., V, 3)."""

    joints: torch.Tensor
    global_rot: torch.Tensor
    vertices: torch.Tensor | None = None


@dataclass
class SensorOffsets:
    """Per-sequence sensor-to-skin offsets: translation `t (B, S, 3)` in the skin frame, rotation
    `r (B, S, 3, 3)` mapping sensor axes into the skin frame (sensor = p + R t, S = R r)."""

    t: torch.Tensor
    r: torch.Tensor

    def to(self, device) -> "SensorOffsets":
        return _map_tensors(self, lambda x: x.to(device))


@dataclass
class SensorFrames:
    """Sensor readings: `pos (B, T, S, 3)` metres, `ori (B, T, S, 3, 3)` (columns = sensor axes in
    the world), `valid (B, T, S)` bool, `names` (S site names). An invalid reading is `valid=False`;
    its `pos`/`ori` values are meaningless and must never reach a model unmasked."""

    pos: torch.Tensor
    ori: torch.Tensor
    valid: torch.Tensor
    names: tuple[str, ...]

    def to(self, device) -> "SensorFrames":
        return _map_tensors(self, lambda t: t.to(device))

    def select(self, names: Sequence[str]) -> "SensorFrames":
        """The subset of sensors `names`, in that order."""
        missing = [n for n in names if n not in self.names]
        if missing:
            raise KeyError(f"sensors {missing} not in {list(self.names)}")
        idx = [self.names.index(n) for n in names]
        return SensorFrames(self.pos[:, :, idx], self.ori[:, :, idx], self.valid[:, :, idx], tuple(names))

    def masked(self, fill: float = 0.0) -> "SensorFrames":
        """Copy with every invalid reading overwritten by `fill` (the original's model input)."""
        keep = self.valid[..., None]
        pos = torch.where(keep, self.pos, torch.full_like(self.pos, fill))
        ori = torch.where(keep[..., None], self.ori, torch.full_like(self.ori, fill))
        return SensorFrames(pos, ori, self.valid, self.names)

    def frames(self, start: int, stop: int) -> "SensorFrames":
        """Frames [start, stop) of every sequence."""
        return SensorFrames(self.pos[:, start:stop], self.ori[:, start:stop], self.valid[:, start:stop], self.names)


@dataclass
class Batch:
    """What a sensor source yields: sensors, ground truth when known (pose in the same normalised
    frame as the sensors), true lengths `seq_len (B,)` of the zero-padded sequences, ids, offsets.

    `frame_valid (B, T)` bool, optional: which frames count for losses and metrics when that is not
    simply "every sensor of `sensors` valid" — e.g. recordings read for a 6-sensor model, where the
    original drops frames with any of all 12 sensors missing, or synthetic suppression noise, where
    the dropped sensors do not make the ground truth unusable."""

    sensors: SensorFrames
    target: BodyPose | None
    seq_len: torch.Tensor
    ids: list[str]
    offsets: SensorOffsets | None = None
    frame_valid: torch.Tensor | None = None

    def to(self, device) -> "Batch":
        return _map_tensors(self, lambda t: t.to(device))

    def frame_mask(self) -> torch.Tensor:
        """(B, T) bool: inside the true length and `frame_valid` (default: every sensor valid), the
        original's metric frames."""
        t = torch.arange(self.sensors.pos.shape[1], device=self.seq_len.device)
        inside = t[None, :] < self.seq_len[:, None]
        ok = self.frame_valid if self.frame_valid is not None else self.sensors.valid.all(dim=-1)
        return inside & ok


@dataclass
class Prediction:
    """An estimator's output: the body pose (root relative to the first frame, no translation
    unless the estimator makes one) plus estimator-specific extras (e.g. LGD's iterates)."""

    pose: BodyPose
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class Motion:
    """One motion sequence in a body model's joint layout, as numpy arrays at `fps`."""

    id: str
    pose: np.ndarray  # (T, J, 3) local axis-angle, joint 0 = root
    betas: np.ndarray  # (K,)
    trans: np.ndarray  # (T, 3) metres
    fps: float = 60.0

    def __len__(self) -> int:
        return int(self.pose.shape[0])


def fit_betas(betas: np.ndarray, n_betas: int) -> np.ndarray:
    """Shape coefficients resized to a body model's K, float32: extra ones dropped (as the original does
    with AMASS's 16), missing ones zero (the mean shape along those directions)."""
    out = np.zeros(n_betas, dtype=np.float32)
    k = min(n_betas, betas.shape[-1])
    out[:k] = betas[:k]
    return out


# --------------------------------------------------------------------------- component kinds


class BodyModel(Component):
    """A parametric body: kinematic tree, mesh, shape space and named sensor sites."""

    joint_names: Sequence[str]  # all joints of the tree
    parents: Sequence[int]  # parent index per joint, -1 for the root
    n_pose_joints: int  # leading joints an estimator predicts (22 for SMPL-H)
    n_betas: int
    faces: torch.Tensor  # (F, 3) long
    sensor_sites: dict[str, int]  # site name -> vertex id

    @abstractmethod
    def forward(self, pose: BodyPose, vertices: bool = True) -> BodyOutput:
        """Pose the body; joints and rotations of all joints, vertices if asked (expensive)."""

    @abstractmethod
    def sensor_frames(
        self, pose: BodyPose, sites: Sequence[str], offsets: SensorOffsets | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Positions (..., S, 3) and orientations (..., S, 3, 3) of sensors at `sites`, skinning
        only the vertices they need; differentiable w.r.t. pose and betas."""

    @abstractmethod
    def to(self, device) -> "BodyModel":
        """Move the model's tensors; returns self."""


class MotionSource(Component):
    """A finite, indexable collection of motions in the body model's joint layout."""

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def __getitem__(self, index: int) -> Motion: ...


class SensorSource(Component):
    """Sensor readings paired with ground truth: training windows and whole test sequences."""

    sensor_names: tuple[str, ...]

    @abstractmethod
    def windows(self, batch_size: int, window: int, *, train: bool, seed: int, device="cpu") -> Iterator[Batch]:
        """One pass over the data in batches of windows (random crops when `train`, else the middle)."""

    @abstractmethod
    def sequences(self, device="cpu") -> Iterator[Batch]:
        """Every sequence whole, one per batch, in a fixed order (for evaluation)."""


class Estimator(Component, torch.nn.Module):
    """Sensor frames in, body pose out. Causal estimators also stream frame by frame."""

    streamable: ClassVar[bool] = False

    @abstractmethod
    def forward(self, sensors: SensorFrames, seq_len: torch.Tensor, offsets: SensorOffsets | None = None) -> Prediction:
        """Estimate the pose of every frame of a batch of windows."""

    def reset(self) -> None:
        """Forget the streaming state (start of a new sequence)."""
        self._refuse_stream()

    def step(self, frame: SensorFrames, offsets: SensorOffsets | None = None) -> Prediction:
        """Estimate the next frames (T >= 1; one frame for live use, a chunk for chunked evaluation)
        given everything streamed since `reset()`."""
        self._refuse_stream()

    def _refuse_stream(self):
        from empose_framework.errors import EmposeError

        raise EmposeError(
            f"estimator {type(self).__name__} is offline-only: it looks at future frames, so it cannot "
            "run frame by frame. Use its windowed forward(), or a causal estimator for streaming."
        )


class Loss(Component):
    """A training objective term; the recipe's `weight` multiplies it."""

    @abstractmethod
    def __call__(self, prediction: Prediction, batch: Batch) -> torch.Tensor:
        """Scalar loss over the valid frames of the batch."""


class Metric(Component):
    """An evaluation error, reported per (frame, joint) so that means and STDs pool exactly."""

    unit: ClassVar[str] = ""
    #: frames an error looks at, ending at its own (e.g. 4 for a jerk): the engine passes whole
    #: sequences (time = the last leading dim) and keeps frame t only if frames t-n+1..t all count;
    #: rows that are NaN (no complete window) are dropped too
    temporal_support: ClassVar[int] = 1

    @abstractmethod
    def errors(self, prediction: BodyPose, target: BodyPose) -> torch.Tensor:
        """Errors (N, E) in `unit` for N frames (leading dims flattened) and E evaluated joints."""
