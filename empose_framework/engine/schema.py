"""Recipe sections the engine reads (`train:` and `evaluate:`), declared like component params.

Kept free of torch so that `empose validate` stays light.
"""

from __future__ import annotations

from empose_framework.params import Param, positive

TRAIN_PARAMS = (
    Param("batch_size", int, 12, "windows per optimisation step (per process under torchrun)", min=1),
    Param("window", int, 32, "training window length in frames (also the validation middle crop)", min=1),
    Param("epochs", int, 50, "passes over the training data", min=1),
    Param("max_steps", int | None, None, "stop after this many steps (overrides epochs when reached first)", min=1),
    Param("lr", float, 1.0e-3, "Adam learning rate (constant)", check=positive, rule="> 0"),
    Param("eval_every", int, 700, "validate every N steps; the best validation checkpoint is kept", min=1),
    Param("select_on", str, "loss", "validation quantity that picks best.pt: `loss` (weighted total) or a metric name"),
    Param("test_during_training", bool, False, "also evaluate the test sets at every evaluation (logged only, never used for selection)"),
    Param("eval_window", int | None, 256, "chunk length for the test sets evaluated during training (null = whole)", min=1),
    Param("grad_clip", float | None, None, "clip the global gradient norm to this value (null = off)", check=positive, rule="> 0"),
    Param("log_every", int, 25, "write losses to train.log and the console every N steps (TensorBoard gets every step)", min=1),
    Param("num_threads", int | None, None, "torch CPU threads per process (null = torch's default)", min=1, max=4096),
    Param("init", str | None, None, "fine-tune: start from these weights (a checkpoint path or `pretrained:NAME`) of the same estimator"),
)

EVALUATE_PARAMS = (
    Param("checkpoint", str | None, None, "empose checkpoint to evaluate (task: evaluate): a path or `pretrained:NAME`"),
    Param("chunk", int | None, 256, "frames per chunk for whole-sequence inference (null = whole sequence)", min=1),
    Param("use", str, "best", "after training, evaluate the `best` (validation-selected) or the `last` weights", choices=("best", "last")),
    Param("render", int, 0, "draw the N best and N worst sequences of each test set (by MPJPE) as MP4 into eval/render/ (0 = off)", min=0),
)
