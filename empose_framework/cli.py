"""The `empose` command line (Typer). Plugins add commands through the `register_commands` hook.

Plugin options are read before the app is built (plugins contribute commands, so they must be loaded
first), the way pytest reads `-p`: `empose -p no:NAME ...`, `--strict-plugins`, `--debug`.
User-fixable errors (`EmposeError`) print as one paragraph and exit 2; `--debug` shows the traceback.
Heavy modules (torch, recipes, the engine) are imported inside commands so `list-plugins` stays fast.
"""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from empose_framework import __version__
from empose_framework.errors import EmposeError
from empose_framework.params import KINDS, plural, type_name
from empose_framework.plugins import Registry, get_registry

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

HELP = """empose: 3D human pose and shape from a few body-worn sensors.

Main job: `empose run recipes/quickstart.yaml`. Plugins: `empose list-plugins`."""


def _kind(value: str) -> str:
    """Accept `estimator`, `estimators` and `body-model` alike."""
    k = value.replace("-", "_").lower()
    if k not in KINDS and k.endswith("s") and k[:-1] in KINDS:
        k = k[:-1]
    return k


def build_app(registry: Registry) -> typer.Typer:
    app = typer.Typer(help=HELP, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False)

    @app.callback()
    def _global(
        plugin: List[str] = typer.Option([], "-p", help="`-p no:NAME` disables the plugin NAME (repeatable)."),
        strict_plugins: bool = typer.Option(False, "--strict-plugins", help="A plugin that fails to load is an error."),
        debug: bool = typer.Option(False, "--debug", help="Show full tracebacks."),
        version: bool = typer.Option(False, "--version", help="Print the version and exit."),
    ):
        """(-p, --strict-plugins and --debug are read before plugins load, wherever they stand.)"""
        if version:
            out.print(f"empose {__version__}")
            raise typer.Exit()

    @app.command("list-plugins")
    def list_plugins(
        kind: Optional[str] = typer.Option(None, "--kind", help=f"Only this kind: {', '.join(KINDS)}, or `weights`."),
        as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    ):
        """List the plugins (the NAME `-p no:NAME` takes, their hooks) and every installed component, by kind."""
        show_weights = kind is None or kind in WEIGHTS_KIND
        kinds = [] if kind in WEIGHTS_KIND else [registry_kind(kind)] if kind else list(KINDS)
        if as_json:
            payload = {
                "plugins": [{"name": p.name, "distribution": p.distribution, "version": p.version, "hooks": list(p.hooks),
                             "status": p.status} for p in registry.plugins.values()],
                "components": {
                    k: [
                        {"name": e.name, "description": e.description, "plugin": e.plugin,
                         "distribution": e.distribution, "version": e.version}
                        for e in registry.entries(k)
                    ]
                    for k in kinds
                },
                "failures": [{"plugin": f.plugin, "distribution": f.distribution, "error": f.error, "others": list(f.others)}
                             for f in registry.failures],
            }
            if show_weights:
                payload["weights"] = [w.card() for w in registry.weights()]
            out.print_json(json.dumps(payload))
            return
        if kind is None:
            table = Table(title="plugins (`-p no:NAME` disables one)", title_justify="left", expand=False)
            for col in ("name", "distribution", "version", "hooks", "status"):
                table.add_column(col)
            for p in registry.plugins.values():
                table.add_row(p.name, p.distribution, p.version, ", ".join(p.hooks), p.status)
            out.print(table)
        for k in kinds:
            table = Table(title=plural(k), title_justify="left", expand=False)
            for col in ("name", "provided by", "description"):
                table.add_column(col)
            for e in registry.entries(k):
                table.add_row(e.name, f"{e.distribution} {e.version}", e.description)
            out.print(table)
        if show_weights:
            out.print(_weights_table(registry.weights()))
        if registry.failures:
            out.print(f"[bold red]{len(registry.failures)} plugin problem(s)[/]: what failed was skipped (see the warnings above).")

    @app.command()
    def describe(
        kind: str = typer.Argument(..., help=f"One of: {', '.join(KINDS)}, `weights` or `recipe`."),
        name: str = typer.Argument(..., help="Component name as written after `use:` (for `recipe`: top, train or evaluate)."),
    ):
        """Show a component's parameters: types, defaults and docs (`describe recipe train` for recipe sections)."""
        if kind == "recipe":
            return _describe_recipe_section(name)
        if kind in WEIGHTS_KIND:
            return _describe_weights(registry.get_weights(name))
        entry = registry.get(registry_kind(kind), name)
        cls = entry.load()
        out.print(f"[bold]{entry.kind} '{entry.name}'[/] — {entry.description}")
        target = entry.target if isinstance(entry.target, str) else f"{cls.__module__}:{cls.__qualname__}"
        out.print(f"provided by {entry.distribution} {entry.version} (plugin '{entry.plugin}', {target})")
        doc = inspect.cleandoc(cls.__doc__ or "")
        if "\n" in doc:
            out.print(doc.split("\n", 1)[1].strip(), markup=False)
        out.print(_param_table(cls.params) if cls.params else "no parameters")

    @app.command()
    def validate(
        recipe: Path = typer.Argument(..., help="Recipe YAML file."),
        set_: List[str] = typer.Option([], "--set", help="Override KEY.PATH=VALUE (YAML-typed; repeatable)."),
    ):
        """Check a recipe and print its resolved form (every default filled in); needs none of its data."""
        import os

        from empose_framework.recipes import load_recipe

        resolved = load_recipe(recipe, set_, registry=registry)
        out.print(resolved.dump(), markup=False, end="")
        err.print(f"[green]{recipe}: valid[/]")
        needed = resolved.variables()
        if needed:  # whether each is set, never its value
            shown = ", ".join(f"{name} ({'set' if os.environ.get(name) else 'not set' if required else 'optional, not set'})"
                              for name, required in needed.items())  # fmt: skip
            err.print(f"a run reads the environment variables {shown}", markup=False, soft_wrap=True)

    @app.command()
    def run(
        recipe: Path = typer.Argument(..., help="Recipe YAML file."),
        set_: List[str] = typer.Option([], "--set", help="Override KEY.PATH=VALUE (YAML-typed; repeatable)."),
        resume: Optional[Path] = typer.Option(None, "--resume", help="Continue the interrupted run in this run folder."),
        run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Write the run here instead of <output>/<name>-<time>."),
        cross_subject: bool = typer.Option(False, "--cross-subject", help="Evaluate on the hold-out subject's recordings."),
    ):
        """Train and/or evaluate as the recipe's `task` says."""
        import importlib

        from empose_framework.recipes import load_recipe

        resolved = load_recipe(recipe, set_, registry=registry)
        engine = importlib.import_module("empose_framework.engine")
        run_fn = getattr(engine, "run", None)
        if run_fn is None:
            raise EmposeError(
                f"{recipe}: the recipe is valid, but this build of empose has no training/evaluation engine yet, "
                f"so task '{resolved['task']}' cannot run. Nothing was trained. `empose validate {recipe}` shows the "
                "resolved recipe."
            )
        run_fn(resolved, resume=resume, run_dir=run_dir, cross_subject=cross_subject)

    @app.command("pack-weights")
    def pack_weights(
        checkpoint: str = typer.Argument(..., help="An empose checkpoint (e.g. <run>/checkpoints/best.pt)."),
        folder: Path = typer.Argument(..., help="Where to write NAME.pt and its model card NAME.json."),
        name: str = typer.Option(..., "--name", help="The name recipes will use as `pretrained:NAME`."),
        half: bool = typer.Option(True, "--half/--full", help="Store floating-point weights in float16 (half the size)."),
        eval_dir: Optional[Path] = typer.Option(None, "--eval", help="A run's eval/ folder: its overall metrics go on the card."),
        description: str = typer.Option("", "--description", help="One line for `empose list-plugins`."),
        training_data: str = typer.Option("", "--training-data", help="What the weights were trained on."),
        licence: str = typer.Option("", "--licence", help="Licence of the weights (and of the data they come from)."),
        recipe: str = typer.Option("", "--recipe", help="The recipe and overrides that trained them."),
    ):
        """Make a checkpoint into registrable pretrained weights (weights + model card, no optimizer state)."""
        from empose_framework.pretrained import pack

        pt, card = pack(checkpoint, folder, name, half=half, eval_dir=eval_dir, description=description,
                        training_data=training_data, licence=licence, recipe=recipe)
        out.print(f"wrote {pt} ({pt.stat().st_size / 2**20:.1f} MB) and {card}; register them from a plugin with "
                  f"`pretrained.register_cards(register, FOLDER)` in a `register_weights` hook.")

    registry.add_commands(app)
    return app


