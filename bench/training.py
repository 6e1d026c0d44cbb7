"""Training and inference speed of the eight paper models; prints JSON.

    python bench/training.py [--models lgd_rnn_6,resnet_6] [--devices cpu,cuda] [--seconds 5] [--threads 2]

The engine's view (bench/estimators.py times the bare networks on a fixed batch): for each paper
recipe (recipes/<model>.yaml: its estimator, losses, batch size and window) on the embedded body model
(same joint and shape sizes as SMPL-H, so the networks are the paper's) and generated motions:
- `train_steps_per_s`: forward, losses, backward, Adam on batches prepared beforehand;
- `pipeline_steps_per_s`: the same through the engine's training loop, data synthesis included;
- `windowed_frames_per_s`: whole-sequence inference in the recipe's evaluation chunks (as `empose run`);
- `eval_frames_per_s`: the same plus the recipe's metrics (frame selection and pooling included);
- `streaming_frames_per_s`: one frame per `step()`, for causal estimators.
And `pipeline`: the quickstart recipe's training step (`model_steps_per_s`, batches made beforehand)
against the trainer's loop with its data pipeline (`pipeline_steps_per_s`: batches made ahead in a
worker thread; `inline_steps_per_s`: read in the training thread, as before the worker existed), on the
quickstart's generated motions and on an `amass_lmdb` (`--lmdb`, else 8 CMU subjects of
../shared/data/cmu-amass preprocessed into a temporary folder).
CUDA is measured when available. Needs no licensed data.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
PAPER_MODELS = ("resnet_6", "resnet_12", "birnn_6", "birnn_12", "lgd_6", "lgd_12", "lgd_rnn_6", "lgd_rnn_12")
EMBEDDED_DATA = [
    "body_model=embedded",
    "data.train.offsets=embedded",
    "data.valid.offsets=embedded",
    "data.train.motions={use: embedded, split: train, count: 32}",
    "data.valid.motions={use: embedded, split: valid, count: 4}",
    "data.test.real={use: virtual_em, sensors: em12, motions: {use: embedded, split: test, count: 1, seconds: 20}}",
]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device, seconds: float, min_runs: int) -> tuple[float, int]:
    """Seconds per call of fn (after one warm-up call), over at least `min_runs` calls and `seconds`."""
    fn()
    _sync(device)
    runs, start = 0, time.perf_counter()
    while runs < min_runs or time.perf_counter() - start < seconds:
        fn()
        runs += 1
    _sync(device)
    return (time.perf_counter() - start) / runs, runs


def bench_model(name: str, device: torch.device, seconds: float) -> dict:
    from empose_framework.engine.evaluation import NamedMetric, evaluate_sequences, predict_sequence
    from empose_framework.engine.schema import RunSettings
    from empose_framework.plugins import get_registry
    from empose_framework.recipes import load_recipe

    registry = get_registry()
    loaded = load_recipe(ROOT / "recipes" / f"{name}.yaml", EMBEDDED_DATA, registry=registry)
    recipe, settings = loaded.data, RunSettings.of(loaded)
    body = registry.build("body_model", recipe["body_model"]).to(device)
    train_src = registry.build("sensor_source", recipe["data"]["train"], body_model=body)
    test_src = registry.build("sensor_source", recipe["data"]["test"]["real"], body_model=body)
    torch.manual_seed(0)
    est = registry.build("estimator", recipe["estimator"], body_model=body, sensor_names=train_src.sensor_names).to(device)
    losses = [(float(s["weight"]), registry.build("loss", s, body_model=body)) for s in recipe["losses"]]
    opt = torch.optim.Adam(est.parameters(), lr=recipe["train"]["lr"])
    cfg = recipe["train"]
    batches = list(train_src.windows(cfg["batch_size"], cfg["window"], train=True, seed=0, device=device))[:4]
    it = iter(range(10**9))

    def train_step():
        b = batches[next(it) % len(batches)]
        opt.zero_grad(set_to_none=True)
        pred = est(b.sensors, b.seq_len, b.offsets)
        total = sum(w * loss(pred, b) for w, loss in losses)
        total.backward()
        opt.step()

    est.train()
    step_s, step_runs = _timed(train_step, device, seconds, 3)
    pipeline_s = _pipeline_step_seconds(registry, settings, est, device, seconds)
    est.eval()
    seq = next(iter(test_src.sequences(device=device)))
    n_frames = int(seq.seq_len[0])
    chunk = settings.evaluate.chunk_for(est)
    metrics = [NamedMetric(s["use"], registry.build("metric", s, body_model=body)) for s in recipe["metrics"]]
    with torch.no_grad():
        win_s, win_runs = _timed(lambda: predict_sequence(est, seq, chunk), device, seconds, 2)
    eval_s, _ = _timed(lambda: evaluate_sequences(est, [seq], metrics, chunk, body_model=body), device, seconds, 2)
    result = {
        "parameters": sum(p.numel() for p in est.parameters()),
        "batch_size": cfg["batch_size"],
        "window": cfg["window"],
        "train_steps_per_s": 1.0 / step_s,
        "train_runs": step_runs,
        "pipeline_steps_per_s": 1.0 / pipeline_s,
        "windowed_chunk": chunk,
        "windowed_frames_per_s": n_frames / win_s,
        "windowed_sequence_frames": n_frames,
        "eval_frames_per_s": n_frames / eval_s,
        "eval_metrics": [m.name for m in metrics],
    }
    if getattr(est, "streamable", False):
        frames = [seq.sensors.frames(t, t + 1) for t in range(min(n_frames, 240))]

        def stream():
            est.reset()
            for f in frames:
                est.step(f, seq.offsets)

        with torch.no_grad():
            stream_s, _ = _timed(stream, device, seconds, 1)
        result["streaming_frames_per_s"] = len(frames) / stream_s
    else:
        result["streaming_frames_per_s"] = None
        result["streaming_note"] = "offline estimator (looks at future frames): no streaming"
    return result


def _pipeline_step_seconds(registry, settings, estimator, device, seconds: float) -> float:
    """Seconds per step of the engine's loop (`Trainer`), fetching and synthesising each batch."""
    from empose_framework.engine.components import build
    from empose_framework.engine.distributed import DistInfo
    from empose_framework.engine.train import Trainer

    comps = build(registry, settings, device, need_train=True, log=lambda *a, **k: None)
    comps.test = {}
    trainer = Trainer(settings, comps, estimator, device, DistInfo(), Path("."), None, {})
    batches = trainer._batches()
    try:
        return _timed(lambda: trainer.train_step(next(batches)), device, seconds, 3)[0]
    finally:
        batches.close()  # stops the prefetch worker


