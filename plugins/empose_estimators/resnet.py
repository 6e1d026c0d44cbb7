"""The frame-wise residual MLP baseline ("ResNet", docs/method.md §7.3)."""

from __future__ import annotations

from torch import nn

from empose_estimators import schema
from empose_estimators.base import EMPoseEstimator, average_over_time
from empose_estimators.layers import MLP, ResidualBlock


def shape_head(features: int, n_betas: int, hidden: int, dropout: float, skip: bool) -> MLP:
    """The ResNet/RNN shape head: MLP(features -> K, 2 blocks, no BatchNorm)."""
    return MLP(features, n_betas, int(hidden), 2, dropout, skip, batch_norm=False)


class ResNet(EMPoseEstimator):
    """Frame-wise residual MLP: Linear(in, H) -> residual blocks ReLU(Linear(x) + x) -> Linear(H, 3J).

    Causal (each frame on its own), so it streams; `forward` and `step` give identical frames."""

    params = schema.RESNET
    loss_form = "mse"

    def __init__(self, *, hidden, blocks, estimate_shape, shape_hidden, hidden_dropout, skip_connections,
                 average_shape, causal_shape_average, use_pos, use_ori, body_model, sensor_names):  # fmt: skip
        super().__init__()
        self._init_io(body_model, sensor_names, use_pos, use_ori)
        self.from_input = nn.Linear(self.input_size, hidden)
        self.blocks = nn.ModuleList(ResidualBlock(hidden) for _ in range(blocks))
        self.to_pose = nn.Linear(hidden, self.pose_size)
        if estimate_shape:
            self.to_shape = shape_head(hidden, self.n_betas, shape_hidden, hidden_dropout, skip_connections)
        self.estimate_shape = estimate_shape
        self.average_shape, self.causal_shape_average = average_shape, causal_shape_average

    def _run(self, inp, state, padded):
        h = self.from_input(inp.x)
        for block in self.blocks:
            h = block(h)
        betas, avg = None, None
        if self.estimate_shape:
            betas = self.to_shape(h)
            if self.average_shape:
                betas, avg = average_over_time(betas, self.causal_shape_average, (state or {}).get("avg"))
        return self._prediction(inp, self.to_pose(h), betas), {"avg": avg}
