"""CSV files sent to the admin bot: a document captioned ``/enroll <seq>``, or the file sent
just after an ``/enroll <seq>`` without numbers. Size limits are checked before the download
(Telegram's own, and ours), so an oversized file costs nothing and is answered with why.
"""

from __future__ import annotations

from datetime import timedelta

from telegram import Document
from telegram.ext import ContextTypes

from bot.telegram.commands import parsed_command
from bot.telegram.handle import AwaitedCsv, TelegramHandle
from handlers.commands import Enroll
from handlers.replies import Actor, Reply, Upload
from scheduler.errors import EngineError
from scheduler.sequence_records import find_sequence

#: how long a CSV file is awaited after an ``/enroll <seq>`` without numbers
CSV_WAIT = timedelta(minutes=10)
#: api.telegram.org lets bots download files up to this size; a local Bot API server does not
TELEGRAM_DOWNLOAD_LIMIT = 20 * 1024 * 1024
OFFICIAL_API = "https://api.telegram.org"
#: above this size the admin is told the import is under way
LARGE_FILE = 1024 * 1024
CSV_TYPES = frozenset({"text/csv", "text/comma-separated-values", "application/csv"})

NOT_CSV = "I only read CSV files: send a .csv file with the caption /enroll <seq>."
CSV_NEEDS_ENROLL = "A CSV file goes with /enroll <seq> as its caption (e.g. /enroll tips)."
WHICH_SEQUENCE = (
    "Which sequence should these contacts join? Send the file again with the caption "
    "/enroll <seq>, or send /enroll <seq> first and then the file."
)


class CsvUploads:
    """The admin chat's CSV files, and the file awaited after an ``/enroll <seq>``."""

    def __init__(self, handle: TelegramHandle) -> None:
        self.handle = handle
        self.services = handle.services
        self.interpreter = handle.interpreter

    async def await_csv(self, chat_id: int, text: str, command: Enroll) -> Reply:
        services = self.services
        try:
            async with services.db.engine.connect() as conn:
                sequence = await find_sequence(conn, services.db.workspace_id, command.sequence)
        except EngineError as err:
            return Reply(_sentence(str(err)), ok=False)
        until = services.clock.now() + CSV_WAIT
        self.handle.awaited_csv[chat_id] = AwaitedCsv(text, until)
        minutes = int(CSV_WAIT.total_seconds() // 60)
        return Reply(
            f"Send the CSV file now (within {minutes} minutes) and I will enroll its rows into "
            f"{sequence.name!r}. Or type the numbers: /enroll {command.sequence}, then one "
            "'<phone> [name]' per line."
        )

    async def import_csv(
        self,
        context: ContextTypes.DEFAULT_TYPE,
        chat_id: int,
        actor: Actor,
        document: Document,
        caption: str,
    ) -> Reply:
        if not _is_csv(document):
            return Reply(NOT_CSV, ok=False)
        if caption:
            command = parsed_command(caption)
            if not isinstance(command, Enroll):
                return Reply(CSV_NEEDS_ENROLL, ok=False)
            command_text = caption
        else:
            awaited = self.handle.awaited_csv.pop(chat_id, None)
            if awaited is None or awaited.until < self.services.clock.now():
                return Reply(WHICH_SEQUENCE, ok=False)
            command_text = awaited.command_text
        name = document.file_name or "contacts.csv"
        limit = self.services.settings.csv_max_bytes
        size = document.file_size
        if size is not None and size > limit:
            return Reply(_too_big(name, size, limit), ok=False)
        official = self.services.settings.telegram_api_url == OFFICIAL_API
        if official and size is not None and size > TELEGRAM_DOWNLOAD_LIMIT:
            return Reply(
                f"{name} is {human_size(size)}, and Telegram lets bots download files of up "
                f"to {human_size(TELEGRAM_DOWNLOAD_LIMIT)}. Nothing was imported: split it into "
                "smaller files, or point DRIPBOT_TELEGRAM_API_URL at a local Bot API server.",
                ok=False,
            )
        if size is not None and size >= LARGE_FILE:
            await context.bot.send_message(chat_id, f"Reading {name} ({human_size(size)})…")
        file = await document.get_file(read_timeout=60)
        data = bytes(await file.download_as_bytearray(read_timeout=300))
        if len(data) > limit:
            return Reply(_too_big(name, len(data), limit), ok=False)
        return await self.interpreter.run(actor, command_text, Upload(name, data))


def _is_csv(document: Document) -> bool:
    name = (document.file_name or "").lower()
    return name.endswith(".csv") or (document.mime_type or "").lower() in CSV_TYPES


def _too_big(name: str, size: int, limit: int) -> str:
    return (
        f"{name} is {human_size(size)}, over the {human_size(limit)} limit for a CSV file "
        "(DRIPBOT_CSV_MAX_BYTES). Nothing was imported: split it into smaller files and send "
        "them one by one."
    )


def human_size(size: int) -> str:
    for unit, scale in (("MB", 1024 * 1024), ("KB", 1024)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size} bytes"


def _sentence(text: str) -> str:
    text = text.strip()
    return text[:1].upper() + text[1:] if text else "Something went wrong."
