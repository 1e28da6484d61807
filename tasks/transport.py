"""kombu's Redis transport, with one Redis client object per channel instead of one per call.

kombu builds a new ``redis.Redis`` for every acknowledgement-bookkeeping step of a job (the
unacked index on receipt, its removal on ack, the restore sweep), and building one costs
more than the command it sends: at full load that was a large share of a pool parent's CPU.
The client object holds no connection of its own, only the channel's connection pool, so one
can serve every call; it is made again whenever kombu replaces the pool (after a lost
connection).

A channel whose connection has let go fails as a lost connection, never with AttributeError.
When Redis goes away while a BRPOP is pending, kombu's first close of the channel (Celery's
``collect``) stops at that read before the channel counts as closed; the connection then
lets go of the transport, and Celery's second close (``ignore_errors(connection.close)``)
goes on to restore the unacknowledged jobs through a pool made anew from a transport that
no longer names a server. The AttributeError that kombu raises there is not among the
errors Celery ignores, and ends the worker ("Unrecoverable error"). A connection error is:
the jobs stay in Redis's unacked index, and come back after the visibility timeout as any
job of a lost consumer does. A late ack of such a channel gets the same answer.

The Sentinel transport gets the same two changes: its channel fails the same way. Both note
who took each job, so that a worker killed whole gets its jobs back when it starts again
(tasks/takenjobs.py).

Only the workers use it (``celeryd_init``): elsewhere the broker URL would then name this
class instead of ``redis://``, and Flower tells the broker's kind by that name. ``rediss://``
keeps kombu's own transport everywhere, whose TLS set-up depends on the URL's scheme.
"""

from __future__ import annotations

from typing import Any

import redis
from celery import signals
from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as kombu_redis

from tasks.takenjobs import TakenQoS, note_takers_in_workers


class SharedClient:
    """The two changes, for kombu's Redis channel and its Sentinel channel alike."""

    _shared_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)
        shared = self._shared_client
        if shared is None or shared.connection_pool is not self.pool:
            shared = self._shared_client = super()._create_client()
        return shared

    def _get_pool(self, asynchronous: bool = False) -> Any:
        transport = self.connection
        if transport is None or transport.client is None:
            raise redis.ConnectionError("the channel's broker connection is closed")
        return super()._get_pool(asynchronous=asynchronous)


class Channel(SharedClient, kombu_redis.Channel):
    QoS = TakenQoS  # notes who took each job (tasks/takenjobs.py)


class Transport(kombu_redis.Transport):
    Channel = Channel


class SentinelChannel(SharedClient, kombu_redis.SentinelChannel):
    QoS = TakenQoS


class SentinelTransport(kombu_redis.SentinelTransport):
    """Under Sentinel (``sentinel://``): the pool it makes asks the sentinels for the primary
    at every new connection, so a worker follows a failover without a restart."""

    Channel = SentinelChannel


def use_in_workers() -> None:
    """From now on, a worker started in this process uses this transport, and puts back
    the jobs its earlier start took and never finished."""
    signals.celeryd_init.connect(_in_worker, weak=False)
    note_takers_in_workers()


OURS = {"redis": f"{__name__}:Transport", "sentinel": f"{__name__}:SentinelTransport"}


def _in_worker(conf: Any, **_: Any) -> None:
    if conf.broker_transport:
        return
    scheme = str(conf.broker_url).partition("://")[0]
    if scheme in OURS:
        conf.broker_transport = OURS[scheme]
        # A broker URL with alternates (one per sentinel) is parsed again at each switch
        # to the next one, and the scheme then names the transport: kombu's own, which
        # ends the worker at the next lost connection, unless the scheme names ours.
        TRANSPORT_ALIASES.update(OURS)
