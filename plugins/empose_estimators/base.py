"""What the three EM-POSE estimators share: the input vector, sizes from the components, shape
averaging, and the streaming state plumbing.

Streaming contract (all causal estimators): `reset()` starts a sequence; `step(frames)` takes the
next T >= 1 frames of every stream (B streams in lockstep, no padding) and continues the recurrent
state, detached between calls so memory stays flat. `forward()` is `reset()` + one `step()` on the
whole window, except that it honours `seq_len` padding. So streaming frame by frame equals the windowed
forward on the same frames whenever nothing looks across frames in both directions: in eval mode
(BatchNorm per frame) and with shape averaging off or causal (`causal_shape_average`). With window
shape averaging (the original's), a `step()` averages over the frames it is given: frame by frame
that is a per-frame shape, and reset + `step(chunk)` per chunk is the original's chunked evaluation
(docs/method.md §10.1: LSTM state carried, shape averaged per chunk).

Every estimator here fills the Prediction fields `loss_form` ("l1" for LGD, docs/method.md §8.3; "mse" for
ResNet/RNN, §8.2), `shape_estimated` (False without a shape head), `sensors` and `offsets` (its own
sensors as the network saw them); LGD adds `iterates` and `sensor_iterates` (see `empose_estimators.lgd`).
"""

from __future__ import annotations

import time
import warnings
from abc import abstractmethod
from dataclasses import dataclass

import torch

from empose_framework.errors import EmposeError
from empose_framework.interfaces import BodyPose, Estimator, Prediction, SensorFrames, SensorOffsets
from empose_framework.kinematics import inside_mask


def _compile_options() -> dict:
    """torch.compile options of `compile_stream`: no guards on module attributes/weights (saves ~0.2 ms a
    call; so the compiled step assumes the weights, device and sizes it was compiled with: compile again
    after changing them), where this torch has the switch (the package allows torch >= 2.2, which lacks
    it). Not `cpp_wrapper`: it saves another ~0.3 ms a frame but misses inductor's on-disk cache, so
    every process would compile for ~30 s instead of ~5 s."""
    skip = getattr(torch.compiler, "skip_guard_on_all_nn_modules_unsafe", None)
    return {"guard_filter_fn": skip} if skip is not None else {}


@dataclass
class Inputs:
    """An estimator's view of a batch: the input vector and what the losses and LGD need."""

    x: torch.Tensor  # (B, T, D)
    seen: SensorFrames  # own sensors, masked
    frame_mask: torch.Tensor  # (B, T) bool: inside seq_len and every given sensor valid
    seq_len: torch.Tensor  # (B,)
    offsets: SensorOffsets | None  # own sensors' offsets


