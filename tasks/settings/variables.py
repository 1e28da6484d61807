"""The MAILSCAN_* variables, derived from the settings' fields: which field each one sets and
how its text is parsed."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import Field, dataclass

from tasks.settings.declare import Parser, is_setting
from tasks.settings.pools import PoolSettings
from tasks.settings.schema import Settings
from tasks.wire.keys import ENV_PREFIX


@dataclass(frozen=True)
class Variable:
    """One ``MAILSCAN_*`` variable: the field it sets, in ``pool``'s settings when given."""

    name: str
    setting: str
    parse: Parser
    pool: str = ""
    mask: Callable[[str], str] | None = None


def env_name(field_name: str) -> str:
    """The variable of a field: ``smtp_port`` -> ``MAILSCAN_SMTP_PORT``; a pool's field
    goes with its pool's name, ``av_soft_limit_s``."""
    return ENV_PREFIX + field_name.upper()


def global_fields() -> list[Field[object]]:
    return [f for f in dataclasses.fields(Settings) if is_setting(f)]


def pool_fields() -> list[Field[object]]:
    return list(dataclasses.fields(PoolSettings))


@functools.cache
def variables() -> dict[str, Variable]:
    """Every variable mailscan knows, by name, in the order of the fields."""
    found = [
        Variable(env_name(f.name), f.name, f.metadata["parse"], mask=f.metadata["mask"])
        for f in global_fields()
    ]
    found += [
        Variable(env_name(f"{pool}_{f.name}"), f.name, f.metadata["parse"], pool=pool)
        for f in pool_fields()
        for pool in f.metadata["pools"]
    ]
    return {variable.name: variable for variable in found}
