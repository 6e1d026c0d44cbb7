"""Plugin discovery and the typed component registry.

Every plugin, built-in or third-party, is an entry point in the `empose` group, registered with pluggy
and called through `pm.hook`. Plugins are loaded one by one: one that fails to import, implements a
hook empose does not have (a misspelling, with a did-you-mean) or whose hook raises is reported and
skipped, and a name two plugins register is reported naming both and neither entry is used (in strict
mode each of these is fatal), so a broken third-party package never takes `empose list-plugins` down.
Component classes are imported lazily, when a component is described, validated or built.
"""

from __future__ import annotations

import difflib
import importlib
import os
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import pluggy

from empose_framework import hookspecs
from empose_framework.errors import PluginError
from empose_framework.params import KINDS, ComponentRef, plural

ENTRY_POINT_GROUP = "empose"
DISABLE_ENV = "EMPOSE_DISABLE_PLUGINS"
STRICT_ENV = "EMPOSE_STRICT_PLUGINS"


@dataclass
class ComponentEntry:
    """A registered component: where it comes from and how to import it."""

    kind: str
    name: str
    target: Any  # class, or "module:Class"
    description: str
    plugin: str  # entry-point name of the registering plugin
    distribution: str
    version: str
    #: the declared params given at registration (`register(..., params=schema.X)`), so that recipes are
    #: checked and components described without importing them; None: read the class's `params`
    params: tuple | None = None

    def load(self) -> type:
        """Import the component class (reported as a PluginError if that fails, or if its `params` are
        not the ones registered)."""
        obj = self.target
        if isinstance(self.target, str):
            module_name, _, attr = self.target.partition(":")
            try:
                obj = importlib.import_module(module_name)
                for part in attr.split("."):
                    obj = getattr(obj, part)
            except Exception as exc:  # noqa: BLE001 - any import failure of a plugin is reported the same way
                raise PluginError(
                    f"{self.kind} '{self.name}' (plugin '{self.plugin}' from {self.distribution} {self.version}) "
                    f"could not be imported from '{self.target}': {type(exc).__name__}: {exc}. Reinstall or fix "
                    f"that package, or disable the plugin with `-p no:{self.plugin}` or {DISABLE_ENV}={self.plugin}."
                ) from exc
        if self.params is not None and tuple(getattr(obj, "params", ())) != self.params:
            raise PluginError(
                f"{self.kind} '{self.name}' (plugin '{self.plugin}' from {self.distribution} {self.version}): the "
                f"params registered for it differ from {getattr(obj, '__qualname__', obj)}.params. Register the "
                "class's own tuple (`params=schema.X` where the class sets `params = schema.X`)."
            )
        return obj


@dataclass
class PluginFailure:
    """A plugin that failed (its import, its hooks or one hook call; what failed is skipped), or a name
    several plugins register (`others`: the plugins besides `plugin`; none of those entries is used)."""

    plugin: str
    distribution: str  # "name version"
    error: str
    others: tuple[str, ...] = ()

    def message(self, fatal: bool = False) -> str:
        if self.others:
            names = (self.plugin, *self.others)
            head = self.error + ("" if fatal else "; none of them is used")
            fix = (f"Uninstall or disable one of them ({' or '.join(f'`empose -p no:{n} ...`' for n in names)}, "
                   f"or {DISABLE_ENV}=NAME)")
        else:
            head = f"plugin '{self.plugin}' (from {self.distribution}) failed{'' if fatal else ' and was skipped'}: {self.error}"
            fix = (f"Fix or reinstall that package, or disable it with `empose -p no:{self.plugin} ...` or "
                   f"{DISABLE_ENV}={self.plugin}")
        return f"{head}. {fix}" + ("." if fatal else f"; set {STRICT_ENV}=1 (or --strict-plugins) to make this fatal.")


