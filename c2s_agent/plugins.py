"""The plugin manager: built-in plugins plus installed entry points (group ``c2s_agent``), under an allow-list.

Built-in plugins (``plugins/c2s_builtins``) are registered exactly like third-party ones; third-party plugins
come from the ``c2s_agent`` entry-point group of installed packages. ``Settings.plugins`` (env ``C2S_PLUGINS``)
is a comma-separated allow-list of entry-point names: when set, only those third-party plugins are imported.

- A hook implementation whose name is not a hook (a typo) fails fast with a :class:`PluginError`.
- A plugin that cannot be imported, or raises while registering, is reported in :data:`load_errors` and
  skipped; the rest keep working.
- Every registered thing (a typed object of :mod:`c2s_agent.registry`, or a Tool) knows its plugin; a name registered twice is kept by the first plugin (built-ins
  first, in ``DEFAULT_PLUGINS`` order, then other plugins by name) and the later one is stored as
  ``"<plugin>:<name>"``.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import logging
from typing import Any

import pluggy

from . import hookspecs
from .errors import C2SError

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "c2s_agent"

DEFAULT_PLUGINS = (
    "c2s_builtins.data_tools",
    "c2s_builtins.model_plugin",
    "c2s_builtins.knowledge_plugin",
    "c2s_builtins.metrics_plugin",
    "c2s_builtins.screen_plugin",
    "c2s_builtins.rewards_plugin",
    "c2s_agent.evaluation.tasks",
    "c2s_agent.agent.planners",
)

pm = pluggy.PluginManager("c2s_agent")
pm.add_hookspecs(hookspecs)

#: Problems met while loading or registering plugins: (plugin name, message).
load_errors: list[tuple[str, str]] = []

#: Plugins that came from entry points (subject to the allow-list): name -> distribution version.
_entry_point_plugins: dict[str, str] = {}


class PluginError(C2SError):
    """A plugin is malformed (for example a hook implementation with a misspelled name)."""


def _report(plugin: str, message: str) -> None:
    if (plugin, message) not in load_errors:
        load_errors.append((plugin, message))
        log.warning("plugin %s: %s", plugin, message)


def _register(module, name: str) -> None:
    try:
        pm.register(module, name=name)
    except pluggy.PluginValidationError as exc:
        raise PluginError(
            f"plugin {name!r}",
            f"has a hook implementation that does not match a hook ({exc})",
            f"name hook functions after c2s_agent.hookspecs ({', '.join(hook_names())})",
        ) from None


def check() -> None:
    """Fail fast on hook implementations whose name is not a hook (usually a typo)."""
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(
            f"plugin {pm.get_name(exc.plugin)!r}",
            f"implements an unknown hook ({exc})",
            f"use one of {', '.join(hook_names())}",
        ) from None


def hook_names() -> list[str]:
    """Names of all hooks a plugin may implement."""
    return sorted(name for name in dir(hookspecs) if name.startswith("register_"))


def _load_builtins() -> None:
    for module_name in DEFAULT_PLUGINS:
        if pm.has_plugin(module_name):
            continue
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:  # a missing optional dependency or a plugin not written yet
            _report(module_name, f"import failed: {exc}")
            continue
        _register(module, module_name)


def load_entry_points(allow: set[str] | None) -> None:
    """Register installed ``c2s_agent`` entry points; only names in ``allow`` when it is not None."""
    for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if allow is not None and ep.name not in allow:
            continue
        if pm.has_plugin(ep.name) or pm.is_blocked(ep.name):
            continue
        try:
            module = ep.load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin is reported, never fatal
            _report(ep.name, f"failed to load: {exc!r}")
            continue
        _register(module, ep.name)
        _entry_point_plugins[ep.name] = ep.dist.version if ep.dist else "unknown"


def setup(allow: set[str] | None = None) -> None:
    """Load built-ins and the allowed entry points, then check every hook implementation names a real hook."""
    _load_builtins()
    load_entry_points(allow)
    check()


def _allowed(plugin: str, allow: set[str] | None) -> bool:
    return allow is None or plugin not in _entry_point_plugins or plugin in allow


def collect(hook_name: str, allow: set[str] | None = None, cls: type | None = None) -> dict[str, Any]:
    """Call one ``register_*`` hook on every allowed plugin and return what they registered, by name.

    Built-ins register first, then other plugins by name. A name taken already is kept by its first owner;
    the later one is stored as ``"<plugin>:<name>"``. A plugin that raises, or registers something that is not
    a ``cls``, is reported and skipped.
    """
    found: dict[str, Any] = {}
    order = {name: i for i, name in enumerate(DEFAULT_PLUGINS)}
    impls = [i for i in getattr(pm.hook, hook_name).get_hookimpls() if _allowed(i.plugin_name, allow)]
    impls.sort(key=lambda impl: (order.get(impl.plugin_name, len(order)), impl.plugin_name))
    for impl in impls:
        plugin = impl.plugin_name
        mine: dict[str, Any] = {}

        def register(obj, _plugin=plugin, _mine=mine):
            if cls is not None and not isinstance(obj, cls):
                raise TypeError(f"{hook_name} takes {cls.__name__} objects, not {type(obj).__name__}")
            key = obj.name if obj.name not in found and obj.name not in _mine else f"{_plugin}:{obj.name}"
            if key != obj.name:
                owner = found[obj.name].plugin if obj.name in found else _plugin
                log.warning(
                    "%s %r from plugin %s is already registered by %s; kept as %r",
                    hook_name,
                    obj.name,
                    _plugin,
                    owner,
                    key,
                )
            _mine[key] = (
                obj.model_copy(update={"plugin": _plugin})
                if hasattr(obj, "model_copy")
                else dataclasses.replace(obj, plugin=_plugin)
            )

        try:
            impl.function(register=register)
        except Exception as exc:  # noqa: BLE001 - reported and skipped, with nothing half-registered
            _report(plugin, f"{hook_name} raised {exc!r}")
            continue
        found.update(mine)
    return found


def plugin_table(settings=None) -> list[dict]:
    """One row per loaded plugin: name, version, where it comes from, and the hooks it implements."""
    from .config import Settings

    allow = (settings or Settings()).plugin_allow_list
    setup(allow)
    rows = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda np_: (np_[0] not in DEFAULT_PLUGINS, np_[0])):
        if not _allowed(name, allow):
            continue
        rows.append(
            {
                "name": name,
                "version": _entry_point_plugins.get(name, "built-in"),
                "source": "entry point"
                if name in _entry_point_plugins
                else ("built-in" if name in DEFAULT_PLUGINS else "registered in code"),
                "hooks": sorted(h.name for h in pm.get_hookcallers(plugin) or []),
            }
        )
    return rows


def registered(hook_name: str, settings=None, cls: type | None = None) -> dict[str, Any]:
    """Set plugins up under the settings' allow-list and collect one hook's registrations (see
    :mod:`c2s_agent.registry` for the typed accessors)."""
    from .config import Settings

    allow = (settings or Settings()).plugin_allow_list
    setup(allow)
    return collect(hook_name, allow, cls)
