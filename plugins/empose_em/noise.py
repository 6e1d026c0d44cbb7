"""Training-time sensor noise (docs/method.md §6.4), batched on the batch's device.

Fixed with respect to the original (§13 item 10): the displacement uses the standard spherical form
(|d| = rho exactly) with directions uniform on the sphere; every random number comes from the seeded
generator passed in; the reference length (right thigh to right shank site) is measured per batch
entry on its own frame 0; the affected sensors are drawn per batch entry, without replacement, among
the sensors the source actually provides. Random numbers are drawn on the CPU and then moved, so a
seed gives the same noise on every device.
"""

from __future__ import annotations

import torch


def _windows_and_sensors(seq_len: torch.Tensor, t: int, s: int, length: float, n_sensors: int, gen: torch.Generator):
    """(B, T, S) bool: for each entry, `n_sensors` distinct sensors inside one window of
    floor(length * L) frames starting uniformly in [0, L - w]."""
    b = seq_len.shape[0]
    lens = seq_len.cpu()
    w = torch.floor(length * lens.double()).long()
    start = torch.floor(torch.rand(b, generator=gen, dtype=torch.float64) * (lens - w + 1)).long()
    frames = torch.arange(t)[None, :]
    in_window = (frames >= start[:, None]) & (frames < (start + w)[:, None])  # (B, T)
    order = torch.rand(b, s, generator=gen).argsort(dim=-1)[:, :n_sensors]
    chosen = torch.zeros(b, s, dtype=torch.bool).scatter_(1, order, True)  # (B, S)
    return in_window[:, :, None] & chosen[:, None, :]


def spherical_noise(
    pos: torch.Tensor, seq_len: torch.Tensor, ref_len: torch.Tensor, strength: float, length: float,
    n_sensors: int, gen: torch.Generator,
) -> torch.Tensor:  # fmt: skip
    """Positions (B, T, S, 3) displaced, inside a window and for chosen sensors, by a vector of
    length U(0,1) * strength * ref_len / 2 in a uniformly random direction."""
    _, t, s, _ = pos.shape
    return spherical_displace(pos, spherical_draws(seq_len, t, s, length, n_sensors, gen), ref_len, strength)


def spherical_draws(seq_len: torch.Tensor, t: int, s: int, length: float, n_sensors: int, gen: torch.Generator):
    """The random numbers of `spherical_noise`, in its order: (hit (B, T, S) bool, u (B, T, S, 3))."""
    hit = _windows_and_sensors(seq_len, t, s, length, n_sensors, gen)
    return hit, torch.rand(seq_len.shape[0], t, s, 3, generator=gen)


def spherical_displace(pos: torch.Tensor, draws: tuple, ref_len: torch.Tensor, strength: float) -> torch.Tensor:
    """Apply spherical noise drawn by `spherical_draws` to positions (B, T, S, 3)."""
    hit, u = draws
    rho = u[..., 0] * strength * ref_len.cpu().float()[:, None, None] / 2
    cos_phi = 2 * u[..., 1] - 1
    sin_phi = (1 - cos_phi.square()).clamp_min(0).sqrt()
    theta = 2 * torch.pi * u[..., 2]
    d = rho[..., None] * torch.stack([sin_phi * torch.cos(theta), sin_phi * torch.sin(theta), cos_phi], -1)
    d = torch.where(hit[..., None], d, torch.zeros_like(d))
    return pos + d.to(pos.device, pos.dtype)


def suppression_mask(seq_len: torch.Tensor, t: int, s: int, length: float, n_sensors: int, gen: torch.Generator):
    """(B, T, S) bool, True where a sensor is suppressed (dropped) by suppression noise."""
    return _windows_and_sensors(seq_len, t, s, length, n_sensors, gen)
