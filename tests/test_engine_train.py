"""Engine: a run folder, reproducibility, exact resume after an interruption, evaluation tables."""

from __future__ import annotations

import json

import pytest
import torch

from empose_framework.engine import train as train_module
from empose_framework.errors import EmposeError
from engine_doubles import install_registry, last_weights, run_recipe, write_recipe


@pytest.fixture
def registry(monkeypatch):
    return install_registry(monkeypatch)



def test_run_folder_tables_and_checkpoints(tmp_path, registry):
    run_dir = run_recipe(write_recipe(tmp_path), registry, "train.max_steps=5", "train.eval_every=2",
                         "train.select_on=mpjpe", "train.lr=0.05", "train.test_during_training=true")
    for name in ("recipe.yaml", "plugins.json", "train.log", "checkpoints/last.pt", "checkpoints/best.pt", "eval/held.csv"):
        assert (run_dir / name).is_file(), name
    assert any((run_dir / "tb").iterdir())
    table = json.loads((run_dir / "eval" / "held.json").read_text())
    assert [s["sequence"] for s in table["sequences"]] == ["sine3_0", "sine3_1"]
    assert table["overall"]["used_frames"] == 300
    # the overall row pools frames: with equal lengths it is the mean of the two sequence means
    means = [s["mpjpe"]["mean"] for s in table["sequences"]]
    assert table["overall"]["mpjpe"]["mean"] == pytest.approx(sum(means) / 2)
    ckpt = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=False)
    assert ckpt["format"] == "empose-checkpoint/1" and ckpt["sensor_names"][0] == "back" and len(ckpt["sensor_names"]) == 6
    last = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)
    history = last["resume"]["progress"]["history"]
    assert [h["step"] for h in history] == [2, 4, 5]  # every eval_every steps and at the end
    assert ckpt["step"] == min(history, key=lambda h: h["metric/mpjpe"])["step"]  # chosen on validation
    assert "step 4: test set 'held' mpjpe" in (run_dir / "train.log").read_text()  # monitored, not selected on
    components = {c["name"] for c in json.loads((run_dir / "plugins.json").read_text())["components"]}
    assert {"embedded", "lgd", "virtual_em", "sine_motions", "pose", "mpjpe"} <= components


def test_interrupted_and_resumed_run_ends_bit_identical(tmp_path, registry, monkeypatch):
    path = write_recipe(tmp_path)
    full = run_recipe(path, registry, "train.max_steps=9")

    original_init = train_module.Trainer.__init__

    def init_with_interrupt(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        # Ctrl-C arrives during step 5 (mid-epoch: 3 batches per epoch), after an evaluation at 4
        self.on_step.append(lambda t: setattr(t.interrupt, "requested", t.progress.step == 5 or t.interrupt.requested))

    monkeypatch.setattr(train_module.Trainer, "__init__", init_with_interrupt)
    with pytest.raises(SystemExit) as stop:
        run_recipe(path, registry, "train.max_steps=9", run_dir=tmp_path / "interrupted")
    assert stop.value.code == 130
    saved = torch.load(tmp_path / "interrupted" / "checkpoints" / "last.pt", weights_only=False)
    assert saved["step"] == 5 and saved["resume"]["progress"]["consumed"] == 2
    monkeypatch.setattr(train_module.Trainer, "__init__", original_init)
    resumed = run_recipe(path, registry, "train.max_steps=9", resume=tmp_path / "interrupted")
    a, b = last_weights(full), last_weights(resumed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert "resuming at step 5" in (resumed / "train.log").read_text()


def test_same_seed_same_weights_other_seed_or_clipping_differs(tmp_path, registry, monkeypatch):
    a = run_recipe(write_recipe(tmp_path / "a"), registry, "train.max_steps=2", "train.eval_every=100")
    b = run_recipe(write_recipe(tmp_path / "b"), registry, "train.max_steps=2", "train.eval_every=100")
    c = run_recipe(write_recipe(tmp_path / "c"), registry, "train.max_steps=2", "train.eval_every=100", "seed=8")
    clip_calls = []
    real_clip = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda params, norm: clip_calls.append(norm) or real_clip(params, norm))
    d = run_recipe(write_recipe(tmp_path / "d"), registry, "train.max_steps=2", "train.eval_every=100", "train.grad_clip=1e-12")
    wa, wb, wc, wd = last_weights(a), last_weights(b), last_weights(c), last_weights(d)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)
    assert clip_calls == [1e-12, 1e-12] and not all(torch.equal(wa[k], wd[k]) for k in wa)


def test_resume_refuses_a_changed_recipe(tmp_path, registry):
    path = write_recipe(tmp_path)
    run_dir = run_recipe(path, registry, "train.max_steps=1", "train.eval_every=100")
    with pytest.raises(EmposeError, match=r"differs .* in train\.lr"):
        run_recipe(path, registry, "train.max_steps=2", "train.lr=0.1", resume=run_dir)
    with pytest.raises(EmposeError, match="no checkpoints/last.pt"):
        run_recipe(path, registry, resume=tmp_path / "nowhere")
