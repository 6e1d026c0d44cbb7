"""Named pretrained weights: a registry that any plugin adds to, like the components.

A plugin implements `register_weights(register)` and calls `register(name, file, **card)` for each
model it ships (or `register_cards(register, folder)` for a folder of `NAME.json` model cards written
by `empose pack-weights`). The card says what the weights are and where they come from: estimator,
sensors, body model, training data, licence, the recipe and seed that made them, metrics. Recipes and
commands name them as `pretrained:NAME` wherever a checkpoint path is accepted
(`evaluate.checkpoint`, `train.init`, `empose predict`), and they load through the same safe loader as
any checkpoint (no code runs). Reading cards imports no torch, so `empose list-plugins` stays fast.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from empose_framework.errors import DataError, EmposeError

PREFIX = "pretrained:"
CARD_SUFFIX = ".json"


@dataclass(frozen=True)
class Weights:
    """One registered set of weights and its model card."""

    name: str
    file: Path  # an empose checkpoint (`empose run`, `import-checkpoint` or `pack-weights` output)
    description: str = ""
    estimator: dict | None = None  # the estimator spec, e.g. {"use": "lgd", "hidden": 256, ...}
    sensors: tuple[str, ...] = ()
    body_model: dict | None = None
    training_data: str = ""
    licence: str = ""
    recipe: str = ""  # the recipe (and overrides) that trained them
    seed: int | None = None
    trained: str = ""  # where, how long, which step
    metrics: dict = field(default_factory=dict)  # test set -> {metric: value}
    sha256: str = ""  # of `file`; checked before loading when given
    plugin: str = ""
    distribution: str = ""
    version: str = ""

    def card(self) -> dict[str, Any]:
        """The card as JSON-able data (what `describe weights` and `list-plugins --json` show)."""
        d = asdict(self)
        d["file"] = str(self.file)
        d["sensors"] = list(self.sensors)
        return d


CARD_FIELDS = tuple(f.name for f in fields(Weights) if f.name not in ("plugin", "distribution", "version"))


def make_weights(name: str, file, *, plugin: str = "", distribution: str = "", version: str = "", **card) -> Weights:
    """A Weights entry from `register(...)` arguments; unknown card keys are an error naming them."""
    unknown = sorted(set(card) - set(CARD_FIELDS))
    if unknown:
        raise EmposeError(f"pretrained weights '{name}': unknown card field(s) {unknown}; known: {', '.join(CARD_FIELDS)}.")
    if "sensors" in card:
        card["sensors"] = tuple(card["sensors"] or ())
    return Weights(name=name, file=Path(file), plugin=plugin, distribution=distribution, version=version, **card)


def read_card(path: str | Path) -> dict[str, Any]:
    """A `NAME.json` model card as `register` keywords; its `file` is relative to the card's folder."""
    path = Path(path)
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"model card {path} cannot be read ({type(exc).__name__}: {exc}). Re-create it with "
                        "`empose pack-weights`.") from exc
    if not isinstance(card, dict) or not isinstance(card.get("name"), str) or not isinstance(card.get("file"), str):
        raise DataError(f"model card {path} has no `name` and `file` strings; it is not an empose model card. "
                        "Re-create it with `empose pack-weights`.")
    card["file"] = path.parent / card["file"]
    return card


def register_cards(register, folder: str | Path) -> None:
    """Register every `*.json` model card in `folder` (the usual body of a `register_weights` hook)."""
    for path in sorted(Path(folder).glob(f"*{CARD_SUFFIX}")):
        register(**read_card(path))


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def resolve(spec: str | Path, registry=None) -> Path:
    """The checkpoint file for a path or a `pretrained:NAME` spec (file present and intact)."""
    text = str(spec)
    if not text.startswith(PREFIX):
        return Path(spec).expanduser()
    if registry is None:
        from empose_framework.plugins import get_registry

        registry = get_registry()
    weights = registry.get_weights(text[len(PREFIX):])
    if not weights.file.is_file():
        raise DataError(f"pretrained weights '{weights.name}' (plugin '{weights.plugin}', {weights.distribution} "
                        f"{weights.version}): the file {weights.file} is missing. Reinstall that package.")
    if weights.sha256 and sha256_of(weights.file) != weights.sha256:
        raise DataError(f"pretrained weights '{weights.name}': {weights.file} does not match the sha256 of its model "
                        "card; the file is damaged or was replaced. Reinstall the package that provides it "
                        f"({weights.distribution}).")
    return weights.file


def pack(checkpoint: str | Path, folder: str | Path, name: str, *, half: bool = True, eval_dir: str | Path | None = None,
         **card) -> tuple[Path, Path]:
    """Write `folder/NAME.pt` (the checkpoint's weights and provenance, no optimizer or resume state;
    floating-point tensors in float16 when `half`) and its model card `folder/NAME.json`, ready for a
    plugin's `register_cards`. Metrics come from an `eval/` folder of `empose run` (`*.json`)."""
    import torch

    from empose_framework.engine import checkpoints

    ckpt = checkpoints.load(checkpoint)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    def cast(t):
        return t.half() if half and torch.is_tensor(t) and t.is_floating_point() else t

    slim = {k: ckpt[k] for k in (*checkpoints.REQUIRED_KEYS, "recipe", "source") if k in ckpt}
    slim["model"] = {k: cast(v) for k, v in ckpt["model"].items()}
    pt = folder / f"{name}.pt"
    checkpoints.save_atomic(slim, pt)
    recipe = ckpt.get("recipe") or {}
    full = {
        "name": name,
        "file": pt.name,
        "estimator": ckpt["estimator"],
        "sensors": list(ckpt["sensor_names"]),
        "body_model": ckpt["body_model"],
        "seed": recipe.get("seed"),
        "trained": f"{ckpt.get('source', '')}; weights stored in {'float16' if half else 'float32'}",
        "metrics": read_metrics(eval_dir) if eval_dir else {},
        **{k: v for k, v in card.items() if v not in (None, "")},
        "sha256": sha256_of(pt),
    }
    card_path = folder / f"{name}{CARD_SUFFIX}"
    card_path.write_text(json.dumps(full, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return pt, card_path


def read_metrics(eval_dir: str | Path) -> dict[str, dict[str, float]]:
    """{test set: {metric: overall mean, "frames": used frames}} from the `*.json` tables of a run's eval/."""
    out = {}
    for path in sorted(Path(eval_dir).glob("*.json")):
        table = json.loads(path.read_text())
        overall = table.get("overall", {})
        out[table.get("set", path.stem)] = {
            "frames": overall.get("used_frames"),
            **{m: round(float(overall[m]["mean"]), 3) for m in table.get("metrics", {}) if m in overall},
        }
    return out
