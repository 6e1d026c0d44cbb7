"""The frame-wise residual MLP baseline ("ResNet", reference §7.3)."""

from __future__ import annotations

from torch import nn

from empose_framework.params import Param
from empose_estimators.base import IO_PARAMS, SHAPE_AVERAGE_PARAMS, EMPoseEstimator, average_over_time
from empose_estimators.layers import MLP, ResidualBlock

SHAPE_HEAD_PARAMS = (
    Param("estimate_shape", bool, False, "add the shape head (an MLP without BatchNorm on the last features)"),
    Param("shape_hidden", int, 256, "hidden width of the shape head (2 dense blocks)", min=1),
    Param("hidden_dropout", float, 0.0, "dropout inside the shape head", min=0, max=1),
    Param("skip_connections", bool, False, "residual skip around each dense block of the shape head"),
)


def shape_head(features: int, n_betas: int, hidden: int, dropout: float, skip: bool) -> MLP:
    """The ResNet/RNN shape head: MLP(features -> K, 2 blocks, no BatchNorm)."""
    return MLP(features, n_betas, int(hidden), 2, dropout, skip, batch_norm=False)


class ResNet(EMPoseEstimator):
    """Frame-wise residual MLP: Linear(in, H) -> residual blocks ReLU(Linear(x) + x) -> Linear(H, 3J).

    Causal (each frame on its own), so it streams; `forward` and `step` give identical frames."""

    params = (
        Param("hidden", int, 1024, "width H of every layer", min=1),
        Param("blocks", int, 2, "number of residual blocks", min=1),
        *SHAPE_HEAD_PARAMS,
        *SHAPE_AVERAGE_PARAMS,
        *IO_PARAMS,
    )
    loss_form = "mse"

    def __init__(self, hidden=1024, blocks=2, estimate_shape=False, shape_hidden=256, hidden_dropout=0.0,
                 skip_connections=False, average_shape=False, causal_shape_average=False, use_pos=True,
                 use_ori=True, *, body_model, sensor_names):  # fmt: skip
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
