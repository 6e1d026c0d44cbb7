"""Pretrained weights: the registry hook, model cards, `pretrained:NAME` wherever a checkpoint goes, the
shipped CMU models (intact, loadable, working on real motion), and fine-tuning with `train.init`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from empose_framework import hookimpl, pretrained
from empose_framework.engine import checkpoints
from empose_framework.errors import DataError, EmposeError, PluginError
from empose_framework.plugins import Registry, get_registry

REPO = Path(__file__).resolve().parents[1]
SHIPPED = ("cmu_birnn_6", "cmu_lgd_rnn_12", "cmu_lgd_rnn_6", "cmu_resnet_6")


def empose(*args, cwd, timeout=240):
    return subprocess.run([sys.executable, "-m", "empose_framework", *args], cwd=cwd, env=dict(os.environ),
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


class CardsPlugin:
    def __init__(self, folder):
        self.folder = folder

    @hookimpl
    def register_weights(self, register):
        pretrained.register_cards(register, self.folder)


def test_shipped_weights_are_registered_intact_and_small():
    reg = get_registry()
    names = [w.name for w in reg.weights()]
    assert set(SHIPPED) <= set(names), names
    total = 0
    for name in SHIPPED:
        w = reg.get_weights(name)
        assert w.plugin == "pretrained" and w.file.is_file()
        assert pretrained.sha256_of(w.file) == w.sha256
        assert "mocap.cs.cmu.edu" in w.licence and w.seed == 0 and w.recipe.startswith(f"recipes/{name}.yaml")
        assert w.metrics["cmu_clips"]["frames"] > 2000 and w.metrics["cmu_subjects"]["frames"] > 100_000
        ckpt = checkpoints.load(f"pretrained:{name}")
        assert ckpt["estimator"] == w.estimator and list(ckpt["sensor_names"]) == list(w.sensors)
        assert "resume" not in ckpt
        assert all(t.dtype == torch.float16 for t in ckpt["model"].values() if t.is_floating_point())
        total += w.file.stat().st_size
    assert total <= 25 * 2**20


def test_pack_register_resolve(tmp_path):
    pt, card = pretrained.pack("pretrained:cmu_lgd_rnn_6", tmp_path / "mine", "mine", half=False,
                               description="my copy", licence="mine")  # fmt: skip
    reg = Registry(entry_points=False, extra_plugins=[("cards", CardsPlugin(tmp_path / "mine"))])
    w = reg.get_weights("mine")
    assert w.description == "my copy" and w.sensors[0] == "back" and w.estimator["use"] == "lgd"
    assert pretrained.resolve("pretrained:mine", reg) == pt
    assert pretrained.resolve(str(pt), reg) == pt  # plain paths pass through
    shipped = checkpoints.load("pretrained:cmu_lgd_rnn_6")["model"]
    mine = torch.load(pt, weights_only=True)["model"]
    assert mine.keys() == shipped.keys() and all(torch.equal(mine[k], shipped[k]) for k in shipped)  # half=False: as stored

    with pytest.raises(PluginError, match="Did you mean 'mine'"):
        reg.get_weights("mien")
    pt.write_bytes(pt.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(DataError, match="does not match the sha256"):
        pretrained.resolve("pretrained:mine", reg)
    with pytest.raises(PluginError, match="two plugins register the pretrained weights 'mine'"):  # strict: fatal
        Registry(entry_points=False, strict=True,
                 extra_plugins=[("a", CardsPlugin(tmp_path / "mine")), ("b", CardsPlugin(tmp_path / "mine"))])
    with pytest.raises(EmposeError, match="unknown card field"):
        pretrained.make_weights("x", "x.pt", accuracy=1)


def test_list_and_describe_weights(tmp_path):
    listed = empose("list-plugins", "--kind", "weights", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    cards = {c["name"]: c for c in json.loads(listed.stdout)["weights"]}
    assert set(SHIPPED) <= set(cards) and cards["cmu_lgd_rnn_12"]["sensors"].__len__() == 12
    shown = empose("describe", "weights", "cmu_lgd_rnn_6", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    for text in ("pretrained:cmu_lgd_rnn_6", "sha256", "licence", "mocap.cs.cmu.edu", "cmu_subjects", "MPJPE".lower()):
        assert text in shown.stdout.replace("\n", " ") or text in shown.stdout.lower()
    typo = empose("describe", "weights", "cmu_lgd_rnn6", cwd=tmp_path)
    assert typo.returncode == 2 and "Did you mean 'cmu_lgd_rnn_6'" in typo.stderr.replace("\n", " ")


def test_pretrained_model_evaluates_real_motion_by_name(tmp_path):
    """The shipped LGD RNN 6 on a real walk it never saw: a working model, not an untrained one."""
    done = empose("run", str(REPO / "recipes" / "pretrained.yaml"), "--set", "data.test.cmu_clips.motions.include=[131_02.bvh]",
                  "--set", "data.test.cmu_subjects.motions.path=/no/such/lmdb", "--run-dir", "ev", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    table = json.loads((tmp_path / "ev" / "eval" / "cmu_clips.json").read_text())
    assert [s["sequence"] for s in table["sequences"]] == ["131_02.bvh"]
    assert 5.0 < table["overall"]["mpjpe"]["mean"] < 60.0  # untrained weights score > 150 mm here
    assert "skipping optional test set 'cmu_subjects'" in done.stdout


def test_fine_tune_from_pretrained_and_refuse_other_networks(tmp_path):
    tiny = ["data.train.motions.count=4", "data.train.motions.seconds=2", "data.valid.motions.count=2",
            "data.valid.motions.seconds=2", "data.test={}", "train.batch_size=2", "train.max_steps=2",
            "train.eval_every=2", "train.num_threads=1"]  # fmt: skip
    sets = [a for s in tiny for a in ("--set", s)]
    quick = str(REPO / "recipes" / "quickstart.yaml")
    done = empose("run", quick, *sets, "--set", "train.init=pretrained:cmu_lgd_rnn_6", "--run-dir", "ft", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    assert "fine-tuning from pretrained:cmu_lgd_rnn_6 (step" in done.stdout
    other = empose("run", quick, *sets, "--set", "train.init=pretrained:cmu_lgd_rnn_6", "--set", "estimator.hidden=64",
                   "--run-dir", "ft2", cwd=tmp_path)  # fmt: skip
    assert other.returncode == 2, other.stdout[-2000:]
    msg = other.stderr.replace("\n", " ")
    assert "train.init" in msg and "hidden" in msg and "Traceback" not in other.stderr
