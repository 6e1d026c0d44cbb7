"""Registers the estimator. Kept free of torch so that `empose list-plugins` stays fast."""

from empose_framework import hookimpl
from empose_plugin_example import schema


@hookimpl
def register_estimators(register):
    register("sensor_mlp", "empose_plugin_example.model:SensorMLP", "Frame-wise MLP from sensor readings to pose (example plugin)",
             params=schema.SENSOR_MLP)
