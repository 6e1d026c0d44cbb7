"""`empose run`: set up a run folder, train and/or evaluate, print and save the tables.

Run folder `<output>/<name>-<timestamp>/`: `recipe.yaml` (resolved), `plugins.json` (components and
versions), `checkpoints/last.pt` + `best.pt`, `tb/` (TensorBoard), `eval/<set>.csv` + `.json`,
`train.log`. Only rank 0 writes under torchrun.

Rank 0 holds the folder's lock (`guard.FolderLock`) for the whole run, so a second `empose run` or
`--resume` on the same folder is refused with the holder named; with the lock held, temporary
checkpoint files a killed run left behind are removed. A run that fails before it wrote a checkpoint
or an evaluation table removes the folder it created (nothing in it could be resumed or read).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from empose_framework import __version__
from empose_framework.engine import checkpoints, distributed
from empose_framework.engine.components import Components, build, build_estimator, check_cross_subject, provenance
from empose_framework.engine.evaluation import evaluate_sequences, render_extremes, render_table, write_table
from empose_framework.engine.schema import RunSettings
from empose_framework.engine.train import Trainer
from empose_framework.errors import DataError, EmposeError
from empose_framework.guard import FolderLock, Stopped, make_folder, terminate_as_interrupt

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
    settings = RunSettings.of(recipe)  # reads the recipe's environment variables
    info, device = distributed.init(settings.device)
    report = Report(info.main)
    lock, created, ok = None, False, False
    try:
        with terminate_as_interrupt():
            _threads(settings.train.num_threads, info, device, report)
            from empose_framework.plugins import get_registry

            registry = get_registry()
            if cross_subject:
                check_cross_subject(registry, settings)
            resume_ckpt = None
            if resume is not None:
                run_dir = Path(resume)
                if info.main and run_dir.is_dir():
                    lock = FolderLock(run_dir, "training run").acquire()
                resume_ckpt = _resume_checkpoint(run_dir, recipe)
            else:
                run_dir, created, lock = _new_run_dir(Path(run_dir) if run_dir else None, settings, info)
            stray = checkpoints.remove_stray_temporaries(run_dir / "checkpoints") if info.main else []
            report.open(run_dir / "train.log")
            report(f"run folder: {run_dir}" + (" (resumed)" if resume_ckpt else ""))
            for tmp in stray:
                report(f"removed {tmp.name}, a partial checkpoint an earlier process left when it was killed", console=False)
            if settings.task == "train":
                _train(registry, settings, info, device, run_dir, report, resume_ckpt, cross_subject)
            else:
                _evaluate_only(registry, settings, info, device, run_dir, report, cross_subject)
            ok = True
            return run_dir
    except SystemExit as exc:
        ok = exc.code in (0, None) or _holds_results(run_dir)  # an interruption after saving: keep
        raise
    finally:
        report.close()
        if created and not ok and info.main and not _holds_results(run_dir):
            shutil.rmtree(run_dir, ignore_errors=True)  # failed before its first checkpoint: nothing to keep
        if lock is not None:
            lock.release()
        distributed.shutdown(info)


def _holds_results(run_dir: Path | None) -> bool:
    return run_dir is not None and (any((run_dir / "checkpoints").glob("*.pt")) or (run_dir / "eval").is_dir())


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


def _new_run_dir(explicit: Path | None, settings: RunSettings, info) -> tuple[Path, bool, FolderLock | None]:
    """(folder, whether this call created it, its lock on rank 0)."""
    created, lock = False, None
    if info.main:
        if explicit is None:
            base = Path(settings.output) / f"{settings.name}-{time.strftime('%Y%m%d-%H%M%S')}"
            path, i = base, 1
            while path.exists():
                path, i = Path(f"{base}-{i}"), i + 1
            what = f"output: {settings.output}"
        else:
            path, what = explicit, f"--run-dir {explicit}"
        if path.exists() and not path.is_dir():
            raise EmposeError(f"{what}: {path} is a file, not a folder. Choose a folder for the run.")
        created = make_folder(path, what, "Choose a writable folder (`--set output=...` or `--run-dir DIR`).")
        try:
            lock = FolderLock(path, "training run").acquire()
            if explicit is not None and (path / "checkpoints" / "last.pt").exists():
                raise EmposeError(
                    f"--run-dir {path} already holds a run (checkpoints/last.pt). Continue it with `--resume {path}`, "
                    "or choose another folder."
                )
        except BaseException:
            if lock is not None:
                lock.release()
            if created:
                shutil.rmtree(path, ignore_errors=True)
            raise
    else:
        path = None
    if info.enabled:
        box = [str(path) if path else None]
        torch.distributed.broadcast_object_list(box, src=0)
        path = Path(box[0])
    return path, created, lock


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
    # checkpoints record the recipe with ${VAR}s unexpanded (older ones: expanded); either form may match
    changed = [k for k in _differences(ckpt.get("recipe", {}), recipe.recorded)
               if k in _differences(ckpt.get("recipe", {}), recipe.data) and not k.startswith(RESUMABLE_CHANGES)]
    if changed:
        raise EmposeError(
            f"--resume {run_dir}: the recipe {recipe.path} differs from the one this run was started with in "
            f"{', '.join(changed)}. Resume with the run's own recipe (`empose run {run_dir / 'recipe.yaml'} --resume "
            f"{run_dir}`); only {', '.join(RESUMABLE_CHANGES)} may change."
        )
    return ckpt


def _command_line() -> str:
    """sys.argv with the values of `--set` options that read environment variables left out."""
    out, args = [], iter(sys.argv)
    for a in args:
        out.append(a)
        if a == "--set":
            value = next(args, "")
            out.append(value if "$" not in value else value.partition("=")[0] + "=...")
    return " ".join(out)


def _differences(a, b, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            out += _differences(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else str(k))
        return out
    return [] if a == b else [prefix or "(recipe)"]


def _write_run_files(registry, settings: RunSettings, run_dir: Path, info, estimator_spec=None) -> None:
    """recipe.yaml (declared ${VAR}s unexpanded; an evaluate run records the checkpoint's estimator, the
    one it used) and plugins.json."""
    if not info.main:
        return
    recorded = settings.recorded if estimator_spec is None else {**settings.recorded, "estimator": estimator_spec}
    (run_dir / "recipe.yaml").write_text(
        f"# resolved from {settings.path} by empose {__version__}\n# command: {_command_line()}\n"
        + yaml.safe_dump(recorded, sort_keys=False)
    )
    (run_dir / "plugins.json").write_text(json.dumps(provenance(registry, settings, estimator_spec), indent=2))


# ---------------------------------------------------------------------------------------- tasks


def _train(registry, settings: RunSettings, info, device, run_dir, report, resume_ckpt, cross_subject) -> None:
    _seed(settings.seed)
    comps = build(registry, settings, device, need_train=True, cross_subject=cross_subject, log=report)
    sensor_names = tuple(comps.train.sensor_names)
    torch.manual_seed(settings.seed)  # identical initial weights on every rank and every run
    estimator = build_estimator(registry, settings.estimator, comps.body_model, sensor_names, device)
    meta = {
        "format": checkpoints.FORMAT,
        "estimator": settings.estimator,
        "sensor_names": list(sensor_names),
        "body_model": settings.recorded["body_model"],
        "recipe": settings.recorded,
        "source": f"trained by empose {__version__} from {settings.path} in {run_dir}",
    }
    trainer = Trainer(settings, comps, estimator, device, info, run_dir, report, meta)
    if resume_ckpt is None:
        if settings.train.init:
            _init_weights(registry, estimator, settings, sensor_names, report)
        _write_run_files(registry, settings, run_dir, info)
        n_params = sum(p.numel() for p in estimator.parameters() if p.requires_grad)
        report(f"training {settings.estimator['use']} ({n_params:,} parameters) on {device}"
               + (f" x {info.world} processes" if info.enabled else "") + f", torch threads {torch.get_num_threads()}")  # fmt: skip
    else:
        trainer.load_state(resume_ckpt)
        report(f"resuming at step {trainer.progress.step} (epoch {trainer.progress.epoch})")
    command = (f"{'torchrun ... -m empose_framework' if info.enabled else 'empose'} run {run_dir / 'recipe.yaml'} "
               f"--resume {run_dir}")  # fmt: skip
    try:
        finished = trainer.fit()
    except Stopped as stop:  # a second Ctrl-C (or SIGTERM) during training: no time to save
        last = run_dir / "checkpoints" / "last.pt"
        saved = (f"{last} holds step {trainer.saved_step}; resume from there with:\n  {command}"
                 if trainer.saved_step is not None else "no checkpoint had been written yet, so nothing can be resumed")
        report(f"[yellow]stopped at once at step {trainer.progress.step}[/] ({stop}); {saved}")
        raise SystemExit(stop.exit_code) from None
    if not finished:
        report(
            f"[yellow]interrupted at step {trainer.progress.step}[/]; the state is saved in {run_dir / 'checkpoints' / 'last.pt'}. "
            f"Resume with:\n  {command}"
        )
        raise SystemExit(128 + int(trainer.interrupt.signum))
    p = trainer.progress
    if p.best_step >= 0 and comps.valid is not None:
        report(f"training done at step {p.step}; best validation {settings.train.select_on} {p.best:.4g} at step {p.best_step}")
    if info.main:
        which = settings.evaluate.use
        ckpt = checkpoints.load(run_dir / "checkpoints" / f"{which}.pt", map_location=device)
        checkpoints.load_weights(estimator, ckpt, run_dir / "checkpoints" / f"{which}.pt")
        _evaluate_tests(comps, estimator, settings, run_dir, report, which_weights=f"{which}.pt (step {ckpt['step']})",
                        cross_subject=cross_subject)  # fmt: skip
    distributed.barrier(info)


def _estimator_differences(registry, settings: RunSettings, spec: dict, where: str) -> list[str]:
    """Keys in which the recipe's estimator differs from `spec` (a checkpoint's), defaults filled in."""
    from empose_framework.recipes import check_spec

    theirs, ours = check_spec(registry, "estimator", spec, settings.path, where), settings.estimator
    return [k for k in sorted(set(theirs) | set(ours), key=str) if theirs.get(k) != ours.get(k)]


def _init_weights(registry, estimator, settings: RunSettings, sensor_names, report) -> None:
    """Fine-tuning: start from `train.init` (a checkpoint or `pretrained:NAME`) of the same estimator."""
    init = settings.train.init
    ckpt = checkpoints.load(init)
    differs = _estimator_differences(registry, settings, ckpt["estimator"], "train.init")
    if differs or list(ckpt["sensor_names"]) != list(sensor_names):
        what = f"estimator settings {', '.join(differs)}" if differs else f"sensors {ckpt['sensor_names']}"
        raise EmposeError(
            f"{settings.path}: train.init: {init} was trained with other {what} than this recipe's estimator and sensors "
            f"({sensor_names}). Fine-tuning needs the same network: copy the checkpoint's estimator spec "
            f"({ckpt['estimator']}) into the recipe's `estimator:` and use the same sensor set."
        )
    checkpoints.load_weights(estimator, ckpt, init)
    report(f"fine-tuning from {init} (step {ckpt['step']})")


def _evaluate_only(registry, settings: RunSettings, info, device, run_dir, report, cross_subject) -> None:
    path = settings.evaluate.checkpoint
    if not path:
        raise EmposeError(
            f"{settings.path}: evaluate.checkpoint: task 'evaluate' needs a checkpoint; add `evaluate: {{checkpoint: "
            "path/to/best.pt}` or pass `--set evaluate.checkpoint=...`."
        )
    ckpt = checkpoints.load(path, map_location=device)
    _seed(settings.seed)
    comps = build(registry, settings, device, need_train=False, cross_subject=cross_subject, log=report)
    if ckpt["body_model"].get("use") != settings.body_model["use"]:
        report(f"[yellow]note:[/] the checkpoint was trained with body model '{ckpt['body_model'].get('use')}', "
               f"this recipe evaluates with '{settings.body_model['use']}'.")  # fmt: skip
    _check_sensors(comps, ckpt, path)
    try:
        estimator = build_estimator(registry, ckpt["estimator"], comps.body_model, ckpt["sensor_names"], device)
    except EmposeError as exc:
        raise DataError(f"checkpoint {path}: its estimator cannot be built: {exc}") from None
    if settings.estimator is not None:
        differs = _estimator_differences(registry, settings, ckpt["estimator"], "evaluate.checkpoint")
        if differs:
            raise EmposeError(
                f"{settings.path}: estimator: task 'evaluate' takes its estimator from evaluate.checkpoint ({path}), "
                f"but the recipe (or a --set) gives one that differs in {', '.join(differs)}, which would be ignored. "
                f"Remove `estimator:` and any `--set estimator...` (the checkpoint's is {ckpt['estimator']}), or "
                "evaluate a checkpoint of that estimator (train it with `task: train`)."
            )
    checkpoints.load_weights(estimator, ckpt, path)
    _write_run_files(registry, settings, run_dir, info, ckpt["estimator"])
    if info.main:
        _evaluate_tests(comps, estimator, settings, run_dir, report, which_weights=f"{path} (step {ckpt['step']})",
                        cross_subject=cross_subject)  # fmt: skip


def _check_sensors(comps: Components, ckpt: dict, path) -> None:
    """Every test set must record the sensors the checkpoint's estimator reads."""
    need = [str(n) for n in ckpt["sensor_names"]]
    for name, source in comps.test.items():
        have = [str(n) for n in getattr(source, "sensor_names", need)]
        missing = [n for n in need if n not in have]
        if missing:
            raise DataError(
                f"checkpoint {path} reads {len(need)} sensors ({', '.join(need)}), but test set '{name}' records "
                f"{len(have)} and lacks {', '.join(missing)}. Give that test set `sensors: em12` (or the checkpoint's "
                "sensors), or evaluate a checkpoint trained on these sensors."
            )


