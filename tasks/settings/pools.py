"""What each scan pool is told: ``settings.pools["av"]``, ``settings.pools["spam"]``."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from tasks import setting_parsers as parse
from tasks.setting_parsers import FAILURE_POLICIES, FailurePolicy
from tasks.settings.declare import pool_setting
from tasks.wire.keys import POOLS


@dataclass(frozen=True)
class PoolSettings:
    """One pool's settings, ``MAILSCAN_AV_*`` and ``MAILSCAN_SPAM_*`` in the environment."""

    plugins: tuple[str, ...] = pool_setting(
        parse.names,
        "the pool's engines, comma-separated, in order: av `clamav`, `command`, `builtin`, "
        "`banned` (attachments by name and type), `stub` (infected if any engine says so, "
        "else banned if `banned` says so); spam `spamassassin`, `stub`",
        av=("clamav", "banned"),
        spam=("spamassassin",),
    )
    # Unset or empty: sized by the machine when `mailscan up` or `mailscan pool` starts the
    # pool (tasks/sizing.py).
    concurrency: int | None = pool_setting(
        parse.optional_positive_int,
        "pool processes per worker; unset: av as many as the usable CPUs, spam as many as "
        "spamd's children (`MAILSCAN_SPAMD_CHILDREN`); spam jobs beyond spamd's children "
        "wait for a free child",
        av=None,
        spam=None,
    )
    failure_policy: FailurePolicy = pool_setting(
        parse.choice(*FAILURE_POLICIES, "backup-engine"),
        "when the pool gives no verdict: `tempfail` (451, sender retries), `quarantine`, "
        "`deliver-tagged` (the header says `X-Spam-Status: Unknown, scan failed` for spam), "
        "or, av only, `backup-engine`",
        av="tempfail",
        spam="deliver-tagged",
    )
    backup_plugins: tuple[str, ...] = pool_setting(
        parse.optional_names,
        "engines that scan when the main ones fail, with "
        "`MAILSCAN_AV_FAILURE_POLICY=backup-engine`",
        av=(),
        spam=(),
        only="av",
    )
    # The soft limit raises inside the plugin; the hard one kills the pool process.
    soft_limit_s: float = pool_setting(
        parse.seconds, "time limit of a job, raised inside the plugin; below the hard limit",
        av=60.0, spam=60.0,
    )  # fmt: skip
    hard_limit_s: float = pool_setting(
        parse.seconds, "time limit of a job, at which its pool process is killed",
        av=90.0, spam=90.0,
    )  # fmt: skip
    max_tasks_per_child: int = pool_setting(
        parse.positive_int, "a pool process is recycled after this many jobs",
        av=1000, spam=1000,
    )  # fmt: skip
    max_memory_per_child_mb: int = pool_setting(
        parse.positive_int, "a pool process is recycled once it holds this much memory",
        av=1024, spam=1024,
    )  # fmt: skip
    # Scaling: Celery's own autoscaler at worker start ("MAX,MIN"), or ours from the backlog.
    autoscale: str = pool_setting(
        parse.autoscale, "`MAX,MIN`: start the pool with Celery's autoscaler", av="", spam=""
    )
    scale_min: int = pool_setting(
        parse.positive_int, "the fewest processes the backlog autoscaler leaves", av=1, spam=1
    )
    scale_max: int = pool_setting(
        parse.positive_int, "the most processes the backlog autoscaler gives", av=8, spam=8
    )

    @classmethod
    def defaults(cls, pool: str) -> PoolSettings:
        return cls(**{f.name: f.metadata["defaults"][pool] for f in dataclasses.fields(cls)})


@dataclass(frozen=True)
class Pools(Mapping[str, PoolSettings]):
    """The two scan pools' settings by name: ``pools["av"]``, ``pools["spam"]``."""

    av: PoolSettings = dataclasses.field(default_factory=lambda: PoolSettings.defaults("av"))
    spam: PoolSettings = dataclasses.field(default_factory=lambda: PoolSettings.defaults("spam"))

    def __getitem__(self, pool: str) -> PoolSettings:
        if pool not in POOLS:
            raise KeyError(pool)
        return getattr(self, pool)

    def __iter__(self) -> Iterator[str]:
        return iter(POOLS)

    def __len__(self) -> int:
        return len(POOLS)

    def changed(self, pool: str, **changes: Any) -> Pools:
        """These pools with ``changes`` made to ``pool``'s settings."""
        return dataclasses.replace(self, **{pool: dataclasses.replace(self[pool], **changes)})
