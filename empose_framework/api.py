"""Live use from Python: load a model by name or file, feed sensor frames, get a BodyPose per frame.

    from empose_framework import api

    model = api.load("runs/quickstart-.../checkpoints/best.pt")   # or "pretrained:NAME"
    model.reset()                                                 # a new recording
    for pos, ori in my_tracker():                                 # (S, 3) metres, (S, 3, 3) world frame
        body = model.feed(pos, ori)                               # BodyPose: pose (J, 3), betas (K,)

`feed` takes the sensors in `model.sensor_names` order, in any world frame: the first frame with a valid
reference reading (`back`) fixes the root normalisation the estimators expect (see `RootNormaliser`).
Pass `normalised=True` to `load` for readings that are already root-normalised (as `virtual_em` and
`empose_recordings` produce them). Causal estimators (ResNet, RNN, LGD RNN) keep their recurrent state
between calls; offline ones (BiRNN) cannot run live and are refused.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

import numpy as np
import torch

from empose_framework.errors import EmposeError
from empose_framework.interfaces import BodyPose, Estimator, SensorFrames, SensorOffsets

REFERENCE_SITE = "back"


@dataclass
class Model:
    """A loaded checkpoint: the estimator (eval mode), its body model and where they came from."""

    estimator: Estimator
    body_model: object
    body_model_spec: dict
    sensor_names: tuple[str, ...]
    source: str
    extra: dict = field(default_factory=dict)


def load_model(spec: str | os.PathLike, device="cpu", registry=None) -> Model:
    """A checkpoint path or `pretrained:NAME` -> estimator + body model, ready for inference."""
    from empose_framework.engine import checkpoints
    from empose_framework.plugins import get_registry

    registry = registry or get_registry()
    ckpt = checkpoints.load(spec, map_location=device)
    bm_spec = ckpt["body_model"] if isinstance(ckpt["body_model"], dict) else {"use": ckpt["body_model"]}
    body_model = registry.build("body_model", bm_spec).to(device)
    names = tuple(ckpt["sensor_names"])
    est = registry.build("estimator", ckpt["estimator"], body_model=body_model, sensor_names=names)
    checkpoints.load_weights(est, ckpt, spec)
    est.to(device).eval()
    return Model(est, body_model, bm_spec, names, str(spec))


def save_checkpoint(path: str | os.PathLike, *, estimator: dict, sensor_names, body_model: dict, model: dict,
                    step: int = 0, recipe: dict | None = None, source: str = "") -> None:
    """Write an empose checkpoint, atomically, that `load_model` and recipes' `checkpoint:` read: the
    estimator spec `{"use": name, **params}`, its sensor names, the body model spec, the estimator's
    `state_dict()`, the training step, the recipe that evaluates it and a provenance line. For tools that
    make models outside a training run (e.g. `empose import-checkpoint`)."""
    from empose_framework.engine import checkpoints

    checkpoints.save_atomic({"format": checkpoints.FORMAT, "estimator": estimator, "sensor_names": sensor_names,
                             "body_model": body_model, "model": model, "recipe": recipe, "step": step,
                             "source": source}, path)  # fmt: skip


def rest_reference(body_model, site: str, offset_t=None, offset_r=None):
    """The mean-shape body at rest: the `site` sensor's position (3,) and orientation (3, 3) (with its
    offset when given) and the pelvis position J0 (3,), float64 numpy."""
    j = int(body_model.n_pose_joints)
    rest = BodyPose(torch.zeros(1, j, 3), torch.zeros(1, int(body_model.n_betas)))
    offsets = None
    if offset_t is not None:
        offsets = SensorOffsets(torch.as_tensor(np.asarray(offset_t), dtype=torch.float32).reshape(1, 1, 3),
                                torch.as_tensor(np.asarray(offset_r), dtype=torch.float32).reshape(1, 1, 3, 3))
    with torch.no_grad():
        pos, ori = body_model.sensor_frames(rest, [site], offsets)
        j0 = body_model.forward(rest, vertices=False).joints[0, 0]
    return pos.reshape(3).double().cpu().numpy(), ori.reshape(3, 3).double().cpu().numpy(), j0.double().cpu().numpy()


class RootNormaliser:
    """World-frame readings -> the root-normalised frame the estimators are trained in.

    The reference sensor (`back`, on the pelvis) stands in for the unknown root. With the mean-shape body
    at rest, its rest frame (b, B) and the rest pelvis J0: the root rotation of frame f is
    R_f = S_ref(f) B^T and R0 that of the first frame with a valid reference reading; every reading becomes
    s' = R0^T (s - s_ref(f)) + R0^T R_f (b - J0) + J0 and S' = R0^T S. So the first root is the identity,
    translation is removed per frame, and the reference sensor sits where the normalised body carries it
    (exact while the pelvis moves rigidly with the reference sensor). Frames without a valid reference
    reading are marked missing. Stateful: R0 is kept until `reset()`."""

    def __init__(self, body_model, names, reference: str = REFERENCE_SITE, offset_t=None, offset_r=None):
        names = tuple(names)
        if reference not in names:
            raise EmposeError(f"root normalisation needs the reference sensor '{reference}', which is not among the "
                              f"sensors {list(names)}. Record it, or name another site as the reference.")
        self.k = names.index(reference)
        self.b, self.b_rot, self.j0 = rest_reference(body_model, reference, offset_t, offset_r)
        self.r0t = None

    def reset(self) -> None:
        self.r0t = None

    def __call__(self, pos: np.ndarray, ori: np.ndarray, valid: np.ndarray):
        """pos (T, S, 3), ori (T, S, 3, 3), valid (T, S) -> normalised float32 copies and the new valid."""
        k = self.k
        ref_ok = valid[:, k]
        root = ori[:, k] @ self.b_rot.T  # (T, 3, 3)
        if self.r0t is None and ref_ok.any():
            self.r0t = root[int(np.argmax(ref_ok))].T
        if self.r0t is None:  # no reference yet: nothing usable
            return np.zeros(pos.shape, np.float32), np.zeros(ori.shape, np.float32), np.zeros(valid.shape, bool)
        r0t = self.r0t
        rel = pos - pos[:, k : k + 1]
        ref_pos = np.einsum("ab,tbc,c->ta", r0t, root, self.b - self.j0) + self.j0
        out_pos = np.einsum("ab,tsb->tsa", r0t, rel) + ref_pos[:, None]
        out_ori = np.einsum("ab,tsbc->tsac", r0t, ori)
        ok = valid & ref_ok[:, None]
        out_pos = np.where(ok[..., None], out_pos, 0.0).astype(np.float32)
        out_ori = np.where(ok[..., None, None], out_ori, 0.0).astype(np.float32)
        return out_pos, out_ori, ok


class Live:
    """A model fed frame by frame (see the module docstring)."""

    def __init__(self, model: Model, normalised: bool = False, offsets: tuple | None = None,
                 reference: str = REFERENCE_SITE, compile: bool = False):
        if not getattr(model.estimator, "streamable", False):
            raise EmposeError(f"{model.source}: estimator {type(model.estimator).__name__} is offline-only (it looks at "
                              "future frames), so it cannot run live. Use a causal model (ResNet, RNN, LGD RNN), or "
                              "`empose predict` on the whole recording.")
        self.model = model
        self.sensor_names = model.sensor_names
        self.device = next(iter(model.estimator.parameters()), torch.zeros(0)).device
        self._offsets = None
        off_t = off_r = None
        if offsets is not None:
            off_t, off_r = (np.asarray(a, np.float32) for a in offsets)
            self._offsets = SensorOffsets(torch.as_tensor(off_t)[None].to(self.device), torch.as_tensor(off_r)[None].to(self.device))
        self.normaliser = None
        if not normalised:
            k = self.sensor_names.index(reference) if reference in self.sensor_names else None
            self.normaliser = RootNormaliser(model.body_model, self.sensor_names, reference,
                                             None if off_t is None or k is None else off_t[k],
                                             None if off_r is None or k is None else off_r[k])
        self.compile_seconds = None
        if compile:
            self._compile()
        self.reset()

    def _compile(self) -> None:
        """Compile the estimator's one-frame step now (torch.compile), telling the user, who waits."""
        est = self.model.estimator
        if not hasattr(est, "compile_stream"):
            raise EmposeError(f"{self.model.source}: estimator {type(est).__name__} has no compiled streaming step "
                              "(compile_stream). Load it with compile=False.")
        s, dev = len(self.sensor_names), self.device
        example = SensorFrames(torch.zeros(1, 1, s, 3, device=dev), torch.eye(3, device=dev).expand(1, 1, s, 3, 3),
                               torch.ones(1, 1, s, dtype=torch.bool, device=dev), self.sensor_names)
        print("empose: compiling the streaming step with torch.compile (about a minute the first time; seconds "
              "once inductor's on-disk cache has it)...", file=sys.stderr, flush=True)
        self.compile_seconds = est.compile_stream(example, self._offsets)
        print(f"empose: compiled in {self.compile_seconds:.1f} s", file=sys.stderr, flush=True)

    def reset(self) -> None:
        """Start a new recording: forget the recurrent state and the root reference."""
        self.model.estimator.reset()
        if self.normaliser is not None:
            self.normaliser.reset()

    @torch.no_grad()
    def feed_many(self, pos, ori, valid=None) -> BodyPose:
        """T new frames at once: pos (T, S, 3), ori (T, S, 3, 3), valid (T, S) (default: finite readings).
        Returns a BodyPose with pose (T, J, 3) and betas (T, K)."""
        pos = np.asarray(pos, np.float64)
        ori = np.asarray(ori, np.float64)
        s = len(self.sensor_names)
        if pos.ndim != 3 or pos.shape[1:] != (s, 3) or ori.shape != pos.shape[:2] + (3, 3):
            raise EmposeError(f"feed: expected pos (T, {s}, 3) and ori (T, {s}, 3, 3) for the sensors "
                              f"{list(self.sensor_names)}, got {pos.shape} and {ori.shape}.")
        finite = np.isfinite(pos).all(-1) & np.isfinite(ori).all((-1, -2))
        valid = finite if valid is None else (np.asarray(valid, bool) & finite)
        pos, ori = np.where(valid[..., None], pos, 0.0), np.where(valid[..., None, None], ori, 0.0)
        if self.normaliser is not None:
            pos, ori, valid = self.normaliser(pos, ori, valid)
        dev = self.device
        frames = SensorFrames(torch.as_tensor(pos, dtype=torch.float32, device=dev)[None],
                              torch.as_tensor(ori, dtype=torch.float32, device=dev)[None],
                              torch.as_tensor(valid, device=dev)[None], self.sensor_names)
        out = self.model.estimator.step(frames, self._offsets)
        betas = out.pose.betas[0]
        if betas.dim() == 1:
            betas = betas.expand(out.pose.pose.shape[1], -1)
        return BodyPose(out.pose.pose[0].cpu(), betas.cpu())

    def feed(self, pos, ori, valid=None) -> BodyPose:
        """One new frame: pos (S, 3) metres, ori (S, 3, 3) (columns = sensor axes), valid (S,) optional.
        Returns a BodyPose with pose (J, 3) local axis-angle and betas (K,)."""
        out = self.feed_many(np.asarray(pos)[None], np.asarray(ori)[None], None if valid is None else np.asarray(valid)[None])
        return BodyPose(out.pose[0], out.betas[0])


def load(spec: str | os.PathLike, device: str = "cpu", normalised: bool = False, offsets: tuple | None = None,
         reference: str = REFERENCE_SITE, compile: bool = False) -> Live:
    """Load a checkpoint file or `pretrained:NAME` for live use. `offsets`: optional (t (S, 3), r (S, 3, 3))
    sensor-to-skin offsets in `sensor_names` order; `normalised`: the readings are already root-normalised;
    `compile`: compile the one-frame step with torch.compile now (about 2x faster per frame; see README)."""
    return Live(load_model(spec, device), normalised=normalised, offsets=offsets, reference=reference, compile=compile)
