"""The training loop: Adam, validation every N steps, best-on-validation checkpoint, exact resume.

Reproducibility: the data order of epoch e is a function of (seed, e) only (the source's
`windows(train=True, seed=...)`), and a checkpoint records how many of that epoch's batches were
consumed, the optimizer and every RNG state. Resuming starts a seekable source's stream at that point
(`windows(start=k)`; other sources are replayed up to it) and restores the RNGs, so on the CPU a resumed
run ends with the same weights as an uninterrupted one. On CUDA a seekable source's batches are made ahead
in a worker thread (`prefetch.py`), which changes no number: they come from the source's own generator.
Evaluation runs inside a forked RNG state so it never shifts training randomness.

Under torchrun each optimisation step takes `world` consecutive batches of the stream and rank r
trains on the r-th (disjoint shards; an incomplete last group of an epoch is dropped); DDP averages
the gradients, so all ranks keep identical weights.
"""

from __future__ import annotations

import math
import random
import signal
import time
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from empose_framework.engine import checkpoints, distributed
from empose_framework.engine.components import Components
from empose_framework.engine.distributed import DistInfo
from empose_framework.engine.evaluation import evaluate_sequences, metric_errors, metric_pose
from empose_framework.engine.pooling import Pool
from empose_framework.engine.prefetch import Prefetcher
from empose_framework.engine.schema import RunSettings
from empose_framework.errors import EmposeError
from empose_framework.guard import Stopped
from empose_framework.interfaces import Batch, Estimator

#: batches a seekable source's worker thread keeps ready ahead of the training step; on the CPU none by
#: default: there the step already keeps every core busy through torch's threads, and a worker only
#: competes with it (bench/training.py measured 0.6-0.7x the step rate on 2 cores, against 0.92-0.96x inline)
PREFETCH, PREFETCH_CPU = 3, 0


def epoch_seed(seed: int, epoch: int) -> int:
    """The data-order seed of an epoch: a pure function of (recipe seed, epoch)."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def rng_state() -> dict:
    """Every global RNG state, in types a weights-only checkpoint load accepts (tensors, tuples, numbers):
    numpy's legacy state `(name, keys, pos, has_gauss, cached)` keeps its keys as an int64 tensor."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(),
             "numpy": (str(name), torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)),
             "python": random.getstate()}  # fmt: skip
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    keys = keys.numpy() if torch.is_tensor(keys) else np.asarray(keys)  # older checkpoints: a numpy array
    np.random.set_state((name, keys.astype(np.uint32), pos, has_gauss, cached))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextmanager
def isolated_rng():
    """Run a block (evaluation) without changing any global RNG state."""
    state = rng_state()
    try:
        yield
    finally:
        set_rng_state(state)


@dataclass
class Progress:
    """Where training stands; everything `--resume` needs besides weights and optimizer."""

    step: int = 0
    epoch: int = 0
    consumed: int = 0  # stream batches of `epoch` already used
    best: float = math.inf
    best_step: int = -1
    last_eval_step: int = -1
    finished: bool = False
    history: list = field(default_factory=list)  # validation results, one dict per evaluation


