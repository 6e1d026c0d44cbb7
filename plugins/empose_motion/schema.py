"""The motion sources' declared parameters (torch-free: `empose validate` and `describe` read them
without importing the sources). Each class sets `params = schema.NAME`; plugin.py registers the same tuple."""

from __future__ import annotations

from empose_framework.params import Param

SPLITS = ("all", "train", "valid", "test")
#: what a split hashes: the sequence id, or its folder (the subject in AMASS's dataset/subject/file layout)
SPLIT_KEYS = ("sequence", "folder")
#: the embedded motions' random streams (never overlapping)
EMBEDDED_SPLITS = ("train", "valid", "test")
ACTIVITIES = ("arms_slow", "arms_fast", "head_shoulders", "jumping_jacks", "lower_body", "lunges", "sitting", "walking")

_BVH_OPTIONS = (
    Param("joint_map", str | dict | None, None, "YAML file or mapping: body joint -> BVH joint (overrides the automatic map)"),
    Param("betas", list[float] | None, None, "body shape for the retargeted motion (default: mean shape)"),
    Param("rest", str, "offsets", "BVH rest pose: the HIERARCHY's offsets (zero rotations) or the first frame",
          choices=("offsets", "first_frame")),
    Param("first_frame", str, "auto", "drop frame 0 (`auto`: when it is an added pose, as in CMU conversions)",
          choices=("auto", "drop", "keep")),
    Param("split", str, "all", "subset by hashed file id: all, or train/valid/test (80/10/10)", choices=SPLITS),
    Param("include", list[str] | None, None, "keep only files whose relative path matches one of these globs"),
    Param("exclude", list[str] | None, None, "drop files matching one of these globs"),
)

BVH = (
    Param("path", str, doc="a .bvh (or .bvh.gz) file or a folder searched recursively for *.bvh and *.bvh.gz"),
    *_BVH_OPTIONS,
)

CMU_CLIPS = _BVH_OPTIONS

EMBEDDED = (
    Param("split", str, "train", "which random stream: train, valid or test (never overlapping)", choices=EMBEDDED_SPLITS),
    Param("count", int, 64, "number of motions", min=1),
    Param("seed", int, 0, "base seed; the same (seed, split, index) always gives the same motion", min=0),
    Param("seconds", float, 10.0, "mean duration; each motion lasts 0.8 to 1.2 times this", min=0.5, max=36000),
    Param("activities", list[str] | None, None, f"subset of {', '.join(ACTIVITIES)} (default: all)"),
    Param("shape_std", float, 1.0, "standard deviation of the random betas (clipped to +-2)", min=0),
)

AMASS_LMDB = (
    Param("path", str, doc="folder of the LMDB (the DST of `empose preprocess`)"),
    Param("split", str, "all", "subset by hashed sequence id: all, or train/valid/test (80/10/10)", choices=SPLITS),
    Param("split_by", str, "sequence", "what the split hashes: `sequence` ids, or their `folder` (the subject in AMASS)",
          choices=SPLIT_KEYS),
    Param("include", list[str] | None, None, "keep only ids matching one of these globs (e.g. 'CMU/*')"),
    Param("exclude", list[str] | None, None, "drop ids matching one of these globs"),
    Param("max_sequences", int | None, None, "use only the first N selected sequences (quick runs)", min=1),
    Param("min_frames", int, 1, "drop sequences shorter than this many frames", min=1),
    Param("shape_std", float, 0.0, "0: the stored betas; > 0: random betas ~ N(0, shape_std) clipped to +-2, "
          "fixed per sequence id (for corpora without per-subject shapes)", min=0),
)  # fmt: skip
