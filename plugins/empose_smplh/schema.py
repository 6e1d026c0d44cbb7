"""The body models' declared parameters (torch-free: `empose validate` and `describe` read them without
importing the models). Each class sets `params = schema.NAME`; plugin.py registers the same tuple."""

from __future__ import annotations

from empose_framework.params import Param

#: Where the AMASS "Extended SMPL+H" neutral model is looked for by default.
DEFAULT_SMPLH_PATH = "${SMPL_MODELS}/smplh_amass/neutral/model.npz"

SMPLH = (
    Param(
        "path", str, DEFAULT_SMPLH_PATH,
        "the neutral model.npz of the AMASS Extended SMPL+H package ($SMPL_MODELS is expanded)",
    ),
    Param("n_betas", int, 10, "shape components used (the file has 16; the original uses the first 10)", min=1),
)  # fmt: skip

EMBEDDED = (Param("n_betas", int, 10, "shape components used (the embedded body has 16)", min=1, max=16),)
