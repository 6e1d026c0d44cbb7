"""`empose run`: set up a run folder, train and/or evaluate, print and save the tables.

Run folder `<output>/<name>-<timestamp>/`: `recipe.yaml` (resolved), `plugins.json` (components and
versions), `checkpoints/last.pt` + `best.pt`, `tb/` (TensorBoard), `eval/<set>.csv` + `.json`,
`train.log`. Only rank 0 writes under torchrun.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from empose_framework import __version__
from empose_framework.engine import checkpoints, distributed
from empose_framework.engine.components import Components, build, build_estimator, check_cross_subject, provenance
from empose_framework.engine.evaluation import evaluate_sequences, render_table, write_table
from empose_framework.engine.train import Trainer
from empose_framework.errors import DataError, EmposeError

#: recipe keys that may change when resuming (they do not alter what has been trained so far)
RESUMABLE_CHANGES = ("train.max_steps", "train.epochs", "train.log_every", "train.num_threads", "train.eval_every",
                     "train.test_during_training", "train.eval_window", "evaluate", "data.test", "metrics",
                     "output", "device", "task", "missing_data_hint")  # fmt: skip


class Report:
    """Messages for the console (rich markup) and, as plain text with a time stamp, for train.log."""

    def __init__(self, main: bool):
        self.main = main
        self.console = Console(highlight=False)
        if not self.console.is_terminal:  # logs and pipes: room for the tables
            self.console.width = max(self.console.width, 132)
        self.file = None

    def open(self, path: Path) -> None:
        if self.main:
            self.file = path.open("a", buffering=1)

    def __call__(self, message: str, console: bool = True) -> None:
        if not self.main:
            return
        if console:
            self.console.print(message)
        if self.file is not None:
            self.file.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {Text.from_markup(message).plain}\n")

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def execute(recipe, resume: Path | None = None, run_dir: Path | None = None, cross_subject: bool = False) -> Path:
    data = recipe.data
    info, device = distributed.init(data["device"])
    report = Report(info.main)
    try:
        _threads(data["train"]["num_threads"], info, device, report)
        from empose_framework.plugins import get_registry

        registry = get_registry()
        if cross_subject:
            check_cross_subject(registry, recipe)
        resume_ckpt = None
        if resume is not None:
            run_dir = Path(resume)
            resume_ckpt = _resume_checkpoint(run_dir, recipe)
        else:
            run_dir = _new_run_dir(Path(run_dir) if run_dir else None, data, info)
        report.open(run_dir / "train.log")
        report(f"run folder: {run_dir}" + (" (resumed)" if resume_ckpt else ""))
        if data["task"] == "train":
            _train(registry, recipe, info, device, run_dir, report, resume_ckpt, cross_subject)
        else:
            _evaluate_only(registry, recipe, info, device, run_dir, report, cross_subject)
        return run_dir
    finally:
        report.close()
        distributed.shutdown(info)


# ---------------------------------------------------------------------------------------- setup


def _threads(n: int | None, info, device, report) -> None:
    """torch's CPU threads: the recipe's `train.num_threads`, but under torchrun on the CPU never more
    than this process's share of the cores (oversubscribed OpenMP threads slow training down many times)."""
    if info.enabled and device.type == "cpu":
        share = max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", info.world)))
        if n is not None and n > share:
            report(f"[yellow]note:[/] train.num_threads {n} lowered to {share}: {info.world} processes share "
                   f"{os.cpu_count()} cores.")  # fmt: skip
        n = share if n is None else min(n, share)
    if n is not None:
        torch.set_num_threads(n)


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _new_run_dir(explicit: Path | None, data: dict, info) -> Path:
    if info.main:
        if explicit is None:
            base = Path(data["output"]) / f"{data['name']}-{time.strftime('%Y%m%d-%H%M%S')}"
            path, i = base, 1
            while path.exists():
                path, i = Path(f"{base}-{i}"), i + 1
        else:
            path = explicit
            if (path / "checkpoints" / "last.pt").exists():
                raise EmposeError(
                    f"--run-dir {path} already holds a run (checkpoints/last.pt). Continue it with `--resume {path}`, "
                    "or choose another folder."
                )
        path.mkdir(parents=True, exist_ok=True)
    else:
        path = None
    if info.enabled:
        box = [str(path) if path else None]
        torch.distributed.broadcast_object_list(box, src=0)
        path = Path(box[0])
    return path


