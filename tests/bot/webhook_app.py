"""The webhook served the way the service serves it, for tests; also a process launcher.

In-process tests build :class:`Services` around a test database and the fake Graph API and
serve :func:`bot.webhook.setup_webhook` on a real socket. Run as a module it serves the same
app in its own process, with a dispatcher ticking, until killed:

    python -m tests.bot.webhook_app --database-url URL --graph-url URL

It prints ``listening on <port>`` once the socket is open.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bot.config import Settings
from bot.sending import GraphSender
from bot.services import SERVICES, Services
from bot.webhook import INBOX, PATH, setup_webhook
from bot.whatsapp.client import GraphClient
from bot.whatsapp.signature import sign
from scheduler.clock import Clock, SystemClock
from scheduler.dispatcher import Dispatcher
from scheduler.options import EngineOptions, Window
from scheduler.pacing import Unlimited
from scheduler.ports import Alerts, LogAlerts
from storage.database import Database
from tests.fakes.graph import TOKEN

SECRET = "test-app-secret"
VERIFY_TOKEN = "verify-me-please"
PHONE_ID = "1234567890"
#: the admin who sends the recorded CSV document
ADMIN = "+447700900999"
WEBHOOKS = Path(__file__).parent.parent / "data" / "webhooks"


def options() -> EngineOptions:
    return EngineOptions(
        default_timezone="UTC",
        default_region="DE",
        send_window=Window(time(6, 0), time(21, 0)),
        daily_reach_limit=None,
    )


def settings(graph_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "whatsapp_token": TOKEN,
        "whatsapp_phone_number_id": PHONE_ID,
        "whatsapp_api_url": graph_url,
        "whatsapp_app_secret": SECRET,
        "whatsapp_verify_token": VERIFY_TOKEN,
        "admin_whatsapp_numbers": [ADMIN],
        "default_region": "DE",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def make_services(
    db: Database,
    clock: Clock,
    graph_url: str,
    http: aiohttp.ClientSession,
    alerts: Alerts | None = None,
    **overrides: Any,
) -> Services:
    client = GraphClient(http, graph_url, TOKEN, PHONE_ID)
    return Services(
        settings=settings(graph_url, **overrides),
        db=db,
        clock=clock,
        options=options(),
        alerts=alerts or LogAlerts(),
        sender=GraphSender(client),
        http=http,
        graph=client,
    )


def make_dispatcher(services: Services) -> Dispatcher:
    """A dispatcher sharing the webhook's contact locks, as in the service."""
    return Dispatcher(
        services.db,
        services.sender,
        services.clock,
        services.options,
        services.alerts,
        locks=services.locks,
        pacer=Unlimited(),
        rng=random.Random(7),
    )


def build_app(services: Services) -> web.Application:
    app = web.Application()
    app[SERVICES] = services
    setup_webhook(app)
    return app


@asynccontextmanager
async def serve(services: Services) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    """The webhook on 127.0.0.1, and a client for it."""
    async with TestClient(TestServer(build_app(services))) as client:
        yield client


async def drained(client: TestClient[web.Request, web.Application]) -> None:
    """Wait until every body the webhook stored has been processed."""
    await client.server.app[INBOX].drained()


def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {"Content-Type": "application/json", "X-Hub-Signature-256": sign(body, secret)}


async def post(
    client: TestClient[web.Request, web.Application], payload: Any, *, secret: str = SECRET
) -> int:
    """POST a payload signed as Meta would; returns the HTTP status."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    async with client.post(PATH, data=body, headers=signed(body, secret)) as response:
        await response.read()
        return response.status


def recorded(name: str) -> dict[str, Any]:
    """A recorded payload from tests/data/webhooks (a fresh copy, safe to change)."""
    data = json.loads((WEBHOOKS / f"{name}.json").read_text(encoding="utf-8"))
    return copy.deepcopy(data)


def text_message(
    phone: str | None,
    body: str,
    *,
    wamid: str,
    user_id: str | None = None,
    name: str | None = "Lead",
    timestamp: int = 1772442060,
) -> dict[str, Any]:
    """A payload with one text message, shaped like the recorded text.json."""
    payload = recorded("text")
    value = payload["entry"][0]["changes"][0]["value"]
    contact: dict[str, Any] = {"profile": {"name": name}} if name else {}
    message: dict[str, Any] = {
        "id": wamid,
        "timestamp": str(timestamp),
        "type": "text",
        "text": {"body": body},
    }
    if phone is not None:
        contact["wa_id"] = phone.lstrip("+")
        message["from"] = phone.lstrip("+")
    if user_id is not None:
        contact["user_id"] = user_id
        message["from_user_id"] = user_id
    value["contacts"] = [contact]
    value["messages"] = [message]
    return payload


def status_payload(*statuses: dict[str, Any]) -> dict[str, Any]:
    """A payload carrying these status objects (id, status, timestamp, ...)."""
    payload = recorded("status_sent")
    value = payload["entry"][0]["changes"][0]["value"]
    value.pop("contacts", None)
    value["statuses"] = list(statuses)
    return payload


# --- a separate process -----------------------------------------------------------------


async def _serve_forever(database_url: str, graph_url: str, tick: float) -> None:
    clock = SystemClock()
    db = await Database.open(database_url, workspace="default", now=clock.now())
    async with aiohttp.ClientSession() as http:
        services = make_services(db, clock, graph_url, http)
        runner = web.AppRunner(build_app(services), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        print(f"listening on {port}", flush=True)
        dispatcher = make_dispatcher(services)
        try:
            while True:
                await dispatcher.tick()
                await asyncio.sleep(tick)
        finally:
            await runner.cleanup()
            await db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--graph-url", required=True)
    parser.add_argument("--tick", type=float, default=0.05)
    args = parser.parse_args()
    asyncio.run(_serve_forever(args.database_url, args.graph_url, args.tick))


if __name__ == "__main__":
    main()
