"""virtual_em on the real `embedded` body model (its fast sparse sensor path): sensor frames checked
against the §4 frame rule applied in numpy to the model's fully skinned mesh, offsets as §4.5, and
per-frame offset draws (level 1) through the model's broadcasting."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from em_doubles import ListMotions, normalise_reference, random_motion, random_offsets, reference_sensors, write_offsets
from empose_em.sensor_sets import EM12
from empose_em.virtual import VirtualEM
from empose_framework.interfaces import BodyPose

model = pytest.importorskip("empose_smplh.model", reason="the empose_smplh plugin (embedded body) is not installed")


@pytest.fixture(scope="module")
def body():
    return model.EmbeddedBody()


@pytest.fixture(scope="module")
def motions():
    rng = np.random.default_rng(21)
    return ListMotions([random_motion(rng, n, n_betas=10, name=f"e{i}") for i, n in enumerate((14, 9))])


def test_sparse_synthesis_matches_full_mesh_reference(body, motions, tmp_path):
    rng = np.random.default_rng(2)
    means, covs, r = random_offsets(rng)
    write_offsets(tmp_path / "S1_offsets.npz", means, covs, r)
    src = VirtualEM(motions=motions, offsets=str(tmp_path), body_model=body)
    for b, motion in zip(src.sequences(), motions.motions):
        pose = normalise_reference(motion.pose)
        full = body.forward(BodyPose(torch.as_tensor(pose, dtype=torch.float32), torch.as_tensor(motion.betas)))
        pos, ori = reference_sensors(body, full.vertices.double().numpy(), EM12, means, r)
        np.testing.assert_allclose(b.sensors.pos[0].numpy(), pos, atol=5e-5)
        np.testing.assert_allclose(b.sensors.ori[0].numpy(), ori, atol=5e-4)


def test_per_frame_offset_draws_on_the_real_model(body, motions):
    src = VirtualEM(motions=motions, sensors="em6", offset_noise=1, body_model=body)
    b = next(src.windows(2, 8, train=True, seed=3))
    p, rot = body.sensor_frames(b.target, b.sensors.names)
    t = (rot.transpose(-1, -2) @ (b.sensors.pos - p)[..., None])[..., 0]
    dev = t - b.offsets.t[:, None]
    assert dev.abs().max() < 0.05 and (dev[:, 1:] - dev[:, :1]).abs().max() > 1e-4  # drawn per frame
    torch.testing.assert_close(rot.transpose(-1, -2) @ b.sensors.ori, b.offsets.r[:, None].expand_as(rot), atol=1e-4, rtol=0)
