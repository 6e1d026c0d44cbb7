"""Recipe sections the engine reads (`train:` and `evaluate:`), declared like component params.

Kept free of torch so that `empose validate` stays light.
"""

from __future__ import annotations

from empose_framework.params import Param

TRAIN_PARAMS = (
    Param("batch_size", int, 12, "windows per optimisation step (per process under torchrun)"),
    Param("window", int, 32, "training window length in frames (also the validation middle crop)"),
    Param("epochs", int, 50, "passes over the training data"),
    Param("max_steps", int | None, None, "stop after this many steps (overrides epochs when reached first)"),
    Param("lr", float, 1.0e-3, "Adam learning rate (constant)"),
    Param("eval_every", int, 700, "validate every N steps; the best validation checkpoint is kept"),
    Param("select_on", str, "loss", "validation quantity that picks best.pt: `loss` (weighted total) or a metric name"),
    Param("test_during_training", bool, False, "also evaluate the test sets at every evaluation (logged only, never used for selection)"),
    Param("eval_window", int | None, 256, "chunk length for the test sets evaluated during training (null = whole)"),
    Param("grad_clip", float | None, None, "clip the global gradient norm to this value (null = off)"),
    Param("log_every", int, 25, "write losses to train.log and the console every N steps (TensorBoard gets every step)"),
    Param("num_threads", int | None, None, "torch CPU threads per process (null = torch's default)"),
)

EVALUATE_PARAMS = (
    Param("checkpoint", str | None, None, "empose checkpoint to evaluate (task: evaluate)"),
    Param("chunk", int | None, 256, "frames per chunk for whole-sequence inference (null = whole sequence)"),
    Param("use", str, "best", "after training, evaluate the `best` (validation-selected) or the `last` weights", choices=("best", "last")),
)
