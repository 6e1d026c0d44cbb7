"""Registers the EM-POSE training losses. Light on purpose: no torch import here."""

from empose_framework import hookimpl


@hookimpl
def register_losses(register):
    register("pose", "empose_losses.losses:PoseLoss",
             "Pose error: padded L1 (LGD, per iterate) or masked MSE (ResNet/RNN)")
    register("shape", "empose_losses.losses:ShapeLoss", "Shape error: padded L1 on the betas")
    register("sensor_reconstruction", "empose_losses.losses:SensorReconstructionLoss",
             "Distance between the input sensors and the body model's sensors at the estimate")
    register("fk", "empose_losses.losses:FKLoss", "Distance between forward-kinematics joints of estimate and truth")
