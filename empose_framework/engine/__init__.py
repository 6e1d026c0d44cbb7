"""The training and evaluation engine behind `empose run` (torch is imported only when it runs)."""

from __future__ import annotations

from pathlib import Path


def run(recipe, resume: Path | None = None, run_dir: Path | None = None, cross_subject: bool = False) -> Path:
    """Train and/or evaluate as the recipe's `task` says; returns the run folder. The recipe's
    environment variables are read here (`engine.schema.RunSettings.of`).

    `resume`: a run folder whose `checkpoints/last.pt` training continues from; `run_dir`: where a new
    run is written (default `<output>/<name>-<timestamp>`); `cross_subject`: evaluate the test sets'
    hold-out subject. User-fixable problems raise `EmposeError`; Ctrl-C saves and exits with 130."""
    from empose_framework.engine.runner import execute

    return execute(recipe, resume=resume, run_dir=run_dir, cross_subject=cross_subject)
