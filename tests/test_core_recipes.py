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
    recipe = load(write(tmp_path, text))  # validating reads no variable; building the run does
    with pytest.raises(RecipeError) as exc:
        _ = recipe.data
    msg = str(exc.value)
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

    from empose_framework.envvars import expand_env_path

    monkeypatch.setenv("EMPOSE_TEST_ROOT", "/data")
    monkeypatch.delenv("EMPOSE_TEST_UNSET", raising=False)
    # one syntax with recipes: ${VAR} and ${VAR:-default}; a `$` without `{` is an ordinary character
    assert expand_env_path("${EMPOSE_TEST_ROOT}/a/$EMPOSE_TEST_ROOT", KeyError) == (Path("/data/a/$EMPOSE_TEST_ROOT"), ["EMPOSE_TEST_ROOT"])
    assert expand_env_path("${EMPOSE_TEST_UNSET:-/d}/${EMPOSE_TEST_ROOT}", KeyError)[0] == Path("/d/data")
    assert expand_env_path("~/x", KeyError)[0] == Path.home() / "x"
    with pytest.raises(RecipeError, match="EMPOSE_TEST_UNSET is unset"):
        expand_env_path("${EMPOSE_TEST_UNSET}/a", lambda name: RecipeError(f"{name} is unset"))


# ------------------------------------------------------------------ validation before the environment

PAPER_VARIABLES = ("SMPL_MODELS", "EM_DATA_SYNTH", "EM_DATA_REAL")


