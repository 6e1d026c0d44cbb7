"""`empose_recordings`: the real EM-POSE recordings (docs/method.md §5), normalised as the test transform.

Layout (§5.1): `<root>/<subject>_<task>_M_clean.npz` per sequence (read non-recursively, sorted by
file name), `<root>/<subject>_offsets.npz` per subject (used by `virtual_em`, not here: every
sequence file carries its own offsets), and `<root>/hold_out/` for the hold-out subject. All files
are read and checked when the source is built, so bad data fails before training starts.

Normalisation (§5.4), per sequence or window, with R0 the first frame's ground-truth root rotation
and t_f the ground-truth translation: `original` (default, reproduces the published numbers)
s' = R0^T (s - t_f), S' = R0^T S; `consistent` s' = R0^T (s - t_f - J0) + J0, with J0 the
shape-dependent rest pelvis position, which puts the sensors exactly on the normalised ground-truth
body (the original is off by (R0^T - I) J0). Ground truth: root_f := R0^T root_f, translation 0.

Validity: `valid` carries the file's `sensor_masks` for the selected sensors; `frame_valid` is "all
12 sensors valid", so a 6-sensor selection still drops the frames the original drops (§13 item 6).
Readings of invalid sensors are set to 0 and stay marked invalid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from empose_em import schema
from empose_em.batching import batch_order, crop_starts, normalise_root, pad_stack
from empose_em.npzio import check_numeric, check_rotations, check_shape, expand_env, open_npz, read_key
from empose_em.sensor_sets import EM12, resolve_sensors
from empose_framework.errors import DataError, EmposeError
from empose_framework.interfaces import Batch, BodyModel, BodyPose, SensorFrames, SensorOffsets, SensorSource, fit_betas
from empose_framework.kinematics import inside_mask

WHERE = "sensor source 'empose_recordings'"
SEQ_SUFFIX = "_clean.npz"


class EMPoseRecordings(SensorSource):
    """The real EM-POSE recordings (*_clean.npz), normalised as the original test transform."""

    params = schema.EMPOSE_RECORDINGS
    seekable = True  # `windows(start=k)`; all randomness from the pass's own generator

    def __init__(
        self,
        *,
        path: str,
        subjects: list | None,
        hold_out: bool,
        sensors,
        nonfinite: str,
        normalisation: str,
        body_model: BodyModel,
    ):
        self.body_model = body_model
        self.nonfinite, self.normalisation = nonfinite, normalisation
        self.sensor_names = resolve_sensors(sensors, EM12, WHERE)
        self._idx = [EM12.index(n) for n in self.sensor_names]
        if body_model.n_pose_joints != 22:
            raise EmposeError(
                f"{WHERE}: the recordings' ground truth is the 22 SMPL-H body joints, but the body model estimates "
                f"{body_model.n_pose_joints} pose joints; use an SMPL-H-compatible body model (smplh or embedded)."
            )

        root, env = expand_env(path, WHERE)
        folder = root / "hold_out" if hold_out else root
        hint = f" (from the environment variable {', '.join(env)})" if env else ""
        if not folder.is_dir():
            raise DataError(
                f"{WHERE}: the folder {folder}{hint} does not exist. Set 'path' (or the environment variable "
                f"EM_DATA_REAL) to the EM-POSE data root that holds the *{SEQ_SUFFIX} files"
                + (" and the hold_out/ folder." if hold_out else ".")
            )
        files = sorted(p for p in folder.iterdir() if p.name.endswith(SEQ_SUFFIX) and p.is_file())
        if not files:
            raise DataError(f"{WHERE}: no *{SEQ_SUFFIX} sequence files in {folder}{hint}.")
        available = sorted({p.name.split("_")[0] for p in files})
        if subjects is not None:
            wanted = [_subject_id(s, available) for s in subjects]
            files = [p for p in files if p.name.split("_")[0] in wanted]
        self.files = files
        self._seqs = [self._read(p) for p in files]

    # ------------------------------------------------------------------ reading
    def _read(self, path: Path) -> dict:
        f = open_npz(path)
        with f:
            seq_id = _read_id(f, path)
            raw = {}
            for key in ("sensor_pos", "sensor_oris", "sensor_masks", "smpl_poses", "smpl_shape", "smpl_trans",
                        "offset_means", "offset_r"):  # fmt: skip
                raw[key] = read_key(f, key, path)
        check_shape(raw["smpl_poses"], (None, 66), "smpl_poses", path)
        n = raw["smpl_poses"].shape[0]
        if n == 0:
            raise DataError(f"{path}: sequence '{seq_id}' has no frames.")
        for key, width in (("sensor_pos", 36), ("sensor_oris", 108)):
            if raw[key].shape[:1] != (n,) or raw[key].size != n * width:
                raise DataError(
                    f"{path}: key '{key}' has shape {raw[key].shape}, expected {n} frames of 12 sensors "
                    f"reshapeable to ({n}, {width}) (docs/method.md §5.2)."
                )
        check_shape(raw["sensor_masks"], (n, 12), "sensor_masks", path)
        check_shape(raw["smpl_shape"], (10,), "smpl_shape", path)
        check_shape(raw["smpl_trans"], (n, 3), "smpl_trans", path)
        check_shape(raw["offset_means"], (12, 3), "offset_means", path)
        check_shape(raw["offset_r"], (12, 3, 3), "offset_r", path)
        mask = raw["sensor_masks"]
        if mask.dtype != bool:
            if not (np.issubdtype(mask.dtype, np.integer) and np.isin(mask, (0, 1)).all()):
                raise DataError(f"{path}: key 'sensor_masks' has dtype {mask.dtype}, expected bool (True = valid).")
            mask = mask.astype(bool)
        a = {k: check_numeric(raw[k], k, path) for k in raw if k != "sensor_masks"}
        pos, ori = a["sensor_pos"].reshape(n, 12, 3), a["sensor_oris"].reshape(n, 12, 3, 3)
        for key in ("smpl_poses", "smpl_trans", "smpl_shape", "offset_means", "offset_r"):
            _check_finite_frames(a[key], key, path, seq_id)
        check_rotations(a["offset_r"], "offset_r", path)

        bad = ~(np.isfinite(pos).all(-1) & np.isfinite(ori).all((-1, -2))) & mask
        if bad.any():
            f0, s0 = (int(i[0]) for i in np.nonzero(bad))
            if self.nonfinite == "error":
                raise DataError(
                    f"{path}: sequence '{seq_id}' has NaN or inf in a reading marked valid, first at frame {f0} "
                    f"(sensor {s0}, '{EM12[s0]}'; {int(bad.sum())} readings in all). Repair the file, or set "
                    "'nonfinite: mask' to treat such readings as missing sensors."
                )
            mask = mask & ~bad
        pos = np.where(mask[..., None], pos, 0.0)
        ori = np.where(mask[..., None, None], ori, 0.0)
        return {
            "id": seq_id, "pos": pos.astype(np.float32), "ori": ori.astype(np.float32), "valid": mask,
            "pose": a["smpl_poses"].reshape(n, 22, 3).astype(np.float32), "betas": a["smpl_shape"].astype(np.float32),
            "trans": a["smpl_trans"].astype(np.float32), "offset_t": a["offset_means"].astype(np.float32),
            "offset_r": a["offset_r"].astype(np.float32),
        }  # fmt: skip

    # ------------------------------------------------------------------ iteration
    def __len__(self) -> int:
        return len(self._seqs)

    def windows(self, batch_size: int, window: int, *, train: bool, seed: int, device="cpu", start: int = 0
                ) -> Iterator[Batch]:  # fmt: skip
        """Windows normalised on their own first frame (like synthetic training windows); `start=k` skips
        the first k batches, drawing only their crops."""
        gen = torch.Generator().manual_seed(int(seed)) if train else None
        for k, idx in enumerate(batch_order(len(self._seqs), batch_size, gen)):
            seqs = [self._seqs[int(i)] for i in idx]
            lengths = np.array([len(s["pose"]) for s in seqs])
            starts = crop_starts(lengths, window, train, gen)
            if k >= start:
                yield self._batch(seqs, starts, np.minimum(starts + window, lengths), device)

    def sequences(self, device="cpu") -> Iterator[Batch]:
        for s in self._seqs:
            yield self._batch([s], np.array([0]), np.array([len(s["pose"])]), device)

    @torch.no_grad()
    def _batch(self, seqs: list[dict], starts, stops, device) -> Batch:
        bm = self.body_model.to(device)
        t = int((stops - starts).max())

        def stack(key):
            return torch.as_tensor(pad_stack([s[key][a:b] for s, a, b in zip(seqs, starts, stops)], t), device=device)

        seq_len = torch.as_tensor(stops - starts, device=device)
        inside = inside_mask(seq_len, t)
        pose_raw, trans, pos, ori = stack("pose"), stack("trans"), stack("pos"), stack("ori")
        valid12 = (stack("valid") > 0.5) & inside[:, :, None]
        betas = torch.as_tensor(np.stack([fit_betas(s["betas"], bm.n_betas) for s in seqs]), device=device)

        pose, r0 = normalise_root(pose_raw, inside)  # r0: first-frame root rotation (B, 3, 3)
        r0t = r0.transpose(-1, -2)[:, None, None]  # (B, 1, 1, 3, 3)
        rel = pos - trans[:, :, None]
        if self.normalisation == "consistent":
            rest = BodyPose(torch.zeros_like(pose[:, :1]), betas, torch.zeros_like(trans[:, :1]))
            j0 = bm.forward(rest, vertices=False).joints[:, 0, 0][:, None, None]  # (B, 1, 1, 3)
            pos_n = (r0t @ (rel - j0)[..., None])[..., 0] + j0
        else:
            pos_n = (r0t @ rel[..., None])[..., 0]
        ori_n = r0t @ ori
        pos_n = torch.where(valid12[..., None], pos_n, torch.zeros_like(pos_n))
        ori_n = torch.where(valid12[..., None, None], ori_n, torch.zeros_like(ori_n))

        idx = self._idx
        sensors = SensorFrames(pos_n[:, :, idx], ori_n[:, :, idx], valid12[:, :, idx], self.sensor_names)
        offsets = SensorOffsets(
            torch.as_tensor(np.stack([s["offset_t"][idx] for s in seqs]), device=device),
            torch.as_tensor(np.stack([s["offset_r"][idx] for s in seqs]), device=device),
        )
        target = BodyPose(pose, betas, torch.zeros_like(trans))
        ids = [s["id"] for s in seqs]
        return Batch(sensors, target, seq_len, ids, offsets, frame_valid=valid12.all(dim=-1))


def _subject_id(value, available: list[str]) -> str:
    """A subject id from the recipe. Ints are accepted because YAML reads 0402 as a number: YAML 1.1
    (PyYAML) even reads it as octal (258), so both the decimal and the octal spelling are tried."""
    if isinstance(value, str):
        candidates = [value]
    else:
        candidates = [str(value).zfill(4), format(value, "o").zfill(4)]
    hits = [c for c in dict.fromkeys(candidates) if c in available]
    if len(hits) != 1:
        raise DataError(
            f"{WHERE}: subject {value!r} not found; the data holds subjects {', '.join(available)}. "
            "Write subject ids as quoted strings in YAML (subjects: ['0402', '0526'])."
        )
    return hits[0]


def _read_id(f, path: Path) -> str:
    """The scalar `id` string; stored either as a numpy string or as a pickled object (read through the
    restricted unpickler, which admits plain data only, so the file cannot run code)."""
    try:
        arr = read_key(f, "id", path)
    except DataError as exc:
        if "Object arrays cannot be loaded" not in str(exc):
            raise
        import pickle

        from empose_framework import safe_pickle

        try:
            arr = safe_pickle.npz_object_array(path, "id")
        except (pickle.UnpicklingError, EOFError, ValueError, KeyError, OSError) as err:
            raise DataError(f"{path}: key 'id' is a pickled object that is not a plain string ({err}); it was not "
                            "loaded, since that could run code. Store the id as a numpy string.") from None
    value = arr.item() if arr.size == 1 else None
    if isinstance(value, bytes):
        value = value.decode()
    if not isinstance(value, str):
        raise DataError(f"{path}: key 'id' must be a scalar string (the sequence name), got {arr!r}.")
    return value


def _check_finite_frames(arr: np.ndarray, key: str, path: Path, seq_id: str) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        first = tuple(int(i[0]) for i in np.nonzero(bad))
        where = f"frame {first[0]}" if key in ("smpl_poses", "smpl_trans") else f"index {first}"
        raise DataError(
            f"{path}: sequence '{seq_id}' has NaN or inf in the ground truth '{key}' at {where}. Ground truth "
            "cannot be masked; repair or remove the file."
        )
