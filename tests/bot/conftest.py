"""Bot-level fixtures: settings for a SQLite file and the fake Graph API, the real app
served on 127.0.0.1 with a test clock, and the fake Telegram Bot API with a PTB bot on it."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest
from aiohttp import web
from telegram import Bot

from bot.app import create_app
from bot.config import Settings, load_settings
from bot.jobs import JOBS, Jobs
from bot.services import SERVICES, Services
from scheduler.clock import Clock, ManualClock
from scheduler.ports import MessageSender
from tests.fakes.graph import TOKEN, FakeGraph
from tests.fakes.telegram import TOKEN as TELEGRAM_TOKEN
from tests.fakes.telegram import FakeTelegram

PHONE_NUMBER_ID = "1234567890"


class SettingsFactory(Protocol):
    def __call__(self, *, whatsapp: bool = True, **overrides: Any) -> Settings: ...


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No DRIPBOT_* variable of the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("DRIPBOT_"):
            monkeypatch.delenv(name)


@pytest.fixture
def settings_factory(tmp_path: Path, graph: FakeGraph, clean_env: None) -> SettingsFactory:
    """Settings for a SQLite file in ``tmp_path``; WhatsApp points at the fake Graph API
    unless ``whatsapp=False`` (then the console provider is used)."""

    def make(*, whatsapp: bool = True, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": f"sqlite+aiosqlite:///{tmp_path / 'dripbot.db'}",
            "send_window": "always",
            "daily_reach_limit": "unlimited",
            "tick_seconds": 3600.0,
        }
        if whatsapp:
            values |= {
                "whatsapp_token": TOKEN,
                "whatsapp_phone_number_id": PHONE_NUMBER_ID,
                "whatsapp_api_url": graph.base_url,
            }
        return load_settings(_env_file=None, **(values | overrides))

    return make


@dataclass
class RunningApp:
    app: web.Application
    runner: web.AppRunner
    url: str

    @property
    def services(self) -> Services:
        return self.app[SERVICES]

    @property
    def jobs(self) -> Jobs:
        return self.app[JOBS]

    async def stop(self) -> None:
        await self.runner.cleanup()


StartApp = Callable[..., Awaitable[RunningApp]]


@pytest.fixture
async def start_app(clock: ManualClock) -> AsyncIterator[StartApp]:
    """Start the real application on 127.0.0.1 (a free port); stopped at the end."""
    started: list[RunningApp] = []

    async def start(
        settings: Settings, *, clock: Clock = clock, sender: MessageSender | None = None
    ) -> RunningApp:
        app = create_app(settings, clock=clock, sender=sender)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        running = RunningApp(app, runner, f"http://{host}:{port}")
        started.append(running)
        return running

    yield start
    for running in reversed(started):
        await running.stop()


@pytest.fixture
async def running_app(settings_factory: SettingsFactory, start_app: StartApp) -> RunningApp:
    """The app with default test settings: SQLite file, the fake Graph API, manual clock."""
    return await start_app(settings_factory())


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Undo the CLI's logging set-up, so one test's handlers do not reach the next."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    """The fake Telegram Bot API, on a real socket."""
    async with FakeTelegram() as server:
        yield server


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[Bot]:
    """A real PTB bot talking to ``fake``."""
    async with Bot(TELEGRAM_TOKEN, base_url=fake.base_url, base_file_url=fake.base_file_url) as tg:
        yield tg
