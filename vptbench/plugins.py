"""Find tuners through the `vptbench.tuners` entry-point group without importing them.

Modelled on flake8's plugin finder: discovery reads metadata only, a tuner is imported when
it is used or listed in detail, and a plugin that fails to load is reported, not fatal.
"""

from __future__ import annotations

import os
import traceback
from dataclasses import dataclass, replace
from functools import cache
from importlib.metadata import EntryPoint, distributions
from typing import Any

from vptbench.errors import PluginError, unknown_name
from vptbench.protocol import protocol_problems

GROUP = "vptbench.tuners"
BUILTIN_DISTRIBUTION = "vptbench"
DISABLE_ENV = "VPTBENCH_DISABLE_PLUGIN_AUTOLOAD"


@dataclass(frozen=True)
class Plugin:
    """A tuner's entry point and the distribution that declares it."""

    name: str
    distribution: str
    version: str
    entry_point: EntryPoint
    conflict: str = ""  # why it is not used: another distribution claims the name too, or a built-in has it

    @property
    def builtin(self) -> bool:
        return self.distribution == BUILTIN_DISTRIBUTION


@dataclass(frozen=True)
class LoadStatus:
    """The outcome of importing a plugin: the class, or why it is unusable."""

    plugin: Plugin
    tuner: type[Any] | None = None  # a class `protocol_problems` accepted: its members are checked at runtime
    error: str = ""
    traceback: str = ""  # of a failed import, for the run's errors.log

    @property
    def ok(self) -> bool:
        return self.tuner is not None


def third_party_disabled() -> bool:
    return os.environ.get(DISABLE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def find_plugins() -> dict[str, Plugin]:
    """Every usable tuner name and who provides it. A built-in keeps its name whoever else claims
    it (see `ignored_plugins`); another name several distributions claim is unusable, and says so
    when used or listed; every other tuner still works."""
    found = {}
    for name, claimants in _claims().items():
        builtin = [p for p in claimants if p.builtin]
        found[name] = builtin[0] if builtin else claimants[0]
        if len(claimants) > 1 and not builtin:
            by = [f"{p.distribution} {p.version}" for p in claimants]
            conflict = f"Tuner '{name}' is registered {len(by)} times: by {', '.join(by[:-1])} and by {by[-1]}. Uninstall all but one of them."
            found[name] = replace(claimants[0], conflict=conflict)
    return dict(sorted(found.items()))


def ignored_plugins() -> list[Plugin]:
    """Third-party tuners registered under a built-in's name: never used, so that installing a
    package cannot change what `zero-shot` means; `list` shows them with the reason."""
    return [
        replace(p, conflict=f"ignored: '{name}' is a built-in tuner's name; {p.distribution} must register its tuner under another name")
        for name, claimants in sorted(_claims().items())
        if any(c.builtin for c in claimants)
        for p in claimants
        if not p.builtin
    ]


def _claims() -> dict[str, list[Plugin]]:
    claims: dict[str, list[Plugin]] = {}
    for plugin in _scan():
        if plugin.builtin or not third_party_disabled():
            claims.setdefault(plugin.name, []).append(plugin)
    return claims


@cache
def _scan() -> tuple[Plugin, ...]:
    seen: set[tuple[str, str]] = set()
    plugins = []
    for dist in distributions():
        dist_name = dist.metadata["Name"] or "unknown"
        for ep in dist.entry_points:
            # The same distribution can appear twice on sys.path (editable + build dirs).
            if ep.group == GROUP and (dist_name, ep.name) not in seen:
                seen.add((dist_name, ep.name))
                plugins.append(Plugin(ep.name, dist_name, dist.version, ep))
    return tuple(plugins)


def load(plugin: Plugin) -> LoadStatus:
    """Import a plugin's object and check it honours the tuner protocol."""
    if plugin.conflict:
        return LoadStatus(plugin, error=plugin.conflict)
    try:
        obj = plugin.entry_point.load()
    except Exception as exc:  # noqa: BLE001 - any import failure marks the plugin broken
        return LoadStatus(plugin, error=f"failed to import {plugin.entry_point.value}: {type(exc).__name__}: {exc}", traceback=traceback.format_exc())
    problems = protocol_problems(obj)
    if problems:
        return LoadStatus(plugin, error=f"not a valid tuner: {plugin.entry_point.value} " + "; ".join(problems))
    return LoadStatus(plugin, tuner=obj)


def load_tuner(name: str) -> type[Any]:
    """The tuner class registered as `name`, or a one-line error."""
    plugins = find_plugins()
    if name not in plugins:
        raise PluginError(unknown_name("tuner", name, plugins))
    status = load(plugins[name])
    if status.plugin.conflict:
        raise PluginError(status.plugin.conflict)
    if not status.ok:
        raise PluginError(f"Tuner '{name}' from {status.plugin.distribution} is unusable: {status.error}", status.traceback)
    return status.tuner  # type: ignore[return-value]
