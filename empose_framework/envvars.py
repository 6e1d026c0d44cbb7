"""`${VAR}` and `${VAR:-default}`: the one way recipes and path parameters read environment variables.

One syntax and one parser, so that what `empose validate` reports (the variables a recipe references)
is exactly what a run reads. A default may itself hold references (`${A:-${B:-x}}`); it is expanded only
when the variable is unset or empty. A `$` not followed by `{` is an ordinary character.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Reference:
    """`${name}` (default None) or `${name:-default}` (the default's text, unexpanded)."""

    name: str
    default: str | None = None


def parse(text: str) -> list[str | Reference]:
    """The literal pieces and references of `text`; ValueError saying what is malformed."""
    out: list[str | Reference] = []
    i = 0
    while (j := text.find("${", i)) >= 0:
        if j > i:
            out.append(text[i:j])
        m = _NAME.match(text, j + 2)
        if not m:
            raise ValueError(f"bad variable reference in {text!r}: expected ${{NAME}} or ${{NAME:-default}}")
        i, default = m.end(), None
        if text.startswith(":-", i):
            depth, k = 0, i + 2
            while k < len(text) and not (text[k] == "}" and depth == 0):
                depth += text.startswith("${", k)
                depth -= text[k] == "}"
                k += 1
            default, i = text[i + 2 : k], k
        if i >= len(text) or text[i] != "}":
            raise ValueError(f"unterminated variable reference in {text!r}: a `${{` lacks its `}}`")
        out.append(Reference(m.group(), default))
        i += 1
    if i < len(text):
        out.append(text[i:])
    return out


def references(text: str) -> list[Reference]:
    """Every reference in `text`, those inside defaults included (outermost first)."""
    found = []
    for piece in parse(text):
        if isinstance(piece, Reference):
            found.append(piece)
            if piece.default is not None:
                found += references(piece.default)
    return found


def expand(text: str, unset: Callable[[str], Exception], environ=os.environ) -> str:
    """`text` with every reference replaced by the variable's value; an unset or empty variable takes
    its default, and without one `unset(name)` is raised."""

    def value(ref: Reference) -> str:
        got = environ.get(ref.name)
        if got:
            return got
        if ref.default is not None:
            return expand(ref.default, unset, environ)
        raise unset(ref.name)

    return "".join(p if isinstance(p, str) else value(p) for p in parse(text))


def expand_env_path(value: str, unset: Callable[[str], Exception]) -> tuple[Path, list[str]]:
    """A path parameter with its references and `~` expanded. Defaults such as `${EM_DATA_REAL}` reach
    components unexpanded (recipes interpolate only what they spell out), so components expand their
    path params with this. `unset(name)` builds the error for an unset variable; the variables the path
    names are returned too, so later errors about the path can name them."""
    from empose_framework.errors import EmposeError

    text = str(value)
    try:
        used = [ref.name for ref in references(text)]
    except ValueError as exc:
        raise EmposeError(f"path {text!r}: {exc}. Write environment variables as ${{NAME}}.") from None
    return Path(expand(text, unset)).expanduser(), used
