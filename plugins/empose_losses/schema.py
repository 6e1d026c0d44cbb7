"""The losses' declared parameters (torch-free: `empose validate` and `describe` read them without
importing the losses). Each class sets `params = schema.NAME`; plugin.py registers the same tuple."""

from __future__ import annotations

from empose_framework.params import Param

POSE = (
    Param("form", str, "auto", "l1: padded L1, mean over the J*3 axis-angle values (LGD, §8.3); mse: "
          "masked sum of squares over joints, i.e. the original's body + root MSE terms (ResNet/RNN, "
          "§8.2); auto: what the estimator reports in Prediction.loss_form (l1 if it reports nothing)",
          choices=("auto", "l1", "mse")),
)  # fmt: skip

SHAPE = ()

SENSOR_RECONSTRUCTION = (
    Param("positions", bool, True, "include the position term"),
    Param("orientations", bool, True, "include the orientation term (flattened 3x3 matrices)"),
)

FK = (
    Param("original_final_only", bool, False, "reproduce the original's bug (docs/method.md §8.3, §13 item 8): "
          "score only the final LGD estimate, which the original counts once per estimate"),
)  # fmt: skip
