"""Sensor-to-skin offsets per subject (docs/method.md §4.5, §5.3, §6.3).

An `OffsetBank` holds, for N subjects and a list of sites, the mean translation `t` (in the skin
frame of §4, metres), its covariance and the rotation offset `r`. A synthesised sensor is
`p + R t` with orientation `R r` (R = skin frame at the site). Three origins:

- measured files: a folder of `<subject>_offsets.npz` (non-recursive, so `hold_out/` is never mixed
  in) or one such file; arrays are in the 12-sensor S order and matched to sites by name;
- `embedded`: four deterministic built-in "embedded subjects" with plausible offsets for any site
  (1-2 cm outward along the normal, up to 5 mm sideways, up to 10 degrees of rotation, a few mm of
  spread), so offset-noise levels mean something without licensed data;
- none: zero translation, identity rotation, zero covariance.

A site that an offsets file does not cover (a custom site outside the 12) gets zero offsets.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from empose_em.npzio import check_finite, check_numeric, check_rotations, check_shape, open_npz, read_key
from empose_em.sensor_sets import EM12
from empose_framework.errors import DataError

EMBEDDED_SUBJECTS = ("embedded_1", "embedded_2", "embedded_3", "embedded_4")
SUFFIX = "_offsets.npz"


@dataclass
class OffsetBank:
    subjects: tuple[str, ...]
    sites: tuple[str, ...]
    means: np.ndarray  # (N, S, 3)
    covs: np.ndarray  # (N, S, 3, 3)
    r: np.ndarray  # (N, S, 3, 3)
    origin: str
    _cache: dict = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.subjects)

    def select(self, sites) -> "OffsetBank":
        """The bank restricted/reordered to `sites`; sites it does not know get zero offsets."""
        n = len(self.subjects)
        means = np.zeros((n, len(sites), 3))
        covs = np.zeros((n, len(sites), 3, 3))
        r = np.tile(np.eye(3), (n, len(sites), 1, 1))
        for j, name in enumerate(sites):
            if name in self.sites:
                i = self.sites.index(name)
                means[:, j], covs[:, j], r[:, j] = self.means[:, i], self.covs[:, i], self.r[:, i]
        return OffsetBank(self.subjects, tuple(sites), means, covs, r, self.origin)

    def tensors(self, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """float32 (means, cov square roots L with L L^T = cov, r) on `device`, cached."""
        key = str(device)
        if key not in self._cache:
            cov = 0.5 * (self.covs + np.swapaxes(self.covs, -1, -2))
            w, q = np.linalg.eigh(cov)  # robust for singular (e.g. zero) covariances, unlike Cholesky
            sqrt_cov = q * np.sqrt(np.clip(w, 0.0, None))[..., None, :]
            self._cache[key] = tuple(
                torch.as_tensor(a, dtype=torch.float32, device=device) for a in (self.means, sqrt_cov, self.r)
            )
        return self._cache[key]


def zero_bank(sites) -> OffsetBank:
    s = len(sites)
    return OffsetBank(("none",), tuple(sites), np.zeros((1, s, 3)), np.zeros((1, s, 3, 3)),
                      np.tile(np.eye(3), (1, s, 1, 1)), "zero offsets")  # fmt: skip


def _axis_angle_matrix(axis: np.ndarray, angle: float) -> np.ndarray:
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def embedded_bank(sites) -> OffsetBank:
    """Deterministic plausible offsets for any site name (seeded by subject and site name)."""
    n, s = len(EMBEDDED_SUBJECTS), len(sites)
    means, covs, r = np.zeros((n, s, 3)), np.zeros((n, s, 3, 3)), np.zeros((n, s, 3, 3))
    for i, subject in enumerate(EMBEDDED_SUBJECTS):
        for j, site in enumerate(sites):
            rng = np.random.default_rng(zlib.crc32(f"{subject}/{site}".encode()))
            means[i, j] = [rng.uniform(-0.005, 0.005), rng.uniform(-0.005, 0.005), rng.uniform(0.010, 0.020)]
            std = np.array([rng.uniform(0.002, 0.005), rng.uniform(0.002, 0.005), rng.uniform(0.001, 0.003)])
            covs[i, j] = np.diag(std**2)
            axis = rng.normal(size=3)
            r[i, j] = _axis_angle_matrix(axis / np.linalg.norm(axis), np.deg2rad(rng.uniform(0.0, 10.0)))
    return OffsetBank(EMBEDDED_SUBJECTS, tuple(sites), means, covs, r, "embedded offsets")


def read_offsets_file(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(means (12,3), covs (12,3,3), r (12,3,3)) of one `<subject>_offsets.npz` (§5.3), checked."""
    f = open_npz(path)
    with f:
        out = {}
        for key, shape in (("means", (12, 3)), ("covs", (12, 3, 3)), ("r", (12, 3, 3)), ("vertex_ids", (12,))):
            arr = read_key(f, key, path)
            check_shape(arr, shape, key, path)
            out[key] = check_numeric(arr, key, path)
            check_finite(out[key], key, path)
    check_rotations(out["r"], "r", path)
    return out["means"], out["covs"], out["r"]


def load_bank(path: Path, where: str, env: list[str] = ()) -> OffsetBank:
    """Offsets from a folder of `<subject>_offsets.npz` files or from one such file."""
    hint = f" (from the environment variable {', '.join(env)})" if env else ""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.name.endswith(SUFFIX) and p.is_file())
        if not files:
            raise DataError(
                f"{where}: no '<subject>{SUFFIX}' files in the folder {path}{hint}. Point 'offsets' at the "
                "EM-POSE data root (which holds one offsets file per subject), at one offsets file, or use "
                "'embedded' or null."
            )
    elif path.is_file():
        files = [path]
    else:
        raise DataError(
            f"{where}: the offsets path {path}{hint} does not exist. Point 'offsets' at the EM-POSE data root, "
            "at one '<subject>_offsets.npz' file, or use 'embedded' or null."
        )
    subjects, data = [], []
    for p in files:
        subjects.append(p.name[: -len(SUFFIX)] if p.name.endswith(SUFFIX) else p.stem)
        data.append(read_offsets_file(p))
    means, covs, r = (np.stack(a) for a in zip(*data))
    return OffsetBank(tuple(subjects), EM12, means, covs, r, f"offsets from {path}")
