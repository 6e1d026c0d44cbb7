"""Built-in estimators of EM-POSE: frame-wise ResNet, (Bi)RNN and learned gradient descent (LGD).

Light on purpose (imported by `empose list-plugins`): the torch modules live in the submodules.
"""
