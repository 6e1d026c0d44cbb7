"""The original's loss primitives (docs/method.md §8.1), on (B, T, ...) tensors of zero-padded sequences: used by
the training losses and by estimators that measure their own fit (LGD's gradient input), so they live in the core.

Each reduces to a per-frame value, sums the frames inside the true length `seq_len` (and inside
`mask`, where given), divides by the true length and averages over the batch:
loss = mean_n [ (1/L_n) sum_f valid(n, f) * value(n, f) ].
"""

from __future__ import annotations

import torch

from empose_framework.kinematics import inside_mask


def _kept(diff: torch.Tensor, seq_len: torch.Tensor, mask: torch.Tensor | None):
    """(keep (B, T) bool, diff with dropped frames zeroed). Zeroing the difference, not the per-frame
    value, keeps a NaN/inf in a dropped frame out of the loss and out of its gradient."""
    keep = inside_mask(seq_len, diff.shape[1], diff.device)
    if mask is not None:
        keep = keep & mask.to(diff.device)
    wide = keep.reshape(keep.shape + (1,) * (diff.dim() - 2))
    return keep, torch.where(wide, diff, torch.zeros_like(diff))


def _per_sequence_mean(value: torch.Tensor, keep: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
    """value (B, T) -> mean_n (1/L_n) sum_f keep * value."""
    total = (value * keep).sum(dim=1)
    return (total / seq_len.to(value.device, value.dtype)).mean()


def padded_l1(pred: torch.Tensor, target: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
    """"padded_loss": mean over the last dimension of |pred - target|, no sensor mask. (B, T, d)."""
    keep, diff = _kept(pred - target, seq_len, None)
    return _per_sequence_mean(diff.abs().mean(dim=-1), keep, seq_len)


def masked_mse(pred: torch.Tensor, target: torch.Tensor, seq_len: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """"normal_mse": sum of squared differences over every non-(B, T) dimension, masked frames."""
    keep, diff = _kept(pred - target, seq_len, mask)
    return _per_sequence_mean(diff.square().flatten(2).sum(dim=-1), keep, seq_len)


def sum_of_norms(pred: torch.Tensor, target: torch.Tensor, seq_len: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """"reconstruction_loss": sum over items k of the Euclidean norm over d. (B, T, K, d)."""
    keep, diff = _kept(pred - target, seq_len, mask)
    return _per_sequence_mean(torch.linalg.vector_norm(diff, dim=-1).sum(dim=-1), keep, seq_len)
