"""Plugin discovery and hook calling: failures, unknown hooks, name clashes, disabling, strict mode.

Real entry points (fake distributions on PYTHONPATH, through the CLI) and in-memory plugins
(`Registry(extra_plugins=..., entry_points=False)`).
"""

import inspect
import json
from pathlib import Path

import pytest

from core_fakes import make_distribution, run_empose
from empose_framework import hookimpl, hookspecs
from empose_framework.errors import PluginError
from empose_framework.plugins import Registry

GOOD = """
from empose_framework import hookimpl

@hookimpl
def register_estimators(register):
    register("toy", "toy_impl:Toy", "A toy estimator")
"""
BROKEN = """
raise RuntimeError("boom: missing native library")
"""
CLASH = """
from empose_framework import hookimpl

@hookimpl
def register_estimators(register):
    register("toy", "clash_impl:Toy", "Another toy")
"""


@pytest.fixture
def site(tmp_path):
    make_distribution(tmp_path, "toy-plugin", "1.2.3", {"toy": "toy_plugin"}, {"toy_plugin": GOOD})
    make_distribution(tmp_path, "broken-plugin", "0.0.1", {"broken": "broken_plugin"}, {"broken_plugin": BROKEN})
    return tmp_path


def test_every_hookspec_is_documented():
    specs = [f for name, f in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith(("register_", "render_"))]
    assert len(specs) == 9  # six component kinds, weights, commands, render_motion
    for f in specs:
        assert f.__doc__ and len(f.__doc__.strip()) > 20, f"hookspec {f.__name__} needs a docstring"


def test_broken_plugin_is_reported_and_skipped(site):
    r = run_empose("list-plugins", "--kind", "estimator", pythonpath=site)
    assert r.returncode == 0, r.stderr
    assert "toy" in r.stdout and "toy-plugin 1.2.3" in r.stdout and "A toy estimator" in r.stdout
    assert "plugin 'broken' (from broken-plugin 0.0.1) failed and was skipped" in r.stderr
    assert "RuntimeError: boom: missing native library" in r.stderr
    assert "-p no:broken" in r.stderr and "EMPOSE_DISABLE_PLUGINS=broken" in r.stderr
    assert "Traceback" not in r.stderr


def test_list_plugins_json_names_distribution_and_version(site):
    r = run_empose("list-plugins", "--json", pythonpath=site)
    assert r.returncode == 0, r.stderr
    payload = json.loads(r.stdout)
    toy = [e for e in payload["components"]["estimator"] if e["name"] == "toy"]
    assert toy == [{"name": "toy", "description": "A toy estimator", "plugin": "toy",
                    "distribution": "toy-plugin", "version": "1.2.3"}]
    assert "broken" in [f["plugin"] for f in payload["failures"]]


@pytest.mark.parametrize("how", ["env", "option"])
def test_plugin_can_be_disabled(site, how):
    if how == "env":
        r = run_empose("list-plugins", "--json", pythonpath=site, env={"EMPOSE_DISABLE_PLUGINS": "broken,toy"})
    else:
        r = run_empose("-p", "no:broken", "list-plugins", "--json", "-p", "no:toy", pythonpath=site)  # anywhere, like pytest
    assert r.returncode == 0, r.stderr
    assert "broken" not in r.stderr
    payload = json.loads(r.stdout)
    assert "toy" not in [e["name"] for e in payload["components"]["estimator"]] and payload["failures"] == []
    plugins = {p["name"]: p for p in payload["plugins"]}
    assert plugins["toy"] == {"name": "toy", "distribution": "toy-plugin", "version": "1.2.3", "hooks": [], "status": "disabled"}
    assert plugins["broken"]["status"] == "disabled" and plugins["estimators"]["status"] == "loaded"


