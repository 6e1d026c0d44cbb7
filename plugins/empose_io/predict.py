"""`empose predict MODEL INPUT -o OUT`: run a trained model on sensor data and export the motion.

INPUT (see README, "Using a trained model"):
- an EM-POSE recording (`*_clean.npz`) or a folder of them (`empose_recordings`; truth when present);
- a plain sensor file (`.npz` / `.csv`) or a folder of them (`sensor_file`);
- a YAML file: a sensor-source spec (`use: virtual_em ...`) or a recipe (its `data.test` sets, or the
  one `--data NAME` picks), with `--set KEY=VALUE` applied to the spec or the recipe;
- `source:NAME`: a registered sensor source, parameters from `--set KEY=VALUE`.

Per sequence, OUT gets `<id>.npz` (the empose motion file, AMASS layout), `<id>.bvh`, `<id>_joints.npz`
and, when the input has ground truth, `<id>_truth.npz`. Sequences run through the estimator's streaming
API in chunks (`reset()`, then `step()` per chunk, state carried), so memory does not grow with the
length beyond the outputs; offline estimators (BiRNN) get the whole sequence at once.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import numpy as np
import torch

from empose_framework.api import Model, load_model
from empose_framework.errors import DataError, EmposeError
from empose_framework.interfaces import Batch

CHUNK = 256


# --------------------------------------------------------------------------- inputs


def _is_recording_npz(path: Path) -> bool:
    if path.name.endswith("_clean.npz"):
        return True
    try:
        with np.load(path, allow_pickle=False) as z:
            return "sensor_pos" in z.files and "sensor_oris" in z.files
    except Exception:  # noqa: BLE001 - not readable as a recording: the plain reader reports it
        return False


def resolve_input(text: str, sets: list[str], data: str | None, body_model, registry, tmp: Path) -> list[tuple[str, object]]:
    """(label, SensorSource) pairs for INPUT (see the module docstring)."""
    from empose_framework import recipes

    if text.startswith("source:"):
        spec: dict = {"use": text.split(":", 1)[1]}
        for item in sets:
            recipes._apply_override(spec, item, Path(text))
        return [(spec["use"], _build(spec, body_model, registry, text))]
    path = Path(text).expanduser()
    if not path.exists():
        raise DataError(f"{path}: no such file or folder. INPUT is an EM-POSE recording (*_clean.npz or its folder), a "
                        "plain sensor file (.npz/.csv), a YAML sensor-source spec or recipe, or `source:NAME` with --set.")
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        import yaml

        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise DataError(f"{path}: not valid YAML ({exc}). Fix the file.") from None
        if isinstance(raw, dict) and "use" in raw:
            for item in sets:
                recipes._apply_override(raw, item, path)
            return [(str(raw["use"]), _build(raw, body_model, registry, str(path)))]
        recipe = recipes.load_recipe(path, sets, registry=registry)
        tests = recipe.data["data"]["test"]
        if data is not None:
            if data not in tests:
                raise EmposeError(f"{path}: --data {data!r} is not one of the recipe's test sets ({', '.join(tests) or 'none'}).")
            tests = {data: tests[data]}
        if not tests:
            raise EmposeError(f"{path}: the recipe has no test sets (data.test), so there is no input to predict on.")
        return [(name, _build(s, body_model, registry, f"{path}: data.test.{name}", checked=True)) for name, s in tests.items()]
    if sets:
        raise EmposeError(f"--set applies to a YAML sensor-source spec, a recipe or `source:NAME`, not to {path}.")
    if path.is_dir():
        if any(path.glob("*_clean.npz")):
            return [(path.name, _build({"use": "empose_recordings", "path": str(path)}, body_model, registry, str(path)))]
        return [(path.name, _build({"use": "sensor_file", "path": str(path)}, body_model, registry, str(path)))]
    if suffix == ".npz" and _is_recording_npz(path):
        link = tmp / (path.name if path.name.endswith("_clean.npz") else path.stem + "_clean.npz")
        link.symlink_to(path.resolve())
        return [(path.stem, _build({"use": "empose_recordings", "path": str(tmp)}, body_model, registry, str(path)))]
    return [(path.stem, _build({"use": "sensor_file", "path": str(path)}, body_model, registry, str(path)))]


def _build(spec: dict, body_model, registry, where: str, checked: bool = False):
    from empose_framework.recipes import check_spec

    if not checked:
        spec = check_spec(registry, "sensor_source", spec, where, "input")
    spec = {k: v for k, v in spec.items() if k != "optional"}
    return registry.build("sensor_source", spec, body_model=body_model)


# --------------------------------------------------------------------------- running


@torch.no_grad()
def predict_batch(model: Model, batch: Batch, chunk: int | None = CHUNK, progress=None):
    """Pose (T, J, 3) and betas (K,) numpy for the one sequence of `batch` (B = 1): chunks through the
    streaming API, or the whole sequence for offline estimators. `progress(n)` after each chunk."""
    est = model.estimator
    n = int(batch.seq_len[0])
    sensors = batch.sensors.frames(0, n)
    streaming = bool(getattr(est, "streamable", False)) and chunk is not None
    poses, betas = [], None
    if not streaming:
        out = est(sensors, batch.seq_len.clamp(max=n), batch.offsets)
        pose_chunks, shape = [out.pose.pose[0]], out.pose.betas[0]
        betas = shape[0] if shape.dim() == 2 else shape
        if not out.shape_estimated:
            betas = torch.zeros_like(betas)
        if progress:
            progress(n)
        return pose_chunks[0].cpu().numpy(), betas.cpu().numpy()
    est.reset()
    try:
        for a in range(0, n, chunk):
            b = min(a + chunk, n)
            out = est.step(sensors.frames(a, b), batch.offsets)
            poses.append(out.pose.pose[0].cpu().numpy())
            if betas is None:
                shape = out.pose.betas[0]
                betas = shape[0] if shape.dim() == 2 else shape
                if not out.shape_estimated:
                    betas = torch.zeros_like(betas)
            if progress:
                progress(b - a)
    finally:
        est.reset()
    return np.concatenate(poses), betas.cpu().numpy()


def safe_name(seq_id: str) -> str:
    for suffix in (".bvh.gz", ".bvh", "_clean.npz", ".npz", ".csv"):
        if seq_id.endswith(suffix):
            seq_id = seq_id[: -len(suffix)]
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", seq_id).strip("._") or "sequence"


def run_predict(model_spec: str, input_text: str, out: Path, sets=(), data=None, chunk: int | None = CHUNK,
                bvh: bool = True, joints: bool = True, units: str = "m", device: str = "cpu", render: bool = False,
                console=None) -> list[dict]:
    """The `empose predict` command; returns one dict of written paths per sequence."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from empose_framework import motion_file
    from empose_framework.plugins import get_registry
    from empose_io import export

    console = console or Console(stderr=True, highlight=False)
    if units not in export.UNITS:
        raise EmposeError(f"--bvh-units must be one of {', '.join(export.UNITS)}, got {units!r}.")
    if chunk is not None and chunk < 1:
        raise EmposeError(f"--chunk must be at least 1 frame (or 0 for the whole sequence at once), got {chunk}.")
    registry = get_registry()
    if render:
        _render_hook(registry)  # fail before the work, not after
    model = load_model(model_spec, device, registry)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written, used = [], set()
    with tempfile.TemporaryDirectory(prefix="empose-predict-") as tmp:
        sources = resolve_input(input_text, list(sets), data, model.body_model, registry, Path(tmp))
        _check_sensors(model, sources[0][1], input_text)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("frames"),
                      TimeRemainingColumn(), console=console, transient=True) as bar:  # fmt: skip
            for batch in (b for _, source in sources for b in source.sequences(device=device)):
                name = _unique_name(safe_name(batch.ids[0]), used)
                task = bar.add_task(f"predicting {name}", total=int(batch.seq_len[0]))
                pose, betas = predict_batch(model, batch, chunk, lambda k, t=task: bar.advance(t, k))
                written.append(_write(model, batch, pose, betas, out, name, bvh, joints, units, motion_file, export))
                bar.remove_task(task)
    for w in written:
        console.print(f"{w['name']}: {w['frames']} frames -> " + ", ".join(str(Path(p).name) for k, p in w.items()
                                                                      if k not in ("name", "frames")))
    if render:
        for w in written:
            w["render"] = render_files(registry, w["prediction"], w.get("truth"), out / f"{w['name']}.mp4")
            console.print(f"{w['name']}: rendered {w['render']}")
    console.print(f"wrote {len(written)} sequence(s) to {out}")
    return written


