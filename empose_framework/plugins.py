"""Plugin discovery and the typed component registry.

Every plugin, built-in or third-party, is an entry point in the `empose` group. Plugins are loaded
one by one: one that fails to import is reported and skipped (or, in strict mode, fatal), so a broken
third-party package never takes `empose list-plugins` down. Component classes are imported lazily,
when a component is described, validated or built.
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
from empose_framework.params import KINDS, REQUIRED, ComponentRef, plural

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

    def load(self) -> type:
        """Import the component class (reported as a PluginError if that fails)."""
        if not isinstance(self.target, str):
            return self.target
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
        return obj


@dataclass
class PluginFailure:
    """A plugin that could not be loaded or whose registration hook raised."""

    plugin: str
    distribution: str
    error: str

    def message(self) -> str:
        return (
            f"plugin '{self.plugin}' (from {self.distribution}) failed and was skipped: {self.error}. "
            f"Fix or reinstall that package, or disable it with `empose -p no:{self.plugin} ...` or "
            f"{DISABLE_ENV}={self.plugin}; set {STRICT_ENV}=1 (or --strict-plugins) to make this fatal."
        )


def _dist_of(ep) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    return (dist.metadata["Name"], dist.version) if dist is not None else ("unknown", "?")


class Registry:
    """Typed access to everything the installed plugins provide."""

    def __init__(self, disabled=frozenset(), strict: bool = False, extra_plugins=(), entry_points: bool = True):
        """`extra_plugins`: (name, module-or-object) pairs registered besides the entry points
        (tests, notebooks); `entry_points=False` skips discovery."""
        self.pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
        self.pm.add_hookspecs(hookspecs)
        self.disabled = set(disabled)
        self.strict = strict
        self.failures: list[PluginFailure] = []
        self.plugins: dict[str, tuple[str, str]] = {}  # plugin name -> (distribution, version)
        self._entries: dict[str, dict[str, ComponentEntry]] = {k: {} for k in KINDS}
        self._weights: dict = {}  # name -> pretrained.Weights
        if entry_points:
            self._load_entry_points()
        for name, plugin in extra_plugins:
            self.register_plugin(plugin, name)
        for kind, hook in hookspecs.KIND_HOOKS.items():
            self._collect(kind, hook)
        self._collect_weights()

    # ---------------------------------------------------------------- discovery
    def _fail(self, failure: PluginFailure) -> None:
        if self.strict:
            raise PluginError(failure.message())
        self.failures.append(failure)

    def _load_entry_points(self) -> None:
        eps = sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)
        for ep in eps:
            if ep.name in self.disabled or ep.name in self.plugins:
                continue
            dist, version = _dist_of(ep)
            try:
                module = ep.load()
            except Exception as exc:  # noqa: BLE001 - report, skip, keep going
                self._fail(PluginFailure(ep.name, f"{dist} {version}", f"import of '{ep.value}' raised {type(exc).__name__}: {exc}"))
                continue
            self.register_plugin(module, ep.name, dist, version)

    def register_plugin(self, module: Any, name: str, distribution: str = "local", version: str = "?") -> None:
        self.pm.register(module, name=name)
        self.plugins[name] = (distribution, version)

    def _call_register_hook(self, hook_name: str, make_register) -> None:
        """Call every plugin's `hook_name(register=...)` with `make_register(plugin, dist, version)`; a
        plugin whose hook raises is reported and skipped (a PluginError, e.g. a name clash, is fatal)."""
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            plugin = impl.plugin_name
            dist, version = self.plugins.get(plugin, ("local", "?"))
            try:
                impl.function(register=make_register(plugin, dist, version))
            except PluginError:
                raise
            except Exception as exc:  # noqa: BLE001
                self._fail(PluginFailure(plugin, f"{dist} {version}", f"{hook_name} raised {type(exc).__name__}: {exc}"))

    def _collect(self, kind: str, hook_name: str) -> None:
        def make_register(plugin, dist, version):
            def register(name: str, target: Any, description: str = ""):
                self._add(ComponentEntry(kind, name, target, description or _summary(target), plugin, dist, version))

            return register

        self._call_register_hook(hook_name, make_register)

    def _add(self, entry: ComponentEntry) -> None:
        existing = self._entries[entry.kind].get(entry.name)
        if existing is not None:
            raise PluginError(
                f"two plugins register the {entry.kind} '{entry.name}': '{existing.plugin}' "
                f"({existing.distribution} {existing.version}) and '{entry.plugin}' ({entry.distribution} "
                f"{entry.version}). Uninstall or disable one of them (`-p no:{entry.plugin}` or "
                f"{DISABLE_ENV}={entry.plugin})."
            )
        self._entries[entry.kind][entry.name] = entry

    def _collect_weights(self) -> None:
        from empose_framework import pretrained

        def make_register(plugin, dist, version):
            def register(name: str, file: Any, **card):
                w = pretrained.make_weights(name, file, plugin=plugin, distribution=dist, version=version, **card)
                existing = self._weights.get(name)
                if existing is not None:
                    raise PluginError(
                        f"two plugins register the pretrained weights '{name}': '{existing.plugin}' ({existing.distribution} "
                        f"{existing.version}) and '{plugin}' ({dist} {version}). Uninstall or disable one of them "
                        f"(`-p no:{plugin}` or {DISABLE_ENV}={plugin})."
                    )
                self._weights[name] = w

            return register

        self._call_register_hook("register_weights", make_register)

    def add_commands(self, app) -> None:
        """Let each plugin add CLI commands; one that raises is reported like a failed import."""
        for impl in self.pm.hook.register_commands.get_hookimpls():
            try:
                impl.function(app=app)
            except Exception as exc:  # noqa: BLE001
                dist, version = self.plugins.get(impl.plugin_name, ("local", "?"))
                self._fail(PluginFailure(impl.plugin_name, f"{dist} {version}", f"register_commands raised {type(exc).__name__}: {exc}"))

    # ---------------------------------------------------------------- lookup
    def entries(self, kind: str) -> list[ComponentEntry]:
        return sorted(self._entries[_check_kind(kind)].values(), key=lambda e: e.name)

    def get(self, kind: str, name: str, where: str = "") -> ComponentEntry:
        """The entry for `name`, or a PluginError with the closest names ("did you mean")."""
        table = self._entries[_check_kind(kind)]
        if name in table:
            return table[name]
        close = difflib.get_close_matches(str(name), list(table), n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
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
        close = difflib.get_close_matches(str(name), list(self._weights), n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        where = f"{where}: " if where else ""
        raise PluginError(
            f"{where}unknown pretrained weights '{name}'.{hint} Installed: {', '.join(sorted(self._weights)) or 'none'}. "
            "`empose list-plugins` lists them; a plugin adds its own through the `register_weights` hook."
        )

    def load(self, kind: str, name: str, where: str = "") -> type:
        return self.get(kind, name, where).load()

    def build(self, kind: str, spec: dict | str, **keywords: Any) -> Any:
        """Construct a component from a (resolved) spec: declared params from the spec (defaults for
        absent ones), nested component specs built first with the same `body_model`, plus the kind's
        constructor keywords (see interfaces.py). Engine keys such as a loss's `weight` are not passed."""
        spec = {"use": spec} if isinstance(spec, str) else spec
        cls = self.load(kind, spec["use"])
        kwargs = {}
        for p in cls.params:
            value = spec.get(p.name, p.default)
            if value is REQUIRED:
                raise PluginError(f"{kind} '{spec['use']}': missing required parameter '{p.name}' ({p.doc}).")
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

