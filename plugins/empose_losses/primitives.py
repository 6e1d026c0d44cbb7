"""The original's loss primitives (reference §8.1), on (B, T, ...) tensors of zero-padded sequences.

Each reduces to a per-frame value, sums the frames inside the true length `seq_len` (and inside
`mask`, where given), divides by the true length and averages over the batch:
loss = mean_n [ (1/L_n) sum_f valid(n, f) * value(n, f) ].
"""

from __future__ import annotations

import torch


def _per_sequence_mean(value: torch.Tensor, seq_len: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """value (B, T) -> mean_n (1/L_n) sum_f [f < L_n] * mask * value."""
    t = value.shape[1]
    seq_len = seq_len.to(value.device)
    keep = torch.arange(t, device=value.device)[None, :] < seq_len[:, None]
    if mask is not None:
        keep = keep & mask.to(value.device)
    # where(), not a product: a NaN in a dropped frame must not poison the sum
    total = torch.where(keep, value, torch.zeros_like(value)).sum(dim=1)
    return (total / seq_len.to(value.dtype)).mean()


def padded_l1(pred: torch.Tensor, target: torch.Tensor, seq_len: torch.Tensor) -> torch.Tensor:
    """"padded_loss": mean over the last dimension of |pred - target|, no sensor mask. (B, T, d)."""
    return _per_sequence_mean((pred - target).abs().mean(dim=-1), seq_len, None)


def masked_mse(pred: torch.Tensor, target: torch.Tensor, seq_len: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """"normal_mse": sum of squared differences over every non-(B, T) dimension, masked frames."""
    return _per_sequence_mean((pred - target).square().flatten(2).sum(dim=-1), seq_len, mask)


def sum_of_norms(pred: torch.Tensor, target: torch.Tensor, seq_len: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """"reconstruction_loss": sum over items k of the Euclidean norm over d. (B, T, K, d)."""
    return _per_sequence_mean(torch.linalg.vector_norm(pred - target, dim=-1).sum(dim=-1), seq_len, mask)
