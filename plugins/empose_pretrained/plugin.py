"""empose plugin: the pretrained weights that ship with empose, one model card (`weights/NAME.json`,
written by `empose pack-weights`) per file. A third-party plugin registers its own the same way."""

from __future__ import annotations

from pathlib import Path

from empose_framework import hookimpl
from empose_framework.pretrained import register_cards


@hookimpl
def register_weights(register):
    register_cards(register, Path(__file__).parent / "weights")
