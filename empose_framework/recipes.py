"""YAML recipe -> validated recipe; its environment variables are read only when a run is built.

Order of work: read the file and the chain of `extends:` bases (deep merge, the child wins, lists are
replaced, `env:` lists are joined; a component spec whose `use:` changes is replaced, not merged) ->
apply `--set a.b=c` overrides (values parsed as YAML; a changed `use:` likewise starts a fresh spec) ->
`${RECIPE_DIR}` becomes the recipe's folder -> check every key against the declared parameters of the
named components (types and ranges) and fill in defaults, and check that every `${VAR}` reference is
well formed and declared: that is `Recipe.recorded`, and `empose validate` needs no data for it.
`Recipe.data`, read when a run is built, interpolates `${VAR}` / `${VAR:-default}` (empose_framework.envvars)
and checks the values again. Every error names the recipe file and the key path.

Recipes are data that people share, so reading one is bounded: duplicate keys are an error (YAML would
silently keep the last), aliases may not expand past `MAX_VALUES` values, and only environment
variables the recipe declares in its top-level `env:` list (or that a `--set` value spells out; those
join `env:`) are read. `Recipe.recorded` keeps those references unexpanded: it is what the run folder's
recipe.yaml and the checkpoints store, so values of the user's environment never land in shared files.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from empose_framework import envvars
from empose_framework.errors import PluginError, RecipeError
from empose_framework.params import ComponentRef, Param, coerce, matches, plain_name, type_name

_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?|mps")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: the most values a recipe may hold once its YAML aliases are expanded (a real recipe has a few hundred)
MAX_VALUES = 20_000


def _device_problem(value: str) -> str | None:
    return None if _DEVICE.fullmatch(value) else f"expected auto, cpu, cuda, cuda:N or mps, got {value!r}"


def _env_problem(value: list) -> str | None:
    bad = [v for v in value if not _ENV_NAME.fullmatch(v) or v == "RECIPE_DIR"]
    return f"expected environment variable names, got {bad!r}" if bad else None


TOP_LEVEL = (
    Param("name", str, doc="run name; the run folder is <output>/<name>-<timestamp>", check=plain_name,
          rule="a plain name: letters, digits, _ . + = -"),
    Param("task", str, doc="what `empose run` does", choices=("train", "evaluate")),
    Param("env", list[str], [], "environment variables the recipe reads as ${VAR} (no others are expanded)",
          check=_env_problem, rule="variable names"),
    Param("seed", int, 0, "seed for every random number generator", min=0, max=2**63 - 1),
    Param("device", str, "auto", "auto (CUDA when available), cpu, cuda or cuda:N", check=_device_problem,
          rule="auto, cpu, cuda, cuda:N or mps"),
    Param("output", str, "runs", "folder that receives run folders"),
    Param("missing_data_hint", str | None, None, "extra advice shown when this recipe's data is missing"),
    Param("body_model", ComponentRef("body_model"), doc="the body model"),
    Param("data", dict, {}, "sensor sources: train, valid, and test (one spec or named specs)"),
    Param("estimator", ComponentRef("estimator"), None,
          "the estimator (task: train; task: evaluate takes it from the checkpoint)"),
    Param("losses", list, [], "training losses, each a loss spec with an optional `weight`"),
    Param("metrics", list, ["mpjpe", "pa_mpjpe", "mpjae"], "evaluation metrics"),
    Param("train", dict, {}, "training settings (`empose describe recipe train`)"),
    Param("evaluate", dict, {}, "evaluation settings (`empose describe recipe evaluate`)"),
)

#: keys the engine reads from a component spec besides the component's own params
ENGINE_KEYS = {
    "loss": (Param("weight", float, 1.0, "multiplies this loss in the total", min=0),),
    "sensor_source": (Param("optional", bool, False, "skip this data set with a notice when its data is missing"),),
}
DATA_SPLITS = ("train", "valid", "test")
_TOP = {p.name: p for p in TOP_LEVEL}


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads `1e-3` as a float (YAML 1.2 style), as people write learning rates, and
    refuses a key given twice in one mapping (plain YAML keeps the last one without a word)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key; SafeLoader reports it
                    continue
                if first is not None:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} appears twice (first at line {first}); remove one of them",
                        key_node.start_mark)
                seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"),
    list("-+0123456789."),
)


def _yaml(text: str):
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


@dataclass
class Recipe:
    """A validated recipe. `recorded`: every default filled in, declared `${VAR}` references unexpanded
    (what `empose validate` prints and run folders and checkpoints store; reading it needs no data).
    `data`: the same with the environment variables read, as a run uses it (computed on first use)."""

    path: Path
    recorded: dict
    source: dict = field(repr=False)  # the merged, overridden recipe before validation (what `data` expands)
    registry: Any = field(default=None, repr=False, compare=False)

    def __getitem__(self, key: str) -> Any:
        return self.recorded[key]

    @cached_property
    def data(self) -> dict:
        """The recipe with its declared `${VAR}`s read from the environment, checked again with the values."""
        hint = self.source.get("missing_data_hint")
        expanded = _interpolate(self.source, self.path, hint if isinstance(hint, str) else None)
        return _Validator(self.path, self.registry).recipe(expanded)

    def variables(self) -> dict[str, bool]:
        """The environment variables a run reads, each with whether the run needs it set (a variable
        with a default everywhere it is referenced is optional)."""
        out: dict[str, bool] = {}

        def collect(text: str, _where: str) -> str:
            for piece in envvars.parse(text):
                if isinstance(piece, envvars.Reference):
                    out[piece.name] = out.get(piece.name, False) or piece.default is None
                    for inner in envvars.references(piece.default or ""):  # read only when `piece` is unset
                        out.setdefault(inner.name, False)
            return text

        _walk(self.source, "", collect)
        return out

    def dump(self, recorded: bool = True) -> str:
        return yaml.safe_dump(self.recorded if recorded else self.data, sort_keys=False)


def load_recipe(path: str | os.PathLike, overrides: list[str] | tuple = (), registry=None) -> Recipe:
    """Read, merge, override and validate the recipe at `path` (no environment variable is read)."""
    path = Path(path)
    raw = _read_with_bases(path, chain=())
    for item in sorted(overrides, key=_override_order):
        _apply_override(raw, item, path)
    _declare_set_variables(raw, overrides, path)
    raw = _recipe_dir(raw, path)
    _check_references(raw, path, set(raw.get("env") or ()))
    if registry is None:
        from empose_framework.plugins import get_registry

        registry = get_registry()
    recorded = _Validator(path, registry, expanded=False).recipe(raw)
    return Recipe(path=path, recorded=recorded, source=raw, registry=registry)


def check_spec(registry, kind: str, spec: dict | str, path, where: str) -> dict:
    """A component spec checked as a recipe's would be, with every default filled in (e.g. to compare
    a checkpoint's estimator with a recipe's)."""
    return _Validator(Path(path), registry).component(kind, spec, where)


def _declare_set_variables(raw: dict, overrides, path: Path) -> None:
    """Variables a `--set` value spells out join `env:`, so the run folder's recipe.yaml still reads them."""
    env = raw.get("env")
    if env is None:
        env = []
    if not isinstance(env, list) or not all(isinstance(v, str) and _ENV_NAME.fullmatch(v) for v in env):
        raise RecipeError(f"{path}: env: expected a list of environment variable names (e.g. `env: [EM_DATA_REAL]`), "
                          f"got {env!r}.")
    extra = []
    for item in overrides:
        try:
            extra += [r.name for r in envvars.references(item.partition("=")[2])]
        except ValueError as exc:
            raise RecipeError(f"{path}: --set {item!r}: {exc}.") from None
    extra = [v for v in dict.fromkeys(extra) if v not in env and v != "RECIPE_DIR"]
    if extra or "env" in raw:
        raw["env"] = [*env, *extra]


