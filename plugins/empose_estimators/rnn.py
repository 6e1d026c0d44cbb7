"""The LSTM baselines: "RNN" (unidirectional, streams) and "BiRNN" (offline only), docs/method.md §7.4."""

from __future__ import annotations

from torch import nn

from empose_estimators import schema
from empose_estimators.base import EMPoseEstimator, average_over_time
from empose_estimators.layers import RNNLayer
from empose_estimators.resnet import shape_head


class RNN(EMPoseEstimator):
    """LSTM over the window -> Linear(directions*H, 3J) per frame; `bidirectional: true` is the BiRNN.

    The unidirectional RNN streams with its LSTM state carried; the BiRNN looks at future frames and
    refuses to stream."""

    params = schema.RNN
    loss_form = "mse"

    def __init__(self, *, hidden, layers, bidirectional, dropout, learn_init_state, estimate_shape, shape_hidden,
                 hidden_dropout, skip_connections, average_shape, causal_shape_average, use_pos, use_ori, body_model,
                 sensor_names):  # fmt: skip
        super().__init__()
        self._init_io(body_model, sensor_names, use_pos, use_ori)
        self.rnn = RNNLayer(self.input_size, hidden, layers, bidirectional, dropout, learn_init_state)
        self.to_pose = nn.Linear(self.rnn.output_size, self.pose_size)
        if estimate_shape:
            self.to_shape = shape_head(self.rnn.output_size, self.n_betas, shape_hidden, hidden_dropout,
                                       skip_connections)  # fmt: skip
        self.estimate_shape = estimate_shape
        self.average_shape, self.causal_shape_average = average_shape, causal_shape_average
        self.bidirectional = bidirectional
        self.streamable = not bidirectional

    def reset(self) -> None:
        if self.bidirectional:
            self._refuse_stream()
        super().reset()

    def step(self, frame, offsets=None):
        if self.bidirectional:
            self._refuse_stream()
        return super().step(frame, offsets)

    def _run(self, inp, state, padded):
        state = state or {}
        h, rnn_state = self.rnn(inp.x, inp.seq_len if padded else None, state.get("rnn"))
        betas, avg = None, None
        if self.estimate_shape:
            betas = self.to_shape(h)
            if self.average_shape:
                betas, avg = average_over_time(betas, self.causal_shape_average, state.get("avg"))
        return self._prediction(inp, self.to_pose(h), betas), {"rnn": rnn_state, "avg": avg}
