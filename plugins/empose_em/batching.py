"""Window sampling, padding and root normalisation shared by both sensor sources (§5.4, §6.2, §6.3)."""

from __future__ import annotations

import numpy as np
import torch

from empose_framework.geometry import aa_to_rotmat, rotmat_to_aa


def batch_order(n: int, batch_size: int, gen: torch.Generator | None):
    """Index arrays of one pass over n sequences in batches: shuffled by `gen` when training, in
    stored order otherwise (so validation sees the same batches every time)."""
    order = torch.randperm(n, generator=gen).numpy() if gen is not None else np.arange(n)
    for k in range(0, n, batch_size):
        yield order[k : k + batch_size]


def crop_starts(lengths: np.ndarray, window: int, train: bool, gen: torch.Generator | None) -> np.ndarray:
    """Start frame per sequence (§6.2): uniform in {0..F-W} when training, F//2 - W//2 otherwise;
    0 for sequences not longer than the window (kept whole)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if train:
        u = torch.rand(len(lengths), generator=gen, dtype=torch.float64).numpy()
        starts = np.floor(u * (lengths - window + 1)).astype(np.int64)
    else:
        starts = lengths // 2 - window // 2
    return np.where(lengths > window, starts, 0)


def pad_stack(arrays: list[np.ndarray], t: int) -> np.ndarray:
    """Stack (T_i, ...) arrays into (B, t, ...) float32, zero-padded at the end."""
    out = np.zeros((len(arrays), t) + arrays[0].shape[1:], dtype=np.float32)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
    return out


def normalise_root(pose: torch.Tensor, inside: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Make the first frame's root orientation the identity (§6.3 step 1): root_f := R0^T root_f.
    Returns the new pose (padding frames zero) and R0 (B, 3, 3)."""
    root = aa_to_rotmat(pose[:, :, 0])  # (B, T, 3, 3)
    r0 = root[:, 0]
    new_root = rotmat_to_aa(r0.transpose(-1, -2)[:, None] @ root)
    pose = torch.cat([new_root[:, :, None], pose[:, :, 1:]], dim=2)
    return pose * inside[:, :, None, None], r0
