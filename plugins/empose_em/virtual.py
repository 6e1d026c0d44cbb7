"""`virtual_em`: EM sensors synthesised on a body model from any motion source (§4, §6.2-§6.4).

Per batch, on the batch's device: crop windows, make the first frame's root the identity and the
translation zero (§6.3 step 1), pose the body and read the sensor frames at the chosen sites with
`body_model.sensor_frames` (sparse skinning, all windows at once), displaced by per-subject offsets
(p + R t, R r; §4.5), then add noise when training.

Deterministic evaluation (fixes §13 item 18): with `train=False` (and in `sequences`) the order is
fixed, crops are the middle ones, sequence i uses subject i mod N's mean offsets, and there is no
noise, so validation inputs are identical every time. With `train=True`, everything random (order,
crops, subjects, offset draws, noise) comes from one generator seeded by `seed`.

Evaluation noise (`noise_seed` set): `sequences` and `windows(train=False)` then apply this source's
`offset_noise`, spherical and suppression noise too, each sequence from its own generator seeded with
(noise_seed, sequence index), so a test set is noisy in the same way on every run, for any batch size
and order. Without `noise_seed`, `sequences` refuses spherical or suppression settings (a test set
would otherwise silently be clean) and validation windows stay noise-free.

Validity: padding frames and sensors dropped by suppression noise are `valid=False`; spherically
displaced readings stay valid (noisy, not missing). In training, `frame_valid` is "inside the sequence",
so frames with a dropped sensor still count for the losses, as in the original (no sensor mask on
synthetic data). In evaluation, frames with a dropped sensor do not count for the metrics (nor the
validation losses): the EM-POSE protocol scores only frames in which every recorded sensor is valid, as
on the real recordings. The estimator still sees those frames, so a recurrent model carries the damage
into the frames after a dropout, and the table's `used_frames` shows how many frames were scored.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from empose_framework.errors import DataError, EmposeError
from empose_framework.geometry import aa_to_rotmat, rotmat_to_aa
from empose_framework.interfaces import (
    Batch, BodyModel, BodyPose, MotionSource, SensorFrames, SensorOffsets, SensorSource, fit_betas,
)
from empose_framework.params import ComponentRef, Param
from empose_em.batching import batch_order, crop_starts, inside_mask, normalise_root, pad_stack
from empose_em.noise import spherical_noise, suppression_mask
from empose_em.npzio import expand_env
from empose_em.offsets import OffsetBank, embedded_bank, load_bank, zero_bank
from empose_em.sensor_sets import EM12, resolve_sensors

WHERE = "sensor source 'virtual_em'"
#: Sites between which the spherical-noise reference length (thigh length) is measured.
REF_SITES = ("r_thigh", "r_shank")


class VirtualEM(SensorSource):
    """Virtual EM sensors synthesised from any motion source on any body model (offsets, noise)."""

    params = (
        Param("motions", ComponentRef("motion_source"), doc="motions to put the sensors on"),
        Param("sensors", str | int | list[str], "em12", "'em6', 'em12' (or 6, 12) or a list of body-model site names"),
        Param(
            "offsets", str | None, "embedded",
            "'embedded' (built-in subjects), a folder of <subject>_offsets.npz (e.g. ${EM_DATA_REAL}), "
            "one such file, or null (zero offsets)",
        ),
        Param(
            "offset_noise", int, 0,
            "training offsets (§6.3): -1 subject means, 0 one draw per sequence, 1 a draw per frame, "
            "2 zero translation, 3 zero translation and identity rotation",
            choices=(-1, 0, 1, 2, 3),
        ),
        Param("spherical_noise_strength", float, 0.0, "max displacement, as a fraction of half the thigh length (0..1)", min=0, max=1),
        Param("spherical_noise_length", float, 0.0, "fraction of each window displaced (0..1); 0 = off", min=0, max=1),
        Param("suppression_noise_length", float, 0.0, "fraction of each window with sensors dropped (0..1); 0 = off", min=0, max=1),
        Param("noise_sensors", int, 1, "sensors per window affected by spherical or suppression noise", min=0),
        Param("suppression_value", float, 0.0, "value written into dropped readings (they are also marked invalid)"),
        Param(
            "noise_seed", int | None, None,
            "evaluation noise: null keeps test sequences and validation windows clean (subject mean offsets); "
            "an integer applies offset_noise, spherical and suppression noise there too, drawn per sequence "
            "from (noise_seed, index), identical on every run",
        ),
        Param(
            "random_heading", bool, False,
            "turn each training and validation window about the up axis of its first frame (training: a random "
            "angle; validation: a fixed one per window), so a model learns every heading, not only the "
            "first frame's: needed for long sequences in which the person turns",
        ),
    )  # fmt: skip

    def __init__(
        self,
        motions: MotionSource,
        sensors="em12",
        offsets: str | None = "embedded",
        offset_noise: int = 0,
        spherical_noise_strength: float = 0.0,
        spherical_noise_length: float = 0.0,
        suppression_noise_length: float = 0.0,
        noise_sensors: int = 1,
        suppression_value: float = 0.0,
        noise_seed: int | None = None,
        random_heading: bool = False,
        *,
        body_model: BodyModel,
    ):
        self.motions = motions
        self.body_model = body_model
        self.sensor_names = resolve_sensors(sensors, body_model.sensor_sites, WHERE)
        if len(motions) == 0:
            raise DataError(f"{WHERE}: the motion source {type(motions).__name__} holds no motions.")
        if offset_noise not in (-1, 0, 1, 2, 3):
            raise EmposeError(f"{WHERE}: 'offset_noise' must be -1, 0, 1, 2 or 3 (reference §6.3), got {offset_noise}.")
        for name, value in (
            ("spherical_noise_strength", spherical_noise_strength),
            ("spherical_noise_length", spherical_noise_length),
            ("suppression_noise_length", suppression_noise_length),
        ):
            if not 0.0 <= value <= 1.0:
                raise EmposeError(f"{WHERE}: '{name}' must lie in [0, 1], got {value}.")
        if spherical_noise_strength > 0 and spherical_noise_length == 0:
            raise EmposeError(
                f"{WHERE}: 'spherical_noise_strength' is {spherical_noise_strength} but 'spherical_noise_length' "
                "is 0, so no frame would be perturbed; set a window fraction in (0, 1] or the strength to 0."
            )
        noisy = spherical_noise_length > 0 or suppression_noise_length > 0
        if noisy and not 1 <= noise_sensors <= len(self.sensor_names):
            raise EmposeError(
                f"{WHERE}: 'noise_sensors' must be between 1 and the number of sensors ({len(self.sensor_names)}), "
                f"got {noise_sensors}."
            )
        if spherical_noise_length > 0:
            missing = [s for s in REF_SITES if s not in body_model.sensor_sites]
            if missing:
                raise EmposeError(
                    f"{WHERE}: spherical noise scales with the thigh length, measured between the sites "
                    f"{REF_SITES}, but the body model has no site {missing}. Turn spherical noise off."
                )
        if noise_seed is not None and noise_seed < 0:
            raise EmposeError(f"{WHERE}: 'noise_seed' must be a non-negative integer or null, got {noise_seed}.")
        self.offset_noise, self.noise_seed, self.random_heading = offset_noise, noise_seed, random_heading
        self.sph_strength, self.sph_length = spherical_noise_strength, spherical_noise_length
        self.sup_length, self.noise_sensors, self.sup_value = suppression_noise_length, noise_sensors, suppression_value
        self.offsets = self._bank(offsets).select(self.sensor_names)

    def _bank(self, offsets: str | None) -> OffsetBank:
        if offsets is None:
            return zero_bank(self.sensor_names)
        if offsets == "embedded":
            return embedded_bank(self.sensor_names)
        path, env = expand_env(offsets, WHERE)
        bank = load_bank(path, WHERE, env)
        unknown = [s for s in self.sensor_names if s not in EM12]
        if len(unknown) == len(self.sensor_names):
            raise EmposeError(
                f"{WHERE}: the offsets files in {path} cover the 12 EM-POSE sites, none of which is among the "
                f"requested sensors {list(self.sensor_names)}; use 'offsets: embedded' or null."
            )
        return bank

    # ------------------------------------------------------------------ iteration
    def __len__(self) -> int:
        """Windows per pass (one per motion)."""
        return len(self.motions)

    def windows(self, batch_size: int, window: int, *, train: bool, seed: int, device="cpu") -> Iterator[Batch]:
        gen = torch.Generator().manual_seed(int(seed)) if train else None
        for idx in batch_order(len(self.motions), batch_size, gen):
            motions = [self.motions[int(i)] for i in idx]
            lengths = np.array([len(m) for m in motions])
            starts = crop_starts(lengths, window, train, gen)
            stops = np.minimum(starts + window, lengths)
            if train:
                subjects = torch.randint(len(self.offsets), (len(idx),), generator=gen).numpy()
            else:
                subjects = idx % len(self.offsets)
            yield self._batch(motions, starts, stops, subjects, gen, device, None if train else idx,
                              turn=self.random_heading)

    def sequences(self, device="cpu") -> Iterator[Batch]:
        """Every motion whole, in order; noisy (the same every run) when `noise_seed` is set."""
        if self.noise_seed is None and (self.sph_length > 0 or self.sup_length > 0):
            raise EmposeError(
                f"{WHERE}: this source is evaluated as a test set and sets spherical or suppression noise "
                f"(spherical_noise_length {self.sph_length}, suppression_noise_length {self.sup_length}), but "
                "test-set noise needs a fixed seed so that every run sees the same noise: add `noise_seed: 0` "
                "(any integer) to this test set, or drop the noise settings for clean sensors."
            )
        return self._sequences(device)

    def _sequences(self, device) -> Iterator[Batch]:
        for i in range(len(self.motions)):
            m = self.motions[i]
            yield self._batch([m], np.array([0]), np.array([len(m)]), np.array([i % len(self.offsets)]), None, device,
                              np.array([i]))

    # ------------------------------------------------------------------ synthesis
    @torch.no_grad()
    def _batch(self, motions, starts, stops, subjects, gen: torch.Generator | None, device, indices=None,
               turn: bool = False) -> Batch:
        """Synthesise one batch. `gen` draws the training randomness; None means evaluation, where the
        motion `indices` seed the per-sequence evaluation noise when `noise_seed` is set (else none).
        `turn`: random headings (`random_heading`)."""
        bm = self.body_model.to(device)
        for m in motions:
            if m.pose.ndim != 3 or m.pose.shape[-1] != 3 or len(m) == 0:
                raise DataError(f"{WHERE}: motion '{m.id}' has pose shape {m.pose.shape}, expected (T>0, J, 3).")
        t_max = int((stops - starts).max())
        pose = pad_stack([m.pose[a:b] for m, a, b in zip(motions, starts, stops)], t_max)
        seq_len = torch.as_tensor(stops - starts, device=device)
        pose = torch.as_tensor(pose, device=device)
        betas = torch.as_tensor(np.stack([fit_betas(m.betas, bm.n_betas) for m in motions]), device=device)
        inside = inside_mask(seq_len, t_max)
        pose, _ = normalise_root(pose, inside)
        if turn:
            pose = turn_heading(pose, inside, heading_angles(len(motions), gen, indices).to(device))
        b, s = len(motions), len(self.sensor_names)
        trans = torch.zeros(b, t_max, 3, device=device)
        target = BodyPose(pose, betas, trans)

        subj = torch.as_tensor(subjects, device=device)
        eval_gens = None
        if gen is None and self.noise_seed is not None:
            eval_gens = [torch.Generator().manual_seed(eval_noise_seed(self.noise_seed, int(i))) for i in indices]
            t_off, r_off, model_offsets = self._eval_offsets(subj, seq_len, t_max, eval_gens, device)
        else:
            t_off, r_off, model_offsets = self._offsets(subj, b, t_max, gen, device)
        pos, ori = bm.sensor_frames(target, self.sensor_names, SensorOffsets(t_off, r_off))
        keep = inside[:, :, None]
        padded = bool((seq_len < t_max).any())
        if padded:  # padding frames carry no reading
            pos = torch.where(keep[..., None], pos, torch.zeros_like(pos))
            ori = torch.where(keep[..., None, None], ori, torch.zeros_like(ori))
        valid = keep.expand(b, t_max, s).clone()

        noisy = gen is not None or eval_gens is not None
        if noisy and self.sph_length > 0:
            ref_pos, _ = bm.sensor_frames(BodyPose(pose[:, :1], betas, trans[:, :1]), REF_SITES)
            ref_len = (ref_pos[:, 0, 0] - ref_pos[:, 0, 1]).norm(dim=-1)
            if gen is not None:
                pos = spherical_noise(pos, seq_len, ref_len, self.sph_strength, self.sph_length, self.noise_sensors, gen)
            else:  # per sequence, over its own length: independent of batching
                pos = pos.clone()
                for e, g in enumerate(eval_gens):
                    n = int(seq_len[e])
                    pos[e : e + 1, :n] = spherical_noise(pos[e : e + 1, :n], seq_len[e : e + 1], ref_len[e : e + 1],
                                                         self.sph_strength, self.sph_length, self.noise_sensors, g)
        if noisy and self.sup_length > 0:
            if gen is not None:
                drop = suppression_mask(seq_len, t_max, s, self.sup_length, self.noise_sensors, gen)
            else:
                drop = torch.zeros(b, t_max, s, dtype=torch.bool)
                for e, g in enumerate(eval_gens):
                    n = int(seq_len[e])
                    drop[e, :n] = suppression_mask(seq_len[e : e + 1], n, s, self.sup_length, self.noise_sensors, g)[0]
            drop = drop.to(device) & keep
            valid &= ~drop
            pos = torch.where(drop[..., None], torch.full_like(pos, self.sup_value), pos)
            ori = torch.where(drop[..., None, None], torch.full_like(ori, self.sup_value), ori)

        sensors = SensorFrames(pos, ori, valid, self.sensor_names)
        ids = [m.id for m in motions]
        # Training: suppressed sensors do not spoil the ground truth, the frame still counts (as in the
        # original). Evaluation: only frames with every sensor valid count (the EM-POSE metric protocol).
        frame_valid = inside if gen is not None else inside & valid.all(dim=-1)
        return Batch(sensors, target, seq_len, ids, model_offsets, frame_valid=frame_valid)

    def _eval_offsets(self, subj: torch.Tensor, seq_len: torch.Tensor, t: int, gens: list, device):
        """`_offsets` at this source's `offset_noise` level, drawn sequence by sequence from its own
        generator over its own length (frame-wise draws are padded with the last frame)."""
        parts = [self._offsets(subj[e : e + 1], 1, int(seq_len[e]), g, device) for e, g in enumerate(gens)]
        model = SensorOffsets(torch.cat([p[2].t for p in parts]), torch.cat([p[2].r for p in parts]))
        if self.offset_noise != 1:
            return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]), model

        def pad(x):  # (1, n, ...) -> (1, t, ...)
            return torch.cat([x, x[:, -1:].expand(1, t - x.shape[1], *x.shape[2:])], dim=1)

        return torch.cat([pad(p[0]) for p in parts]), torch.cat([pad(p[1]) for p in parts]), model

    def _offsets(self, subj: torch.Tensor, b: int, t: int, gen, device):  # gen None: subject means
        """Offsets to synthesise with, and those handed to the model (§6.3 step 3: always the subject
        means, identity rotation at level 3, even when the synthesis used sampled or zero values)."""
        means, sqrt_cov, r = self.offsets.tensors(device)
        m, rr = means[subj], r[subj]  # (B, S, 3), (B, S, 3, 3)
        level = self.offset_noise if gen is not None else -1
        s = m.shape[1]
        if level == 3:
            rr = torch.eye(3, device=device).expand(b, s, 3, 3)
        model = SensorOffsets(m, rr)
        if level == -1:
            return m, rr, model
        if level == 0:
            z = torch.randn(b, s, 3, 1, generator=gen).to(device)
            return m + (sqrt_cov[subj] @ z)[..., 0], rr, model
        if level == 1:
            z = torch.randn(b, t, s, 3, 1, generator=gen).to(device)
            t_off = m[:, None] + (sqrt_cov[subj][:, None] @ z)[..., 0]
            return t_off, rr[:, None].expand(b, t, s, 3, 3), model
        return torch.zeros_like(m), rr, model


def eval_noise_seed(noise_seed: int, index: int) -> int:
    """Seed of sequence `index`'s evaluation noise: independent streams for every (noise_seed, index)."""
    return int(np.random.SeedSequence([int(noise_seed), int(index)]).generate_state(1, dtype=np.uint64)[0] >> 1)


