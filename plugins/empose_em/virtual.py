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

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from empose_em import schema
from empose_em.batching import batch_order, crop_starts, normalise_root, pad_stack
from empose_em.noise import spherical_displace, spherical_draws, spherical_noise, suppression_mask
from empose_em.npzio import expand_env
from empose_em.offsets import OffsetBank, embedded_bank, load_bank, zero_bank
from empose_em.sensor_sets import EM12, resolve_sensors
from empose_framework.errors import DataError, EmposeError
from empose_framework.geometry import aa_to_rotmat, rotmat_to_aa
from empose_framework.interfaces import (
    Batch,
    BodyModel,
    BodyPose,
    MotionSource,
    SensorFrames,
    SensorOffsets,
    SensorSource,
    fit_betas,
)
from empose_framework.kinematics import inside_mask

WHERE = "sensor source 'virtual_em'"
#: Sites between which the spherical-noise reference length (thigh length) is measured.
REF_SITES = ("r_thigh", "r_shank")


class VirtualEM(SensorSource):
    """Virtual EM sensors synthesised from any motion source on any body model (offsets, noise)."""

    seekable = True  # `windows(start=k)`; all randomness from the pass's own generator

    params = schema.VIRTUAL_EM

    def __init__(
        self,
        *,
        motions: MotionSource,
        sensors,
        offsets: str | None,
        offset_noise: int,
        spherical_noise_strength: float,
        spherical_noise_length: float,
        suppression_noise_length: float,
        noise_sensors: int,
        suppression_value: float,
        noise_seed: int | None,
        random_heading: bool,
        body_model: BodyModel,
    ):
        self.motions = motions
        self.body_model = body_model
        self.sensor_names = resolve_sensors(sensors, body_model.sensor_sites, WHERE)
        if len(motions) == 0:
            raise DataError(f"{WHERE}: the motion source {type(motions).__name__} holds no motions.")
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

    def windows(self, batch_size: int, window: int, *, train: bool, seed: int, device="cpu", start: int = 0
                ) -> Iterator[Batch]:  # fmt: skip
        """`start=k` positions the pass at batch k: the first k batches' random numbers are drawn (reading
        those motions only when the draws depend on their lengths), nothing is synthesised."""
        gen = torch.Generator().manual_seed(int(seed)) if train else None
        for k, idx in enumerate(batch_order(len(self.motions), batch_size, gen)):
            if k < start:
                if train:
                    self._train_draws(self._skipped_lengths(idx, window), window, gen)
                continue
            motions = [self.motions[int(i)] for i in idx]
            lengths = np.array([len(m) for m in motions])
            if train:
                yield self._batch(motions, self._train_draws(lengths, window, gen), device)
                continue
            starts = crop_starts(lengths, window, False, None)
            angles = heading_angles(len(idx), None, idx) if self.random_heading else None
            draws = Draws(starts, np.minimum(starts + window, lengths), idx % len(self.offsets), angles)
            yield self._batch(motions, draws, device, eval_indices=idx)

    def _skipped_lengths(self, idx: np.ndarray, window: int) -> np.ndarray:
        """Motion lengths for positioning: read only when per-frame offsets or noise make the draws depend
        on them (otherwise any length gives the same draws)."""
        if self.offset_noise == 1 or self.sph_length > 0 or self.sup_length > 0:
            return np.array([len(self.motions[int(i)]) for i in idx])
        return np.full(len(idx), window)

    def _train_draws(self, lengths: np.ndarray, window: int, gen: torch.Generator) -> "Draws":
        """Every random number of one training batch, always in this order: crops, subjects, headings,
        offsets, spherical noise, suppression noise."""
        b, s = len(lengths), len(self.sensor_names)
        starts = crop_starts(lengths, window, True, gen)
        stops = np.minimum(starts + window, lengths)
        subjects = torch.randint(len(self.offsets), (b,), generator=gen).numpy()
        seq_len = torch.as_tensor(stops - starts)
        t = int(seq_len.max())
        angles = heading_angles(b, gen, None) if self.random_heading else None
        offsets = self._offset_draws(b, t, gen)
        sph = spherical_draws(seq_len, t, s, self.sph_length, self.noise_sensors, gen) if self.sph_length > 0 else None
        drop = suppression_mask(seq_len, t, s, self.sup_length, self.noise_sensors, gen) if self.sup_length > 0 else None
        return Draws(starts, stops, subjects, angles, offsets, sph, drop)

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
            draws = Draws(np.array([0]), np.array([len(m)]), np.array([i % len(self.offsets)]))
            yield self._batch([m], draws, device, eval_indices=np.array([i]))

    # ------------------------------------------------------------------ synthesis
    @torch.no_grad()
    def _batch(self, motions, d: "Draws", device, eval_indices=None) -> Batch:
        """Synthesise one batch. Training (`eval_indices` None): `d` holds all its random numbers.
        Evaluation: the motion `eval_indices` seed the per-sequence evaluation noise when `noise_seed` is
        set (else there is none)."""
        bm = self.body_model.to(device)
        for m in motions:
            if m.pose.ndim != 3 or m.pose.shape[-1] != 3 or len(m) == 0:
                raise DataError(f"{WHERE}: motion '{m.id}' has pose shape {m.pose.shape}, expected (T>0, J, 3).")
        lengths = d.stops - d.starts
        t_max = int(lengths.max())
        pose = pad_stack([m.pose[a:b] for m, a, b in zip(motions, d.starts, d.stops)], t_max)
        seq_len = torch.as_tensor(lengths, device=device)
        pose = torch.as_tensor(pose, device=device)
        betas = torch.as_tensor(np.stack([fit_betas(m.betas, bm.n_betas) for m in motions]), device=device)
        inside = inside_mask(seq_len, t_max)
        pose, _ = normalise_root(pose, inside)
        if d.angles is not None:
            pose = turn_heading(pose, inside, d.angles.to(device))
        b, s = len(motions), len(self.sensor_names)
        trans = torch.zeros(b, t_max, 3, device=device)
        target = BodyPose(pose, betas, trans)

        subj = torch.as_tensor(d.subjects, device=device)
        training = eval_indices is None
        eval_gens = None
        if training:
            t_off, r_off, model_offsets = self._offsets(subj, d.offsets, self.offset_noise, device)
        elif self.noise_seed is not None:
            eval_gens = [torch.Generator().manual_seed(eval_noise_seed(self.noise_seed, int(i))) for i in eval_indices]
            t_off, r_off, model_offsets = self._eval_offsets(subj, lengths, t_max, eval_gens, device)
        else:
            t_off, r_off, model_offsets = self._offsets(subj, None, -1, device)
        pos, ori = bm.sensor_frames(target, self.sensor_names, SensorOffsets(t_off, r_off))
        keep = inside[:, :, None]
        if (lengths < t_max).any():  # padding frames carry no reading
            pos = torch.where(keep[..., None], pos, torch.zeros_like(pos))
            ori = torch.where(keep[..., None, None], ori, torch.zeros_like(ori))
        valid = keep.expand(b, t_max, s).clone()

        noisy = training or eval_gens is not None
        if noisy and self.sph_length > 0:
            ref_pos, _ = bm.sensor_frames(BodyPose(pose[:, :1], betas, trans[:, :1]), REF_SITES)
            ref_len = (ref_pos[:, 0, 0] - ref_pos[:, 0, 1]).norm(dim=-1)
            if training:
                pos = spherical_displace(pos, d.spherical, ref_len, self.sph_strength)
            else:  # per sequence, over its own length: independent of batching
                pos = pos.clone()
                for e, g in enumerate(eval_gens):
                    n = int(lengths[e])
                    pos[e : e + 1, :n] = spherical_noise(pos[e : e + 1, :n], seq_len[e : e + 1], ref_len[e : e + 1],
                                                         self.sph_strength, self.sph_length, self.noise_sensors, g)
        if noisy and self.sup_length > 0:
            if training:
                drop = d.drop
            else:
                drop = torch.zeros(b, t_max, s, dtype=torch.bool)
                for e, g in enumerate(eval_gens):
                    n = int(lengths[e])
                    drop[e, :n] = suppression_mask(seq_len[e : e + 1], n, s, self.sup_length, self.noise_sensors, g)[0]
            drop = drop.to(device) & keep
            valid &= ~drop
            pos = torch.where(drop[..., None], torch.full_like(pos, self.sup_value), pos)
            ori = torch.where(drop[..., None, None], torch.full_like(ori, self.sup_value), ori)

        sensors = SensorFrames(pos, ori, valid, self.sensor_names)
        ids = [m.id for m in motions]
        # Training: suppressed sensors do not spoil the ground truth, the frame still counts (as in the
        # original). Evaluation: only frames with every sensor valid count (the EM-POSE metric protocol).
        frame_valid = inside if training else inside & valid.all(dim=-1)
        return Batch(sensors, target, seq_len, ids, model_offsets, frame_valid=frame_valid)

    def _eval_offsets(self, subj: torch.Tensor, lengths: np.ndarray, t: int, gens: list, device):
        """`_offsets` at this source's `offset_noise` level, drawn sequence by sequence from its own
        generator over its own length (frame-wise draws are padded with the last frame)."""
        parts = [self._offsets(subj[e : e + 1], self._offset_draws(1, int(lengths[e]), g), self.offset_noise, device)
                 for e, g in enumerate(gens)]  # fmt: skip
        model = SensorOffsets(torch.cat([p[2].t for p in parts]), torch.cat([p[2].r for p in parts]))
        if self.offset_noise != 1:
            return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]), model

        def pad(x):  # (1, n, ...) -> (1, t, ...)
            return torch.cat([x, x[:, -1:].expand(1, t - x.shape[1], *x.shape[2:])], dim=1)

        return torch.cat([pad(p[0]) for p in parts]), torch.cat([pad(p[1]) for p in parts]), model

    def _offset_draws(self, b: int, t: int, gen: torch.Generator) -> torch.Tensor | None:
        """The normal draws of `_offsets` at this source's level: one per sequence (B, S, 3, 1) at level 0,
        one per frame (B, T, S, 3, 1) at level 1, none otherwise."""
        s = len(self.sensor_names)
        if self.offset_noise == 0:
            return torch.randn(b, s, 3, 1, generator=gen)
        if self.offset_noise == 1:
            return torch.randn(b, t, s, 3, 1, generator=gen)
        return None

    def _offsets(self, subj: torch.Tensor, z: torch.Tensor | None, level: int, device):
        """Offsets to synthesise with at `level` (-1: subject means) from the draws `z`, and those handed
        to the model (§6.3 step 3: always the subject means, identity rotation at level 3, even when the
        synthesis used sampled or zero values)."""
        means, sqrt_cov, r = self.offsets.tensors(device)
        m, rr = means[subj], r[subj]  # (B, S, 3), (B, S, 3, 3)
        b, s = m.shape[:2]
        if level == 3:
            rr = torch.eye(3, device=device).expand(b, s, 3, 3)
        model = SensorOffsets(m, rr)
        if level == -1:
            return m, rr, model
        if level == 0:
            return m + (sqrt_cov[subj] @ z.to(device))[..., 0], rr, model
        if level == 1:
            t_off = m[:, None] + (sqrt_cov[subj][:, None] @ z.to(device))[..., 0]
            return t_off, rr[:, None].expand(b, z.shape[1], s, 3, 3), model
        return torch.zeros_like(m), rr, model


@dataclass
class Draws:
    """Where a batch's windows lie, whose offsets each gets, and (training) every random number its
    synthesis uses: drawn up front so that a pass can be positioned by drawing without synthesising."""

    starts: np.ndarray
    stops: np.ndarray
    subjects: np.ndarray
    angles: torch.Tensor | None = None  # headings (`random_heading`)
    offsets: torch.Tensor | None = None  # `_offset_draws`
    spherical: tuple | None = None  # `spherical_draws`
    drop: torch.Tensor | None = None  # `suppression_mask`


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

