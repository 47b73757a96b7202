"""The fake Graph API's status echo: what the drills rely on to settle sends in doubt."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot.whatsapp import webhook as wa
from bot.whatsapp.events import StatusUpdate
from bot.whatsapp.signature import verify
from tests.drills.harness import free_port
from tests.fakes.graph import TOKEN, FakeGraph

SECRET = "echo-secret"
PHONE_NUMBER_ID = "1098765432"


@dataclass
class Receiver:
    """A webhook endpoint that refuses the first ``refuse`` POSTs with 503."""

    refuse: int = 0
    bodies: list[bytes] = field(default_factory=list)
    signatures_ok: list[bool] = field(default_factory=list)
    posts: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.posts += 1
        raw = await request.read()
        if self.posts <= self.refuse:
            return web.Response(status=503)
        self.bodies.append(raw)
        self.signatures_ok.append(verify(raw, request.headers.get("X-Hub-Signature-256"), SECRET))
        return web.Response(text="OK")


async def serve(receiver: Receiver, port: int) -> web.AppRunner:
    app = web.Application()
    app.router.add_post("/webhook/whatsapp", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def send(http: aiohttp.ClientSession, graph: FakeGraph, to: str, callback: str | None) -> int:
    body: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "to": to,
        "type": "text",
        "text": {"body": "hi"},
    }
    if callback is not None:
        body["biz_opaque_callback_data"] = callback
    async with http.post(
        f"{graph.base_url}/{PHONE_NUMBER_ID}/messages",
        json=body,
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as response:
        await response.read()
        return response.status


def statuses(bodies: list[bytes]) -> list[StatusUpdate]:
    events = [event for raw in bodies for event in wa.parse(json.loads(raw))]
    assert all(isinstance(event, StatusUpdate) for event in events), events
    return [event for event in events if isinstance(event, StatusUpdate)]


async def test_each_accepted_send_is_followed_by_signed_statuses_in_metas_shape(
    graph: FakeGraph, http: aiohttp.ClientSession
) -> None:
    port = free_port()
    receiver = Receiver()
    runner = await serve(receiver, port)
    try:
        graph.echo_statuses(f"http://127.0.0.1:{port}/webhook/whatsapp", SECRET, delay=0.0)
        assert await send(http, graph, "+4915100000001", "dripbot:7") == 200
        assert await send(http, graph, "+4915100000002", None) == 200
        graph.fail_next(1, code=131000, http_status=500)
        assert await send(http, graph, "+4915100000003", "dripbot:9") == 500
        echoes = await graph.wait_echoes_delivered(timeout=5)
    finally:
        await runner.cleanup()

    assert all(receiver.signatures_ok) and len(receiver.bodies) == 4
    seen = sorted(
        (s.wamid, s.status, s.recipient, s.callback_data) for s in statuses(receiver.bodies)
    )
    first, second = (r.wamid for r in graph.sent)
    assert seen == sorted(
        [
            (first, "delivered", "+4915100000001", "dripbot:7"),
            (first, "sent", "+4915100000001", "dripbot:7"),
            (second, "delivered", "+4915100000002", None),
            (second, "sent", "+4915100000002", None),
        ]
    )
    assert all(s.phone_number_id == PHONE_NUMBER_ID for s in statuses(receiver.bodies))
    assert [(e.status, e.attempts) for e in echoes] == [("sent", 1), ("delivered", 1)] * 2


async def test_statuses_are_retried_while_the_receiver_is_down_or_refuses(
    graph: FakeGraph, http: aiohttp.ClientSession
) -> None:
    port = free_port()
    receiver = Receiver(refuse=2)
    graph.echo_statuses(f"http://127.0.0.1:{port}/webhook/whatsapp", SECRET, ("sent",), delay=0)
    assert await send(http, graph, "+4915100000001", "dripbot:1") == 200
    await asyncio.sleep(0.3)  # nothing listens yet: connection refused, again and again
    assert graph.echoes[0].attempts >= 2 and graph.echoes[0].delivered_wall is None
    with pytest.raises(TimeoutError, match="1 not yet delivered"):
        await graph.wait_echoes_delivered(timeout=0.05)
    runner = await serve(receiver, port)
    try:
        echoes = await graph.wait_echoes_delivered(timeout=5)
    finally:
        await runner.cleanup()
    assert receiver.posts == 3 and len(receiver.bodies) == 1
    assert echoes[0].delivered_wall is not None and echoes[0].attempts >= 5


async def test_a_send_whose_answer_is_lost_is_still_echoed(
    graph: FakeGraph, http: aiohttp.ClientSession
) -> None:
    port = free_port()
    receiver = Receiver()
    runner = await serve(receiver, port)
    try:
        graph.echo_statuses(f"http://127.0.0.1:{port}/webhook/whatsapp", SECRET, ("sent",), delay=0)
        graph.hang = True  # Meta takes the message, the answer never comes back
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(send(http, graph, "+4915100000001", "dripbot:5"), 0.5)
        await graph.wait_echoes_delivered(timeout=5)
    finally:
        await runner.cleanup()
    [status] = statuses(receiver.bodies)
    assert (status.status, status.callback_data) == ("sent", "dripbot:5")
    assert status.wamid == graph.sent[0].wamid
