"""Typed settings, read once from ``MAILSCAN_*`` environment variables and validated at start.

    schema/       Settings: every setting with its default, parser and meaning, one
                  module per group of sections (connection, front, engines, operations)
    pools.py      PoolSettings: each pool's own, ``settings.pools["av"]``
    declare.py    how a setting is declared on its field
    variables.py  the MAILSCAN_* variables derived from the fields
    loading.py    load_settings: parse, check, fail loudly with every problem at once
    markdown.py   docs/settings.md rendered from the fields

Import from here: ``from tasks.settings import Settings, load_settings``.
"""

from tasks.settings.loading import current_settings, load_settings
from tasks.settings.pools import Pools, PoolSettings
from tasks.settings.schema import Settings, platform_assist_prompt
from tasks.settings.variables import Variable, env_name, variables

__all__ = [
    "PoolSettings",
    "Pools",
    "Settings",
    "Variable",
    "current_settings",
    "env_name",
    "load_settings",
    "platform_assist_prompt",
    "variables",
]