#: what `--kind` and `describe` accept for pretrained weights
WEIGHTS_KIND = ("weights", "pretrained", "pretrained-weights", "pretrained_weights")


def _weights_table(weights) -> Table:
    table = Table(title="pretrained weights", title_justify="left", expand=False)
    for col in ("name", "provided by", "estimator", "sensors", "description"):
        table.add_column(col)
    for w in weights:
        est = (w.estimator or {}).get("use", "?")
        table.add_row(w.name, f"{w.distribution} {w.version}", est, str(len(w.sensors) or "?"), w.description)
    return table


def _describe_weights(w) -> None:
    """The model card: provenance, data, licence, metrics."""
    out.print(f"[bold]pretrained weights '{w.name}'[/] — {w.description}")
    out.print(f"provided by {w.distribution} {w.version} (plugin '{w.plugin}'); use as `pretrained:{w.name}`", markup=False)
    rows = [("file", str(w.file)), ("sha256", w.sha256), ("estimator", json.dumps(w.estimator)),
            ("sensors", ", ".join(w.sensors)), ("body model", json.dumps(w.body_model)), ("training data", w.training_data),
            ("licence", w.licence), ("recipe", w.recipe), ("seed", "" if w.seed is None else str(w.seed)),
            ("trained", w.trained)]  # fmt: skip
    card = Table(show_header=False, expand=False)
    card.add_column(style="bold")
    card.add_column(overflow="fold")
    for key, value in rows:
        if value not in ("", "null", None):
            card.add_row(key, value)
    out.print(card)
    if w.metrics:
        names = sorted({m for v in w.metrics.values() for m in v if m != "frames"})
        table = Table(title="metrics (overall mean)", title_justify="left")
        for col in ("test set", "frames", *names):
            table.add_column(col, justify="right")
        for test_set, values in w.metrics.items():
            table.add_row(test_set, str(values.get("frames", "")), *(f"{values[m]:.2f}" if m in values else "" for m in names))
        out.print(table)