class _Inline:
    """A training source seen as one without `start` (not seekable): the trainer reads it in its own
    thread, as every source was read before batches were prepared ahead (the "before" of `pipeline`)."""

    seekable = False

    def __init__(self, source):
        self.source = source

    def windows(self, *args, **kwargs):
        return self.source.windows(*args, **kwargs)

    def __len__(self):
        return len(self.source)


def bench_pipeline(name: str, overrides: list[str], device: torch.device, seconds: float, rounds: int) -> dict:
    """Step rates of the quickstart recipe (its own estimator) with `overrides` for the training data:
    `model_steps_per_s` on batches made beforehand, `pipeline_steps_per_s` through the trainer with batches
    made ahead in a worker (on CUDA by default), `inline_steps_per_s` through the trainer reading the source
    in its own thread (on the CPU by default, and for sources that are not seekable).
    The three are measured in turn, `rounds` times; each rate is from the median step time."""
    from empose_framework.engine import train as train_module
    from empose_framework.engine.components import build, build_estimator
    from empose_framework.engine.distributed import DistInfo
    from empose_framework.engine.schema import RunSettings
    from empose_framework.engine.train import Trainer, epoch_seed
    from empose_framework.plugins import get_registry
    from empose_framework.recipes import load_recipe

    registry = get_registry()
    settings = RunSettings.of(load_recipe(ROOT / "recipes" / "quickstart.yaml", [f"device={device.type}", *overrides], registry=registry))
    comps = build(registry, settings, device, need_train=True, log=lambda *a, **k: None)
    comps.test = {}
    torch.manual_seed(0)
    est = build_estimator(registry, settings.estimator, comps.body_model, comps.train.sensor_names, device)
    est.train()
    trainer = Trainer(settings, comps, est, device, DistInfo(), Path("."), None, {})
    cfg = settings.train
    ready = list(comps.train.windows(cfg.batch_size, cfg.window, train=True, seed=epoch_seed(settings.seed, 0), device=device))[:8]
    it = iter(range(10**9))
    source = comps.train

    def calls(fn, times: list) -> None:
        fn()  # warm-up (and the worker's first batches)
        start = time.perf_counter()
        while len(times) < 3 or time.perf_counter() - start < seconds:
            t = time.perf_counter()
            fn()
            _sync(device)
            times.append(time.perf_counter() - t)

    def through_trainer(train_source, times: list, waits: list) -> None:
        comps.train = train_source
        trainer.progress.epoch = trainer.progress.consumed = 0
        batches = trainer._batches()

        def step():
            t = time.perf_counter()
            batch = next(batches)
            waits.append(time.perf_counter() - t)
            trainer.train_step(batch)

        try:
            calls(step, times)
        finally:
            batches.close()

    times = {"model": [], "pipeline": [], "inline": []}
    waits = {"pipeline": [], "inline": []}
    for _ in range(rounds):
        calls(lambda: trainer.train_step(ready[next(it) % len(ready)]), times["model"])
        train_module.PREFETCH_CPU = train_module.PREFETCH  # the worker, also on the CPU
        through_trainer(source, times["pipeline"], waits["pipeline"])
        train_module.PREFETCH_CPU = 0
        through_trainer(_Inline(source), times["inline"], waits["inline"])
    best = {k: statistics.median(v) for k, v in times.items()}
    comps.train = source
    rates = {f"{k}_steps_per_s": round(1.0 / v, 3) for k, v in best.items()}
    return {
        "data": name,
        "train_sequences": len(source),
        **rates,
        "pipeline_vs_model": round(best["model"] / best["pipeline"], 3),
        "inline_vs_model": round(best["model"] / best["inline"], 3),
        # the training thread's wait for its next batch: the part of a step the data costs, robust to load
        **{f"{k}_data_wait_ms_median": round(1000 * statistics.median(v[1:]), 2) for k, v in waits.items()},
        "steps_timed": {k: len(v) for k, v in times.items()},
    }


