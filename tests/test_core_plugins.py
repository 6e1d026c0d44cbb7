"""Plugin discovery through real entry points: failures, duplicates, disabling, strict mode."""

import inspect
import json

import pytest

from core_fakes import make_distribution, run_empose
from empose_framework import hookspecs
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
        r = run_empose("list-plugins", pythonpath=site, env={"EMPOSE_DISABLE_PLUGINS": "broken,toy"})
    else:
        r = run_empose("-p", "no:broken", "list-plugins", "-p", "no:toy", pythonpath=site)  # anywhere, like pytest
    assert r.returncode == 0
    assert "broken" not in r.stderr
    assert "toy-plugin" not in r.stdout


def test_strict_mode_makes_a_broken_plugin_fatal(site):
    r = run_empose("--strict-plugins", "list-plugins", pythonpath=site)
    assert r.returncode == 2
    assert "error: plugin 'broken' (from broken-plugin 0.0.1) failed" in r.stderr
    assert "Traceback" not in r.stderr


def test_two_plugins_registering_one_name_is_an_error_naming_both(site):
    make_distribution(site, "clash-plugin", "2.0", {"clash": "clash_plugin"}, {"clash_plugin": CLASH})
    r = run_empose("-p", "no:broken", "list-plugins", pythonpath=site)
    assert r.returncode == 2
    assert "two plugins register the estimator 'toy'" in r.stderr
    assert "'clash' (clash-plugin 2.0)" in r.stderr and "'toy' (toy-plugin 1.2.3)" in r.stderr


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
