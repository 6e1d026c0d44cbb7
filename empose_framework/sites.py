"""The EM-POSE sensor-site table, shared by body models (which place the sites), sensor sources (which
name the sets) and tools (which read the original's models)."""

from __future__ import annotations

#: The 12 EM-POSE sensor sites in the reference's S order (§2.1), as the body models name them.
EM12: tuple[str, ...] = (
    "back", "head", "r_forearm", "r_upper_arm", "r_shoulder", "r_thigh", "r_shank",
    "l_forearm", "l_upper_arm", "l_shoulder", "l_thigh", "l_shank",
)  # fmt: skip
#: S_CONFIG_6 = [0, 1, 2, 6, 7, 11]: pelvis, head, both forearms, both shanks.
EM6: tuple[str, ...] = tuple(EM12[i] for i in (0, 1, 2, 6, 7, 11))

#: Named sensor sets, as recipes write them (`sensors: em6`).
SETS = {"em6": EM6, "em12": EM12}
