"""Registers the EM-POSE estimators and the `import-checkpoint` command. Light on purpose: no torch
(or typer) import at module level; `empose list-plugins` imports this module."""

from empose_estimators import schema
from empose_framework import hookimpl


@hookimpl
def register_estimators(register):
    register("resnet", "empose_estimators.resnet:ResNet", "Frame-wise residual MLP (the paper's ResNet baseline)",
             params=schema.RESNET)
    register("rnn", "empose_estimators.rnn:RNN", "LSTM; bidirectional: true is the paper's BiRNN (offline only)",
             params=schema.RNN)
    register("lgd", "empose_estimators.lgd:LGD", "Learned gradient descent with optional RNN initialiser (LGD, LGD RNN)",
             params=schema.LGD)


@hookimpl
def register_commands(app):
    from pathlib import Path

    import typer

    @app.command("import-checkpoint")
    def import_checkpoint(
        model_dir: Path = typer.Argument(..., help="Released EM-POSE model folder (config.json + model.pth)."),
        out: Path = typer.Argument(..., help="Folder that receives checkpoint.pt and recipe.yaml."),
        force: bool = typer.Option(False, "--force", help="Overwrite an existing checkpoint.pt / recipe.yaml in OUT."),
    ):
        """Convert a released EM-POSE model (config.json + model.pth) into an empose checkpoint and an
        evaluation recipe: `empose run OUT/recipe.yaml` then evaluates it on the EM-POSE recordings."""
        from rich.console import Console

        from empose_estimators.convert import import_checkpoint as convert

        result = convert(model_dir, out, force=force)
        spec = result["estimator"]
        Console(highlight=False).print(
            f"imported {spec['use']} ({result['sensors']}, {result['parameters']:,} parameters, step {result['step']})\n"
            f"  checkpoint: {result['checkpoint']}\n  recipe:     {result['recipe']}\n"
            f"evaluate with: empose run {result['recipe']}"
        )
