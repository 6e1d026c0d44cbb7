"""Registers the metrics; kept free of torch so that `empose list-plugins` stays fast."""

from empose_framework import hookimpl
from empose_metrics import schema


@hookimpl
def register_metrics(register):
    register("mpjpe", "empose_metrics.metrics:MPJPE", "Mean per-joint position error [mm], no alignment (EM-POSE §9)",
             params=schema.MPJPE)
    register("pa_mpjpe", "empose_metrics.metrics:PAMPJPE", "Per-joint position error after similarity Procrustes with scale [mm]",
             params=schema.PA_MPJPE)
    register("mpjae", "empose_metrics.metrics:MPJAE", "Per-joint angle error of pelvis-relative global orientations [deg]",
             params=schema.MPJAE)
    register("jitter", "empose_metrics.metrics:Jitter", "Mean jerk of the predicted joints [km/s³] (smoothness)",
             params=schema.JITTER)
