"""The settings the engine reads, typed: built once from a validated recipe (`RunSettings.of`).

The `train:` and `evaluate:` sections are frozen dataclasses whose fields are declared once, with
`setting(...)`: type, default, doc and accepted range. `params_of` turns them into the `Param`s that
recipes are checked against and `empose describe recipe train` shows. Kept free of torch so that
`empose validate` stays light.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from empose_framework.params import Param, positive

#: `evaluate.chunk: auto`: the estimator's own chunking (its `eval_chunk`)
AUTO = "auto"


def setting(default: Any, doc: str, **rules: Any) -> Any:
    """A settings field: its default, and the doc and rules (min, max, choices, check, rule) of its Param."""
    return field(default=default, metadata={"doc": doc, "rules": rules})


def params_of(cls: type) -> tuple[Param, ...]:
    """The recipe parameters of a settings dataclass, one per field, in field order."""
    hints = typing.get_type_hints(cls)
    return tuple(Param(f.name, hints[f.name], f.default, f.metadata["doc"], **f.metadata["rules"]) for f in fields(cls))


@dataclass(frozen=True)
class TrainSettings:
    batch_size: int = setting(12, "windows per optimisation step (per process under torchrun)", min=1)
    window: int = setting(32, "training window length in frames (also the validation middle crop)", min=1)
    epochs: int = setting(50, "passes over the training data", min=1)
    max_steps: int | None = setting(None, "stop after this many steps (overrides epochs when reached first)", min=1)
    lr: float = setting(1.0e-3, "Adam learning rate (constant)", check=positive, rule="> 0")
    eval_every: int = setting(700, "validate every N steps; the best validation checkpoint is kept", min=1)
    select_on: str = setting("loss", "validation quantity that picks best.pt: `loss` (weighted total) or a metric name")
    test_during_training: bool = setting(False, "also evaluate the test sets at every evaluation (logged only, never used for selection)")
    eval_window: int | None = setting(256, "chunk length for the test sets evaluated during training (null = whole)", min=1)
    grad_clip: float | None = setting(None, "clip the global gradient norm to this value (null = off)", check=positive, rule="> 0")
    log_every: int = setting(25, "write losses to train.log and the console every N steps (TensorBoard gets every step)", min=1)
    num_threads: int | None = setting(None, "torch CPU threads per process (null = torch's default)", min=1, max=4096)
    init: str | None = setting(None, "fine-tune: start from these weights (a checkpoint path or `pretrained:NAME`) of the same estimator")


def _chunk_problem(value: Any) -> str | None:
    return None if not isinstance(value, str) or value == AUTO else f"expected a number of frames, null or auto, got {value!r}"


@dataclass(frozen=True)
class EvaluateSettings:
    checkpoint: str | None = setting(None, "empose checkpoint to evaluate (task: evaluate): a path or `pretrained:NAME`")
    chunk: int | str | None = setting(
        AUTO, "frames per chunk for whole-sequence inference (null = whole sequence; auto = the estimator's own: "
        "LGD 256 frames with its state carried, the others whole sequences)",
        min=1, check=_chunk_problem, rule="a number of frames, null or auto")  # fmt: skip
    use: str = setting("best", "after training, evaluate the `best` (validation-selected) or the `last` weights", choices=("best", "last"))
    render: int = setting(0, "draw the N best and N worst sequences of each test set (by MPJPE) as MP4 into eval/render/ (0 = off)", min=0)

    def chunk_for(self, estimator) -> int | None:
        """The chunk length `estimator` is evaluated with: the recipe's, or with `auto` the estimator's
        own (`Estimator.eval_chunk`, docs/method.md §10.1)."""
        return estimator.eval_chunk if self.chunk == AUTO else self.chunk


TRAIN_PARAMS = params_of(TrainSettings)
EVALUATE_PARAMS = params_of(EvaluateSettings)


@dataclass(frozen=True)
class DataSettings:
    """Sensor source specs: `test` maps each test set's name to its spec."""

    train: dict | None
    valid: dict | None
    test: dict[str, dict]


@dataclass(frozen=True)
class RunSettings:
    """A validated recipe as the engine reads it (its declared environment variables expanded), plus
    `recorded`: the recipe as the run folder and checkpoints store it (`${VAR}`s unexpanded)."""

    path: Path
    recorded: dict
    name: str
    task: str
    env: list[str]
    seed: int
    device: str
    output: str
    missing_data_hint: str | None
    body_model: dict
    data: DataSettings
    estimator: dict | None
    losses: list[dict]
    metrics: list[dict]
    train: TrainSettings
    evaluate: EvaluateSettings

    @classmethod
    def of(cls, recipe) -> "RunSettings":
        """From a `recipes.Recipe`; reads the recipe's environment variables (`Recipe.data`)."""
        d = recipe.data
        sections = {"data": DataSettings(**d["data"]), "train": TrainSettings(**d["train"]),
                    "evaluate": EvaluateSettings(**d["evaluate"])}  # fmt: skip
        return cls(path=Path(recipe.path), recorded=recipe.recorded, **{**d, **sections})
