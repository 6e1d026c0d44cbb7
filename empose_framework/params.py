"""Declared component parameters, and the type checks a recipe goes through.

A component lists its parameters as `Param`s so that a recipe can be checked (unknown key, wrong type,
missing value) before anything heavy is built, and so that `empose describe` can show them. This
module must stay light: `empose list-plugins` and `empose validate` import it without torch.
"""

from __future__ import annotations

import inspect
import math
import re
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable

from empose_framework.errors import EmposeError


class _Required:
    def __repr__(self) -> str:
        return "<required>"


REQUIRED: Any = _Required()

KINDS = ("body_model", "motion_source", "sensor_source", "estimator", "loss", "metric")


def plural(kind: str) -> str:
    """`body_model` -> `body models`, `loss` -> `losses` (for messages and tables)."""
    words = kind.replace("_", " ")
    return words + ("es" if words.endswith("s") else "s")


@dataclass(frozen=True)
class ComponentRef:
    """Parameter type for a nested component spec, e.g. a sensor source's `motions: {use: bvh, ...}`."""

    kind: str

    def __repr__(self) -> str:
        return f"{self.kind} spec"


@dataclass(frozen=True)
class Param:
    """One parameter of a component: name, type, default (or REQUIRED), one-line doc, and the values it
    accepts (`choices`, or numbers in [`min`, `max`], or `check(value) -> problem | None` with `rule`
    saying in words what it accepts), so that a recipe is refused before anything is built and
    `empose describe` can show the range. Float values must always be finite."""

    name: str
    type: Any
    default: Any = REQUIRED
    doc: str = ""
    choices: tuple | None = None
    min: float | None = None
    max: float | None = None
    check: Callable[[Any], str | None] | None = None
    rule: str = ""

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def accepts(self) -> str:
        """What the parameter accepts beyond its type, in words ('' if anything of the type)."""
        parts = []
        if self.choices is not None:
            parts.append(f"one of {', '.join(map(repr, self.choices))}")
        if self.min is not None and self.max is not None:
            parts.append(f"{self.min:g} to {self.max:g}")
        elif self.min is not None:
            parts.append(f">= {self.min:g}")
        elif self.max is not None:
            parts.append(f"<= {self.max:g}")
        if self.rule:
            parts.append(self.rule)
        return "; ".join(parts)

    def problem(self, value: Any) -> str | None:
        """Why a value of the right type is still not accepted (None if it is)."""
        if self.choices is not None and value not in self.choices:
            return f"expected one of {', '.join(map(repr, self.choices))}, got {value!r}"
        numbers = [value] if _is_number(value) else []
        if isinstance(value, (list, tuple)):
            numbers = [v for v in value if _is_number(v)]
        for v in numbers:
            if isinstance(v, float) and not math.isfinite(v):
                return f"expected a finite number, got {v!r}"
            if (self.min is not None and v < self.min) or (self.max is not None and v > self.max):
                return f"expected {self.accepts()}, got {v!r}"
        if self.check is not None and value is not None:
            return self.check(value)
        return None


def signature_problem(params: tuple[Param, ...], init: Callable, passthrough: tuple[str, ...]) -> str | None:
    """Why `init` does not take exactly the declared parameters as keyword-only arguments without defaults
    (the Param's default is the only one), besides the constructor keywords `passthrough`; None if it does."""
    args = list(inspect.signature(init).parameters.values())[1:]  # after self
    declared = [p.name for p in params]
    if len(set(declared)) != len(declared):
        return f"params declares a name twice: {declared}"
    loose = [a.name for a in args if a.kind is not inspect.Parameter.KEYWORD_ONLY]
    if loose:
        return f"__init__ takes {loose} positionally or as *args/**kwargs; make every argument keyword-only (after `*`)"
    names = {a.name for a in args}
    missing, extra = [n for n in declared if n not in names], sorted(names - set(declared) - set(passthrough))
    defaults = [a.name for a in args if a.name in declared and a.default is not inspect.Parameter.empty]
    if missing or extra or defaults:
        return (f"__init__'s keywords differ from the declared params (missing {missing}, undeclared {extra}, "
                f"with a default of their own {defaults}); keywords besides {list(passthrough)} must be exactly "
                "the params, without defaults (the Param's default applies)")
    return None


def bind(where: str, params: tuple[Param, ...], given: dict, is_built: Callable[[ComponentRef, Any], bool]) -> dict:
    """The keywords a component's __init__ receives: declared params missing from `given` get their
    default, given ones are type-, choice- and range-checked (EmposeError naming `where` and the
    parameter) and coerced; other keywords (body_model, ...) pass as they are. A ComponentRef parameter
    takes a built component (`is_built`), since specs are built before the component that holds them."""
    out = dict(given)
    for p in params:
        if p.name not in given:
            if p.required:
                raise EmposeError(f"{where}: missing required parameter '{p.name}' ({type_name(p.type)}: {p.doc}). "
                                  f"Pass {p.name}=... (in a recipe: `{p.name}:`).")
            out[p.name] = p.default
            continue
        value = given[p.name]
        if isinstance(p.type, ComponentRef):
            fits = (value is None and not p.required) or is_built(p.type, value)
            problem = None if fits else f"expected a built {p.type.kind.replace('_', ' ')}, got {value!r}"
        elif not matches(value, p.type):
            problem = f"expected {type_name(p.type)}, got {value!r} ({type(value).__name__})"
        else:
            problem = p.problem(value)
        if problem:
            raise EmposeError(f"{where}: parameter '{p.name}': {problem}. {p.doc}".rstrip(". ") + ".")
        out[p.name] = coerce(value, p.type)
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def positive(value: Any) -> str | None:
    """`check` for numbers that must be greater than zero (a learning rate, a clipping norm)."""
    return None if value > 0 else f"expected a number > 0, got {value!r}"


_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+=-]*")


def plain_name(value: Any) -> str | None:
    """`check` for values that become file or folder names: letters, digits and `_ . + = -`, not
    starting with a dot, no `..`, no path separators (so they cannot leave their folder)."""
    if not isinstance(value, str) or not _PLAIN_NAME.fullmatch(value) or ".." in value or len(value) > 200:
        return (f"expected a plain name (letters, digits, _ . + = -; no '/', no '..', not starting with '.'), "
                f"got {value!r}")
    return None


def type_name(tp: Any) -> str:
    """Readable name of a parameter type, for errors and `empose describe`."""
    if isinstance(tp, ComponentRef):
        return repr(tp)
    if tp is Any:
        return "any"
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        args = typing.get_args(tp)
        return f"list of {type_name(args[0])}" if args else "list"
    if origin is dict:
        return "mapping"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def matches(value: Any, tp: Any) -> bool:
    """Does a YAML value fit a declared type? ints pass as floats; bools never pass as numbers."""
    if tp is Any:
        return True
    if isinstance(tp, ComponentRef):
        return isinstance(value, (dict, str))
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        args = typing.get_args(tp)
        return isinstance(value, (list, tuple)) and (not args or all(matches(v, args[0]) for v in value))
    if origin is dict:
        return isinstance(value, dict)
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


def coerce(value: Any, tp: Any) -> Any:
    """Normalise a value that `matches` its type: ints declared float become floats."""
    if tp is float and isinstance(value, int):
        return float(value)
    return value