@pytest.mark.parametrize("how", ["env", "option"])
def test_disabling_an_unknown_plugin_is_an_error_naming_the_plugins(site, how):
    if how == "env":
        r = run_empose("list-plugins", pythonpath=site, env={"EMPOSE_DISABLE_PLUGINS": "broken,toyy"})
    else:
        r = run_empose("-p", "no:broken", "-p", "no:toyy", "list-plugins", pythonpath=site)
    assert r.returncode == 2
    assert "cannot disable 'toyy'" in r.stderr and "Did you mean 'toy'?" in r.stderr
    assert "broken, em, estimators" in r.stderr and "Traceback" not in r.stderr  # every plugin name, sorted


def test_strict_mode_makes_a_broken_plugin_fatal(site):
    r = run_empose("--strict-plugins", "list-plugins", pythonpath=site)
    assert r.returncode == 2
    assert "error: plugin 'broken' (from broken-plugin 0.0.1) failed" in r.stderr
    assert "Traceback" not in r.stderr


def test_two_plugins_registering_one_name_are_reported_and_neither_is_used(site):
    make_distribution(site, "clash-plugin", "2.0", {"clash": "clash_plugin"}, {"clash_plugin": CLASH})
    r = run_empose("-p", "no:broken", "list-plugins", "--json", pythonpath=site)
    assert r.returncode == 0, r.stderr
    assert "two plugins register the estimator 'toy': 'clash' (clash-plugin 2.0) and 'toy' (toy-plugin 1.2.3); " \
           "none of them is used" in r.stderr
    assert "-p no:clash" in r.stderr and "-p no:toy" in r.stderr
    payload = json.loads(r.stdout)
    assert "toy" not in [e["name"] for e in payload["components"]["estimator"]]
    assert [(f["plugin"], f["others"]) for f in payload["failures"]] == [("clash", ["toy"])]
    assert {p["name"]: p["status"] for p in payload["plugins"]}["toy"] == "partly loaded"
    strict = run_empose("-p", "no:broken", "--strict-plugins", "list-plugins", pythonpath=site)
    assert strict.returncode == 2 and "error: two plugins register the estimator 'toy'" in strict.stderr


def test_component_import_failure_is_reported_when_described(site):
    # toy_impl does not exist: listing works, describing names the plugin, target and fix
    r = run_empose("-p", "no:broken", "describe", "estimator", "toy", pythonpath=site)
    assert r.returncode == 2
    assert "estimator 'toy' (plugin 'toy' from toy-plugin 1.2.3) could not be imported from 'toy_impl:Toy'" in r.stderr
    assert "ModuleNotFoundError" in r.stderr and "-p no:toy" in r.stderr


def test_unknown_name_suggests_the_closest():
    from core_fakes import FakePlugin

    reg = Registry(entry_points=False, extra_plugins=[("fake", FakePlugin())])
    with pytest.raises(PluginError) as exc:
        reg.get("estimator", "resnt")
    assert "unknown estimator 'resnt'. Did you mean 'resnet'?" in str(exc.value)
    assert "Installed estimators: lgd, resnet" in str(exc.value)
    with pytest.raises(PluginError, match="unknown component kind 'estimater'. Did you mean 'estimator'"):
        reg.entries("estimater")


def test_build_passes_params_and_keywords():
    from core_fakes import fake_registry

    reg = fake_registry()
    src = reg.build("sensor_source", {"use": "fake_source", "path": "/data", "motions": {"use": "fake_source", "path": "/m"}},
                    body_model="BM")
    assert src.path == "/data" and src.sensors == "em12" and src.body_model == "BM"
    assert src.motions.path == "/m" and src.motions.body_model == "BM"  # nested spec arrives built


