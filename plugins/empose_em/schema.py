"""The EM sensor sources' declared parameters (torch-free: `empose validate` and `describe` read them
without importing the sources). Each class sets `params = schema.NAME`; plugin.py registers the same tuple."""

from __future__ import annotations

from empose_framework.params import ComponentRef, Param

VIRTUAL_EM = (
    Param("motions", ComponentRef("motion_source"), doc="motions to put the sensors on"),
    Param("sensors", str | int | list[str], "em12", "'em6', 'em12' (or 6, 12) or a list of body-model site names"),
    Param(
        "offsets", str | None, "embedded",
        "'embedded' (built-in subjects), a folder of <subject>_offsets.npz (e.g. ${EM_DATA_REAL}), "
        "one such file, or null (zero offsets)",
    ),
    Param(
        "offset_noise", int, 0,
        "training offsets (§6.3): -1 subject means, 0 one draw per sequence, 1 a draw per frame, "
        "2 zero translation, 3 zero translation and identity rotation",
        choices=(-1, 0, 1, 2, 3),
    ),
    Param("spherical_noise_strength", float, 0.0, "max displacement, as a fraction of half the thigh length (0..1)", min=0, max=1),
    Param("spherical_noise_length", float, 0.0, "fraction of each window displaced (0..1); 0 = off", min=0, max=1),
    Param("suppression_noise_length", float, 0.0, "fraction of each window with sensors dropped (0..1); 0 = off", min=0, max=1),
    Param("noise_sensors", int, 1, "sensors per window affected by spherical or suppression noise", min=0),
    Param("suppression_value", float, 0.0, "value written into dropped readings (they are also marked invalid)"),
    Param(
        "noise_seed", int | None, None,
        "evaluation noise: null keeps test sequences and validation windows clean (subject mean offsets); "
        "an integer applies offset_noise, spherical and suppression noise there too, drawn per sequence "
        "from (noise_seed, index), identical on every run", min=0,
    ),
    Param(
        "random_heading", bool, False,
        "turn each training and validation window about the up axis of its first frame (training: a random "
        "angle; validation: a fixed one per window), so a model learns every heading, not only the "
        "first frame's: needed for long sequences in which the person turns",
    ),
)  # fmt: skip

EMPOSE_RECORDINGS = (
    Param("path", str, "${EM_DATA_REAL}", "EM-POSE data root (holds *_clean.npz and hold_out/)"),
    Param("subjects", list[str | int] | None, None, "subject ids to read, e.g. ['0402', '0526'] (null = all)"),
    Param("hold_out", bool, False, "read the hold-out subject's folder <path>/hold_out instead"),
    Param("sensors", str | int | list[str], "em12", "'em6', 'em12' (or 6, 12) or a list of the 12 site names"),
    Param("nonfinite", str, "error", "NaN/inf in a valid reading: 'error' or 'mask' (mark it missing)",
          choices=("error", "mask")),
    Param("normalisation", str, "original", "'original' (§5.4, published numbers) or 'consistent' (pivot-correct)",
          choices=("original", "consistent")),
)  # fmt: skip