def _evaluate_tests(comps: Components, estimator, settings: RunSettings, run_dir: Path, report, which_weights: str,
                    cross_subject: bool) -> None:  # fmt: skip
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    if not comps.test:
        report("no test sets to evaluate (data.test is empty or every optional set was skipped).")
        return
    chunk = settings.evaluate.chunk_for(estimator)
    if settings.evaluate.chunk != chunk:
        report(f"evaluating whole sequences {'at once' if chunk is None else f'in chunks of {chunk} frames'} "
               f"(evaluate.chunk: {settings.evaluate.chunk}, the estimator's own)", console=False)
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
                                      chunk, progress=lambda _id: bar.advance(task), body_model=comps.body_model)  # fmt: skip
        if len(pool) == 0:
            report(f"[yellow]test set '{label}' has no sequences[/]")
            continue
        extra = {"weights": which_weights, "chunk": chunk, "cross_subject": cross_subject, "empose": __version__}
        csv_path, _ = write_table(pool, run_dir / "eval", label, extra)
        report.console.print(render_table(pool, f"{label} — {which_weights}"))
        overall = pool.overall()
        shown = ", ".join(f"{escape(m.header)} {overall[f'{m.name}_mean']:.2f} ± {overall[f'{m.name}_std']:.2f}" for m in pool.metrics)
        report(f"{label} overall ({overall['used_frames']} frames): {shown}; table in {csv_path}", console=False)
        if settings.evaluate.render:
            _render_tests(comps, estimator, settings, chunk, source, pool, run_dir / "eval" / "render" / label, report)
    for name, why in comps.skipped.items():
        report(f"[yellow]test set '{name}' skipped:[/] {escape(why)}")


def _render_tests(comps: Components, estimator, settings: RunSettings, chunk, source, pool, folder: Path, report) -> None:
    """`evaluate.render: N`: videos of the N best and N worst sequences; a drawing problem is reported,
    never fatal (the tables are written already)."""
    try:
        render_extremes(estimator, source.sequences(device=estimator_device(estimator)), pool, comps.metrics,
                        settings.evaluate.render, chunk, folder, comps.body_model, settings.body_model,
                        log=lambda m: report(escape(m)))  # fmt: skip
    except EmposeError as exc:
        report(f"[yellow]could not draw the best and worst sequences:[/] {escape(exc.message)}")


def estimator_device(estimator) -> torch.device:
    try:
        return next(estimator.parameters()).device
    except StopIteration:
        return torch.device("cpu")