def _param_table(params) -> Table:
    table = Table(expand=False)
    for col in ("parameter", "type", "default", "description"):
        table.add_column(col)
    for p in params:
        default = "required" if p.required else repr(p.default)
        extra = f" ({p.accepts()})" if p.accepts() else ""
        table.add_row(p.name, type_name(p.type), default, p.doc + extra)
    return table


def _describe_recipe_section(section: str) -> None:
    from empose_framework.engine.schema import EVALUATE_PARAMS, TRAIN_PARAMS
    from empose_framework.recipes import TOP_LEVEL

    sections = {"top": TOP_LEVEL, "train": TRAIN_PARAMS, "evaluate": EVALUATE_PARAMS}
    if section not in sections:
        raise EmposeError(f"unknown recipe section '{section}'. Sections: {', '.join(sections)}.")
    out.print(f"[bold]recipe section '{section}'[/]")
    out.print(_param_table(sections[section]))


def registry_kind(value: str) -> str:
    kind = _kind(value)
    if kind not in KINDS:
        import difflib

        close = difflib.get_close_matches(kind, KINDS, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise EmposeError(f"unknown component kind '{value}'.{hint} Kinds: {', '.join(KINDS)}.")
    return kind


def _early_options(argv: list[str]) -> tuple[list[str], set[str], bool, bool]:
    """Take `-p no:NAME`, `--strict-plugins` and `--debug` out of argv wherever they stand (plugins
    must be loaded before the app exists); returns (rest of argv, disabled, strict, debug)."""
    rest, disabled, strict, debug = [], set(), False, False
    args = iter(argv)
    for a in args:
        if a == "-p" or (a.startswith("-p") and len(a) > 2 and not a.startswith("--")):
            value = next(args, "") if a == "-p" else a[2:]
            if value.startswith("no:"):
                disabled.add(value[3:])
        elif a in ("--strict-plugins", "--debug"):
            strict |= a == "--strict-plugins"
            debug |= a == "--debug"
        else:
            rest.append(a)
    return rest, disabled, strict, debug


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    argv, disabled, strict, debug = _early_options(argv)
    try:
        registry = get_registry(disabled=disabled, strict=strict)
        shown = list(registry.failures)
        for failure in shown:
            err.print(f"[yellow]warning:[/] {failure.message()}", soft_wrap=False)
        command = typer.main.get_command(build_app(registry))
        for failure in registry.failures[len(shown):]:
            err.print(f"[yellow]warning:[/] {failure.message()}", soft_wrap=False)
        command.main(args=argv, prog_name="empose", standalone_mode=True)  # usage errors: Typer's message, exit 2
    except EmposeError as exc:
        if debug:
            raise
        err.print("[bold red]error:[/] ", end="")
        err.print(exc.message, markup=False)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (guard.Stopped) where a command turned it into one
        from empose_framework.guard import exit_code

        err.print(f"interrupted{f' ({exc})' if str(exc) else ''}")
        sys.exit(exit_code(exc))