def _check_sensors(model, source, input_text: str) -> None:
    """The input must have every sensor the model reads (a missing reading may be NaN, an absent sensor not)."""
    missing = [n for n in model.sensor_names if n not in source.sensor_names]
    if missing:
        raise EmposeError(
            f"{input_text}: the model ({model.source}) reads the sensors {list(model.sensor_names)}, but the input "
            f"has no {missing} (it has {list(source.sensor_names)}). Fix: add readings for {missing} (NaN where "
            "not recorded), or use a model trained for the input's sensors.")


def _unique_name(name: str, used: set[str]) -> str:
    """`name`, or `name_1`, `name_2`, ... when taken, so that sequences with equal names keep separate files."""
    base, i = name, 1
    while name in used:
        name, i = f"{base}_{i}", i + 1
    used.add(name)
    return name


def _write(model, batch, pose, betas, out, name, bvh, joints, units, motion_file, export) -> dict:
    n = int(batch.seq_len[0])
    s = batch.sensors
    own = s.select([x for x in model.sensor_names if x in s.names]).valid[0, :n].all(-1)
    frame_valid = own if batch.frame_valid is None else own & batch.frame_valid[0, :n]
    sensors = {"names": s.names, "pos": s.pos[0, :n].cpu().numpy(), "ori": s.ori[0, :n].cpu().numpy(),
               "valid": s.valid[0, :n].cpu().numpy()}
    mf = motion_file.from_body_pose(pose, betas, model.body_model, model.body_model_spec, 60.0, "prediction",
                                    frame_valid=frame_valid.cpu().numpy(), sensors=sensors)
    paths = {"name": name, "frames": n, "prediction": motion_file.write(mf, out / f"{name}.npz")}
    if bvh:
        paths["bvh"] = export.write_bvh(model.body_model, mf, out / f"{name}.bvh", units)
    if joints:
        paths["joints"] = export.write_joints(model.body_model, mf, out / f"{name}_joints.npz")
    if batch.target is not None:
        tb = batch.target.betas[0]
        tb = tb[0] if tb.dim() == 2 else tb
        truth = motion_file.from_body_pose(batch.target.pose[0, :n].cpu().numpy(), tb.cpu().numpy(), model.body_model,
                                           model.body_model_spec, 60.0, "truth", sensors=sensors)
        paths["truth"] = motion_file.write(truth, out / f"{name}_truth.npz")
    return paths


def _render_hook(registry):
    hook = getattr(registry.pm.hook, "render_motion", None)
    if hook is None or not hook.get_hookimpls():
        raise EmposeError(
            "--render: no installed plugin renders motions (none implements the `render_motion` hook). Enable the "
            "built-in `render` plugin (it is disabled by `-p no:render` or EMPOSE_DISABLE_PLUGINS), or run "
            "without --render and render later with `empose render`.")
    return hook


def render_files(registry, prediction, truth, out, options: dict | None = None):
    """Render a motion file (beside its truth) through the `render_motion` hook (B's core helper)."""
    from empose_framework.drawing import render_motion_file

    return render_motion_file(prediction, truth, out, options, registry=registry)
