"""The hooks a plugin implements (pluggy project name `empose`).

A plugin is a module named by an entry point in the `empose` group. It implements any of the hooks
below with `@empose_framework.hookimpl`. Each `register_*` hook receives a `register` callback:

    register(name, target, description="", params=None)

`name` is what recipes write after `use:`; `target` is the component class or, better, a
"module:Class" string, imported only when the component is described, validated or built, so that
listing plugins stays fast (keep torch imports out of the plugin module itself); `description` is the
one-line summary `empose list-plugins` shows (the class docstring's first line when omitted and the
target is a class); `params` is the class's declared parameter tuple, best kept in a torch-free module
(`params=schema.X` where the class sets `params = schema.X`), so that `empose validate` and `describe`
read it without importing the class (without it, they import the class to read `cls.params`).

An implementation may take fewer arguments than its hookspec (pluggy passes the ones it names); a
plugin implementing a hook that is not below (a misspelling) is reported and skipped.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("empose")
hookimpl = pluggy.HookimplMarker("empose")


@hookspec
def register_body_models(register):
    """Register body models (subclasses of `interfaces.BodyModel`): skinned meshes with sensor sites."""


@hookspec
def register_motion_sources(register):
    """Register motion sources (`interfaces.MotionSource`): collections of body-model motions."""


@hookspec
def register_sensor_sources(register):
    """Register sensor sources (`interfaces.SensorSource`): batches of sensor frames with ground truth."""


@hookspec
def register_estimators(register):
    """Register estimators (`interfaces.Estimator`): torch modules from sensor frames to body pose."""


@hookspec
def register_losses(register):
    """Register training losses (`interfaces.Loss`)."""


@hookspec
def register_metrics(register):
    """Register evaluation metrics (`interfaces.Metric`)."""


@hookspec
def register_weights(register):
    """Register named pretrained weights: `register(name, file, **card)` with the model card's fields
    (`empose_framework.pretrained.Weights`: description, estimator, sensors, body_model, training_data,
    licence, recipe, seed, trained, metrics, sha256), or `pretrained.register_cards(register, folder)`
    for a folder of `empose pack-weights` cards. Recipes and commands then use `pretrained:NAME`."""


@hookspec
def register_commands(app):
    """Add CLI commands to the Typer `app` (e.g. `@app.command()` on a function)."""


@hookspec(firstresult=True)
def render_motion(prediction, truth, out, options):
    """Draw the empose motion file `prediction` (a path), beside the motion file `truth` (a path or
    None), into `out` (`.mp4`, `.gif` or `.png`); `options` is a dict (fps, size, sensors, ...; see
    `empose render --help`). Return the path written. Core code calls it through
    `empose_framework.drawing.render_motion_file`; the built-in `render` plugin implements it."""


#: component kind -> the hook that registers it
KIND_HOOKS = {
    "body_model": "register_body_models",
    "motion_source": "register_motion_sources",
    "sensor_source": "register_sensor_sources",
    "estimator": "register_estimators",
    "loss": "register_losses",
    "metric": "register_metrics",
}
