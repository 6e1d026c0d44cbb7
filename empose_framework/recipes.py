"""YAML recipe -> validated, fully resolved recipe.

Order of work: read the file and the chain of `extends:` bases (deep merge, the child wins, lists are
replaced, `env:` lists are joined) -> apply `--set a.b=c` overrides (values parsed as YAML) -> interpolate
`${VAR}`, `${VAR:-default}` and `${RECIPE_DIR}` -> check every key against the declared parameters of the
named components (types and ranges) and fill in defaults. Every error names the recipe file and the key
path.

Recipes are data that people share, so reading one is bounded: duplicate keys are an error (YAML would
silently keep the last), aliases may not expand past `MAX_VALUES` values, and only environment
variables the recipe declares in its top-level `env:` list (or that a `--set` value spells out) are
read. `Recipe.recorded` keeps those `${VAR}` references unexpanded: it is what the run folder's
recipe.yaml and the checkpoints store, so values of the user's environment never land in shared files.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

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
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


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
    """A validated recipe: `data` is the resolved dict (every default filled in); `recorded` is the same
    with declared `${VAR}` references left unexpanded (what run folders and checkpoints store)."""

    path: Path
    data: dict
    recorded: dict | None = None

    def __post_init__(self):
        if self.recorded is None:
            self.recorded = copy.deepcopy(self.data)

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def dump(self, recorded: bool = False) -> str:
        return yaml.safe_dump(self.recorded if recorded else self.data, sort_keys=False)


class _Expanded(str):
    """An interpolated string that remembers the text it was expanded from (never leaves this module)."""

    raw: str


def load_recipe(path: str | os.PathLike, overrides: list[str] | tuple = (), registry=None) -> Recipe:
    """Read, merge, override, interpolate and validate the recipe at `path`."""
    path = Path(path)
    raw = _read_with_bases(path, chain=())
    for item in overrides:
        _apply_override(raw, item, path)
    declared = _declared(raw, overrides, path)
    raw = _interpolate(raw, path, "", raw.get("missing_data_hint") if isinstance(raw, dict) else None, declared)
    if registry is None:
        from empose_framework.plugins import get_registry

        registry = get_registry()
    checked = _Validator(path, registry).recipe(raw)
    return Recipe(path=path, data=_plain(checked, expanded=True), recorded=_plain(checked, expanded=False))


def _declared(raw: dict, overrides, path: Path) -> set[str]:
    """Variables the recipe may read: its `env:` list, plus those a `--set` value spells out."""
    env = raw.get("env", [])
    if env is None:
        env = []
    if not isinstance(env, list) or not all(isinstance(v, str) and _ENV_NAME.fullmatch(v) for v in env):
        raise RecipeError(f"{path}: env: expected a list of environment variable names (e.g. `env: [EM_DATA_REAL]`), "
                          f"got {env!r}.")
    names = set(env)
    for item in overrides:
        names.update(m.group(1) for m in re.finditer(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", item.partition("=")[2]))
    return names


def _plain(node: Any, expanded: bool) -> Any:
    """A copy with plain types only: interpolated strings as their value, or as their recipe text."""
    if isinstance(node, dict):
        return {k: _plain(v, expanded) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v, expanded) for v in node]
    if isinstance(node, _Expanded):
        return str.__str__(node) if expanded else node.raw
    return node


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


def _deep_merge(base: dict, child: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


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


def _interpolate(node: Any, path: Path, where: str, hint: str | None, declared: set[str] = frozenset()) -> Any:
    if isinstance(node, dict):
        return {k: _interpolate(v, path, f"{where}.{k}" if where else str(k), hint, declared) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate(v, path, f"{where}.{i}", hint, declared) for i, v in enumerate(node)]
    if not isinstance(node, str) or "${" not in node:
        return node
    secret = False  # did a declared environment variable go into the value?

    def lookup(name: str, default: str | None) -> str:
        nonlocal secret
        if name == "RECIPE_DIR":
            return str(path.resolve().parent)
        if name not in declared:
            raise RecipeError(
                f"{path}: {where}: the recipe reads the environment variable {name} but does not declare it. Add "
                f"`env: [{name}]` at the top level of the recipe (only declared variables are expanded, so a shared "
                "recipe cannot copy other parts of your environment into run folders)."
            )
        secret = True
        value = os.environ.get(name)
        if value:
            return value
        if default is not None:
            return expand(default)  # defaults may nest: ${A:-${B:-x}}; only expanded when needed
        extra = f" {hint}" if hint else ""
        raise RecipeError(
            f"{path}: {where}: environment variable {name} is not set. Export it (e.g. `export {name}=/path/to/data`), "
            f"give a default in the recipe as ${{{name}:-value}}, or replace the value with "
            f"`--set {where}=...`.{extra}"
        )

    def expand(text: str) -> str:
        out, i = [], 0
        while (j := text.find("${", i)) >= 0:
            out.append(text[i:j])
            m = _NAME.match(text, j + 2)
            if not m:
                raise RecipeError(f"{path}: {where}: bad variable reference in {node!r}: expected ${{NAME}} or ${{NAME:-default}}.")
            i, default = m.end(), None
            if text.startswith(":-", i):
                depth, k = 0, i + 2
                while k < len(text) and not (text[k] == "}" and depth == 0):
                    depth += text.startswith("${", k)
                    depth -= text[k] == "}"
                    k += 1
                default, i = text[i + 2 : k], k
            if i >= len(text) or text[i] != "}":
                raise RecipeError(f"{path}: {where}: unterminated variable reference in {node!r}: a `${{` lacks its `}}`.")
            out.append(lookup(m.group(), default))
            i += 1
        return "".join(out) + text[i:]

    value = expand(node)
    if not secret:  # only ${RECIPE_DIR}: record the value, so the run's own recipe.yaml still works
        return value
    result = _Expanded(value)
    result.raw = node.replace("${RECIPE_DIR}", str(path.resolve().parent))
    return result


# ------------------------------------------------------------------------------------ validation


class _Validator:
    def __init__(self, path: Path, registry):
        self.path = path
        self.registry = registry

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
            cls = self.registry.load(kind, spec["use"], where=f"{self.path}: {where}.use")
        except PluginError as exc:
            raise RecipeError(str(exc)) from None
        params = tuple(cls.params) + ENGINE_KEYS.get(kind, ())
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
