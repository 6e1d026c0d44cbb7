"""The original's loss primitives (docs/method.md §8.1) against straightforward numpy loops."""

import numpy as np
import torch

from _estimators_testkit import numpy_sum_of_norms
from empose_framework.primitives import masked_mse, padded_l1, sum_of_norms

rng = np.random.default_rng(0)
B, T = 3, 6
SEQ = np.array([6, 4, 1])
MASK = rng.random((B, T)) > 0.3


def per_sequence(per_frame, keep_extra=None):
    total = 0.0
    for n in range(B):
        keep = np.arange(T) < SEQ[n]
        if keep_extra is not None:
            keep &= keep_extra[n]
        total += per_frame[n][keep].sum() / SEQ[n]
    return total / B


def t(x):
    return torch.as_tensor(x, dtype=torch.float64)


def test_padded_l1_is_mean_abs_over_last_dim_without_sensor_mask():
    a, b = rng.normal(size=(B, T, 5)), rng.normal(size=(B, T, 5))
    expected = per_sequence(np.abs(a - b).mean(-1))
    assert abs(padded_l1(t(a), t(b), torch.as_tensor(SEQ)).item() - expected) < 1e-12


def test_masked_mse_sums_squares_over_joints_and_dims():
    a, b = rng.normal(size=(B, T, 4, 3)), rng.normal(size=(B, T, 4, 3))
    expected = per_sequence(((a - b) ** 2).sum((-1, -2)), MASK)
    assert abs(masked_mse(t(a), t(b), torch.as_tensor(SEQ), torch.as_tensor(MASK)).item() - expected) < 1e-12


def test_sum_of_norms_sums_euclidean_distances_over_items():
    a, b = rng.normal(size=(B, T, 7, 9)), rng.normal(size=(B, T, 7, 9))
    expected = numpy_sum_of_norms(a, b, SEQ, MASK)
    assert abs(sum_of_norms(t(a), t(b), torch.as_tensor(SEQ), torch.as_tensor(MASK)).item() - expected) < 1e-12


def test_dropped_frames_cannot_poison_the_loss_or_its_gradient():
    a = t(rng.normal(size=(B, T, 2, 3))).requires_grad_(True)
    b = t(rng.normal(size=(B, T, 2, 3)))
    b[0, 5] = float("nan")  # a frame outside the mask
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[0, 5] = False
    loss = sum_of_norms(a, b, torch.as_tensor(SEQ), mask)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(a.grad).all()


def test_zero_distance_has_a_finite_gradient():
    a = t(np.ones((1, 2, 3, 3))).requires_grad_(True)
    sum_of_norms(a, a.detach().clone(), torch.tensor([2]), None).backward()
    assert torch.isfinite(a.grad).all()
