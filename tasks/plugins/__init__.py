"""Plugin registry: adding a scanner is adding one module and one line here.

Modules are imported only when a pool asks for them, so an av worker never loads the
spamd client and a missing optional library only matters where it is used.
"""

from __future__ import annotations

import importlib

from tasks.errors import ConfigError
from tasks.plugins.base import Plugin, Verdict
from tasks.settings import Settings

REGISTRY = {
    "clamav": "tasks.plugins.clamav:ClamavPlugin",
    "command": "tasks.plugins.command:CommandPlugin",
    "builtin": "tasks.plugins.builtin:BuiltinPlugin",
    "banned": "tasks.plugins.banned:BannedPlugin",
    "spamassassin": "tasks.plugins.spamassassin:SpamassassinPlugin",
    "stub": "tasks.plugins.stub:StubPlugin",
    "chaos": "tasks.plugins.chaos:ChaosPlugin",
}

__all__ = ["REGISTRY", "Plugin", "Verdict", "load_plugin", "validate"]


def plugin_class(name: str) -> type[Plugin]:
    try:
        module_name, class_name = REGISTRY[name].split(":")
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise ConfigError(f"unknown plugin {name!r} (known: {known})") from None
    return getattr(importlib.import_module(module_name), class_name)


def load_plugin(name: str, pool: str, settings: Settings) -> Plugin:
    cls = plugin_class(name)
    if pool not in cls.pools:
        raise ConfigError(f"plugin {name!r} cannot run in the {pool} pool")
    return cls(settings=settings, pool=pool)


def validate(settings: Settings) -> None:
    """Fail at start, not at the first message, when a pool names a plugin that cannot run."""
    for pool, own in settings.pools.items():
        for name in own.plugins:
            load_plugin(name, pool, settings)
