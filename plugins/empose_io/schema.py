"""The `sensor_file` source's declared parameters (torch-free: `empose validate` and `describe` read
them without importing the source). The class sets `params = schema.SENSOR_FILE`; plugin.py registers it."""

from __future__ import annotations

from empose_framework.params import Param

#: The site that stands in for the pelvis when a sensor file is root-normalised.
REFERENCE_SITE = "back"

SENSOR_FILE = (
    Param("path", str, doc="a plain sensor file (.npz or .csv) or a folder of them"),
    Param("sensors", str | int | list[str] | None, None,
          "sites to hand on: 'em6', 'em12', a list of site names, or null (every site in the file)"),
    Param("reference", str, REFERENCE_SITE, "site that stands in for the pelvis in the root normalisation"),
)