class Interrupt:
    """Ctrl-C or SIGTERM (what schedulers send) sets a flag the loop checks between steps (so the saved
    state is a whole step); a second one stops at once with `Stopped`. `signum` is the first signal."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested = False
        self.signum = signal.SIGINT
        self._previous: dict = {}

    def __enter__(self):
        try:
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread: no handler, Ctrl-C behaves as usual
            pass
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise Stopped(signum)
        self.requested, self.signum = True, signum

    def __exit__(self, *exc):
        for sig, previous in self._previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._previous = {}


class Trainer:
    """One training run: the loop, validation and checkpoints (rank 0 writes), resumable state."""

    def __init__(self, settings: RunSettings, comps: Components, estimator: Estimator, device: torch.device, info: DistInfo,
                 run_dir: Path, report, checkpoint_meta: dict):  # fmt: skip
        self.settings, self.comps, self.model, self.device, self.info = settings, comps, estimator, device, info
        self.cfg = settings.train
        self.seed = settings.seed
        self.run_dir = run_dir
        self.report = report
        self.meta = checkpoint_meta
        self.opt = torch.optim.Adam(self.model.parameters(), lr=self.cfg.lr)
        self.progress = Progress()
        self.interrupt = Interrupt()
        self.writer = None
        self.ddp = self.model
        self.on_step = []  # callbacks(trainer) after every step (tests use them to interrupt)
        self._rng_to_restore = None
        self.saved_step: int | None = None  # step held by checkpoints/last.pt (None: not written yet)

    # ------------------------------------------------------------------ state
    def state(self, resume: bool = True) -> dict:
        ckpt = {**self.meta, "model": self.model.state_dict(), "step": self.progress.step}
        ckpt["source"] = f"{self.meta.get('source', '')}, step {self.progress.step}"
        if resume:
            ckpt["resume"] = {
                "optimizer": self.opt.state_dict(),
                "progress": vars(self.progress).copy(),
                "rng": rng_state(),
                "world": self.info.world,
            }
        return ckpt

    def load_state(self, ckpt: dict) -> None:
        checkpoints.load_weights(self.model, ckpt, self.run_dir / "checkpoints" / "last.pt")
        res = ckpt["resume"]
        self.opt.load_state_dict(res["optimizer"])
        self.progress = Progress(**res["progress"])
        self.saved_step = self.progress.step
        self._rng_to_restore = res["rng"]
        if res.get("world", 1) != self.info.world:
            self.report(
                f"[yellow]note:[/] the run was started with {res.get('world', 1)} process(es) and resumes with "
                f"{self.info.world}; the data order from here on differs from an uninterrupted run."
            )

    def save(self, name: str, resume: bool = True) -> None:
        if self.info.main:
            checkpoints.save_atomic(self.state(resume), self.run_dir / "checkpoints" / name)
            if name == "last.pt":
                self.saved_step = self.progress.step

    # ------------------------------------------------------------------ data
    def steps_per_epoch(self) -> int | None:
        try:
            n = len(self.comps.train)
        except TypeError:
            return None
        return math.ceil(n / self.cfg.batch_size) // self.info.world

    def total_steps(self) -> int | None:
        per_epoch = self.steps_per_epoch()
        by_epochs = None if per_epoch is None else per_epoch * self.cfg.epochs
        caps = [s for s in (by_epochs, self.cfg.max_steps) if s is not None]
        return min(caps) if caps else None

    def stream(self, epoch: int, skip: int) -> Iterator[tuple[Batch, int]]:
        """(this rank's batch, stream batches consumed so far) for each step of `epoch`, after the first
        `skip` stream batches: a seekable source starts there, any other is replayed up to there."""
        source = self.comps.train
        kwargs = {"train": True, "seed": epoch_seed(self.seed, epoch), "device": self.device}
        if getattr(source, "seekable", False):
            it = source.windows(self.cfg.batch_size, self.cfg.window, **kwargs, start=skip)
        else:
            it = source.windows(self.cfg.batch_size, self.cfg.window, **kwargs)
            for _ in range(skip):
                if next(it, None) is None:
                    return
        consumed = skip
        self._restore_rng()  # after replaying: the sources own their RNG
        while True:
            group = []
            for _ in range(self.info.world):
                batch = next(it, None)
                if batch is None:
                    return
                group.append(batch)
            consumed += len(group)
            yield group[self.info.rank], consumed

    # ------------------------------------------------------------------ steps
    def train_step(self, batch: Batch) -> dict[str, float]:
        self.model.train()
        self.opt.zero_grad(set_to_none=True)
        prediction = self.ddp(batch.sensors, batch.seq_len, batch.offsets)
        terms = {wl.name: wl.loss(prediction, batch) for wl in self.comps.losses}
        total = sum(wl.weight * terms[wl.name] for wl in self.comps.losses)
        if not torch.is_tensor(total):
            raise EmposeError(f"{self.settings.path}: losses: the recipe lists no training losses; add at least one.")
        total.backward()
        if self.cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        values = torch.stack([total.detach(), *(terms[wl.name].detach() for wl in self.comps.losses)])
        if self.info.enabled:
            torch.distributed.all_reduce(values)
            values /= self.info.world
        values = values.tolist()
        if not math.isfinite(values[0]):
            raise EmposeError(
                f"{self.settings.path}: training diverged at step {self.progress.step + 1} (total loss {values[0]}). "
                "Lower train.lr, set train.grad_clip (e.g. 1.0), or check the data; the last good weights are in "
                f"{self.run_dir / 'checkpoints' / 'last.pt'} (if an evaluation has run)."
            )
        self.opt.step()
        return {"total": values[0], **{wl.name: v for wl, v in zip(self.comps.losses, values[1:])}}

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Weighted losses and metric means over the validation windows (middle crops, fixed inputs)."""
        self.model.eval()
        sums: dict[str, float] = {}
        count = 0
        pool = Pool([m.info for m in self.comps.metrics])
        try:
            for batch in self.comps.valid.windows(
                self.cfg.batch_size, self.cfg.window, train=False, seed=self.seed, device=self.device
            ):
                prediction = self.model(batch.sensors, batch.seq_len, batch.offsets)
                n = len(batch.ids)
                terms = {wl.name: float(wl.loss(prediction, batch)) for wl in self.comps.losses}
                terms["total"] = sum(wl.weight * terms[wl.name] for wl in self.comps.losses)
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + v * n
                count += n
                errors = metric_errors(self.comps.metrics, metric_pose(prediction, batch), batch, self.comps.body_model)
                for b, seq_id in enumerate(batch.ids):
                    pool.add(seq_id, int(batch.seq_len[b]), 0, {k: v[b] for k, v in errors.items()})
        finally:
            self.model.train()
        if count == 0:
            raise EmposeError(f"{self.settings.path}: data.valid: the validation source yielded no data.")
        result = {f"loss/{k}": v / count for k, v in sums.items()}
        overall = pool.overall()
        for m in self.comps.metrics:
            result[f"metric/{m.name}"] = overall[f"{m.name}_mean"]
        return result

    def evaluate(self) -> None:
        """Validation (rank 0), best-checkpoint selection, optional test-set monitoring, last.pt."""
        p = self.progress
        if self.info.main:
            with isolated_rng():
                if self.comps.valid is not None:
                    result = self.validate()
                    key = "loss/total" if self.cfg.select_on == "loss" else f"metric/{self.cfg.select_on}"
                    value = result[key]
                    for k, v in result.items():
                        self.writer.add_scalar(f"{k.split('/')[0]}/valid/{k.split('/', 1)[1]}", v, p.step)
                    improved = value < p.best
                    p.history.append({"step": p.step, **{k: float(v) for k, v in result.items()}})
                    shown = ", ".join(f"{k.split('/', 1)[1]} {v:.4g}" for k, v in result.items())
                    self.report(f"step {p.step}: validation {shown}" + (" [green](best)[/]" if improved else ""))
                    if improved:
                        p.best, p.best_step = float(value), p.step
                        self.save("best.pt", resume=False)
                else:
                    p.best_step = p.step
                    self.save("best.pt", resume=False)
                if self.cfg.test_during_training:
                    self._monitor_tests()
            p.last_eval_step = p.step
            self.save("last.pt")
        distributed.barrier(self.info)

    def _monitor_tests(self) -> None:
        for name, source in self.comps.test.items():
            pool = evaluate_sequences(self.model, source.sequences(device=self.device), self.comps.metrics, self.cfg.eval_window,
                                      body_model=self.comps.body_model)
            overall = pool.overall()
            for m in self.comps.metrics:
                self.writer.add_scalar(f"metric/test-{name}/{m.name}", overall[f"{m.name}_mean"], self.progress.step)
            shown = ", ".join(f"{m.name} {overall[f'{m.name}_mean']:.2f}" for m in self.comps.metrics)
            self.report(f"step {self.progress.step}: test set '{name}' {shown}")

    # ------------------------------------------------------------------ loop
    def fit(self) -> bool:
        """Train until the epochs or max_steps are done; False when interrupted (last.pt saved)."""
        p = self.progress
        if p.finished:
            self.report(f"training already finished at step {p.step}; nothing to resume.")
            return True
        if self.info.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(self.model, device_ids=ids)
        if self.info.main:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=p.step or None)
        if self.comps.valid is None and p.step == 0:
            self.report("[yellow]note:[/] no validation data (data.valid): best.pt is simply the latest evaluated weights.")
        total = self.total_steps()
        with self.interrupt, self._bar(total) as bar, closing(self._batches()) as batches:  # closing: stop the worker
            task = bar.add_task("training", total=total, completed=p.step, loss=float("nan"))
            started, start_step = time.perf_counter(), p.step
            # The flag is checked right after a step (never between fetching a batch and using it), so
            # last.pt holds the state of a whole step and the RNG state before the next fetch.
            if self._stop_requested():
                return self._interrupted()
            for batch in batches:
                losses = self.train_step(batch)
                p.step += 1
                self._log(losses, started, start_step)
                bar.update(task, completed=p.step, loss=losses["total"])
                for callback in self.on_step:
                    callback(self)
                if p.step % self.cfg.eval_every == 0:
                    self.evaluate()
                if self._stop_requested():
                    return self._interrupted()
        p.finished = True
        self._sync_buffers()
        if p.last_eval_step != p.step:
            self.evaluate()
        else:
            self.save("last.pt")
        if self.writer is not None:
            self.writer.close()
        return True

    def _batches(self) -> Iterator[Batch]:
        """This rank's batches from the current position to the end of training, keeping
        `progress.epoch` / `progress.consumed` in step with what has been handed out."""
        p, max_steps = self.progress, self.cfg.max_steps
        items = self._positions(p.epoch, p.consumed)
        depth = PREFETCH_CPU if self.device.type == "cpu" else PREFETCH
        if depth and getattr(self.comps.train, "seekable", False):  # made ahead in a worker thread
            self._restore_rng()  # the worker never touches the global RNGs
            items = Prefetcher(items, depth, self.device)
        try:
            for epoch, batch, consumed in items:
                if batch is None:  # the end of `epoch`
                    p.epoch, p.consumed = epoch + 1, 0
                elif max_steps is not None and p.step >= max_steps:
                    return
                else:
                    p.consumed = consumed
                    yield batch
        finally:
            items.close()

    def _positions(self, epoch: int, skip: int) -> Iterator[tuple[int, Batch | None, int]]:
        """(epoch, this rank's batch, stream batches of the epoch consumed) from the position (epoch,
        skip) to the end of training; a batch None marks the end of an epoch."""
        while epoch < self.cfg.epochs:
            for batch, consumed in self.stream(epoch, skip):
                yield epoch, batch, consumed
            yield epoch, None, 0
            epoch, skip = epoch + 1, 0

    def _restore_rng(self) -> None:
        """Restore the resumed checkpoint's RNG state once, right before its next batch is fetched."""
        if self._rng_to_restore is not None:
            set_rng_state(self._rng_to_restore)
            self._rng_to_restore = None

    def _sync_buffers(self) -> None:
        """DDP keeps parameters identical but each rank updates BatchNorm statistics on its own
        shard after the last broadcast: give every rank rank 0's (the checkpointed ones)."""
        if self.info.enabled:
            for buffer in self.model.buffers():
                torch.distributed.broadcast(buffer, src=0)

    def _stop_requested(self) -> bool:
        return distributed.any_flag(self.interrupt.requested, self.info, self.device)

    def _interrupted(self) -> bool:
        self.save("last.pt")
        if self.writer is not None:
            self.writer.close()
        return False

    def _log(self, losses: dict[str, float], started: float, start_step: int) -> None:
        p = self.progress
        if self.writer is not None:
            for k, v in losses.items():
                self.writer.add_scalar(f"loss/train/{k}", v, p.step)
            self.writer.add_scalar("lr", self.opt.param_groups[0]["lr"], p.step)
        if self.info.main and (p.step % self.cfg.log_every == 0 or p.step == 1):
            rate = (p.step - start_step) / max(time.perf_counter() - started, 1e-9)
            shown = " ".join(f"{k} {v:.5g}" for k, v in losses.items())
            self.report(f"step {p.step} epoch {p.epoch}: {shown} ({rate:.2f} steps/s)", console=False)

    def _bar(self, total):
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
        from rich.progress import Progress as Bar

        return Bar(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.report.console,
            disable=not self.info.main,
        )