#: the golden angle: fixed validation headings i * GOLDEN (mod 2 pi) spread evenly over the circle
GOLDEN = float(np.pi * (3.0 - np.sqrt(5.0)))


def heading_angles(n: int, gen: torch.Generator | None, indices) -> torch.Tensor:
    """(n,) angles in [-pi, pi): uniform draws from `gen` (training), else fixed per motion index."""
    if gen is not None:
        return (torch.rand(n, generator=gen) * 2.0 - 1.0) * np.pi
    i = torch.as_tensor(np.asarray(indices), dtype=torch.float64)
    return ((i * GOLDEN + np.pi) % (2.0 * np.pi) - np.pi).float()


def turn_heading(pose: torch.Tensor, inside: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate every frame's root by R_y(angle) of its sequence: the whole motion turns about the up (y)
    axis of its normalised first frame, so the first frame faces `angle` instead of straight ahead."""
    c, s = torch.cos(angles), torch.sin(angles)
    one, zero = torch.ones_like(c), torch.zeros_like(c)
    ry = torch.stack([c, zero, s, zero, one, zero, -s, zero, c], dim=-1).reshape(-1, 1, 3, 3)
    root = rotmat_to_aa(ry @ aa_to_rotmat(pose[:, :, 0]))
    return torch.cat([root[:, :, None], pose[:, :, 1:]], dim=2) * inside[:, :, None, None]

