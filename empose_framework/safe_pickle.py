"""Reading pickles from data files without running code.

A pickle can name any importable callable and have it called while loading; data files are shared
(3DPW sequence `.pkl`s, object arrays inside `.npz` files), so `load` admits only numpy arrays and
scalars and plain containers (dict, list, tuple, set, str, bytes, numbers). Anything else is refused
with `pickle.UnpicklingError` naming the global, before it is imported or called.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import IO, Any

_ALLOWED = {
    ("builtins", "dict"), ("builtins", "list"), ("builtins", "tuple"), ("builtins", "set"),
    ("builtins", "frozenset"), ("builtins", "complex"), ("builtins", "bytearray"), ("builtins", "slice"),
    ("collections", "OrderedDict"), ("_codecs", "encode"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
}  # fmt: skip
_RENAMED = {"__builtin__": "builtins", "copy_reg": "copyreg"}  # Python 2 pickles (3DPW)


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler whose `find_class` admits only `_ALLOWED` globals."""

    def find_class(self, module: str, name: str) -> Any:
        module = _RENAMED.get(module, module)
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(
                f"global '{module}.{name}' is not allowed (only numpy arrays and plain containers are read from data files)"
            )
        if module.startswith("numpy"):  # numpy 2 moved numpy.core to numpy._core; both names are accepted
            import numpy as np

            core = getattr(np, "_core", None) or np.core
            owner = np if module == "numpy" else core.numeric if module.endswith("numeric") else core.multiarray
            return getattr(owner, name)
        return super().find_class(module, name)


def load(fh: IO[bytes], encoding: str = "ASCII") -> Any:
    """`pickle.load` restricted to numpy arrays and plain containers (`encoding="latin1"` for Python 2)."""
    return RestrictedUnpickler(fh, encoding=encoding).load()


def npz_object_array(path: str | Path, key: str):
    """Read the object array `key` of an npz file (which `np.load(allow_pickle=False)` refuses) through
    the restricted unpickler. Raises `pickle.UnpicklingError` for anything but plain data."""
    import numpy as np

    with zipfile.ZipFile(path) as archive, archive.open(f"{key}.npy") as fh:
        version = np.lib.format.read_magic(fh)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        _shape, _fortran, dtype = reader(fh)
        if not dtype.hasobject:
            raise pickle.UnpicklingError(f"key '{key}' is not an object array")
        value = load(fh, encoding="latin1")
    return np.asarray(value) if not isinstance(value, np.ndarray) else value
