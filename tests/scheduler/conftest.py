"""Engine fixtures: options, a sequence builder, and a dispatcher wired to the fake Graph API."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import time
from typing import Any

import aiohttp
import pytest

from bot.sending import GraphSender
from bot.whatsapp.client import GraphClient
from scheduler.clock import ManualClock
from scheduler.dispatcher import Dispatcher
from scheduler.options import EngineOptions, Window
from scheduler.pacing import Unlimited
from scheduler.ports import LogAlerts
from storage.database import Database
from tests.fakes.graph import TOKEN, FakeGraph

PHONE_ID = "1234567890"


@pytest.fixture
def options() -> EngineOptions:
    return EngineOptions(
        default_timezone="UTC",
        default_region="DE",
        send_window=Window(time(6, 0), time(21, 0)),
        daily_reach_limit=None,
    )


@pytest.fixture
def make_dispatcher(
    db: Database,
    graph: FakeGraph,
    http: aiohttp.ClientSession,
    clock: ManualClock,
    options: EngineOptions,
    alerts: LogAlerts,
) -> Callable[..., Dispatcher]:
    def make(**kwargs: Any) -> Dispatcher:
        opts = kwargs.pop("options", options)
        client = GraphClient(http, graph.base_url, TOKEN, PHONE_ID)
        kwargs.setdefault("pacer", Unlimited())
        kwargs.setdefault("rng", random.Random(7))
        return Dispatcher(db, GraphSender(client), clock, opts, alerts, **kwargs)

    return make