def _resume_checkpoint(run_dir: Path, recipe) -> dict:
    last = run_dir / "checkpoints" / "last.pt"
    if not last.is_file():
        raise DataError(
            f"--resume {run_dir}: there is no checkpoints/last.pt in that folder, so there is nothing to resume. "
            "Give the run folder that `empose run` printed (it holds recipe.yaml and checkpoints/)."
        )
    ckpt = checkpoints.load(last)
    if "resume" not in ckpt:
        raise DataError(f"--resume {run_dir}: {last} holds weights only (no optimizer or data position); it cannot be resumed.")
    changed = [k for k in _differences(ckpt.get("recipe", {}), recipe.data) if not k.startswith(RESUMABLE_CHANGES)]
    if changed:
        raise EmposeError(
            f"--resume {run_dir}: the recipe {recipe.path} differs from the one this run was started with in "
            f"{', '.join(changed)}. Resume with the run's own recipe (`empose run {run_dir / 'recipe.yaml'} --resume "
            f"{run_dir}`); only {', '.join(RESUMABLE_CHANGES)} may change."
        )
    return ckpt


def _differences(a, b, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            out += _differences(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else str(k))
        return out
    return [] if a == b else [prefix or "(recipe)"]


def _write_run_files(registry, recipe, run_dir: Path, info, estimator_spec=None) -> None:
    if not info.main:
        return
    (run_dir / "recipe.yaml").write_text(
        f"# resolved from {recipe.path} by empose {__version__}\n# command: {' '.join(sys.argv)}\n" + recipe.dump()
    )
    (run_dir / "plugins.json").write_text(json.dumps(provenance(registry, recipe, estimator_spec), indent=2))


# ---------------------------------------------------------------------------------------- tasks


def _train(registry, recipe, info, device, run_dir, report, resume_ckpt, cross_subject) -> None:
    data = recipe.data
    _seed(data["seed"])
    comps = build(registry, recipe, device, need_train=True, cross_subject=cross_subject, log=report)
    sensor_names = tuple(comps.train.sensor_names)
    torch.manual_seed(data["seed"])  # identical initial weights on every rank and every run
    estimator = build_estimator(registry, data["estimator"], comps.body_model, sensor_names, device)
    meta = {
        "format": checkpoints.FORMAT,
        "estimator": data["estimator"],
        "sensor_names": list(sensor_names),
        "body_model": data["body_model"],
        "recipe": data,
        "source": f"trained by empose {__version__} from {recipe.path} in {run_dir}",
    }
    trainer = Trainer(recipe, comps, estimator, device, info, run_dir, report, meta)
    if resume_ckpt is None:
        _write_run_files(registry, recipe, run_dir, info)
        n_params = sum(p.numel() for p in estimator.parameters() if p.requires_grad)
        report(f"training {data['estimator']['use']} ({n_params:,} parameters) on {device}"
               + (f" x {info.world} processes" if info.enabled else "") + f", torch threads {torch.get_num_threads()}")  # fmt: skip
    else:
        trainer.load_state(resume_ckpt)
        report(f"resuming at step {trainer.progress.step} (epoch {trainer.progress.epoch})")
    if not trainer.fit():
        report(
            f"[yellow]interrupted at step {trainer.progress.step}[/]; the state is saved in {run_dir / 'checkpoints' / 'last.pt'}. "
            f"Resume with:\n  {'torchrun ... -m empose_framework' if info.enabled else 'empose'} run "
            f"{run_dir / 'recipe.yaml'} --resume {run_dir}"
        )
        raise SystemExit(130)
    p = trainer.progress
    if p.best_step >= 0 and comps.valid is not None:
        report(f"training done at step {p.step}; best validation {data['train']['select_on']} {p.best:.4g} at step {p.best_step}")
    if info.main:
        which = data["evaluate"]["use"]
        ckpt = checkpoints.load(run_dir / "checkpoints" / f"{which}.pt", map_location=device)
        estimator.load_state_dict(ckpt["model"])
        _evaluate_tests(comps, estimator, data, run_dir, report, which_weights=f"{which}.pt (step {ckpt['step']})",
                        cross_subject=cross_subject)  # fmt: skip
    distributed.barrier(info)


def _evaluate_only(registry, recipe, info, device, run_dir, report, cross_subject) -> None:
    data = recipe.data
    path = data["evaluate"]["checkpoint"]
    if not path:
        raise EmposeError(
            f"{recipe.path}: evaluate.checkpoint: task 'evaluate' needs a checkpoint; add `evaluate: {{checkpoint: "
            "path/to/best.pt}` or pass `--set evaluate.checkpoint=...`."
        )
    ckpt = checkpoints.load(path, map_location=device)
    _seed(data["seed"])
    comps = build(registry, recipe, device, need_train=False, cross_subject=cross_subject, log=report)
    if ckpt["body_model"].get("use") != data["body_model"].get("use"):
        report(f"[yellow]note:[/] the checkpoint was trained with body model '{ckpt['body_model'].get('use')}', "
               f"this recipe evaluates with '{data['body_model']['use']}'.")  # fmt: skip
    estimator = build_estimator(registry, ckpt["estimator"], comps.body_model, ckpt["sensor_names"], device)
    estimator.load_state_dict(ckpt["model"])
    _write_run_files(registry, recipe, run_dir, info, ckpt["estimator"])
    if info.main:
        _evaluate_tests(comps, estimator, data, run_dir, report, which_weights=f"{path} (step {ckpt['step']})",
                        cross_subject=cross_subject)  # fmt: skip


def _evaluate_tests(comps: Components, estimator, data, run_dir: Path, report, which_weights: str, cross_subject: bool) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    if not comps.test:
        report("no test sets to evaluate (data.test is empty or every optional set was skipped).")
        return
    chunk = data["evaluate"]["chunk"]
    for name, source in comps.test.items():
        label = f"{name}_holdout" if name in comps.hold_out else name
        try:
            total = len(source)
        except TypeError:
            total = None
        with Progress(TextColumn(f"evaluating {label}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=report.console, transient=True) as bar:  # fmt: skip
            task = bar.add_task("eval", total=total)
            pool = evaluate_sequences(estimator, source.sequences(device=estimator_device(estimator)), comps.metrics,
                                      chunk, progress=lambda _id: bar.advance(task))  # fmt: skip
        if len(pool) == 0:
            report(f"[yellow]test set '{label}' has no sequences[/]")
            continue
        extra = {"weights": which_weights, "chunk": chunk, "cross_subject": cross_subject, "empose": __version__}
        csv_path, _ = write_table(pool, run_dir / "eval", label, extra)
        report.console.print(render_table(pool, f"{label} — {which_weights}"))
        overall = pool.overall()
        shown = ", ".join(f"{escape(m.header)} {overall[f'{m.name}_mean']:.2f} ± {overall[f'{m.name}_std']:.2f}" for m in pool.metrics)
        report(f"{label} overall ({overall['used_frames']} frames): {shown}; table in {csv_path}", console=False)
    for name, why in comps.skipped.items():
        report(f"[yellow]test set '{name}' skipped:[/] {escape(why)}")


def estimator_device(estimator) -> torch.device:
    try:
        return next(estimator.parameters()).device
    except StopIteration:
        return torch.device("cpu")