@dataclass
class PluginInfo:
    """One plugin as `empose list-plugins` shows it; `name` is what `-p no:NAME` takes."""

    name: str
    distribution: str
    version: str
    status: str = "loaded"  # loaded | partly loaded (a hook raised or a name clashed) | disabled | failed
    hooks: tuple[str, ...] = ()

    @property
    def source(self) -> str:
        return f"{self.distribution} {self.version}"


def _dist_of(ep) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    return (dist.metadata["Name"], dist.version) if dist is not None else ("unknown", "?")


def _did_you_mean(name: str, names, n: int = 3) -> str:
    close = difflib.get_close_matches(str(name), list(names), n=n, cutoff=0.5)
    return f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


class Registry:
    """Typed access to everything the installed plugins provide."""

    def __init__(self, disabled=frozenset(), strict: bool = False, extra_plugins=(), entry_points: bool = True):
        """`disabled`: plugin names (`-p no:NAME`), each must name a plugin; `extra_plugins`: (name,
        module-or-object) pairs registered besides the entry points (tests, notebooks);
        `entry_points=False` skips discovery."""
        self.pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self.pm.add_hookspecs(hookspecs)
        for name in disabled:
            self.pm.set_blocked(name)
        self.strict = strict
        self.failures: list[PluginFailure] = []
        self.plugins: dict[str, PluginInfo] = {}
        if entry_points:
            for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
                self._add_plugin(ep.name, *_dist_of(ep), load=ep.load, source=f"'{ep.value}'")
        for name, plugin in extra_plugins:
            self._add_plugin(name, "local", "?", load=lambda plugin=plugin: plugin, source="the object given")
        self._check_disabled(disabled)
        self._entries: dict[str, dict[str, ComponentEntry]] = {}
        self._collect_components()
        self._collect_weights()

    # ---------------------------------------------------------------- discovery
    def _fail(self, failure: PluginFailure) -> None:
        """Report `failure` (fatal in strict mode); the plugins it names no longer count as fully loaded."""
        if self.strict:
            raise PluginError(failure.message(fatal=True))
        self.failures.append(failure)
        for name in (failure.plugin, *failure.others):
            if self.plugins[name].status == "loaded":
                self.plugins[name].status = "partly loaded"

    def _add_plugin(self, name: str, distribution: str, version: str, load, source: str) -> None:
        """Import (`load()`) and register one plugin unless it is disabled. One that fails to import, whose
        hookimpls pluggy rejects (an argument the hookspec lacks) or that implements a hook empose does not
        have (pytest's `check_pending`, with a did-you-mean) is reported and skipped."""
        info = PluginInfo(name, distribution, version)
        if name in self.plugins:
            return self._fail(PluginFailure(name, info.source, f"plugin '{name}' from {self.plugins[name].source} "
                                                               "has the same name; rename one entry point"))
        self.plugins[name] = info
        if self.pm.is_blocked(name):
            info.status = "disabled"
            return None
        info.status = "failed"  # until it is registered
        try:
            plugin = load()
        except Exception as exc:  # noqa: BLE001 - report, skip, keep going
            return self._fail(PluginFailure(name, info.source, f"import of {source} raised {type(exc).__name__}: {exc}"))
        try:
            self.pm.register(plugin, name=name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            if self.pm.has_plugin(name):  # pluggy stops at the first bad hookimpl, keeping the ones before it
                self.pm.unregister(name=name)
            return self._fail(PluginFailure(name, info.source, "pluggy rejected it: " + "; ".join(str(exc).splitlines())))
        callers = self.pm.get_hookcallers(plugin) or []
        info.hooks = tuple(sorted(c.name for c in callers))
        specs = [n for n, c in vars(self.pm.hook).items() if c.has_spec()]
        unknown = [c.name for c in callers if not c.has_spec()
                   and any(i.plugin is plugin and not i.optionalhook for i in c.get_hookimpls())]
        if unknown:
            self.pm.unregister(name=name)
            hints = "".join(_did_you_mean(hook, specs, n=1) for hook in unknown)
            return self._fail(PluginFailure(name, info.source, f"it implements {', '.join(map(repr, unknown))}, which "
                                            f"empose has no hook for.{hints} The hooks (empose_framework/hookspecs.py): "
                                            f"{', '.join(specs)}"))
        info.status = "loaded"
        return None

    def _check_disabled(self, disabled) -> None:
        """`-p no:NAME` with a NAME no plugin has is an error (a typo would otherwise disable nothing)."""
        unknown = sorted(set(disabled) - set(self.plugins))
        if unknown:
            hints = "".join(_did_you_mean(n, self.plugins) for n in unknown)
            raise PluginError(
                f"cannot disable {', '.join(map(repr, unknown))} (`-p no:NAME` or {DISABLE_ENV}): no plugin has that "
                f"name.{hints} Plugins: {', '.join(sorted(self.plugins)) or 'none'} (`empose list-plugins` shows them)."
            )

    def _call_each(self, hook_name: str, kwargs_for) -> list[PluginInfo]:
        """Call `hook_name(**kwargs_for(plugin))` through pluggy one plugin at a time, in load order, and
        return the plugins whose call returned (one that raised is reported and skipped). One `pm.hook`
        call runs every implementation in a loop that stops at the first exception and does not say
        which plugin did what; `pm.subset_hook_caller` without the other plugins keeps pluggy's own call
        path (argument subsets, wrappers) and attributes and isolates each plugin."""
        plugins = list(dict.fromkeys(impl.plugin for impl in getattr(self.pm.hook, hook_name).get_hookimpls()))
        called = []
        for plugin in plugins:
            info = self.plugins[self.pm.get_name(plugin)]
            call = self.pm.subset_hook_caller(hook_name, [p for p in plugins if p is not plugin])
            try:
                call(**kwargs_for(info))
            except Exception as exc:  # noqa: BLE001 - report, skip, keep going
                self._fail(PluginFailure(info.name, info.source, f"{hook_name} raised {type(exc).__name__}: {exc}"))
            else:
                called.append(info)
        return called

    def _collect(self, hook_name: str, what: str, make_register) -> dict:
        """name -> entry from every plugin's `hook_name(register=...)`, where `make_register(plugin)`
        returns the `register` that makes one entry. A plugin whose hook raised adds nothing; a name
        several plugins register is reported naming them all, and none of those entries is kept."""
        made: dict[str, list] = {}

        def kwargs_for(info: PluginInfo) -> dict:
            register, entries = make_register(info), made.setdefault(info.name, [])
            return {"register": lambda *args, **kwargs: entries.append(register(*args, **kwargs))}

        claims: dict[str, list] = {}
        for info in self._call_each(hook_name, kwargs_for):
            for entry in made[info.name]:
                claims.setdefault(entry.name, []).append(entry)
        for name, entries in list(claims.items()):
            if len(entries) > 1:
                del claims[name]
                who = " and ".join(f"'{e.plugin}' ({e.distribution} {e.version})" for e in entries)
                count = "two" if len(entries) == 2 else str(len(entries))
                self._fail(PluginFailure(entries[0].plugin, f"{entries[0].distribution} {entries[0].version}",
                                         f"{count} plugins register the {what} '{name}': {who}",
                                         others=tuple(e.plugin for e in entries[1:])))
        return {name: entries[0] for name, entries in claims.items()}

    def _collect_components(self) -> None:
        for kind, hook_name in hookspecs.KIND_HOOKS.items():

            def make_register(info: PluginInfo, kind=kind):
                def register(name: str, target: Any, description: str = "", params: tuple | None = None):
                    return ComponentEntry(kind, name, target, description or _summary(target), info.name,
                                          info.distribution, info.version, None if params is None else tuple(params))

                return register

            self._entries[kind] = self._collect(hook_name, kind, make_register)

    def _collect_weights(self) -> None:
        from empose_framework import pretrained

        def make_register(info: PluginInfo):
            def register(name: str, file: Any, **card):
                return pretrained.make_weights(name, file, plugin=info.name, distribution=info.distribution,
                                               version=info.version, **card)

            return register

        self._weights = self._collect("register_weights", "pretrained weights", make_register)

    def add_commands(self, app) -> None:
        """Let each plugin add CLI commands; one that raises is reported like a failed import."""
        self._call_each("register_commands", lambda info: {"app": app})

    # ---------------------------------------------------------------- lookup
    def entries(self, kind: str) -> list[ComponentEntry]:
        return sorted(self._entries[_check_kind(kind)].values(), key=lambda e: e.name)

    def get(self, kind: str, name: str, where: str = "") -> ComponentEntry:
        """The entry for `name`, or a PluginError with the closest names ("did you mean")."""
        table = self._entries[_check_kind(kind)]
        if name in table:
            return table[name]
        hint = _did_you_mean(name, table)
        where = f"{where}: " if where else ""
        raise PluginError(
            f"{where}unknown {kind} '{name}'.{hint} Installed {plural(kind)}: {', '.join(sorted(table)) or 'none'}. "
            "`empose list-plugins` shows every installed component and the package that provides it."
        )

    def weights(self) -> list:
        """Every registered `pretrained.Weights`, by name."""
        return [self._weights[n] for n in sorted(self._weights)]

    def get_weights(self, name: str, where: str = ""):
        """The `pretrained.Weights` called `name`, or a PluginError with the closest names."""
        if name in self._weights:
            return self._weights[name]
        hint = _did_you_mean(name, self._weights)
        where = f"{where}: " if where else ""
        raise PluginError(
            f"{where}unknown pretrained weights '{name}'.{hint} Installed: {', '.join(sorted(self._weights)) or 'none'}. "
            "`empose list-plugins` lists them; a plugin adds its own through the `register_weights` hook."
        )

    def load(self, kind: str, name: str, where: str = "") -> type:
        return self.get(kind, name, where).load()

    def params(self, kind: str, name: str, where: str = "") -> tuple:
        """A component's declared `Param`s: as registered (no import, so no torch), else the class's."""
        entry = self.get(kind, name, where)
        return entry.params if entry.params is not None else tuple(entry.load().params)

    def build(self, kind: str, spec: dict | str, **keywords: Any) -> Any:
        """Construct a component from a (resolved) spec: the declared params it gives (the constructor
        fills in defaults and checks values, see `Component`), nested component specs built first with
        the same `body_model`, plus the kind's constructor keywords (see interfaces.py). Engine keys such
        as a loss's `weight` are not passed."""
        spec = {"use": spec} if isinstance(spec, str) else spec
        cls = self.load(kind, spec["use"])
        kwargs = {}
        for p in cls.params:
            if p.name in spec:
                value = spec[p.name]
                if isinstance(p.type, ComponentRef) and value is not None:
                    value = self.build(p.type.kind, value, body_model=keywords.get("body_model"))
                kwargs[p.name] = value
        return cls(**kwargs, **keywords)


def _summary(target: Any) -> str:
    doc = getattr(target, "__doc__", None) if not isinstance(target, str) else None
    return doc.strip().splitlines()[0] if doc and doc.strip() else ""


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        close = difflib.get_close_matches(kind, KINDS, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise PluginError(f"unknown component kind '{kind}'.{hint} Kinds: {', '.join(KINDS)}.")
    return kind


def disabled_from_env() -> set[str]:
    return {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}


_REGISTRY: Registry | None = None


def get_registry(disabled: set[str] | None = None, strict: bool | None = None) -> Registry:
    """The process-wide registry, built on first use (the CLI passes its -p/--strict options)."""
    global _REGISTRY
    if _REGISTRY is None or disabled is not None or strict is not None:
        disabled = disabled_from_env() | set(disabled or ())
        strict = bool(strict) or os.environ.get(STRICT_ENV, "") not in ("", "0")
        _REGISTRY = Registry(disabled=disabled, strict=strict)
    return _REGISTRY

