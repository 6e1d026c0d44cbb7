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

A component that declares `params` takes exactly those as keyword-only arguments without defaults
(besides the keywords above); `Component.__init_subclass__` enforces that when the class is created
and fills in defaults and checks values on every construction.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from typing import Any, ClassVar, Iterator, Sequence

import numpy as np
import torch

from empose_framework.errors import EmposeError
from empose_framework.kinematics import inside_mask
from empose_framework.params import ComponentRef, Param, bind, signature_problem

#: The keywords the engine passes besides the declared params (see the list above).
CONSTRUCTOR_KEYWORDS = ("body_model", "sensor_names")


class Component(ABC):  # noqa: B024 - abstract by role: the kinds below declare the abstract methods
    """Base of every component: declared parameters and a one-line description (the docstring's)."""

    params: ClassVar[tuple[Param, ...]] = ()

    def __init_subclass__(cls, **kwargs):
        """A class that declares `params` (itself or through a base) must take exactly them as keyword-only
        arguments without defaults: checked here, at class creation, so declaration and constructor cannot
        drift. Its __init__ is wrapped to fill in the Params' defaults and check the given values."""
        super().__init_subclass__(**kwargs)
        if not any("params" in vars(c) for c in cls.__mro__[: cls.__mro__.index(Component)]):
            return  # declares nothing (an abstract base, a test double): nothing to keep in step
        init = getattr(cls.__init__, "__declared_init__", cls.__init__)  # an inherited one unwrapped
        problem = signature_problem(cls.params, init, CONSTRUCTOR_KEYWORDS)
        if problem:
            raise TypeError(f"{cls.__module__}.{cls.__qualname__}: {problem}.")

        @functools.wraps(init)
        def __init__(self, *args, **kwargs):
            if type(self) is cls:  # the class being built checks; a super().__init__ call is not checked again
                kwargs = bind(f"{_kind(cls)} {cls.__name__}", cls.params, kwargs, _is_built)
            init(self, *args, **kwargs)

        __init__.__declared_init__ = init
        cls.__init__ = __init__

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
        inside = inside_mask(self.seq_len, self.sensors.pos.shape[1])
        ok = self.frame_valid if self.frame_valid is not None else self.sensors.valid.all(dim=-1)
        return inside & ok


@dataclass
class Prediction:
    """An estimator's output: the body pose (root relative to the first frame, no translation unless
    the estimator makes one) and what losses and the engine may use, each field declared so that a
    loss that needs one the estimator leaves unset says so (`require`). Only `pose` is mandatory.

    - `loss_form`: "l1" or "mse", the pose loss the estimator was designed for (`pose` loss `form: auto`;
      l1 when unset);
    - `shape_estimated`: False when the estimator predicts no shape (its betas are placeholder zeros;
      losses and metrics then use the ground-truth shape, docs/method.md §10.1);
    - `sensors`: the SensorFrames the network saw (its own sensors, invalid readings zeroed), with their
      `offsets` (None: none); what `sensor_reconstruction` compares the body model's sensors with;
    - `iterates`: successive estimates, the final one last (LGD's K+1); losses average over them;
    - `sensor_iterates`: per iterate, the body model's (positions, orientations) at `sensors`' sites
      where the estimator already computed them, else None (losses compute the rest);
    - `extras`: estimator-private data no other component reads;
    - `estimator`: the class that made it (set when the estimator is called), for error messages."""

    pose: BodyPose
    loss_form: str | None = None
    shape_estimated: bool = True
    sensors: SensorFrames | None = None
    offsets: SensorOffsets | None = None
    iterates: list[BodyPose] | None = None
    sensor_iterates: list[tuple[torch.Tensor, torch.Tensor] | None] | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    estimator: str = ""

    def require(self, name: str, loss: str):
        """The field `name`, or an EmposeError naming the loss that needs it and the estimator."""
        value = getattr(self, name)
        if value is None:
            raise EmposeError(
                f"loss '{loss}' needs Prediction.{name}, which estimator {self.estimator or '(unnamed)'} does not "
                f"provide. Set `{name}=` in the Prediction the estimator returns (see empose_framework.interfaces."
                "Prediction), or drop this loss from the recipe's `losses`."
            )
        return value


