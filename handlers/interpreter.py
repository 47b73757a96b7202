"""The admin command interpreter shared by Telegram, admin WhatsApp numbers and the CLI.

It checks who asks, parses the text into a command (pure), runs it against the engine and
returns a :class:`Reply`. Every failure comes back as one clear line; nothing half-done is
left, because each command is one engine call and each engine call is one transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from handlers import contact_commands, queue_commands, report_commands, sequence_commands
from handlers.commands import (
    AddStep,
    ArchiveSequence,
    CloneSequence,
    Command,
    Describe,
    EditStep,
    Enroll,
    Export,
    Help,
    ListOptOuts,
    ListSequences,
    NewSequence,
    OptOut,
    PauseContact,
    PauseSending,
    PauseSequence,
    Preview,
    RemoveStep,
    ResumeContact,
    ResumeSending,
    ResumeSequence,
    SendTest,
    SetKeyword,
    SetStopOnReply,
    SetWindow,
    ShowContact,
    ShowQueue,
    ShowSequence,
    ShowStats,
    Unenroll,
)
from handlers.context import CommandContext
from handlers.csv_import import CsvError
from handlers.grammar import UsageError, parse
from handlers.help import HELP_TEXT, details
from handlers.replies import Actor, Reply, Upload
from scheduler.clock import Clock
from scheduler.contact_locks import ContactLocks
from scheduler.errors import EngineError
from scheduler.options import EngineOptions
from scheduler.ports import Alerts
from storage.database import Database

log = logging.getLogger(__name__)

REFUSAL = (
    "Sorry, this bot only answers its administrators. If you should have access, ask an "
    "admin to add your id to DRIPBOT_ADMIN_TELEGRAM_IDS."
)


@dataclass(frozen=True)
class Admins:
    """Who may run commands: Telegram user ids and E.164 WhatsApp numbers; the CLI always."""

    telegram_ids: frozenset[str] = frozenset()
    whatsapp_numbers: frozenset[str] = frozenset()

    def allows(self, actor: Actor) -> bool:
        if actor.channel == "cli":
            return True
        if actor.channel == "telegram":
            return actor.identifier in self.telegram_ids
        if actor.channel == "whatsapp":
            return actor.identifier in self.whatsapp_numbers
        return False


Handler = Callable[[Any, CommandContext], Awaitable[Reply]]

_HANDLERS: dict[type, Handler] = {
    NewSequence: sequence_commands.new_sequence,
    AddStep: sequence_commands.add_step,
    EditStep: sequence_commands.edit_step,
    RemoveStep: sequence_commands.remove_step,
    ListSequences: sequence_commands.list_all,
    ShowSequence: sequence_commands.show,
    PauseSequence: sequence_commands.pause,
    ResumeSequence: sequence_commands.resume,
    ArchiveSequence: sequence_commands.archive,
    CloneSequence: sequence_commands.clone,
    SetKeyword: sequence_commands.set_keyword,
    SetWindow: sequence_commands.set_window,
    SetStopOnReply: sequence_commands.set_stop_on_reply,
    Describe: sequence_commands.describe,
    Enroll: contact_commands.enroll,
    Unenroll: contact_commands.unenroll,
    PauseContact: contact_commands.pause_contact,
    ResumeContact: contact_commands.resume_contact,
    ShowContact: contact_commands.show_contact,
    OptOut: contact_commands.opt_out,
    ListOptOuts: contact_commands.list_opt_outs,
    Preview: contact_commands.preview,
    SendTest: queue_commands.send_test,
    ShowQueue: queue_commands.show_queue,
    PauseSending: queue_commands.pause_sending,
    ResumeSending: queue_commands.resume_sending,
    ShowStats: report_commands.stats,
    Export: report_commands.export,
}


@dataclass
class Interpreter:
    db: Database
    clock: Clock
    options: EngineOptions
    admins: Admins
    alerts: Alerts
    csv_max_bytes: int = 50 * 1024 * 1024
    csv_max_rows: int = 1_000_000
    #: channel extras for commands that need them (e.g. the stats chart renderer)
    extras: dict[str, Any] = field(default_factory=dict)
    #: the dispatcher's per-contact locks, so an admin's /optout cannot race a send
    locks: ContactLocks = field(default_factory=ContactLocks)
    _refused: set[tuple[str, str]] = field(default_factory=set)

    def is_admin(self, actor: Actor) -> bool:
        return self.admins.allows(actor)

    async def run(self, actor: Actor, text: str, upload: Upload | None = None) -> Reply:
        """Answer one message. An empty reply text means: say nothing at all."""
        if not self.admins.allows(actor):
            key = (actor.channel, actor.identifier)
            if key in self._refused:
                return Reply("", ok=False)
            self._refused.add(key)
            return Reply(REFUSAL, ok=False)
        try:
            command = parse(text)
        except UsageError as err:
            return Reply(f"{err.message}\nUsage: {err.usage}", ok=False)
        context = CommandContext(
            db=self.db,
            clock=self.clock,
            options=self.options,
            alerts=self.alerts,
            actor=actor,
            upload=upload,
            csv_max_bytes=self.csv_max_bytes,
            csv_max_rows=self.csv_max_rows,
            extras=self.extras,
            locks=self.locks,
        )
        try:
            return await self.execute(command, context)
        except (EngineError, CsvError) as err:
            return Reply(_sentence(str(err)), ok=False)
        except ValueError as err:  # a value the grammar let through but the engine refused
            return Reply(_sentence(str(err)), ok=False)

    async def execute(self, command: Command, context: CommandContext) -> Reply:
        if isinstance(command, Help):
            if command.topic:
                try:
                    return Reply(details(command.topic))
                except KeyError:
                    return Reply(f"No command /{command.topic}. {HELP_TEXT}", ok=False)
            return Reply(HELP_TEXT)
        handler = _HANDLERS[type(command)]
        return await handler(command, context)


def _sentence(text: str) -> str:
    text = text.strip()
    return text[:1].upper() + text[1:] if text else "Something went wrong."