# ------------------------------------------------------------------------------------ reading


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise RecipeError(f"recipe file {path} does not exist. Check the path (recipes ship in the `recipes/` folder).")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RecipeError(f"{path}: not a text file (byte {exc.start} is not UTF-8); a recipe is a YAML text file. "
                          "Check that you gave the recipe and not a checkpoint or data file.") from None
    except OSError as exc:
        raise RecipeError(f"{path}: cannot be read ({exc.strerror or exc}). Check its permissions.") from None
    if "\0" in text:
        raise RecipeError(f"{path}: not a text file (it holds NUL bytes); a recipe is a YAML text file.")
    try:
        data = _yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise RecipeError(f"{path}: not valid YAML{where}: {problem}. Fix the syntax there.") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe must be a YAML mapping of keys to values, not a {type(data).__name__}.")
    _check_size(data, path)
    return data


def _check_size(data: Any, path: Path) -> None:
    """Refuse self-referencing aliases and alias trees that expand past MAX_VALUES values (shared nodes
    are counted once per use, as interpolation and validation will copy them)."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: Any) -> int:
        if not isinstance(node, (dict, list)):
            return 1
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise RecipeError(f"{path}: a YAML alias refers to a mapping or list that contains it; a recipe must be a "
                              "tree. Replace the alias (*name) with the values it stands for.")
        active.add(key)
        children = node.values() if isinstance(node, dict) else node
        total = 1
        for child in children:
            total += size(child)
            if total > MAX_VALUES:
                break
        active.discard(key)
        sizes[key] = total
        if total > MAX_VALUES:
            raise RecipeError(f"{path}: its YAML aliases expand to more than {MAX_VALUES:,} values; a recipe needs a "
                              "few hundred. Remove the nested aliases (*name) that repeat large parts.")
        return total

    size(data)


def _read_with_bases(path: Path, chain: tuple) -> dict:
    resolved = path.resolve()
    if resolved in chain:
        cycle = " -> ".join(str(p) for p in (*chain, resolved))
        raise RecipeError(f"{path}: extends: recipes extend each other in a cycle ({cycle}). Remove one `extends:`.")
    data = _read_yaml(path)
    base = data.pop("extends", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise RecipeError(f"{path}: extends: expected a path to a base recipe (str), got {base!r}.")
    base_path = (path.parent / base) if not Path(base).is_absolute() else Path(base)
    if not base_path.is_file():
        raise RecipeError(f"{path}: extends: base recipe {base_path} does not exist (paths are relative to the recipe).")
    parent = _read_with_bases(base_path, (*chain, resolved))
    merged = _deep_merge(parent, data)
    if isinstance(parent.get("env"), list) and isinstance(data.get("env"), list):  # declarations add up
        merged["env"] = list(dict.fromkeys([*parent["env"], *data["env"]]))
    _check_size(merged, path)
    return merged


def _is_spec(at: tuple, node: Any) -> bool:
    """Is `node`, at key path `at`, a component spec? Every mapping with `use:` is one (a bare spec such
    as `empose predict` reads too), except in the top-level sections that are not components
    (`evaluate.use` is a setting)."""
    if not isinstance(node, dict) or "use" not in node:
        return False
    return len(at) != 1 or (at[0] in _TOP and isinstance(_TOP[at[0]].type, ComponentRef))


def _deep_merge(base: dict, child: dict, at: tuple = ()) -> dict:
    """Mappings merge (the child wins), anything else is replaced; a component spec whose `use:`
    changes replaces the base's spec, whose parameters belong to another component."""
    out = copy.deepcopy(base)
    for key, value in child.items():
        here, old = (*at, key), out.get(key)
        if isinstance(value, dict) and isinstance(old, dict) and not (_is_spec(here, value) and value["use"] != old.get("use")):
            out[key] = _deep_merge(old, value, here)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _override_order(item: str) -> tuple:
    """`--set X.use=...` first, shallowest first, so that a changed component keeps the parameters
    other `--set`s give it whatever their order; the rest in the order given."""
    key = item.partition("=")[0].strip()
    return (0, key.count(".")) if key.endswith(".use") else (1, 0)


