"""Server-sent events: each open console learns within a second that a crashdump arrived or
was decided, or that a message got its outcome. The page's script then fetches what changed
(the dialog, the live part of the dashboard); the stream itself carries no data to protect."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import redis
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from mailserver.console.site import console_of, crash_fingerprint
from tasks.wire.keys import OUTCOMES_KEY

POLL_S = 1.0
KEEPALIVE_EVERY = 15  # polls: a comment line keeps proxies from closing a quiet stream


def _state(client: redis.Redis) -> dict[str, str]:
    newest = client.lindex(OUTCOMES_KEY, 0)
    outcome = json.loads(newest)["at"] if newest else 0
    return {"crashdumps": crash_fingerprint(client), "outcomes": str(outcome)}


async def stream(request: Request) -> Response:
    client = console_of(request).redis

    async def events() -> AsyncIterator[str]:
        yield "retry: 3000\n\n"
        last: dict[str, str] | None = None
        polls = 0
        while not await request.is_disconnected():
            try:
                state = await asyncio.to_thread(_state, client)
            except redis.RedisError:
                state = last  # Redis away for a moment: say nothing new
            if state != last:
                yield f"event: state\ndata: {json.dumps(state)}\n\n"
                last = state
            elif polls % KEEPALIVE_EVERY == 0:
                yield ": still here\n\n"
            polls += 1
            await asyncio.sleep(POLL_S)

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)
