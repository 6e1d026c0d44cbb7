"""The metrics' declared parameters (torch-free: `empose validate` and `describe` read them without
importing the metrics). Each class sets `params = schema.NAME`; plugin.py registers the same tuple."""

from __future__ import annotations

from empose_framework.params import Param

_JOINTS_DOC = "evaluated joints by name (null = the paper's subset, {})"

MPJPE = (Param("joints", list[str] | None, None, _JOINTS_DOC.format("20 joints: all body joints but the feet")),)

PA_MPJPE = (
    Param("joints", list[str] | None, None, _JOINTS_DOC.format("20 joints: all body joints but the feet")),
    Param("align_joints", list[str] | None, None, "joints used to fit the alignment (null = every estimated joint, 22 for SMPL-H)"),
)

MPJAE = (Param("joints", list[str] | None, None, _JOINTS_DOC.format("15 joints: no root, ankles, feet or wrists")),)

JITTER = (
    Param("joints", list[str] | None, None, _JOINTS_DOC.format("all 22 body joints")),
    Param("fps", float, 60.0, "frame rate of the evaluated sequences", min=1e-3),
)
