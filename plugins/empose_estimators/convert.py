"""`empose import-checkpoint`: released EM-POSE model folders -> empose checkpoint + recipe.

A released folder holds `config.json` (the original's command-line flags, docs/method.md §7.6) and
`model.pth` (a dict whose `model_state_dict` holds the network, §7.7). The estimator is rebuilt from
the flags, the body-model entries (`smpl.*`) are dropped, and every remaining key must match the
rebuilt module exactly (names and shapes), so a wrong or truncated file fails with the keys at fault.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from types import SimpleNamespace

import torch
import yaml

from empose_framework.api import save_checkpoint
from empose_framework.errors import DataError
from empose_framework.sites import SETS

#: The original's defaults (docs/method.md §7.6) for the flags that shape the network.
ORIGINAL_DEFAULTS = {
    "m_type": "rnn", "m_estimate_shape": False, "m_shape_hidden_size": 256, "m_dropout": 0.0,
    "m_hidden_size": 1024, "m_num_layers": 2, "m_learn_init_state": False, "m_bidirectional": False,
    "m_num_iterations": 4, "m_dropout_hidden": 0.0, "m_step_size": 0.1, "m_average_shape": False,
    "m_use_gradient": False, "m_skip_connections": False, "m_no_batch_norm": False, "m_rnn_init": False,
    "m_rnn_bidirectional": False, "m_rnn_hidden_size": 512, "m_rnn_num_layers": 2,
    "use_marker_pos": False, "use_marker_ori": False, "use_marker_nor": False, "n_markers": 12,
}  # fmt: skip

#: Sizes of the released models' body (SMPL-H body pose of 22 joints, 10 betas; docs/method.md §2.2).
RELEASED_BODY = SimpleNamespace(n_pose_joints=22, n_betas=10)
#: Chunk length of the original's real-data evaluation for LGD models; ResNet/RNN run whole sequences (§10.1).
LGD_EVAL_CHUNK = 256


def spec_from_config(config: dict, where: str) -> tuple[dict, str]:
    """The empose estimator spec and sensor set ("em6"/"em12") for an original `config.json`."""
    if "m_type" not in config:
        raise DataError(f"{where}: the key 'm_type' is missing, so the model type is unknown. This is not a "
                        "complete EM-POSE config.json; copy the one that came with the model.pth.")  # fmt: skip
    c = {**ORIGINAL_DEFAULTS, **config}
    if c["use_marker_nor"]:
        raise DataError(f"{where}: use_marker_nor is set; the original cannot run such a model (it raises), and "
                        "empose does not support normal inputs.")  # fmt: skip
    n = int(c["n_markers"])
    sensors = {6: "em6", 12: "em12", -1: "em12"}.get(n)
    if sensors is None:
        raise DataError(f"{where}: n_markers is {n}; EM-POSE models use 6 or 12 sensors.")
    io = {"use_pos": bool(c["use_marker_pos"]), "use_ori": bool(c["use_marker_ori"])}
    shape = {
        "estimate_shape": bool(c["m_estimate_shape"]), "shape_hidden": int(c["m_shape_hidden_size"]),
        "hidden_dropout": float(c["m_dropout_hidden"]), "skip_connections": bool(c["m_skip_connections"]),
        "average_shape": bool(c["m_average_shape"]),
    }  # fmt: skip
    m_type = c["m_type"]
    if m_type == "resnet":
        spec = {"use": "resnet", "hidden": int(c["m_hidden_size"]), "blocks": int(c["m_num_layers"]), **shape, **io}
    elif m_type == "rnn":
        spec = {
            "use": "rnn", "hidden": int(c["m_hidden_size"]), "layers": int(c["m_num_layers"]),
            "bidirectional": bool(c["m_bidirectional"]), "dropout": float(c["m_dropout"]),
            "learn_init_state": bool(c["m_learn_init_state"]), **shape, **io,
        }  # fmt: skip
    elif m_type in ("ief", "lgd"):
        if c["m_rnn_bidirectional"]:
            raise DataError(f"{where}: m_rnn_bidirectional is set; the original crashes with it (its heads are "
                            "sized for one direction), so no such trained model can exist.")  # fmt: skip
        spec = {
            "use": "lgd", "hidden": int(c["m_hidden_size"]), "blocks": int(c["m_num_layers"]),
            "iterations": int(c["m_num_iterations"]), "step_size": float(c["m_step_size"]),
            "use_gradient": bool(c["m_use_gradient"]), "average_shape": bool(c["m_average_shape"]),
            "rnn_init": bool(c["m_rnn_init"]), "rnn_hidden": int(c["m_rnn_hidden_size"]),
            "rnn_layers": int(c["m_rnn_num_layers"]), "dropout": float(c["m_dropout"]),
            "hidden_dropout": float(c["m_dropout_hidden"]), "batch_norm": not c["m_no_batch_norm"],
            "skip_connections": bool(c["m_skip_connections"]), **io,
        }  # fmt: skip
    else:
        raise DataError(f"{where}: m_type is {m_type!r}; expected one of resnet, rnn, ief, lgd.")
    return spec, sensors


def build_estimator(spec: dict, sensor_names, body_model=RELEASED_BODY, registry=None):
    """The estimator `spec` names, built by the registry (default: the installed plugins') with the
    spec's params."""
    from empose_framework.plugins import get_registry

    return (registry or get_registry()).build("estimator", spec, body_model=body_model, sensor_names=tuple(sensor_names))


def _load_pth(path: Path) -> dict:
    """torch.load with weights only; numpy scalars (the metrics the original stores next to the
    weights) are allowed too, under numpy 1's and numpy 2's module names."""
    import numpy as np

    scalar = np.float64(0).__reduce__()[0]  # numpy's scalar reconstructor
    allowed = [(scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar"), np.dtype]
    allowed += [type(np.dtype(t)) for t in (np.float64, np.float32, np.int64, np.int32, np.bool_)]
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        raise DataError(
            f"{path} could not be read as a PyTorch checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0]}). "
            "It is truncated, not a model.pth of a released EM-POSE model, or holds objects other than tensors "
            "and numbers; download the model folder again."
        ) from None


def _state_dict_of(raw, path: Path) -> dict:
    if isinstance(raw, dict) and "model_state_dict" in raw:
        raw = raw["model_state_dict"]
    elif isinstance(raw, dict) and not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise DataError(
            f"{path} has no 'model_state_dict' entry (its keys: {sorted(map(str, raw))[:8]}); a released "
            "EM-POSE model.pth holds the network weights under that key."
        )
    if not isinstance(raw, dict):
        raise DataError(f"{path} holds a {type(raw).__name__}, not a checkpoint dictionary.")
    return raw


def _listing(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def convert_state_dict(state: dict, estimator, where: str) -> dict:
    """Drop the body-model keys, check names and shapes against `estimator`, return the state dict in
    the estimator's key order. DataError naming the missing, unexpected and mis-shaped keys."""
    state = {k: v for k, v in state.items() if not k.startswith("smpl.")}
    expected = estimator.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    if wrong:
        problems.append(f"wrong shapes: {_listing(wrong)}")
    if problems:
        raise DataError(
            f"{where}: the weights do not fit the model that config.json describes ({'; '.join(problems)}). The "
            "file is partial, or belongs to another config.json; use the config.json and model.pth of one "
            "released model folder."
        )
    return {k: state[k].to(expected[k].dtype) for k in expected}


def import_checkpoint(model_dir, out, force: bool = False, registry=None) -> dict:
    """Convert MODEL_DIR (config.json + model.pth) into OUT/checkpoint.pt and OUT/recipe.yaml."""

    model_dir, out = Path(model_dir), Path(out)
    config_path, pth_path = model_dir / "config.json", model_dir / "model.pth"
    for p in (config_path, pth_path):
        if not p.is_file():
            raise DataError(f"{p} does not exist. MODEL_DIR must be a released EM-POSE model folder holding "
                            "config.json and model.pth (e.g. the folder of model 1615631737).")  # fmt: skip
    ckpt_path, recipe_path = out / "checkpoint.pt", out / "recipe.yaml"
    if not force and (ckpt_path.exists() or recipe_path.exists()):
        raise DataError(f"{out} already holds checkpoint.pt or recipe.yaml; choose another OUT folder or pass --force.")
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{config_path} is not valid JSON ({exc}); copy the config.json that came with the model.") from None
    if not isinstance(config, dict):
        raise DataError(f"{config_path} holds a JSON {type(config).__name__}, not the mapping of flags a config.json has.")
    spec, sensor_set = spec_from_config(config, str(config_path))
    sensor_names = list(SETS[sensor_set])
    raw = _load_pth(pth_path)
    estimator = build_estimator(spec, sensor_names, registry=registry)
    state = convert_state_dict(_state_dict_of(raw, pth_path), estimator, str(pth_path))
    estimator.load_state_dict(state, strict=True)

    model_id = str(config.get("experiment_id") or model_dir.name)
    recipe = {
        "name": f"empose-{model_id}",
        "task": "evaluate",
        "env": ["EM_DATA_REAL"],  # the only environment variable the recipe reads
        "body_model": {"use": "smplh"},
        # all 12 sensors, as the original feeds them: the estimator picks its own (checkpoint's sensor_names)
        "data": {"test": {"use": "empose_recordings", "path": "${EM_DATA_REAL}", "sensors": "em12"}},
        "estimator": spec,
        "metrics": ["mpjpe", "pa_mpjpe", "mpjae"],
        "evaluate": {"checkpoint": "${RECIPE_DIR}/checkpoint.pt", "chunk": LGD_EVAL_CHUNK if spec["use"] == "lgd" else None},
    }
    meta = raw if isinstance(raw, dict) and "model_state_dict" in raw else {}
    step = int(meta.get("global_step", 0) or 0)
    source = (
        f"imported by `empose import-checkpoint` from {model_dir.resolve()} (EM-POSE model {model_id}, "
        f"m_type {config['m_type']}, {len(sensor_names)} sensors, iteration {meta.get('iteration')}, "
        f"epoch {meta.get('epoch')}, global step {meta.get('global_step')})"
    )
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(ckpt_path, estimator=spec, sensor_names=sensor_names, body_model={"use": "smplh"}, model=state,
                    recipe=recipe, step=step, source=source)  # fmt: skip
    recipe_path.write_text(
        f"# Evaluates the released EM-POSE model {model_id} (imported from {model_dir.resolve()}).\n"
        "# Needs the SMPL-H model ($SMPL_MODELS) and the EM-POSE recordings ($EM_DATA_REAL).\n"
        + yaml.safe_dump(recipe, sort_keys=False)
    )
    n_params = sum(p.numel() for p in estimator.parameters())
    return {"checkpoint": ckpt_path, "recipe": recipe_path, "estimator": spec, "sensors": sensor_set,
            "parameters": n_params, "step": step}  # fmt: skip