def test_paper_recipe_validates_without_its_data(monkeypatch, tmp_path):
    from pathlib import Path

    for var in PAPER_VARIABLES:
        monkeypatch.delenv(var, raising=False)
    path = Path(__file__).resolve().parents[1] / "recipes" / "lgd_rnn_6.yaml"
    r = load_recipe(path, [])  # the installed plugins; no variable is set
    assert r.recorded["body_model"]["path"] == "${SMPL_MODELS}/smplh_amass/neutral/model.npz"
    assert r.recorded["estimator"]["hidden"] == 512 and r.recorded["train"]["lr"] == 5e-4
    assert r.variables() == {v: True for v in ("SMPL_MODELS", "EM_DATA_REAL", "EM_DATA_SYNTH")}
    with pytest.raises(RecipeError, match="body_model.path: environment variable SMPL_MODELS is not set"):
        _ = r.data  # building the run reads them
    done = run_empose("validate", path, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "${EM_DATA_REAL}" in done.stdout and "valid" in done.stderr
    assert "SMPL_MODELS (not set)" in done.stderr and "EM_DATA_SYNTH (not set)" in done.stderr
    done = run_empose("validate", path, cwd=tmp_path, env={"SMPL_MODELS": "/secret/models"})
    assert "SMPL_MODELS (set)" in done.stderr and "/secret/models" not in done.stdout + done.stderr


def test_structure_is_checked_before_any_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("EMPOSE_TEST_UNSET", raising=False)
    text = DECLARE + GOOD.replace("/data/train", "'${EMPOSE_TEST_UNSET}/train'")
    msg = error(tmp_path, text.replace("batch_size: 4", "batchsize: 4"))
    assert "train.batchsize: unknown key" in msg and "not set" not in msg
    # an undeclared or malformed reference is found without reading the environment
    msg = error(tmp_path, GOOD.replace("/data/train", "'${EMPOSE_TEST_UNSET}/train'"))
    assert "data.train.path: the recipe reads the environment variable EMPOSE_TEST_UNSET but does not declare it" in msg
    msg = error(tmp_path, DECLARE + GOOD.replace("/data/train", "'${EMPOSE_TEST_UNSET:-${EMPOSE_OTHER}}'"))
    assert "does not declare it" in msg and "EMPOSE_OTHER" in msg
    assert "bad variable reference" in error(tmp_path, GOOD.replace("/data/train", "'${1X}'"))


def test_values_from_variables_are_checked_once_expanded(tmp_path, monkeypatch):
    text = DECLARE + GOOD.replace("task: train", "task: train\ndevice: '${EMPOSE_TEST_ROOT:-cpu}'")
    monkeypatch.delenv("EMPOSE_TEST_ROOT", raising=False)
    r = load(write(tmp_path, text))
    assert r.recorded["device"] == "${EMPOSE_TEST_ROOT:-cpu}" and r.data["device"] == "cpu"
    monkeypatch.setenv("EMPOSE_TEST_ROOT", "gpu7")
    with pytest.raises(RecipeError, match="r.yaml: device: expected auto, cpu, cuda, cuda:N or mps, got 'gpu7'"):
        _ = load(write(tmp_path, text)).data


def test_set_values_declare_their_variables_for_the_run_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("EMPOSE_TEST_ROOT", "/mnt")
    r = load(write(tmp_path, GOOD), "data.train.path=${EMPOSE_TEST_ROOT}/t")
    assert r.recorded["env"] == ["EMPOSE_TEST_ROOT"] and r.recorded["data"]["train"]["path"] == "${EMPOSE_TEST_ROOT}/t"
    assert r.data["data"]["train"]["path"] == "/mnt/t"
    again = write(tmp_path, r.dump(recorded=True), "recorded.yaml")  # the run folder's recipe.yaml loads as it is
    assert load(again).data["data"]["train"]["path"] == "/mnt/t"


# ------------------------------------------------------------------ component specs merge by meaning


def _quickstart():
    from pathlib import Path

    return Path(__file__).resolve().parents[1] / "recipes" / "quickstart.yaml"


def _defaults(kind, name):
    from empose_framework.plugins import get_registry

    return {p.name: p.default for p in get_registry().params(kind, name)}


def test_changing_use_replaces_the_component_parameters(tmp_path):
    child = write(tmp_path, f"extends: {_quickstart()}\nestimator: {{use: rnn, bidirectional: true}}\n")
    rnn = {"use": "rnn", **_defaults("estimator", "rnn"), "bidirectional": True}
    assert load_recipe(child, []).recorded["estimator"] == rnn  # no `blocks` or `rnn_init` of lgd
    by_set = load_recipe(_quickstart(), ["estimator.use=rnn", "estimator.bidirectional=true"]).recorded
    assert by_set["estimator"] == rnn
    # the --set order does not matter: a changed `use` comes first
    assert load_recipe(_quickstart(), ["estimator.bidirectional=true", "estimator.use=rnn"]).recorded["estimator"] == rnn
    # the same `use` still merges, nested specs too
    same = load_recipe(_quickstart(), ["estimator.use=lgd", "data.train.motions.use=embedded"]).recorded
    assert same["estimator"]["hidden"] == 256 and same["data"]["train"]["motions"]["count"] == 256
    swapped = load_recipe(_quickstart(), ["data.test.cmu.motions.use=embedded"]).recorded["data"]["test"]["cmu"]
    assert swapped["motions"] == {"use": "embedded", **_defaults("motion_source", "embedded")}


def test_evaluate_use_is_a_setting_not_a_component(tmp_path):
    write(tmp_path, GOOD + "evaluate: {chunk: 32, checkpoint: a.pt}\n", "base.yaml")
    child = write(tmp_path, "extends: base.yaml\nevaluate: {use: last}\n", "child.yaml")
    assert load(child).recorded["evaluate"] == {"checkpoint": "a.pt", "chunk": 32, "use": "last", "render": 0}
    r = load(tmp_path / "base.yaml", "evaluate.use=last").recorded
    assert r["evaluate"]["chunk"] == 32 and r["evaluate"]["checkpoint"] == "a.pt"


# ------------------------------------------------------------------ settings owned by the model

#: the evaluation chunk each shipped recipe used before `evaluate.chunk: auto` (each set it explicitly)
CHUNK_BEFORE = {"quickstart": 256, "pretrained": None, "resnet_6": None, "resnet_12": None, "birnn_6": None,
                "birnn_12": None, "lgd_6": 256, "lgd_12": 256, "lgd_rnn_6": 256, "lgd_rnn_12": 256,
                "cmu_lgd_rnn_6": 256, "cmu_lgd_rnn_12": 256, "cmu_birnn_6": None, "cmu_resnet_6": None}  # fmt: skip


def test_evaluation_chunk_comes_from_the_estimator_unless_the_recipe_sets_it(monkeypatch):
    from empose_framework.engine.schema import EvaluateSettings
    from empose_framework.plugins import get_registry

    registry = get_registry()
    estimator_of = {"pretrained": "lgd"}  # pretrained.yaml: its checkpoint, pretrained:cmu_lgd_rnn_6, is an LGD
    for name, before in CHUNK_BEFORE.items():
        r = load_recipe(_quickstart().parent / f"{name}.yaml", [])
        cls = registry.load("estimator", estimator_of.get(name) or r.recorded["estimator"]["use"])
        assert EvaluateSettings(**r.recorded["evaluate"]).chunk_for(cls) == before, name
    swapped = load_recipe(_quickstart(), ["estimator.use=rnn", "estimator.bidirectional=true"]).recorded
    assert EvaluateSettings(**swapped["evaluate"]).chunk_for(registry.load("estimator", "rnn")) is None
    fixed = load_recipe(_quickstart(), ["estimator.use=rnn", "evaluate.chunk=100"]).recorded
    assert EvaluateSettings(**fixed["evaluate"]).chunk_for(registry.load("estimator", "rnn")) == 100
    with pytest.raises(RecipeError, match="evaluate.chunk: expected a number of frames, null or auto, got 'whole'"):
        load_recipe(_quickstart(), ["evaluate.chunk=whole"])


def test_run_settings_are_typed_and_match_the_recipe(tmp_path):
    import dataclasses

    from empose_framework.engine.schema import EVALUATE_PARAMS, TRAIN_PARAMS, RunSettings, TrainSettings

    r = load(write(tmp_path, GOOD))
    s = RunSettings.of(r)
    assert s.train.lr == 5.0e-4 and s.train.batch_size == 4 and s.train.window == 32 and s.seed == 0
    assert s.data.train["path"] == "/data/train" and s.data.valid is None and s.data.test == {}
    assert s.evaluate.chunk == "auto" and s.recorded is r.recorded
    assert [f.name for f in dataclasses.fields(TrainSettings)] == [p.name for p in TRAIN_PARAMS] == list(r.recorded["train"])
    assert [p.name for p in EVALUATE_PARAMS] == list(r.recorded["evaluate"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.train.lr = 1.0
