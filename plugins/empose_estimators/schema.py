"""The estimators' declared parameters (torch-free: `empose validate` and `describe` read them without
importing the networks). Each class sets `params = schema.NAME`; plugin.py registers the same tuple."""

from __future__ import annotations

from empose_framework.params import Param

IO_PARAMS = (
    Param("use_pos", bool, True, "feed sensor positions (3 per sensor) to the network"),
    Param("use_ori", bool, True, "feed sensor orientations (9 per sensor, rotation matrices row-major)"),
)

SHAPE_AVERAGE_PARAMS = (
    Param("average_shape", bool, False, "one shape per window: average the per-frame shapes over the window's "
          "frames (padding included, as the original)"),
    Param("causal_shape_average", bool, False, "with average_shape: average over the frames seen so far instead "
          "of the whole window, so that windowed and streamed outputs agree frame by frame"),
)  # fmt: skip

SHAPE_HEAD_PARAMS = (
    Param("estimate_shape", bool, False, "add the shape head (an MLP without BatchNorm on the last features)"),
    Param("shape_hidden", int, 256, "hidden width of the shape head (2 dense blocks)", min=1),
    Param("hidden_dropout", float, 0.0, "dropout inside the shape head", min=0, max=1),
    Param("skip_connections", bool, False, "residual skip around each dense block of the shape head"),
)

RESNET = (
    Param("hidden", int, 1024, "width H of every layer", min=1),
    Param("blocks", int, 2, "number of residual blocks", min=1),
    *SHAPE_HEAD_PARAMS,
    *SHAPE_AVERAGE_PARAMS,
    *IO_PARAMS,
)

RNN = (
    Param("hidden", int, 1024, "LSTM hidden size H (per direction)", min=1),
    Param("layers", int, 2, "number of stacked LSTM layers", min=1),
    Param("bidirectional", bool, False, "bidirectional LSTM (the paper's BiRNN; offline only)"),
    Param("dropout", float, 0.0, "dropout on the LSTM's input", min=0, max=1),
    Param("learn_init_state", bool, False, "learn the initial LSTM state from the first frame's input "
          "(the original's buggy variant is fixed, see layers.RNNLayer)"),
    *SHAPE_HEAD_PARAMS,
    *SHAPE_AVERAGE_PARAMS,
    *IO_PARAMS,
)  # fmt: skip

LGD = (
    Param("hidden", int, 1024, "width H of the MLPs (update nets, and initialiser without rnn_init)", min=1),
    Param("blocks", int, 2, "dense blocks per MLP (2 Linear layers each)", min=1),
    Param("iterations", int, 4, "number of update steps K", min=1),
    Param("step_size", float, 0.1, "step size alpha of every update"),
    Param("use_gradient", bool, False, "feed dE/dtheta and dE/dbeta of the sensor-reconstruction error "
          "to the update nets"),
    *SHAPE_AVERAGE_PARAMS,
    Param("rnn_init", bool, False, "initialise with an LSTM and two Linear heads (LGD RNN) instead of MLPs"),
    Param("rnn_hidden", int, 512, "hidden size of the initialiser LSTM", min=1),
    Param("rnn_layers", int, 2, "layers of the initialiser LSTM", min=1),
    Param("dropout", float, 0.0, "dropout on the initialiser LSTM's input", min=0, max=1),
    Param("hidden_dropout", float, 0.0, "dropout inside the MLPs", min=0, max=1),
    Param("batch_norm", bool, True, "BatchNorm in the MLPs"),
    Param("skip_connections", bool, False, "residual skip around each dense block of the MLPs"),
    *IO_PARAMS,
    Param("original_gradient_leak", bool, False, "reproduce the original's training side effect: add the "
          "reconstruction-error gradients of the intermediate estimates to the weights' gradients "
          "(docs/method.md §8.3; needed to retrain the published models bit-faithfully)"),
)  # fmt: skip
