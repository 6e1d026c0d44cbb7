"""empose: 3D human pose and shape from a few body-worn sensors (the core; no domain code here)."""

from empose_framework.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["hookimpl", "__version__"]
