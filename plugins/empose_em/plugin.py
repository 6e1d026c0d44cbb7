"""Registers the EM sensor sources. Light on purpose: no torch import here."""

from empose_em import schema
from empose_framework import hookimpl


@hookimpl
def register_sensor_sources(register):
    register(
        "virtual_em",
        "empose_em.virtual:VirtualEM",
        "Virtual EM sensors synthesised from any motion source on any body model (offsets, noise)",
        params=schema.VIRTUAL_EM,
    )
    register(
        "empose_recordings",
        "empose_em.recordings:EMPoseRecordings",
        "The real EM-POSE recordings (*_clean.npz), normalised as the original test transform",
        params=schema.EMPOSE_RECORDINGS,
    )
