"""The example's declared parameters, in a module without torch, so that `empose validate` and
`describe` read them without importing the model (plugin.py registers them with `params=`)."""

from empose_framework.params import Param

SENSOR_MLP = (
    Param("hidden", int, 256, "width of the hidden layers", min=1),
    Param("layers", int, 2, "number of hidden layers", min=1),
)
