"""Everything mailscan can be told: each setting with its default, its parser and what it
means (docs/settings.md is rendered from here, in the order of the sections below)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from tasks.settings.schema.alerts import AlertSettings
from tasks.settings.schema.connection import RedisSettings
from tasks.settings.schema.engines import BANNED_EXTENSIONS, BANNED_TYPES, EngineSettings
from tasks.settings.schema.front import FrontSettings
from tasks.settings.schema.operations import OperationSettings, platform_assist_prompt

__all__ = ["BANNED_EXTENSIONS", "BANNED_TYPES", "Settings", "platform_assist_prompt"]


# A dataclass takes its bases' fields from the last base to the first: the sections come
# in the order Redis, SMTP front, engines, operations, alerts.
@dataclass(frozen=True)
class Settings(AlertSettings, OperationSettings, EngineSettings, FrontSettings, RedisSettings):
    """Everything mailscan can be told, with units in the names; the pools' own settings in
    ``pools``."""

    def with_pool(self, pool: str, **changes: Any) -> Settings:
        """These settings with ``changes`` made to one pool's (tests, benchmarks)."""
        return dataclasses.replace(self, pools=self.pools.changed(pool, **changes))
