"""Recipes: interpolation, overrides, extends, and the text of every validation error."""

import textwrap

import pytest

from core_fakes import fake_registry, run_empose
from empose_framework.errors import RecipeError
from empose_framework.recipes import load_recipe

GOOD = """
name: demo
task: train
body_model: fake_body
data:
  train: {use: fake_source, path: /data/train, motions: {use: fake_source, path: /m}}
estimator: {use: lgd, hidden: 256}
losses: [{use: pose, weight: 10}]
metrics: []
train: {lr: 5.0e-4, batch_size: 4}
"""


DECLARE = "env: [EMPOSE_TEST_ROOT, EMPOSE_TEST_UNSET]\n"


def write(tmp_path, text, name="r.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def load(path, *overrides):
    return load_recipe(path, list(overrides), registry=fake_registry())


def error(tmp_path, text, *overrides):
    with pytest.raises(RecipeError) as exc:
        load(write(tmp_path, text), *overrides)
    return str(exc.value)


def test_resolved_recipe_has_every_default(tmp_path):
    r = load(write(tmp_path, GOOD)).data
    assert r["estimator"] == {"use": "lgd", "hidden": 256, "step_size": 0.1, "rnn_init": True, "mode": "fast"}
    assert r["body_model"] == {"use": "fake_body", "n_betas": 10}
    assert r["data"]["train"]["motions"] == {"use": "fake_source", "motions": None, "sensors": "em12",
                                             "path": "/m", "optional": False}
    assert r["losses"] == [{"use": "pose", "weight": 10.0}]
    assert isinstance(r["losses"][0]["weight"], float)
    assert r["train"]["lr"] == 5.0e-4 and r["train"]["window"] == 32 and r["seed"] == 0
    assert r["data"]["valid"] is None and r["data"]["test"] == {}


def test_unknown_component_suggests_a_name(tmp_path):
    msg = error(tmp_path, GOOD.replace("use: lgd", "use: lgdd"))
    assert "r.yaml: estimator.use: unknown estimator 'lgdd'. Did you mean 'lgd'?" in msg
    assert "empose list-plugins" in msg


def test_unknown_key_lists_valid_ones(tmp_path):
    msg = error(tmp_path, GOOD.replace("hidden: 256", "hiden: 256"))
    assert "r.yaml: estimator.hiden: unknown key for estimator 'lgd'. Did you mean 'hidden'?" in msg
    assert "Valid keys: use, hidden, step_size, rnn_init, mode." in msg


def test_unknown_top_level_and_section_keys(tmp_path):
    assert "r.yaml: trian: unknown key for the recipe. Did you mean 'train'?" in error(tmp_path, GOOD + "trian: {}\n")
    msg = error(tmp_path, GOOD.replace("batch_size: 4", "batchsize: 4"))
    assert "train.batchsize: unknown key for the train section. Did you mean 'batch_size'?" in msg


def test_wrong_type_says_what_was_expected(tmp_path):
    msg = error(tmp_path, GOOD.replace("lr: 5.0e-4", "lr: fast"))
    assert "r.yaml: train.lr: expected float, got 'fast' (str)." in msg
    msg = error(tmp_path, GOOD.replace("hidden: 256", "hidden: 2.5"))
    assert "estimator.hidden: expected int, got 2.5 (float)." in msg
    msg = error(tmp_path, GOOD.replace("hidden: 256", "hidden: true"))
    assert "estimator.hidden: expected int, got True (bool)." in msg
    msg = error(tmp_path, GOOD.replace("hidden: 256", "mode: slow"))
    assert "estimator.mode: expected one of 'fast', 'exact', got 'slow'." in msg


def test_missing_required_key(tmp_path):
    msg = error(tmp_path, GOOD.replace("name: demo\n", ""))
    assert "r.yaml: name: missing required key (str: run name" in msg
    msg = error(tmp_path, GOOD.replace("path: /data/train, ", ""))
    assert "data.train.path: missing required key (str: where the data lives)" in msg
    msg = error(tmp_path, GOOD.replace("estimator: {use: lgd, hidden: 256}", "estimator: {hidden: 256}"))
    assert "estimator.use: missing required key: which estimator to use." in msg
    msg = error(tmp_path, GOOD.replace("estimator: {use: lgd, hidden: 256}\n", ""))
    assert "r.yaml: estimator: missing required key: task 'train' needs an estimator to train" in msg
    # an evaluate recipe takes its estimator from the checkpoint
    text = GOOD.replace("estimator: {use: lgd, hidden: 256}\n", "").replace("task: train", "task: evaluate")
    assert load(write(tmp_path, text)).data["estimator"] is None


def test_env_interpolation(tmp_path, monkeypatch):
    text = DECLARE + GOOD.replace("/data/train", "'${EMPOSE_TEST_ROOT}/train'").replace("/m}", "'${EMPOSE_TEST_UNSET:-/fallback}/m'}")
    monkeypatch.setenv("EMPOSE_TEST_ROOT", "/mnt/x")
    monkeypatch.delenv("EMPOSE_TEST_UNSET", raising=False)
    r = load(write(tmp_path, text)).data
    assert r["data"]["train"]["path"] == "/mnt/x/train"
    assert r["data"]["train"]["motions"]["path"] == "/fallback/m"
    monkeypatch.delenv("EMPOSE_TEST_ROOT")
    msg = error(tmp_path, text)
    assert "r.yaml: data.train.path: environment variable EMPOSE_TEST_ROOT is not set." in msg
    assert "--set data.train.path=..." in msg


def test_nested_defaults_expand_only_when_needed(tmp_path, monkeypatch):
    monkeypatch.setenv("EMPOSE_TEST_ROOT", "/set")
    monkeypatch.delenv("EMPOSE_TEST_UNSET", raising=False)
    text = DECLARE + GOOD.replace("/data/train", "'${EMPOSE_TEST_UNSET:-${EMPOSE_TEST_ROOT:-/x}/d}'")
    text = text.replace("/m}", "'${EMPOSE_TEST_ROOT:-${EMPOSE_TEST_UNSET}}'}")  # unset inner var never read
    r = load(write(tmp_path, text)).data
    assert r["data"]["train"]["path"] == "/set/d" and r["data"]["train"]["motions"]["path"] == "/set"
    msg = error(tmp_path, GOOD.replace("/data/train", "'${EMPOSE_TEST_ROOT'"))
    assert "data.train.path: unterminated variable reference in '${EMPOSE_TEST_ROOT': a `${` lacks its `}`." in msg


def test_recipe_dir_variable(tmp_path):
    r = load(write(tmp_path, GOOD.replace("/data/train", "'${RECIPE_DIR}/d'"))).data
    assert r["data"]["train"]["path"] == f"{tmp_path.resolve()}/d"


def test_set_overrides_are_yaml_typed(tmp_path):
    r = load(write(tmp_path, GOOD), "train.lr=1e-3", "losses.0.weight=2", "estimator.rnn_init=false",
             "body_model.n_betas=16", "data.train.sensors=[back, head]").data
    assert r["train"]["lr"] == 1e-3 and r["losses"][0]["weight"] == 2.0
    assert r["estimator"]["rnn_init"] is False
    assert r["body_model"]["n_betas"] == 16  # the `body_model: fake_body` shorthand grew into a spec
    assert r["data"]["train"]["sensors"] == ["back", "head"]
    with pytest.raises(RecipeError, match=r"--set 'train\.lr': expected KEY\.PATH=VALUE"):
        load(write(tmp_path, GOOD), "train.lr")
    with pytest.raises(RecipeError, match=r"'5' is not an index of a list of 1 items"):
        load(write(tmp_path, GOOD), "losses.5.weight=1")


def test_overrides_replace_values_before_interpolation(tmp_path, monkeypatch):
    monkeypatch.delenv("EMPOSE_TEST_ROOT", raising=False)
    text = GOOD.replace("/data/train", "'${EMPOSE_TEST_ROOT}/train'")
    assert load(write(tmp_path, text), "data.train.path=/here").data["data"]["train"]["path"] == "/here"


def test_extends_merges_and_detects_cycles(tmp_path):
    write(tmp_path, GOOD, "base.yaml")
    child = write(tmp_path, "extends: base.yaml\nname: child\nestimator: {hidden: 64}\n", "child.yaml")
    r = load(child).data
    assert r["name"] == "child" and r["estimator"]["hidden"] == 64 and r["estimator"]["use"] == "lgd"
    assert r["train"]["lr"] == 5.0e-4
    write(tmp_path, "extends: b.yaml\n", "a.yaml")
    write(tmp_path, "extends: a.yaml\n", "b.yaml")
    with pytest.raises(RecipeError, match="extends: recipes extend each other in a cycle"):
        load(tmp_path / "a.yaml")
    with pytest.raises(RecipeError, match=r"extends: base recipe .*nope.yaml does not exist"):
        load(write(tmp_path, "extends: nope.yaml\n", "c.yaml"))


def test_bad_yaml_and_missing_file(tmp_path):
    msg = error(tmp_path, "name: [unclosed\n")
    assert "r.yaml: not valid YAML at line" in msg
    with pytest.raises(RecipeError, match="recipe file .*absent.yaml does not exist"):
        load(tmp_path / "absent.yaml")


def test_cli_shows_one_paragraph_and_exit_code_2(tmp_path):
    bad = write(tmp_path, "name: x\ntask: dance\n")
    r = run_empose("validate", bad)
    assert r.returncode == 2
    assert "error:" in r.stderr and "task: expected one of 'train', 'evaluate', got 'dance'." in r.stderr
    assert "Traceback" not in r.stderr
    r = run_empose("--debug", "validate", bad)
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_cli_usage_errors_are_messages_not_tracebacks(tmp_path):
    r = run_empose("list-plugins", "--bogus")
    assert r.returncode == 2 and "No such option: --bogus" in r.stderr and "Traceback" not in r.stderr
    r = run_empose("describe", "estimater", "lgd")
    assert r.returncode == 2 and "unknown component kind 'estimater'. Did you mean 'estimator'?" in r.stderr


def test_readme_recipe_example_validates(tmp_path, monkeypatch):
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("## Recipes", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    monkeypatch.setenv("EM_DATA_SYNTH", "/data/synth")
    monkeypatch.setenv("EM_DATA_REAL", "/data/real")
    r = load_recipe(write(tmp_path, block), [])  # the installed plugins, as a user has them
    assert r.data["data"]["train"]["motions"]["path"] == "/data/synth/amass_lmdb"
    assert r.data["estimator"]["rnn_init"] is True and r.data["losses"][0]["weight"] == 10.0


def test_every_shipped_recipe_validates(monkeypatch):
    from pathlib import Path

    for var in ("SMPL_MODELS", "EM_DATA_SYNTH", "EM_DATA_REAL", "EMPOSE_CMU_LMDB"):
        monkeypatch.setenv(var, f"/data/{var.lower()}")
    recipes = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("[!_]*.yaml"))
    assert len(recipes) == 14  # quickstart, pretrained, 8 paper recipes, 4 CMU recipes
    for path in recipes:
        r = load_recipe(path, [])
        assert r.data["name"] == path.stem


def test_path_params_expand_environment_variables(monkeypatch):
    from pathlib import Path

    from empose_framework.params import expand_env_path

    monkeypatch.setenv("EMPOSE_TEST_ROOT", "/data")
    monkeypatch.delenv("EMPOSE_TEST_UNSET", raising=False)
    assert expand_env_path("${EMPOSE_TEST_ROOT}/a/$EMPOSE_TEST_ROOT", KeyError) == (Path("/data/a/data"), ["EMPOSE_TEST_ROOT"] * 2)
    assert expand_env_path("~/x", KeyError)[0] == Path.home() / "x"
    with pytest.raises(RecipeError, match="EMPOSE_TEST_UNSET is unset"):
        expand_env_path("${EMPOSE_TEST_UNSET}/a", lambda name: RecipeError(f"{name} is unset"))