class EMPoseEstimator(Estimator):
    """Common base: sizes from the body model and sensor names, input building, streaming."""

    streamable = True
    #: True: run the plain module path with autograd gradient inputs, never the fast paths (the
    #: closed-form gradient, the folded inference plan); what those are tested and benchmarked against.
    reference = False

    def _init_io(self, body_model, sensor_names, use_pos: bool, use_ori: bool) -> None:
        """Record sizes from the components. The body model is kept out of the module (no parameters,
        buffers or state_dict keys of its own; docs/method.md §13 item 29); move it to the device yourself."""
        if not (use_pos or use_ori):
            raise EmposeError(
                f"estimator {type(self).__name__}: use_pos and use_ori are both false, so the network would "
                "see no input. Set at least one of them to true in the recipe's estimator section."
            )
        names = tuple(sensor_names or ())
        if not names:
            raise EmposeError(f"estimator {type(self).__name__}: no sensor names given; it needs at least one sensor.")
        self._body = (body_model,)  # a tuple keeps nn.Module from registering it
        self.sensor_names = names
        self.use_pos, self.use_ori = bool(use_pos), bool(use_ori)
        self.n_joints = int(body_model.n_pose_joints)
        self.n_betas = int(body_model.n_betas)
        self.pose_size = 3 * self.n_joints
        self.input_size = len(names) * (3 * self.use_pos + 9 * self.use_ori)
        self._stream = None
        self._compiled = None  # compile_stream()
        self._plans: dict[str, list] = {}  # folded inference plans (layers.FoldedMLPs.cached slots)

    @property
    def body_model(self):
        return self._body[0]

    # ------------------------------------------------------------------ inputs
    def _inputs(self, sensors: SensorFrames, seq_len: torch.Tensor, offsets: SensorOffsets | None) -> Inputs:
        """Select this estimator's sensors, zero invalid readings (the original's behaviour) and build
        the per-frame input [positions sensor-major (S*3), orientations row-major (S*9)] (§7.1)."""
        b, t = sensors.pos.shape[:2]
        frame_mask = inside_mask(seq_len, t, sensors.pos.device) & sensors.valid.all(dim=-1)
        if tuple(sensors.names) != self.sensor_names:
            missing = [n for n in self.sensor_names if n not in sensors.names]
            if missing:
                raise EmposeError(
                    f"estimator {type(self).__name__} was built for sensors {list(self.sensor_names)} but the "
                    f"data has no {missing} (it has {list(sensors.names)}). Use data with these sensors, or "
                    "a model trained for the data's sensor set."
                )
            idx = [list(sensors.names).index(n) for n in self.sensor_names]
            if offsets is not None:
                offsets = SensorOffsets(offsets.t[:, idx], offsets.r[:, idx])
            sensors = sensors.select(self.sensor_names)
        seen = sensors.masked(0.0)
        parts = []
        if self.use_pos:
            parts.append(seen.pos.reshape(b, t, -1))
        if self.use_ori:
            parts.append(seen.ori.reshape(b, t, -1))
        return Inputs(torch.cat(parts, dim=-1), seen, frame_mask, seq_len, offsets)

    def _prediction(self, inp: Inputs, pose: torch.Tensor, betas: torch.Tensor | None, **fields) -> Prediction:
        """Wrap flat outputs (B, T, 3J) and (B, T, K) or None into a Prediction with the common fields
        (and the estimator's own `fields`, e.g. LGD's iterates)."""
        b, t = pose.shape[:2]
        estimated = betas is not None
        if betas is None:
            betas = pose.new_zeros(b, t, self.n_betas)
        return Prediction(BodyPose(pose.reshape(b, t, self.n_joints, 3), betas), loss_form=self.loss_form,
                          shape_estimated=estimated, sensors=inp.seen, offsets=inp.offsets, **fields)

    # ------------------------------------------------------------------ streaming
    def forward(self, sensors: SensorFrames, seq_len: torch.Tensor, offsets: SensorOffsets | None = None) -> Prediction:
        prediction, _ = self._run(self._inputs(sensors, seq_len, offsets), None, padded=True)
        return prediction

    def reset(self) -> None:
        self._stream = None

    def step(self, frame: SensorFrames, offsets: SensorOffsets | None = None) -> Prediction:
        """The next T >= 1 frames of B lockstep streams, continuing from everything since `reset()`."""
        b, t = frame.pos.shape[:2]
        if self._stream is not None and self._stream["batch"] != b:
            raise EmposeError(
                f"estimator {type(self).__name__}: step() got {b} streams but the stream started with "
                f"{self._stream['batch']}. Call reset() before starting streams of another batch size."
            )
        state = None if self._stream is None else self._stream["state"]
        run = self._stream_step
        if state is not None and self._compiled is not None and not (
                self.training or self.reference or torch.is_grad_enabled()):  # fmt: skip
            run = self._compiled
        prediction, state = run(frame, offsets, state)
        self._stream = {"state": _detach(state), "batch": b}
        return prediction

    def _stream_step(self, frame: SensorFrames, offsets: SensorOffsets | None, state: dict | None):
        seq_len = torch.full(frame.pos.shape[:1], frame.pos.shape[1], dtype=torch.long, device=frame.pos.device)
        return self._run(self._inputs(frame, seq_len, offsets), state, padded=False)

    def compile_stream(self, example: SensorFrames, offsets: SensorOffsets | None = None) -> float:
        """Opt-in for live use: compile the steady-state `step()` (eval mode, no grad) with torch.compile
        (inductor) into a few fused kernels, and compile it now for `example`'s shape (B streams, T frames
        per call; another shape compiles on its first call). Returns the seconds it took. The first frame
        after each `reset()` runs eagerly (a different graph: no state yet)."""
        t0 = time.perf_counter()
        compiled = torch.compile(self._stream_step, dynamic=False, options=_compile_options())

        def run(*args):  # dynamo traces nn.LSTM only with allow_rnn (layers.RNNLayer unrolls it then)
            with torch._dynamo.config.patch(allow_rnn=True):
                return compiled(*args)

        self._compiled = run
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*lru_cache", category=UserWarning)  # pure caches: harmless
            self.reset()
            self.step(example, offsets)
            self.step(example, offsets)
        self.reset()
        return time.perf_counter() - t0

    @abstractmethod
    def _run(self, inp: Inputs, state: dict | None, padded: bool) -> tuple[Prediction, dict]:
        """Estimate from `inp` given the streaming `state` (None: a new sequence); return the new state.
        `padded`: `inp.seq_len` may be shorter than T (windowed forward); False for `step()`."""


def average_over_time(x: torch.Tensor, causal: bool, state: tuple | None = None):
    """Mean of x (B, T, K) over frames, broadcast to every frame: over the whole window, or (causal)
    over the frames up to each frame, continuing the running `state` (sum (B, K), count). Returns
    (averaged, new state); the window mode carries nothing."""
    if not causal:
        return x.mean(dim=1, keepdim=True).expand_as(x), None
    total = x.cumsum(dim=1)
    count = torch.arange(1, x.shape[1] + 1, device=x.device, dtype=x.dtype)
    if state is not None:
        total = total + state[0][:, None]
        count = count + state[1]
    return total / count[None, :, None], (total[:, -1], count[-1])


def _detach(obj):
    """Detach every tensor of a nested state (dict/list/tuple), so streaming never grows a graph."""
    if isinstance(obj, torch.Tensor):
        return obj.detach()
    if isinstance(obj, dict):
        return {k: _detach(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_detach(v) for v in obj)
    return obj
