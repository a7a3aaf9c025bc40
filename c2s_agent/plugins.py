"""The plugin manager: built-in plugins plus installed entry points (group ``c2s_agent``), under an allow-list."""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
from dataclasses import dataclass
from typing import Any

import pluggy

from . import hookspecs

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "c2s_agent"

DEFAULT_PLUGINS = (
    "c2s_builtins.data_tools",
    "c2s_builtins.model_plugin",
    "c2s_builtins.knowledge_plugin",
    "c2s_builtins.metrics_plugin",
    "c2s_builtins.screen_plugin",
)

pm = pluggy.PluginManager("c2s_agent")
pm.add_hookspecs(hookspecs)

#: Problems met while loading or registering plugins: (plugin name, message).
load_errors: list[tuple[str, str]] = []


@dataclass(frozen=True)
class Registered:
    """One thing a plugin registered: its name, the object, and the plugin that gave it."""

    name: str
    obj: Any
    plugin: str
    extra: tuple = ()


def _load_builtins() -> None:
    for module_name in DEFAULT_PLUGINS:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:  # a missing optional dependency must not take the agent down
            load_errors.append((module_name, f"import failed: {exc}"))
            continue
        pm.register(module, name=module_name)


def load_entry_points(allow: set[str] | None) -> None:
    """Register installed ``c2s_agent`` entry points; only names in ``allow`` when it is not None."""
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if allow is not None and ep.name not in allow:
            continue
        if pm.has_plugin(ep.name) or pm.is_blocked(ep.name):
            continue
        try:
            pm.register(ep.load(), name=ep.name)
        except Exception as exc:  # noqa: BLE001 - a broken plugin is reported, never fatal
            load_errors.append((ep.name, f"failed to load: {exc!r}"))
            log.warning("plugin %s failed to load: %r", ep.name, exc)


def setup(allow: set[str] | None = None) -> None:
    """Load built-ins and entry points once, then check that every hook implementation names a real hook."""
    if not getattr(setup, "done", False):
        _load_builtins()
        setup.done = True
    load_entry_points(allow)
    pm.check_pending()


def collect(hook_name: str) -> dict[str, Registered]:
    """Call one ``register_*`` hook on every plugin and return what they registered, by name.

    Built-ins register first, then other plugins in load order. A name taken already is kept by its first
    owner; the later one is stored as ``"<plugin>:<name>"``. A plugin that raises is reported and skipped.
    """
    found: dict[str, Registered] = {}
    impls = getattr(pm.hook, hook_name).get_hookimpls()
    order = {name: i for i, name in enumerate(DEFAULT_PLUGINS)}
    impls = sorted(impls, key=lambda impl: order.get(impl.plugin_name, len(order)))
    for impl in impls:
        plugin = impl.plugin_name

        def register(name_or_obj, obj=None, *extra, _plugin=plugin):
            if obj is None:  # register(tool): the object carries its own name
                obj, name = name_or_obj, name_or_obj.name
            else:
                name = name_or_obj
            if hasattr(obj, "plugin") and getattr(obj, "plugin", None) is None:
                obj = obj.model_copy(update={"plugin": _plugin}) if hasattr(obj, "model_copy") else obj
            key = name if name not in found else f"{_plugin}:{name}"
            if key != name:
                log.warning("%s %r from plugin %s is already registered by %s; kept as %r",
                            hook_name, name, _plugin, found[name].plugin, key)
            found[key] = Registered(key, obj, _plugin, tuple(extra))

        try:
            impl.function(register=register)
        except Exception as exc:  # noqa: BLE001 - reported and skipped
            load_errors.append((plugin, f"{hook_name} raised {exc!r}"))
            log.warning("plugin %s raised in %s: %r", plugin, hook_name, exc)
    return found


def plugin_table() -> list[dict]:
    """One row per registered plugin: name, version, and the hooks it implements."""
    rows = []
    dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    for name, plugin in pm.list_name_plugin():
        dist = dists.get(id(plugin))
        rows.append({
            "name": name,
            "version": dist.version if dist else "built-in",
            "hooks": sorted(h.name for h in pm.get_hookcallers(plugin) or []),
        })
    return rows


def registered(hook_name: str, settings=None) -> dict[str, Registered]:
    """Set plugins up under the settings' allow-list and collect one hook's registrations."""
    from .config import Settings

    setup((settings or Settings()).plugin_allow_list)
    return collect(hook_name)


def tools(settings=None) -> dict:
    """All registered tools by name (each :class:`~c2s_agent.tools.Tool` knows its plugin)."""
    return {name: reg.obj for name, reg in registered("register_tools", settings).items()}
