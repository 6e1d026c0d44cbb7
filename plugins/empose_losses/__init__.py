"""Built-in training losses of EM-POSE: pose, shape, sensor reconstruction and forward kinematics.

Light on purpose (imported by `empose list-plugins`): the torch code lives in `losses` (primitives: `empose_framework.primitives`).
"""