def _lmdb(path: str | None) -> Path:
    """The amass_lmdb to read: `path`, else a small one preprocessed from ../shared/data/cmu-amass
    (8 subjects) into a temporary folder."""
    if path:
        return Path(path)
    import shutil
    import subprocess
    import tempfile

    src = ROOT.parent / "shared" / "data" / "cmu-amass" / "CMU"
    tmp = Path(tempfile.mkdtemp(prefix="empose-bench-"))
    subset = tmp / "src" / "CMU"
    subset.mkdir(parents=True)
    for subject in sorted(src.iterdir())[:8]:
        shutil.copytree(subject, subset / subject.name)
    code = "import sys; from empose_framework.cli import main; sys.argv[0] = 'empose'; main()"
    subprocess.run([sys.executable, "-c", code, "preprocess", "amass", str(tmp / "src"), str(tmp / "lmdb"), "--body-model",
                    "embedded", "--no-joints"], check=True, capture_output=True)  # fmt: skip
    return tmp / "lmdb"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(PAPER_MODELS), help="comma-separated paper recipes")
    parser.add_argument("--devices", default="cpu,cuda", help="cpu and/or cuda (cuda is skipped when absent)")
    parser.add_argument("--seconds", type=float, default=4.0, help="minimum timed seconds per measurement")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--pipeline", default="quickstart,amass_lmdb", help="data pipelines to time ('' for none)")
    parser.add_argument("--lmdb", default=None, help="amass_lmdb folder for the pipeline (default: a small one built here)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the pipeline measurements")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = [d for d in args.devices.split(",") if d == "cpu" or (d.startswith("cuda") and torch.cuda.is_available())]
    report = {
        "benchmark": "training",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "body_model": "embedded",
        "results": {},
    }
    for device_name in devices:
        device = torch.device(device_name)
        for model in filter(None, args.models.split(",")):
            report["results"].setdefault(device_name, {})[model] = bench_model(model, device, args.seconds)
            print(f"{device_name} {model}: {report['results'][device_name][model]}", file=sys.stderr)
        for name in filter(None, args.pipeline.split(",")):
            if name == "amass_lmdb":
                spec = f"{{use: amass_lmdb, path: '{_lmdb(args.lmdb)}', shape_std: 1.0}}"
                overrides = [f"data.train.motions={spec}", f"data.valid.motions={spec}"]
            else:
                overrides = []
            result = bench_pipeline(name, overrides, device, args.seconds, args.rounds)
            report.setdefault("pipeline", {}).setdefault(device_name, {})[name] = result
            print(f"{device_name} pipeline {name}: {result}", file=sys.stderr)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