def test_listing_plugins_does_not_import_torch():
    # list-plugins must stay fast (< 1.5 s, see bench/cli_startup.py): component classes load lazily
    import subprocess
    import sys

    code = ("import sys\nfrom empose_framework.cli import main\ntry:\n    main(['list-plugins'])\n"
            "except SystemExit:\n    pass\nprint('TORCH', 'torch' in sys.modules, file=sys.stderr)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "TORCH False" in r.stderr, r.stderr


def test_list_plugins_table_shows_names_hooks_and_status(site):
    r = run_empose("list-plugins", pythonpath=site)
    assert r.returncode == 0, r.stderr
    assert "plugins (`-p no:NAME` disables one)" in r.stdout
    rows = {cells[0]: cells for cells in ([c.strip() for c in line.split("│")[1:-1]] for line in r.stdout.splitlines())
            if len(cells) == 5}  # the plugins table's rows (component tables have three columns)
    assert rows["toy"] == ["toy", "toy-plugin", "1.2.3", "register_estimators", "loaded"]
    assert rows["broken"] == ["broken", "broken-plugin", "0.0.1", "", "failed"]
    assert rows["render"][3] == "register_commands, render_motion"


# ------------------------------------------------------------------ in-memory plugins
class Estimators:
    @hookimpl
    def register_estimators(self, register):
        register("toy", "toy_impl:Toy", "A toy estimator")
        register("own", "toy_impl:Own", "only this plugin registers it")


class ClashingEstimators:
    @hookimpl
    def register_estimators(self, register):
        register("toy", "clash_impl:Toy", "Another toy")


class Misspelt:
    @hookimpl
    def register_estimator(self, register):  # the hook is register_estimators
        register("typo", "typo_impl:Typo")

    @hookimpl
    def register_losses(self, register):
        register("typo_loss", "typo_impl:Loss")


class FewerArguments:
    """Implementations may take a subset of the hookspec's arguments (pluggy passes only those)."""

    def __init__(self):
        self.calls = []

    @hookimpl
    def register_metrics(self):
        self.calls.append("register_metrics")

    @hookimpl
    def render_motion(self, out):
        self.calls.append("render_motion")
        return out


class Declines:
    """A renderer that cannot draw this file: returns None, so the next implementation is asked."""

    def __init__(self):
        self.calls = []

    @hookimpl
    def render_motion(self, prediction, truth, out, options):
        self.calls.append(prediction)


class RaisesHalfway:
    @hookimpl
    def register_losses(self, register):
        register("early", "raise_impl:Early")
        raise RuntimeError("boom in the hook")

    @hookimpl
    def register_metrics(self, register):
        register("fine_metric", "raise_impl:Metric")


class Commands:
    @hookimpl
    def register_commands(self, app):
        @app.command("hello")
        def hello():
            """Say hello."""


class BrokenCommands:
    @hookimpl
    def register_commands(self, app):
        raise ValueError("no commands today")


class ExtraArgument:
    @hookimpl
    def register_metrics(self, register, sensors):  # not an argument of the hookspec
        register("m", "x:M")


def registry(*plugins, **kw):
    return Registry(entry_points=False, extra_plugins=list(plugins), **kw)


def test_a_misspelt_hook_skips_the_plugin_with_a_did_you_mean():
    reg = registry(("typo", Misspelt()), ("estimators", Estimators()))
    [failure] = reg.failures
    assert failure.plugin == "typo"
    msg = failure.message()
    assert "it implements 'register_estimator', which empose has no hook for. Did you mean 'register_estimators'?" in msg
    assert "register_body_models, register_commands, register_estimators" in msg and "-p no:typo" in msg
    assert reg.entries("loss") == []  # the whole plugin is skipped, its valid hooks too
    assert [e.name for e in reg.entries("estimator")] == ["own", "toy"]
    assert reg.plugins["typo"].status == "failed" and reg.plugins["typo"].hooks == ("register_estimator", "register_losses")
    assert reg.pm.get_plugin("typo") is None  # unregistered from pluggy: none of its hooks is called
    with pytest.raises(PluginError, match="plugin 'typo' \\(from local \\?\\) failed: it implements 'register_estimator'"):
        registry(("typo", Misspelt()), strict=True)


def test_a_hookimpl_argument_the_hookspec_lacks_is_reported():
    reg = registry(("extra", ExtraArgument()), ("estimators", Estimators()))
    [failure] = reg.failures
    assert failure.plugin == "extra" and "pluggy rejected it" in failure.error and "{'sensors'}" in failure.error
    assert reg.entries("metric") == [] and reg.pm.get_plugin("extra") is None
    assert len(reg.entries("estimator")) == 2


def test_hooks_are_called_through_pluggy_with_fewer_arguments_and_first_result():
    from empose_framework.drawing import render_motion_file

    few, declines = FewerArguments(), Declines()
    reg = registry(("few", few), ("declines", declines))
    assert reg.failures == [] and few.calls == ["register_metrics"]
    out = render_motion_file("pred.npz", None, "clip.gif", registry=reg)
    # pluggy calls the last registered first: `declines` returns None, so `few` answers with the path
    assert out == Path("clip.gif") and declines.calls == ["pred.npz"] and few.calls[-1] == "render_motion"


def test_a_raising_hook_is_attributed_and_adds_nothing():
    reg = registry(("half", RaisesHalfway()), ("estimators", Estimators()))
    [failure] = reg.failures
    assert failure.plugin == "half" and failure.error == "register_losses raised RuntimeError: boom in the hook"
    assert reg.entries("loss") == []  # `early` was registered before the raise: not kept
    assert [e.name for e in reg.entries("metric")] == ["fine_metric"] and reg.entries("metric")[0].plugin == "half"
    assert reg.plugins["half"].status == "partly loaded" and reg.plugins["estimators"].status == "loaded"


def test_register_commands_is_called_per_plugin():
    import typer

    reg = registry(("commands", Commands()), ("broken", BrokenCommands()))
    app = typer.Typer()
    reg.add_commands(app)
    assert [c.name for c in app.registered_commands] == ["hello"]
    assert [(f.plugin, f.error) for f in reg.failures] == [("broken", "register_commands raised ValueError: no commands today")]


def test_a_name_two_plugins_register_is_reported_and_neither_entry_kept():
    reg = registry(("estimators", Estimators()), ("clash", ClashingEstimators()))
    [failure] = reg.failures
    assert (failure.plugin, failure.others) == ("estimators", ("clash",))
    assert failure.error == "two plugins register the estimator 'toy': 'estimators' (local ?) and 'clash' (local ?)"
    assert "none of them is used" in failure.message() and "`empose -p no:clash ...`" in failure.message()
    assert [e.name for e in reg.entries("estimator")] == ["own"]  # the other name of the same plugin stays
    with pytest.raises(PluginError, match="two plugins register the estimator 'toy'"):
        registry(("estimators", Estimators()), ("clash", ClashingEstimators()), strict=True)


def test_weights_name_clash_is_reported_like_components(tmp_path):
    class Weights:
        def __init__(self, description):
            self.description = description

        @hookimpl
        def register_weights(self, register):
            register("shared", tmp_path / "w.pt", description=self.description)
            register(f"only_{self.description}", tmp_path / "w.pt")

    reg = registry(("one", Weights("a")), ("two", Weights("b")))
    assert [w.name for w in reg.weights()] == ["only_a", "only_b"]
    assert [f.error for f in reg.failures] == ["two plugins register the pretrained weights 'shared': 'one' (local ?) and 'two' (local ?)"]


def test_disabled_names_must_exist_and_block_the_plugin():
    reg = registry(("estimators", Estimators()), ("clash", ClashingEstimators()), disabled={"clash"})
    assert reg.failures == [] and [e.name for e in reg.entries("estimator")] == ["own", "toy"]
    assert reg.plugins["clash"].status == "disabled" and reg.pm.get_plugin("clash") is None
    with pytest.raises(PluginError) as exc:
        registry(("estimators", Estimators()), disabled={"estimator", "nothing_like_it"})
    msg = str(exc.value)
    assert "cannot disable 'estimator', 'nothing_like_it'" in msg and "Did you mean 'estimators'?" in msg
    assert "Plugins: estimators" in msg