class PosedBody:
    """A pose as metrics score it: the BodyPose and the body model's output for it (no translation, no
    vertices). The engine makes one per scored pose and hands it to every metric, so the body is posed
    at most once however many metrics look at it (computed on first use: angle-only metrics never pay)."""

    def __init__(self, pose: BodyPose, body_model: "BodyModel"):
        self.pose, self.body_model = pose, body_model

    @cached_property
    def output(self) -> BodyOutput:
        return self.body_model.forward(BodyPose(self.pose.pose, self.pose.betas, None), vertices=False)

    @property
    def joints(self) -> torch.Tensor:
        """Positions (..., n_pose_joints, 3) of the estimated joints."""
        return self.output.joints[..., : self.body_model.n_pose_joints, :]


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

    def sensor_frames_vjp(self, pose: BodyPose, sites: Sequence[str], offsets: SensorOffsets | None = None):
        """`sensor_frames` plus their vector-Jacobian product: returns (pos, ori, vjp) where
        `vjp(d_pos, d_ori)` gives the gradients of sum(d_pos * pos) + sum(d_ori * ori) w.r.t.
        `pose.pose` and `pose.betas` (each shaped like them), outside any graph. pos and ori keep the
        graph to `pose` when it has one (the vjp never adds to it). This default uses autograd; body
        models override it with a closed form (what LGD's gradient input calls once per update)."""
        attached = pose.pose.requires_grad or pose.betas.requires_grad
        with torch.enable_grad():
            th = pose.pose if pose.pose.requires_grad else pose.pose.detach().requires_grad_(True)
            be = pose.betas if pose.betas.requires_grad else pose.betas.detach().requires_grad_(True)
            frames = self.sensor_frames(BodyPose(th, be, pose.trans), sites, offsets)

        def vjp(d_pos: torch.Tensor, d_ori: torch.Tensor):
            grads = torch.autograd.grad(frames, (th, be), (d_pos, d_ori), retain_graph=attached, allow_unused=True)
            return tuple(torch.zeros_like(x) if g is None else g for g, x in zip(grads, (th, be)))

        pos, ori = frames if attached else (frames[0].detach(), frames[1].detach())
        return pos, ori, vjp

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
    #: True when `windows` also takes `start=k` and then yields the pass from batch k on, exactly as the
    #: pass from 0 would, without synthesising the first k; and when `windows` draws only from its own
    #: generator seeded by `seed` (never the global RNGs). The trainer then resumes without replaying
    #: batches and prepares the next batches in a worker thread while the model trains. A source that
    #: leaves this False is replayed on resume and read in the training thread.
    seekable: ClassVar[bool] = False

    @abstractmethod
    def windows(self, batch_size: int, window: int, *, train: bool, seed: int, device="cpu") -> Iterator[Batch]:
        """One pass over the data in batches of windows (random crops when `train`, else the middle)."""

    @abstractmethod
    def sequences(self, device="cpu") -> Iterator[Batch]:
        """Every sequence whole, one per batch, in a fixed order (for evaluation)."""


class Estimator(Component, torch.nn.Module):
    """Sensor frames in, body pose out. Causal estimators also stream frame by frame."""

    streamable: ClassVar[bool] = False
    #: frames per chunk when a whole sequence is evaluated (`evaluate.chunk: auto`); None = all at once
    eval_chunk: ClassVar[int | None] = None

    @abstractmethod
    def forward(self, sensors: SensorFrames, seq_len: torch.Tensor, offsets: SensorOffsets | None = None) -> Prediction:
        """Estimate the pose of every frame of a batch of windows."""

    def __call__(self, *args, **kwargs) -> Prediction:
        """forward(), with the Prediction stamped with the estimator's class name for error messages."""
        out = super().__call__(*args, **kwargs)
        if isinstance(out, Prediction) and not out.estimator:
            out.estimator = type(self).__name__
        return out

    def reset(self) -> None:
        """Forget the streaming state (start of a new sequence)."""
        self._refuse_stream()

    def step(self, frame: SensorFrames, offsets: SensorOffsets | None = None) -> Prediction:
        """Estimate the next frames (T >= 1; one frame for live use, a chunk for chunked evaluation)
        given everything streamed since `reset()`."""
        self._refuse_stream()

    def _refuse_stream(self):
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
    def errors(self, prediction: PosedBody, target: PosedBody) -> torch.Tensor:
        """Errors (N, E) in `unit` for N frames (leading dims flattened) and E evaluated joints; the
        poses come with their body-model output (`.joints`, `.output`), computed once by the engine."""


KIND_CLASSES: dict[str, type] = {
    "body_model": BodyModel, "motion_source": MotionSource, "sensor_source": SensorSource,
    "estimator": Estimator, "loss": Loss, "metric": Metric,
}  # fmt: skip


def _kind(cls: type) -> str:
    return next((k.replace("_", " ") for k, base in KIND_CLASSES.items() if issubclass(cls, base)), "component")


def _is_built(ref: ComponentRef, value: Any) -> bool:
    return isinstance(value, KIND_CLASSES.get(ref.kind, Component))
