"""Write tests/data/original_state_dicts.json from the state-dict tables of the released EM-POSE models.

Run once, by hand, where the project's private reference notes are at hand (the tests only read the
JSON, so a fresh clone needs nothing else):

    python tests/data/make_state_dicts.py [../shared/reference/original-state-dicts.md]

The notes list, per paper model, the original's training flags, its parameter count and every
`model_state_dict` entry (name, shape, dtype) of a released `model.pth`: facts about a file format,
which `empose import-checkpoint` must read. `smpl.bm.*` entries are the body model the original
registers inside each network (the converter drops them; the tests check that it does).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_SOURCE = HERE.parents[2] / "shared" / "reference" / "original-state-dicts.md"
ROW = re.compile(r"\| `([^`]+)` \| \(([\d, ]*)\) \| (\w+) \|")


def _number(pattern: str, line: str) -> int:
    return int(re.search(pattern, line).group(1).replace(",", ""))


def parse(text: str) -> dict:
    """Model name -> {"flags": str, "count": int, "count_with_body_model": int, "keys": [[name, shape, dtype]]}."""
    models, current = {}, None
    for line in text.splitlines():
        if line.startswith("## "):
            current = models.setdefault(line[3:].strip(), {"flags": None, "keys": []})
        elif current is None:
            continue
        elif line.startswith("Flags: `"):
            current["flags"] = line.split("`")[1]
        elif "without the 169 BodyModel parameters" in line:
            current["count_with_body_model"] = _number(r"\*\*([\d,]+)\*\*", line)
            current["count"] = _number(r"parameters: ([\d,]+)\.?$", line)
        elif m := ROW.match(line):
            shape = [int(s) for s in m.group(2).replace(" ", "").split(",") if s]
            current["keys"].append([m.group(1), shape, m.group(3)])
    models = {k: v for k, v in models.items() if v["flags"] is not None}
    for name, model in models.items():
        if not model["keys"] or "count" not in model:
            raise SystemExit(f"{name}: no key table or parameter count found; is this the right file?")
    return models


def dump(about: str, models: dict) -> str:
    """Indented JSON with each [name, shape, dtype] entry on one line, so that diffs stay readable."""
    lines = ["{", f' "about": {json.dumps(about, ensure_ascii=False)},', ' "models": {']
    for i, (name, model) in enumerate(models.items()):
        lines += [f"  {json.dumps(name)}: {{"]
        lines += [f"   {json.dumps(k)}: {json.dumps(model[k])}," for k in ("flags", "count", "count_with_body_model")]
        lines += ['   "keys": [', ",\n".join(f"    {json.dumps(row)}" for row in model["keys"]), "   ]"]
        lines += ["  }" + ("," if i < len(models) - 1 else "")]
    return "\n".join(lines + [" }", "}"]) + "\n"


def main(argv: list[str]) -> None:
    source = Path(argv[0]) if argv else DEFAULT_SOURCE
    models = parse(source.read_text())
    about = ("model_state_dict entries (name, shape, dtype) of the eight released EM-POSE models "
             "(Kaufmann et al., ICCV 2021), with the training flags each was built from and its number of "
             "trainable network parameters (count_with_body_model adds the 169 body-model values the original "
             "also counted). Written by tests/data/make_state_dicts.py; see docs/method.md §7.7.")
    target = HERE / "original_state_dicts.json"
    text = dump(about, models)
    assert json.loads(text) == {"about": about, "models": models}
    target.write_text(text)
    print(f"{target}: {len(models)} models, {sum(len(m['keys']) for m in models.values())} entries")


if __name__ == "__main__":
    main(sys.argv[1:])
