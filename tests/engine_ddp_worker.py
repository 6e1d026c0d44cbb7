"""Worker for test_engine_distributed: one torchrun rank of a tiny training run. Saves this rank's
final weights as rank<r>.pt next to the run so the test can compare ranks."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from empose_framework.engine import run  # noqa: E402
from empose_framework.engine import train as train_module  # noqa: E402
from empose_framework.recipes import load_recipe  # noqa: E402
from engine_doubles import install_registry  # noqa: E402

recipe_path, out = Path(sys.argv[1]), Path(sys.argv[2])
registry = install_registry()
original_fit = train_module.Trainer.fit


def fit_and_record(self):
    done = original_fit(self)
    torch.save({"state": self.model.state_dict(), "step": self.progress.step}, out / f"rank{self.info.rank}.pt")
    return done


train_module.Trainer.fit = fit_and_record
run(load_recipe(recipe_path, sys.argv[3:], registry=registry), run_dir=out / "run")
