"""Motion sources for empose: AMASS/3DPW in LMDB, BVH motion capture, and generated motions.

Importing this package is light; the sources import numpy/torch/lmdb in their own modules.
"""
