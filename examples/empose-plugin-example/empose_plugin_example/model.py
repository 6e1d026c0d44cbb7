"""A deliberately small estimator: one MLP applied to every frame independently."""

import torch

from empose_framework.interfaces import BodyPose, Estimator, Prediction
from empose_plugin_example import schema


class SensorMLP(Estimator):
    """Frame-wise MLP from sensor positions and orientations to pose and shape.

    Causal (it looks at one frame at a time), so it also streams. Its Prediction carries the pose only
    (no `sensors`, `iterates`, ...): the `pose` and `shape` losses train it; a loss that needs more, such
    as `sensor_reconstruction` (the sensors the network saw), refuses it with an error naming the field.
    """

    params = schema.SENSOR_MLP  # declared once; __init__ takes exactly these, keyword-only, no defaults
    streamable = True

    def __init__(self, *, hidden, layers, body_model, sensor_names):
        super().__init__()
        self.n_joints, self.n_betas = body_model.n_pose_joints, body_model.n_betas
        self.sensor_names = tuple(sensor_names)
        width_in = 12 * len(sensor_names)
        blocks = []
        for i in range(layers):
            blocks += [torch.nn.Linear(width_in if i == 0 else hidden, hidden), torch.nn.ReLU()]
        self.body = torch.nn.Sequential(*blocks)
        self.head = torch.nn.Linear(hidden, 3 * self.n_joints + self.n_betas)

    def forward(self, sensors, seq_len=None, offsets=None):
        s = sensors.select(self.sensor_names).masked(0.0)  # its own sensors, in its order; invalid readings zeroed
        x = torch.cat([s.pos.flatten(-2), s.ori.flatten(-3)], dim=-1)  # (B, T, 12 S)
        y = self.head(self.body(x))
        pose = y[..., : 3 * self.n_joints].unflatten(-1, (self.n_joints, 3))
        return Prediction(BodyPose(pose=pose, betas=y[..., 3 * self.n_joints :]))

    def reset(self):
        pass  # stateless

    def step(self, frame, offsets=None):
        return self.forward(frame)
