"""Registers the EM-POSE training losses. Light on purpose: no torch import here."""

from empose_framework import hookimpl
from empose_losses import schema


@hookimpl
def register_losses(register):
    register("pose", "empose_losses.losses:PoseLoss",
             "Pose error: padded L1 (LGD, per iterate) or masked MSE (ResNet/RNN)", params=schema.POSE)
    register("shape", "empose_losses.losses:ShapeLoss", "Shape error: padded L1 on the betas", params=schema.SHAPE)
    register("sensor_reconstruction", "empose_losses.losses:SensorReconstructionLoss",
             "Distance between the input sensors and the body model's sensors at the estimate",
             params=schema.SENSOR_RECONSTRUCTION)
    register("fk", "empose_losses.losses:FKLoss", "Distance between forward-kinematics joints of estimate and truth",
             params=schema.FK)
