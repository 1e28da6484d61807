"""Jobs a worker had taken when it was killed whole go back to their queue when it starts
again, not an hour later.

kombu keeps each job a worker takes in Redis (the unacked hash and its index) until the
worker acknowledges it. When one pool process dies, Celery rejects its job and kombu puts it
back at once; when the whole worker dies (SIGKILL of its leader, the OOM killer, a container
stopped hard), nothing does, and its jobs come back only after the visibility timeout, an
hour: their messages wait out their scan deadline and are answered 451, or deferred.

So the workers' transport (tasks/transport.py) also notes who took each job, in the same
round trip: the worker's node name and a random id of this start. A worker that starts puts
back the jobs noted under its own node name by another start: that start has ended, since a
node name is one worker at a time (Celery's own assumption; ``mailscan up`` and compose name
each pool's worker after its pool and its host). Putting back is kombu's own restore, the
one its visibility timeout uses: the job goes to the head of its queue, marked redelivered.
"""

from __future__ import annotations

import logging
import uuid
from time import time
from typing import Any

from celery import signals
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps

log = logging.getLogger(__name__)


class Taker:
    """Who takes jobs in this process: its worker's node name, set when the worker starts
    (``celeryd_init``), and an id of this start."""

    node = ""
    start = uuid.uuid4().hex

    @classmethod
    def name(cls) -> str:
        return f"{cls.node} {cls.start}"


def takers_key(unacked_key: str) -> str:
    """The hash of who took each unacknowledged job (delivery tag -> "node start")."""
    return f"{unacked_key}:takers"


def taken_by_an_earlier_start(taker: bytes | str, node: str) -> bool:
    name, _, start = bytes_to_str(taker).partition(" ")
    return name == node and start != Taker.start


class TakenQoS(kombu_redis.QoS):
    """kombu's acknowledgement emulation for Redis, noting who took each job."""

    def append(self, message: Any, delivery_tag: str) -> None:
        # kombu's own (pinned: tests/test_takenjobs.py), with the taker in its round trip.
        delivery = message.delivery_info
        raw = dumps([message._raw, delivery["exchange"], delivery["routing_key"]])
        with self.pipe_or_acquire() as pipe:
            pipe.zadd(self.unacked_index_key, {delivery_tag: time()}).hset(
                self.unacked_key, delivery_tag, raw
            ).hset(takers_key(self.unacked_key), delivery_tag, Taker.name()).execute()
        virtual.QoS.append(self, message, delivery_tag)

    def _remove_from_indices(self, delivery_tag: str, pipe: Any = None) -> Any:
        # Every way out of the unacked index goes through here: ack, reject, restore.
        removing = super()._remove_from_indices(delivery_tag, pipe)
        return removing.hdel(takers_key(self.unacked_key), delivery_tag)

    def put_back_earlier_starts(self, node: str) -> int:
        """Put back on their queues the jobs an earlier start of ``node`` took and never
        acknowledged; how many."""
        with self.channel.conn_or_acquire() as client:
            takers = client.hgetall(takers_key(self.unacked_key))
            lost = [tag for tag, taker in takers.items() if taken_by_an_earlier_start(taker, node)]
            for tag in lost:
                self.restore_by_tag(bytes_to_str(tag), client)
        return len(lost)


def note_the_taker(sender: str, **_: Any) -> None:
    Taker.node = sender


def put_back_at_start(sender: Any, **_: Any) -> None:
    """Once the worker consumes: the jobs its earlier start took and never finished."""
    with sender.app.connection_for_write() as connection:
        qos = connection.default_channel.qos
        if not isinstance(qos, TakenQoS):  # a broker without this transport (rediss://)
            return
        count = qos.put_back_earlier_starts(Taker.node)
    if count:
        log.warning(
            "%s: %d jobs taken by its earlier start, which ended without finishing them, "
            "are back on their queues", Taker.node, count,
        )  # fmt: skip


def note_takers_in_workers() -> None:
    signals.celeryd_init.connect(note_the_taker, weak=False)
    signals.worker_ready.connect(put_back_at_start, weak=False)
