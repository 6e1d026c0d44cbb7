"""Sensor sets (the named ones live in `empose_framework.sites`) resolved against a body model's sensor sites."""

from __future__ import annotations

from typing import Iterable

from empose_framework.errors import EmposeError
from empose_framework.sites import EM6, EM12, SETS  # noqa: F401 - the sets, re-exported for this plugin's modules


def resolve_sensors(spec, available: Iterable[str], where: str) -> tuple[str, ...]:
    """Site names for `spec` ("em6", "em12", 6, 12 or a list of site names), checked against the
    sites `available` (a body model's, or the 12 recorded ones). `where` names the component."""
    available = list(available)
    if isinstance(spec, int) and not isinstance(spec, bool):
        spec = {6: "em6", 12: "em12"}.get(spec, spec)
    if isinstance(spec, str):
        if spec not in SETS:
            raise EmposeError(
                f"{where}: unknown sensor set '{spec}'. Use 'em6', 'em12' (or 6, 12), or a list of site "
                f"names from: {', '.join(available)}."
            )
        names = SETS[spec]
    elif isinstance(spec, (list, tuple)) and spec and all(isinstance(n, str) for n in spec):
        names = tuple(spec)
    else:
        raise EmposeError(
            f"{where}: 'sensors' must be 'em6', 'em12', 6, 12 or a non-empty list of site names, got {spec!r}."
        )
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise EmposeError(f"{where}: sensor sites {dup} are listed twice in 'sensors'; list each site once.")
    missing = [n for n in names if n not in available]
    if missing:
        raise EmposeError(
            f"{where}: sensor sites {missing} do not exist here. Available sites: {', '.join(available)}."
        )
    return tuple(names)