def _apply_override(raw: dict, item: str, path: Path) -> None:
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise RecipeError(f"--set {item!r}: expected KEY.PATH=VALUE (e.g. --set train.lr=1e-3) for recipe {path}.")
    try:
        value = _yaml(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    parts = key.strip().split(".")
    node: Any = raw
    for depth, part in enumerate(parts[:-1]):
        node = _child(node, part, create=True, where=f"--set {item!r}: {'.'.join(parts[: depth + 1])}", path=path)
    last = parts[-1]
    if isinstance(node, list):
        index = _index(node, last, f"--set {item!r}", path)
        node[index] = value
    elif isinstance(node, dict):
        if last == "use" and _is_spec(tuple(parts[:-1]), node) and node["use"] != value:
            node.clear()  # another component: the old one's parameters do not apply
        node[last] = value
    else:
        raise RecipeError(f"{path}: --set {item!r}: {'.'.join(parts[:-1])} is a {type(node).__name__}, not a mapping.")


def _child(node: Any, part: str, create: bool, where: str, path: Path) -> Any:
    if isinstance(node, list):
        return node[_index(node, part, where, path)]
    if not isinstance(node, dict):
        raise RecipeError(f"{path}: {where} is a {type(node).__name__}, not a mapping.")
    if isinstance(node.get(part), str) and create:  # `use: name` shorthand grows into a spec
        node[part] = {"use": node[part]}
    if part not in node or node[part] is None:
        node[part] = {}
    return node[part]


def _index(node: list, part: str, where: str, path: Path) -> int:
    if not part.lstrip("-").isdigit() or not -len(node) <= int(part) < len(node):
        raise RecipeError(f"{path}: {where}: '{part}' is not an index of a list of {len(node)} items.")
    return int(part)


# ------------------------------------------------------------------------------------ variables


def _walk(node: Any, where: str, fn) -> Any:
    """A copy of `node` with `fn(text, key path)` applied to every string holding `${`."""
    if isinstance(node, dict):
        return {k: _walk(v, f"{where}.{k}" if where else str(k), fn) for k, v in node.items()}
    if isinstance(node, list):
        return [_walk(v, f"{where}.{i}", fn) for i, v in enumerate(node)]
    return fn(node, where) if isinstance(node, str) and "${" in node else node


def _recipe_dir(raw: dict, path: Path) -> dict:
    """`${RECIPE_DIR}` is the recipe's folder, not the environment: replaced (and recorded) as such."""
    folder = str(path.resolve().parent)
    return _walk(raw, "", lambda text, _: text.replace("${RECIPE_DIR}", folder))


def _check_references(raw: dict, path: Path, declared: set[str]) -> None:
    """Every `${...}` is well formed and names a declared variable (no environment variable is read)."""

    def check(text: str, where: str) -> str:
        try:
            refs = envvars.references(text)
        except ValueError as exc:
            raise RecipeError(f"{path}: {where}: {exc}.") from None
        for ref in refs:
            if ref.name not in declared:
                raise RecipeError(
                    f"{path}: {where}: the recipe reads the environment variable {ref.name} but does not declare it. "
                    f"Add `env: [{ref.name}]` at the top level of the recipe (only declared variables are expanded, "
                    "so a shared recipe cannot copy other parts of your environment into run folders)."
                )
        return text

    _walk(raw, "", check)


def _interpolate(raw: dict, path: Path, hint: str | None) -> dict:
    """`raw` with its (checked, declared) references replaced by the environment's values."""

    def expand(text: str, where: str) -> str:
        def unset(name: str) -> RecipeError:
            extra = f" {hint}" if hint else ""
            return RecipeError(
                f"{path}: {where}: environment variable {name} is not set. Export it (e.g. `export {name}=/path/to/data`), "
                f"give a default in the recipe as ${{{name}:-value}}, or replace the value with `--set {where}=...`.{extra}"
            )

        return envvars.expand(text, unset)

    return _walk(raw, "", expand)


# ------------------------------------------------------------------------------------ validation


class _Validator:
    """Checks a recipe (or one component spec) against the declared params and fills in defaults.
    Before interpolation (`expanded=False`) a string holding `${` is checked for its type only; its
    choices and ranges are checked once `Recipe.data` has expanded it."""

    def __init__(self, path: Path, registry, expanded: bool = True):
        self.path = path
        self.registry = registry
        self.expanded = expanded

    def error(self, where: str, message: str) -> RecipeError:
        return RecipeError(f"{self.path}: {where}: {message}")

    def recipe(self, raw: dict) -> dict:
        out = self.fields(raw, TOP_LEVEL, "", "recipe")
        if out["task"] == "train" and out["estimator"] is None:
            raise self.error("estimator", "missing required key: task 'train' needs an estimator to train, e.g. "
                             "`estimator: {use: lgd, rnn_init: true}`. `empose list-plugins --kind estimator` lists them.")
        out["data"] = self.data(out["data"])
        out["losses"] = [self.component("loss", s, f"losses.{i}") for i, s in enumerate(out["losses"])]
        out["metrics"] = [self.component("metric", s, f"metrics.{i}") for i, s in enumerate(out["metrics"])]
        from empose_framework.engine.schema import EVALUATE_PARAMS, TRAIN_PARAMS

        out["train"] = self.fields(out["train"], TRAIN_PARAMS, "train", "train section")
        out["evaluate"] = self.fields(out["evaluate"], EVALUATE_PARAMS, "evaluate", "evaluate section")
        names = ["loss", *(m["use"] for m in out["metrics"])]
        if out["task"] == "train" and out["train"]["select_on"] not in names:
            raise self.error("train.select_on", f"expected `loss` or one of this recipe's metrics ({', '.join(names[1:])}), "
                             f"got {out['train']['select_on']!r}.")
        return out

    def data(self, raw: dict) -> dict:
        self.no_unknown(raw, DATA_SPLITS, "data", "the data section")
        out: dict[str, Any] = {}
        for split in ("train", "valid"):
            spec = raw.get(split)
            out[split] = None if spec is None else self.component("sensor_source", spec, f"data.{split}")
        test = raw.get("test")
        if test is None:
            out["test"] = {}
        elif isinstance(test, str) or (isinstance(test, dict) and "use" in test):
            out["test"] = {"test": self.component("sensor_source", test, "data.test")}
        elif isinstance(test, dict):
            for name in test:  # names become file names: eval/<name>.csv
                problem = plain_name(name)
                if problem:
                    raise self.error(f"data.test.{name}", f"test set name: {problem} (it names eval/<name>.csv).")
            out["test"] = {name: self.component("sensor_source", s, f"data.test.{name}") for name, s in test.items()}
        else:
            raise self.error("data.test", f"expected a sensor_source spec or a mapping of named specs, got {test!r}.")
        return out

    def fields(self, raw: Any, params: tuple[Param, ...], where: str, what: str) -> dict:
        if not isinstance(raw, dict):
            raise self.error(where or "(top level)", f"expected a mapping for the {what}, got {raw!r}.")
        self.no_unknown(raw, [p.name for p in params], where, f"the {what}")
        out = {}
        for p in params:
            key = f"{where}.{p.name}" if where else p.name
            out[p.name] = self.value(p, raw, key)
        return out

    def value(self, p: Param, raw: dict, key: str) -> Any:
        if p.name not in raw:
            if p.required:
                raise self.error(key, f"missing required key ({type_name(p.type)}: {p.doc}). Add `{p.name}:` to the recipe.")
            return copy.deepcopy(p.default)
        value = raw[p.name]
        if isinstance(p.type, ComponentRef):
            return None if value is None and not p.required else self.component(p.type.kind, value, key)
        if not matches(value, p.type):
            raise self.error(key, f"expected {type_name(p.type)}, got {value!r} ({type(value).__name__}). {p.doc}".rstrip(". ") + ".")
        if not self.expanded and isinstance(value, str) and "${" in value:
            return value
        problem = p.problem(value)
        if problem:
            raise self.error(key, f"{problem}. {p.doc}".rstrip(". ") + ".")
        return coerce(value, p.type)

    def component(self, kind: str, spec: Any, where: str) -> dict:
        if isinstance(spec, str):
            spec = {"use": spec}
        if not isinstance(spec, dict):
            raise self.error(where, f"expected a {kind} spec (a name, or a mapping with `use:`), got {spec!r}.")
        if "use" not in spec:
            raise self.error(f"{where}.use", f"missing required key: which {kind} to use. `empose list-plugins --kind {kind}` lists them.")
        try:
            params = self.registry.params(kind, spec["use"], where=f"{self.path}: {where}.use") + ENGINE_KEYS.get(kind, ())
        except PluginError as exc:
            raise RecipeError(str(exc)) from None
        self.no_unknown(spec, ["use", *(p.name for p in params)], where, f"{kind} '{spec['use']}'")
        out = {"use": spec["use"]}
        for p in params:
            out[p.name] = self.value(p, spec, f"{where}.{p.name}")
        return out

    def no_unknown(self, raw: dict, valid: list | tuple, where: str, what: str) -> None:
        for key in raw:
            if key not in valid:
                close = difflib.get_close_matches(str(key), [str(v) for v in valid], n=1, cutoff=0.6)
                hint = f" Did you mean '{close[0]}'?" if close else ""
                full = f"{where}.{key}" if where else str(key)
                raise self.error(full, f"unknown key for {what}.{hint} Valid keys: {', '.join(map(str, valid))}.")
