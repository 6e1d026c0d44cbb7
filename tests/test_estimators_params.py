"""Architecture fidelity: parameter counts and state_dict layouts of the eight paper models."""

from types import SimpleNamespace

import pytest
import torch

from _estimators_testkit import EM6, EM12, TinyBody, released_state_dicts
from empose_estimators.convert import build_estimator, spec_from_config
from empose_estimators.lgd import LGD
from empose_framework.errors import EmposeError

SMPLH_SIZES = SimpleNamespace(n_pose_joints=22, n_betas=10)
PAPER_MODELS = ["LGD RNN 6", "LGD RNN 12", "LGD 6", "LGD 12", "BiRNN 6", "BiRNN 12", "ResNet 6", "ResNet 12"]


def n_trainable(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def test_lgd_rnn_6_has_exactly_the_published_parameter_count():
    # docs/method.md §7.7: 5,721,419 printed by the original = 5,721,250 + 169 body-model values
    est = LGD(hidden=512, blocks=2, iterations=2, use_gradient=True, average_shape=True, rnn_init=True,
              rnn_hidden=512, rnn_layers=2, body_model=SMPLH_SIZES, sensor_names=EM6)  # fmt: skip
    assert n_trainable(est) == 5_721_250
    assert est.pose_net_iter.input_to_hidden.in_features == 224


@pytest.mark.parametrize("name", PAPER_MODELS)
def test_paper_config_matches_released_state_dict(name):
    table = released_state_dicts()[name]
    spec, sensor_set = spec_from_config(table["flags"], name)
    est = build_estimator(spec, EM6 if sensor_set == "em6" else EM12, SMPLH_SIZES)
    assert n_trainable(est) == table["count"]
    expected = {k: v for k, v in table["keys"].items() if not k.startswith("smpl.")}
    got = {k: (tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in est.state_dict().items()}
    assert got == expected
    assert list(got) == list(expected)  # same order too


def test_body_model_stays_out_of_parameters_and_state_dict():
    class ModuleBody(TinyBody, torch.nn.Module):
        def __init__(self):
            torch.nn.Module.__init__(self)
            TinyBody.__init__(self)
            self.weight = torch.nn.Parameter(torch.zeros(7))

    body = ModuleBody()
    est = LGD(hidden=16, blocks=1, iterations=1, rnn_init=True, rnn_hidden=8, body_model=body, sensor_names=EM6)
    assert est.body_model is body
    assert all(p is not body.weight for p in est.parameters())
    assert not [k for k in est.state_dict() if k.split(".")[0] not in ("pose_net_init", "shape_net_init",
                                                                       "pose_net_iter", "shape_net_iter", "rnn")]
    assert all(not isinstance(m, ModuleBody) for m in est.modules())


def test_sizes_come_from_the_components():
    body = TinyBody()  # J = 4, K = 3
    names = ("head", "back", "l_shank", "r_forearm")
    est = LGD(hidden=16, blocks=1, iterations=1, use_gradient=True, use_ori=False, body_model=body, sensor_names=names)
    assert est.pose_net_init.input_to_hidden.in_features == 4 * 3
    assert est.pose_net_init.hidden_to_output.out_features == 4 * 3
    assert est.shape_net_init.hidden_to_output.out_features == 3
    assert est.pose_net_iter.input_to_hidden.in_features == 12 + 2 * (12 + 3)


def test_no_input_is_refused():
    with pytest.raises(EmposeError, match="use_pos and use_ori are both false"):
        LGD(use_pos=False, use_ori=False, body_model=TinyBody(), sensor_names=EM6)

