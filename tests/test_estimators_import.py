"""`empose import-checkpoint` on released-model folders that the test builds in the original's layout."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from _estimators_testkit import EM6, EM12, embedded_body, original_layout_state_dict, released_state_dicts
from empose_estimators.convert import build_estimator, import_checkpoint
from empose_framework.cli import main
from empose_framework.errors import DataError
from empose_framework.interfaces import SensorFrames


def write_released(folder, name="LGD RNN 6", model_id="1615631737", drop=(), reshape=None, config_edit=None):
    table = released_state_dicts()[name]
    state = original_layout_state_dict(table)
    for k in drop:
        del state[k]
    if reshape:
        state[reshape] = torch.zeros(3, 3)
    config = {**table["flags"], "experiment_id": model_id, "input_size": 72, "pose_size": 66, "shape_size": 10}
    if config_edit:
        config_edit(config)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    torch.save({"iteration": 11, "epoch": 3, "global_step": 7000, "model_state_dict": state,
                "optimizer_state_dict": {}, "train_loss": torch.tensor(1.5), "valid_loss": np.float64(2.0),
                "test_eucl_mean": np.float64(35.4), "test_angle_mean": np.float32(14.9)}, folder / "model.pth")  # fmt: skip
    return state


def test_cli_imports_a_released_lgd_rnn_6(tmp_path):
    src, out = tmp_path / "1615631737-IEF-2x512-N2-RNN-2x512", tmp_path / "imported"
    original = write_released(src)
    with pytest.raises(SystemExit) as exit_info:
        main(["import-checkpoint", str(src), str(out)])
    assert exit_info.value.code == 0

    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    assert ckpt["format"] == "empose-checkpoint/1"
    assert ckpt["sensor_names"] == list(EM6)
    assert ckpt["body_model"] == {"use": "smplh"}
    assert ckpt["step"] == 7000 and "1615631737" in ckpt["source"]
    spec = ckpt["estimator"]
    assert spec["use"] == "lgd" and spec["rnn_init"] and spec["use_gradient"] and spec["average_shape"]
    assert (spec["hidden"], spec["blocks"], spec["iterations"], spec["rnn_hidden"]) == (512, 2, 2, 512)
    network = [k for k in original if not k.startswith("smpl.")]
    assert list(ckpt["model"]) == network
    for k in network:
        assert torch.equal(ckpt["model"][k], original[k]), k

    recipe = yaml.safe_load((out / "recipe.yaml").read_text())
    assert recipe["task"] == "evaluate" and recipe["body_model"] == {"use": "smplh"}
    assert recipe["data"]["test"]["use"] == "empose_recordings"
    assert recipe["data"]["test"]["path"] == "${EM_DATA_REAL}"
    assert recipe["evaluate"]["checkpoint"].endswith("checkpoint.pt") and recipe["evaluate"]["chunk"] == 256
    assert recipe["estimator"] == spec and ckpt["recipe"] == recipe

    # the converted weights load, key for key, into the registered estimator on a 22-joint body
    from empose_framework.plugins import get_registry

    body = embedded_body()
    if body is None:
        pytest.skip("embedded body model not available: forward pass not checked")
    est = get_registry().build("estimator", spec, body_model=body, sensor_names=tuple(ckpt["sensor_names"]))
    est.load_state_dict(ckpt["model"], strict=True)
    g = torch.Generator().manual_seed(0)
    sensors = SensorFrames(torch.randn(1, 5, 12, 3, generator=g) * 0.3, torch.eye(3).expand(1, 5, 12, 3, 3),
                           torch.ones(1, 5, 12, dtype=torch.bool), EM12)  # fmt: skip
    with torch.no_grad():
        out_pose = est.eval()(sensors, torch.tensor([5]), None).pose
    assert out_pose.pose.shape == (1, 5, 22, 3) and torch.isfinite(out_pose.pose).all()


@pytest.mark.parametrize("name,use,chunk", [("ResNet 12", "resnet", None), ("BiRNN 6", "rnn", None), ("LGD 12", "lgd", 256)])
def test_other_paper_models_import(tmp_path, name, use, chunk):
    write_released(tmp_path / "src", name=name)
    result = import_checkpoint(tmp_path / "src", tmp_path / "out")
    ckpt = torch.load(result["checkpoint"], weights_only=False)
    assert ckpt["estimator"]["use"] == use
    assert len(ckpt["sensor_names"]) == int(name.split()[-1])
    assert yaml.safe_load(result["recipe"].read_text())["evaluate"]["chunk"] == chunk


def test_partial_weights_name_the_missing_keys(tmp_path):
    write_released(tmp_path / "src", drop=("pose_net_iter.hidden_to_output.bias", "rnn.lstm.weight_hh_l1"))
    with pytest.raises(DataError) as info:
        import_checkpoint(tmp_path / "src", tmp_path / "out")
    msg = str(info.value)
    assert "missing keys" in msg and "pose_net_iter.hidden_to_output.bias" in msg and "rnn.lstm.weight_hh_l1" in msg
    assert "model.pth" in msg
    assert not (tmp_path / "out" / "checkpoint.pt").exists()


def test_wrong_shapes_and_foreign_keys_are_named(tmp_path):
    write_released(tmp_path / "src", reshape="pose_net_init.bias")
    with pytest.raises(DataError, match=r"wrong shapes: pose_net_init.bias \(3, 3\) \(expected \(66,\)\)"):
        import_checkpoint(tmp_path / "src", tmp_path / "out")
    # weights of another configuration: 12 sensors declared, 6-sensor weights given
    write_released(tmp_path / "src2", config_edit=lambda c: c.update(n_markers=12))
    with pytest.raises(DataError, match="rnn.lstm.weight_ih_l0"):
        import_checkpoint(tmp_path / "src2", tmp_path / "out")


def test_broken_folders_get_clear_errors(tmp_path):
    with pytest.raises(DataError, match="config.json does not exist"):
        import_checkpoint(tmp_path / "nothing", tmp_path / "out")
    write_released(tmp_path / "src", config_edit=lambda c: c.pop("m_type"))
    with pytest.raises(DataError, match="'m_type' is missing"):
        import_checkpoint(tmp_path / "src", tmp_path / "out")
    write_released(tmp_path / "src", config_edit=lambda c: c.update(m_type="transformer"))
    with pytest.raises(DataError, match="m_type is 'transformer'"):
        import_checkpoint(tmp_path / "src", tmp_path / "out")
    write_released(tmp_path / "src")
    (tmp_path / "src" / "model.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="could not be read as a PyTorch checkpoint"):
        import_checkpoint(tmp_path / "src", tmp_path / "out")
    torch.save({"epoch": 1}, tmp_path / "src" / "model.pth")
    with pytest.raises(DataError, match="no 'model_state_dict'"):
        import_checkpoint(tmp_path / "src", tmp_path / "out")


def test_existing_output_needs_force(tmp_path, capsys):
    write_released(tmp_path / "src")
    import_checkpoint(tmp_path / "src", tmp_path / "out")
    with pytest.raises(SystemExit) as info:
        main(["import-checkpoint", str(tmp_path / "src"), str(tmp_path / "out")])
    assert info.value.code == 2
    assert "--force" in capsys.readouterr().err
    assert import_checkpoint(tmp_path / "src", tmp_path / "out", force=True)["step"] == 7000


def test_config_mapping_keeps_the_original_semantics():
    from empose_estimators.convert import spec_from_config

    spec, sensors = spec_from_config({"m_type": "rnn", "m_bidirectional": True, "use_marker_pos": True,
                                      "m_shape_hidden_size": "128", "n_markers": -1}, "config.json")  # fmt: skip
    assert sensors == "em12"
    assert spec["bidirectional"] and spec["use_pos"] and not spec["use_ori"] and spec["shape_hidden"] == 128
    assert spec["hidden"] == 1024 and spec["layers"] == 2  # the original's defaults
    est = build_estimator(spec, EM12, SimpleNamespace(n_pose_joints=22, n_betas=10))
    assert est.rnn.lstm.input_size == 36


def test_numpy_1_pickles_of_the_stored_metrics_load(tmp_path):
    """Released files were written with numpy 1, whose scalars pickle as numpy.core.multiarray.scalar."""
    state = write_released(tmp_path / "src")
    pth = tmp_path / "src" / "model.pth"
    torch.save({"global_step": 5, "test_eucl_mean": np.float64(35.4), "model_state_dict": state}, pth,
               _use_new_zipfile_serialization=False)  # fmt: skip
    raw = pth.read_bytes()
    assert b"numpy._core.multiarray\nscalar" in raw
    pth.write_bytes(raw.replace(b"numpy._core.multiarray\nscalar", b"numpy.core.multiarray\nscalar"))
    assert import_checkpoint(tmp_path / "src", tmp_path / "out")["step"] == 5
