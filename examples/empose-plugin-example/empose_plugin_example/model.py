"""A deliberately small estimator: one MLP applied to every frame independently."""

import torch

from empose_framework.interfaces import BodyPose, Estimator, Prediction
from empose_framework.params import Param


class SensorMLP(Estimator):
    """Frame-wise MLP from sensor positions and orientations to pose and shape.

    Causal (it looks at one frame at a time), so it also streams.
    """

    params = (
        Param("hidden", int, 256, "width of the hidden layers"),
        Param("layers", int, 2, "number of hidden layers"),
    )
    streamable = True

    def __init__(self, hidden=256, layers=2, *, body_model, sensor_names):
        super().__init__()
        self.n_joints, self.n_betas = body_model.n_pose_joints, body_model.n_betas
        width_in = 12 * len(sensor_names)
        blocks = []
        for i in range(layers):
            blocks += [torch.nn.Linear(width_in if i == 0 else hidden, hidden), torch.nn.ReLU()]
        self.body = torch.nn.Sequential(*blocks)
        self.head = torch.nn.Linear(hidden, 3 * self.n_joints + self.n_betas)

    def forward(self, sensors, seq_len=None, offsets=None):
        s = sensors.masked(0.0)
        x = torch.cat([s.pos.flatten(-2), s.ori.flatten(-3)], dim=-1)  # (B, T, 12 S)
        y = self.head(self.body(x))
        pose = y[..., : 3 * self.n_joints].unflatten(-1, (self.n_joints, 3))
        return Prediction(BodyPose(pose=pose, betas=y[..., 3 * self.n_joints :]))

    def reset(self):
        pass  # stateless

    def step(self, frame, offsets=None):
        return self.forward(frame)
