"""Build a run's components from a resolved recipe, and record where each one came from."""

from __future__ import annotations

import platform
import sys
from dataclasses import dataclass, field
from typing import Any

import torch
from rich.markup import escape

from empose_framework.engine.evaluation import NamedMetric
from empose_framework.engine.schema import RunSettings
from empose_framework.errors import DataError, EmposeError
from empose_framework.interfaces import BodyModel, Estimator, Loss, SensorSource
from empose_framework.params import ComponentRef


@dataclass
class WeightedLoss:
    name: str
    weight: float
    loss: Loss


@dataclass
class Components:
    body_model: BodyModel
    train: SensorSource | None = None
    valid: SensorSource | None = None
    test: dict[str, SensorSource] = field(default_factory=dict)
    losses: list[WeightedLoss] = field(default_factory=list)
    metrics: list[NamedMetric] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # optional test sets whose data is missing
    hold_out: set[str] = field(default_factory=set)  # test sets switched to their hold-out subject


def _with_hint(exc: DataError, settings: RunSettings) -> DataError:
    hint = settings.missing_data_hint
    return DataError(f"{exc.message} {hint}") if hint and hint not in exc.message else exc


def build_source(registry, spec: dict, body_model: BodyModel, settings: RunSettings, where: str) -> SensorSource:
    try:
        return registry.build("sensor_source", spec, body_model=body_model)
    except DataError as exc:
        raise _with_hint(exc, settings) from None
    except EmposeError as exc:
        raise type(exc)(f"{settings.path}: {where}: {exc.message}") from None


def build(registry, settings: RunSettings, device: torch.device, *, need_train: bool, cross_subject: bool = False,
          log=print) -> Components:  # fmt: skip
    """Body model, data sources, losses and metrics (the estimator is built by the caller, which may
    take it from a checkpoint)."""
    try:
        body_model = registry.build("body_model", settings.body_model).to(device)
    except DataError as exc:
        raise _with_hint(exc, settings) from None
    comps = Components(body_model)
    splits = settings.data
    if need_train:
        if splits.train is None:
            raise EmposeError(f"{settings.path}: data.train: task 'train' needs training data; add a `data.train:` sensor source.")
        comps.train = build_source(registry, splits.train, body_model, settings, "data.train")
        if splits.valid is not None:
            comps.valid = build_source(registry, splits.valid, body_model, settings, "data.valid")
    for name, spec in splits.test.items():
        spec = dict(spec)
        if cross_subject and _has_hold_out(registry, spec):
            spec["hold_out"] = True
            comps.hold_out.add(name)
        optional = bool(spec.get("optional", False))
        try:
            comps.test[name] = build_source(registry, spec, body_model, settings, f"data.test.{name}")
        except DataError as exc:
            if not optional:
                raise
            comps.skipped[name] = exc.message
            log(f"[yellow]skipping optional test set '{name}':[/] {escape(exc.message)}")
    comps.losses = [
        WeightedLoss(name, float(spec.get("weight", 1.0)), registry.build("loss", spec, body_model=body_model))
        for name, spec in zip(_unique_names(settings.losses), settings.losses)
    ]
    comps.metrics = [
        NamedMetric(name, registry.build("metric", spec, body_model=body_model))
        for name, spec in zip(_unique_names(settings.metrics), settings.metrics)
    ]
    if need_train:
        choice = settings.train.select_on
        if choice != "loss" and choice not in [m.name for m in comps.metrics]:
            raise EmposeError(
                f"{settings.path}: train.select_on: '{choice}' is neither `loss` nor one of this recipe's metrics "
                f"({', '.join(m.name for m in comps.metrics)})."
            )
    return comps


def _unique_names(specs: list[dict]) -> list[str]:
    """Log/table names: the component name, with the list index appended when a name repeats."""
    names = [spec["use"] for spec in specs]
    return [n if names.count(n) == 1 else f"{n}_{i}" for i, n in enumerate(names)]


def _has_hold_out(registry, spec: dict) -> bool:
    """`--cross-subject` evaluates the hold-out subject instead of subjects 1-4 (docs/method.md §5.1, §10.1);
    a test source opts in by declaring a boolean parameter `hold_out`."""
    return "hold_out" in [p.name for p in registry.params("sensor_source", spec["use"])]


def check_cross_subject(registry, settings: RunSettings) -> None:
    """--cross-subject must change something: at least one test set has a hold-out subject."""
    if any(_has_hold_out(registry, spec) for spec in settings.data.test.values()):
        return
    raise EmposeError(
        f"{settings.path}: --cross-subject evaluates the hold-out subject, but none of the recipe's test sets "
        "(data.test) has one (a sensor source with a `hold_out` parameter, e.g. `empose_recordings`). Drop the "
        "flag, or add the EM-POSE recordings as a test set."
    )


def build_estimator(registry, spec: dict, body_model: BodyModel, sensor_names, device) -> Estimator:
    return registry.build("estimator", spec, body_model=body_model, sensor_names=tuple(sensor_names)).to(device)


def provenance(registry, settings: RunSettings, estimator_spec: dict | None = None) -> dict:
    """plugins.json: every component the run uses (kind, name, plugin, distribution, version) and the
    software it ran on."""
    used: dict[tuple[str, str], dict] = {}

    def visit(kind: str, spec: Any) -> None:
        if spec is None:
            return
        spec = {"use": spec} if isinstance(spec, str) else spec
        entry = registry.get(kind, spec["use"])
        used[(kind, entry.name)] = {
            "kind": kind, "name": entry.name, "plugin": entry.plugin,
            "distribution": entry.distribution, "version": entry.version,
            "target": entry.target if isinstance(entry.target, str) else f"{entry.target.__module__}:{entry.target.__qualname__}",
        }  # fmt: skip
        for p in registry.params(kind, entry.name):
            if isinstance(p.type, ComponentRef) and spec.get(p.name) is not None:
                visit(p.type.kind, spec[p.name])

    visit("body_model", settings.body_model)
    visit("estimator", estimator_spec or settings.estimator)
    for spec in (settings.data.train, settings.data.valid, *settings.data.test.values()):
        visit("sensor_source", spec)
    for spec in settings.losses:
        visit("loss", spec)
    for spec in settings.metrics:
        visit("metric", spec)
    from empose_framework import __version__

    return {
        "components": list(used.values()),
        "empose": __version__,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
