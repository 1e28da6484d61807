"""The scan jobs tasks.wire.submit writes are the jobs kombu itself would write, and the pools run
them."""

from __future__ import annotations

import base64
import json

import pytest
import redis
from kombu import Queue

from mailserver.supervisor.services import control_app
from tasks import redisauth
from tasks.wire.keys import AV_POOL, RESULT_KEY_PREFIX, SCAN_TASKS
from tasks.wire.submit import submit, task_envelope
from tests.conftest import wait_for

pytestmark = pytest.mark.integration
REF = {"blob": "probe", "size": 1, "digest": "0" * 64}
PROBE_QUEUE = "submit-probe"  # nobody consumes it


def kombu_envelope(app, client: redis.Redis) -> dict:
    queue = Queue(PROBE_QUEUE, routing_key=PROBE_QUEUE)  # declared as the scan queues are
    with app.connection_for_write() as connection:
        queue(connection.default_channel).declare()
    app.send_task(SCAN_TASKS[AV_POOL], args=[REF], task_id="probe-av-1", queue=queue)
    return json.loads(client.lpop(PROBE_QUEUE))


def test_envelope_is_the_one_kombu_writes(stack, settings):
    app = control_app(settings)
    client = redisauth.connect(settings)
    theirs = kombu_envelope(app, client)
    ours = json.loads(task_envelope(app, AV_POOL, "probe-av-1", REF))
    assert ours["headers"] == theirs["headers"]
    assert ours["content-type"] == theirs["content-type"]
    assert ours["content-encoding"] == theirs["content-encoding"]
    assert base64.b64decode(ours["body"]) == base64.b64decode(theirs["body"])
    props, kombu_props = ours["properties"], theirs["properties"]
    assert props.keys() == kombu_props.keys()
    differ = {k for k in kombu_props if props[k] != kombu_props[k]}
    assert differ == {"delivery_tag", "delivery_info"}  # a fresh tag; another queue
    assert ours["properties"]["delivery_info"] == {"exchange": "", "routing_key": AV_POOL}
    assert ours.keys() == theirs.keys()


def test_submitted_jobs_run_in_both_pools_and_store_their_verdicts(stack, settings):
    app = control_app(settings)
    client = redisauth.connect(settings)
    message = b"Subject: submit test\r\n\r\nhello\r\n"
    task_ids = submit(app, client, "submit0test0000000000000", message, 60)
    for pool, task_id in task_ids.items():
        key = RESULT_KEY_PREFIX + task_id
        wait_for(lambda key=key: client.exists(key), 60, f"the {pool} verdict")
        meta = app.backend.decode_result(client.get(key))
        assert meta["status"] == "SUCCESS"
        assert meta["result"]["pool"] == pool
