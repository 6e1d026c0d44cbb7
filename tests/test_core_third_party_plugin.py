"""The path a real user takes: pip-install empose and a third-party plugin into a fresh venv.

The venv sees the test interpreter's dependencies (torch, smplx, ...) through a .pth file (cheaper
than installing torch again), but empose itself and the example plugin are built into wheels from this
checkout and pip-installed into the venv, so the entry points `empose list-plugins` reads are the ones
pip wrote there.
"""

import json
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "empose-plugin-example"


def sh(*cmd, **kw):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=600, **kw)
    assert r.returncode == 0, f"{cmd} failed:\n{r.stdout}\n{r.stderr}"
    return r


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    root = tmp_path_factory.mktemp("venv")
    src = root / "src"
    # copy the checkout (without build artefacts) so the build never writes into the working tree
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", "build", "*.egg-info", "__pycache__", "runs", ".venv"))
    env = root / "env"
    sh(sys.executable, "-m", "venv", env)
    env_site = next((env / "lib").glob("python*/site-packages"))
    (env_site / "_outer_site.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    wheels = root / "wheels"
    build = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", wheels]
    sh(*build, src)
    sh(*build, src / "examples" / "empose-plugin-example")
    sh(env / "bin" / "python", "-m", "pip", "install", "--quiet", "--no-deps", *sorted(wheels.glob("*.whl")))
    return env


def test_installed_plugin_is_listed(venv):
    r = sh(venv / "bin" / "empose", "list-plugins", "--kind", "estimator", env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})
    line = next(row for row in r.stdout.splitlines() if "sensor_mlp" in row)
    assert "empose-plugin-example 0.1.0" in line
    assert "Frame-wise MLP from sensor readings to pose (example plugin)" in line


def test_plugin_name_and_hooks_are_listed_and_disable_by_that_name(venv):
    env = {"COLUMNS": "200", "PATH": "/usr/bin:/bin"}
    r = sh(venv / "bin" / "empose", "list-plugins", "--json", env=env)
    plugins = {p["name"]: p for p in json.loads(r.stdout)["plugins"]}
    assert plugins["example"] == {"name": "example", "distribution": "empose-plugin-example", "version": "0.1.0",
                                  "hooks": ["register_estimators"], "status": "loaded"}
    r = sh(venv / "bin" / "empose", "-p", "no:example", "list-plugins", "--kind", "estimator", env=env)
    assert "sensor_mlp" not in r.stdout
    typo = subprocess.run([venv / "bin" / "empose", "-p", "no:exmaple", "list-plugins"], capture_output=True, text=True, env=env)
    assert typo.returncode == 2 and "cannot disable 'exmaple'" in typo.stderr and "Did you mean 'example'" in typo.stderr


def test_recipe_naming_the_plugin_validates(venv, tmp_path):
    recipe = tmp_path / "uses_plugin.yaml"
    recipe.write_text(
        "name: third_party\ntask: train\nbody_model: embedded\n"
        "estimator: {use: sensor_mlp, hidden: 64}\nlosses: []\nmetrics: []\n"
    )
    r = sh(venv / "bin" / "empose", "validate", recipe, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})
    assert "use: sensor_mlp\n  hidden: 64\n  layers: 2\n" in r.stdout
    assert "valid" in r.stderr
    bad = tmp_path / "typo.yaml"
    bad.write_text(recipe.read_text().replace("sensor_mlp", "sensor_mpl"))
    r = subprocess.run([venv / "bin" / "empose", "validate", bad], capture_output=True, text=True,
                       env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 2 and "Did you mean 'sensor_mlp'?" in r.stderr
