"""The fake Bot API server, proven against the real python-telegram-bot over real HTTP.

If PTB can initialise, poll, reply, upload, download and map errors against the fake,
the bot's own tests can trust it.
"""

from __future__ import annotations

import asyncio
import struct
import warnings
import zlib
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from telegram import BotCommand, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import BadRequest, EndPointNotFound, Forbidden, InvalidToken, RetryAfter
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from tests.fakes.telegram import BOT_ID, BOT_USERNAME, TOKEN, FakeTelegram

App = Application[Any, Any, Any, Any, Any, Any]

ADMIN = 1001
LEAD_CHAT = 2002


def _png(width: int, height: int) -> bytes:
    """The start of a PNG: signature and IHDR, which is all the fake reads."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", len(ihdr))
        + chunk
        + struct.pack(">I", zlib.crc32(chunk))
        + b"\x00pixels\xff"
    )


def _build(fake: FakeTelegram, token: str = TOKEN) -> App:
    return (
        ApplicationBuilder()
        .token(token)
        .base_url(fake.base_url)
        .base_file_url(fake.base_file_url)
        .job_queue(None)
        .build()
    )


async def _close(app: App) -> None:
    if app.updater is not None and app.updater.running:
        await app.updater.stop()
    if app.running:
        await app.stop()
    await app.shutdown()


async def _start_polling(app: App) -> None:
    assert app.updater is not None
    await app.start()
    await app.updater.start_polling()


@pytest.fixture
async def app(fake: FakeTelegram) -> AsyncIterator[App]:
    application = _build(fake)
    await application.initialize()
    yield application
    await _close(application)


async def test_initialize_fetches_the_bot_user(fake: FakeTelegram, app: App) -> None:
    assert [c.method for c in fake.calls] == ["getMe"]
    assert (app.bot.id, app.bot.username) == (BOT_ID, BOT_USERNAME)
    assert fake.root.startswith("http://127.0.0.1:")


async def test_start_polling_deletes_the_webhook_then_long_polls(
    fake: FakeTelegram, app: App
) -> None:
    await _start_polling(app)
    polls = await fake.wait_for_call("getUpdates")

    assert [c.method for c in fake.calls[:3]] == ["getMe", "deleteWebhook", "getUpdates"]
    assert polls[0].params["timeout"] == 10
    assert polls[0].params.get("offset", 0) == 0


async def test_drop_pending_updates_drops_what_was_queued_before(
    fake: FakeTelegram, app: App
) -> None:
    fake.send_text(ADMIN, "sent while the bot was down")
    assert app.updater is not None
    await app.start()
    await app.updater.start_polling(drop_pending_updates=True)

    delete = (await fake.wait_for_call("deleteWebhook"))[0]
    assert delete.params["drop_pending_updates"] is True
    assert fake.pending_updates == []


async def test_start_command_is_answered_and_the_update_confirmed(
    fake: FakeTelegram, app: App
) -> None:
    seen: list[list[str]] = []

    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        seen.append(list(context.args or []))
        await update.effective_message.reply_text("Welcome, admin")

    app.add_handler(CommandHandler("start", start))
    await _start_polling(app)
    update = fake.send_text(ADMIN, "/start now")

    [reply] = await fake.wait_for_sent(chat_id=ADMIN)
    assert (reply.method, reply.text) == ("sendMessage", "Welcome, admin")
    assert seen == [["now"]]
    assert update["message"]["entities"] == [{"type": "bot_command", "offset": 0, "length": 6}]
    # The next poll carries a larger offset, which confirms (drops) the update.
    polls = await fake.wait_for_call("getUpdates", n=2)
    assert polls[1].params["offset"] == update["update_id"] + 1
    assert fake.pending_updates == []


async def test_csv_document_is_downloaded_through_get_file(fake: FakeTelegram, app: App) -> None:
    csv = b"phone,name\n+15550001,Ann\n+15550002,Bob\n"
    captions: list[tuple[str | None, str | None]] = []

    async def command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        await update.effective_message.reply_text("command handler")

    async def document(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        assert message is not None and message.document is not None
        captions.append((message.caption, message.caption_entities[0].type))
        file = await message.document.get_file()
        data = await file.download_as_bytearray()
        await message.reply_text(f"{message.document.file_name}: {len(data)} bytes")

    app.add_handler(CommandHandler("enroll", command))
    app.add_handler(MessageHandler(filters.Document.FileExtension("csv"), document))
    await _start_polling(app)
    update = fake.send_document(ADMIN, csv, "Leads.CSV", caption="/enroll tips")

    [reply] = await fake.wait_for_sent(chat_id=ADMIN)
    assert reply.text == f"Leads.CSV: {len(csv)} bytes"
    assert captions == [("/enroll tips", "bot_command")]
    [get_file] = fake.calls_of("getFile")
    assert get_file.params["file_id"] == update["message"]["document"]["file_id"]
    assert fake.files[get_file.params["file_id"]].file_path.startswith("documents/file_")


async def test_send_photo_arrives_as_multipart_with_exact_bytes(
    fake: FakeTelegram, app: App
) -> None:
    png = _png(640, 480)

    message = await app.bot.send_photo(ADMIN, photo=png, filename="chart.png", caption="Stats")

    [sent] = fake.sent
    assert (sent.method, sent.chat_id, sent.caption) == ("sendPhoto", ADMIN, "Stats")
    assert (sent.file, sent.filename, sent.content_type) == (png, "chart.png", "image/png")
    assert (message.photo[-1].width, message.photo[-1].height) == (640, 480)
    assert message.caption == "Stats"
    assert message.from_user is not None and message.from_user.id == BOT_ID
    downloaded = await (await message.photo[-1].get_file()).download_as_bytearray()
    assert bytes(downloaded) == png


async def test_send_document_keeps_filename_and_type(fake: FakeTelegram, app: App) -> None:
    message = await app.bot.send_document(LEAD_CHAT, document=b"a,b\n1,2\n", filename="x.csv")

    [sent] = fake.sent
    assert (sent.file, sent.filename, sent.content_type) == (b"a,b\n1,2\n", "x.csv", "text/csv")
    assert message.document is not None and message.document.file_name == "x.csv"


async def test_text_params_stay_strings_and_markup_is_decoded(fake: FakeTelegram, app: App) -> None:
    markup = InlineKeyboardMarkup([[InlineKeyboardButton("Pause", callback_data="pause:3")]])
    first = await app.bot.send_message(ADMIN, "42", parse_mode="HTML", reply_markup=markup)
    second = await app.bot.send_message(ADMIN, "next", disable_notification=True)

    sent = fake.sent
    assert (sent[0].text, sent[0].parse_mode) == ("42", "HTML")
    assert sent[0].reply_markup == {
        "inline_keyboard": [[{"text": "Pause", "callback_data": "pause:3"}]]
    }
    assert sent[1].params["disable_notification"] is True
    assert (first.message_id, second.message_id) == (1, 2)
    assert first.reply_markup == markup


async def test_set_my_commands_is_recorded(fake: FakeTelegram, app: App) -> None:
    commands = [BotCommand("start", "Show help"), BotCommand("stats", "Summary and chart")]

    assert await app.bot.set_my_commands(commands) is True

    expected = [
        {"command": "start", "description": "Show help"},
        {"command": "stats", "description": "Summary and chart"},
    ]
    assert fake.my_commands == expected
    assert fake.calls_of("setMyCommands")[0].params["commands"] == expected
    assert [c.command for c in await app.bot.get_my_commands()] == ["start", "stats"]


async def test_injected_429_raises_retry_after_once(
    fake: FakeTelegram, app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")  # reading retry_after warns otherwise
    fake.fail_next("sendMessage", retry_after=3)

    with pytest.raises(RetryAfter) as caught:
        await app.bot.send_message(ADMIN, "hello")

    assert caught.value.retry_after == timedelta(seconds=3)
    assert fake.sent == []
    await app.bot.send_message(ADMIN, "hello")
    assert [s.text for s in fake.sent] == ["hello"]


async def test_injected_403_raises_forbidden(fake: FakeTelegram, app: App) -> None:
    fake.fail_next("sendPhoto", 403)

    with pytest.raises(Forbidden, match=r"(?i)bot was blocked by the user"):
        await app.bot.send_photo(ADMIN, photo=_png(1, 1), filename="chart.png")


async def test_blocked_chat_keeps_answering_403(fake: FakeTelegram, app: App) -> None:
    fake.block(LEAD_CHAT)

    for _ in range(2):
        with pytest.raises(Forbidden):
            await app.bot.send_message(LEAD_CHAT, "hi")
    await app.bot.send_message(ADMIN, "still fine")
    assert [s.chat_id for s in fake.sent] == [ADMIN]


async def test_bad_requests_raise_bad_request(fake: FakeTelegram, app: App) -> None:
    with pytest.raises(BadRequest, match=r"(?i)message to edit not found"):
        await app.bot.edit_message_text("x", chat_id=ADMIN, message_id=99)
    with pytest.raises(BadRequest, match=r"(?i)message is too long"):
        await app.bot.send_message(ADMIN, "x" * 4097)
    fake.fail_next("sendMessage", 400, "Bad Request: chat not found")
    with pytest.raises(BadRequest, match=r"(?i)chat not found"):
        await app.bot.send_message(ADMIN, "x")


async def test_unknown_method_is_not_found(fake: FakeTelegram, app: App) -> None:
    with pytest.raises(EndPointNotFound):
        await app.bot.do_api_request("noSuchMethod")

    assert fake.calls[-1].method == "noSuchMethod"


async def test_wrong_token_is_unauthorized(fake: FakeTelegram) -> None:
    application = _build(fake, token="1:wrong")

    try:
        with pytest.raises(InvalidToken, match="rejected by the server"):
            await application.initialize()
    finally:
        # A failed initialize() leaves the HTTP clients open and Application.shutdown()
        # skips an application that never initialised; only the bot can close them.
        await application.bot.shutdown()
    assert fake.calls == []


async def test_edit_message_text_updates_the_message(fake: FakeTelegram, app: App) -> None:
    original = await app.bot.send_message(ADMIN, "Importing…")

    edited = await app.bot.edit_message_text("Imported 3", chat_id=ADMIN, message_id=1)

    assert isinstance(edited, type(original))
    assert (edited.message_id, edited.text) == (original.message_id, "Imported 3")
    assert edited.edit_date is not None
    assert [(s.method, s.text) for s in fake.sent] == [
        ("sendMessage", "Importing…"),
        ("editMessageText", "Imported 3"),
    ]
    assert fake.message(ADMIN, 1)["text"] == "Imported 3"


async def test_reply_to_a_bot_message_round_trips(fake: FakeTelegram, app: App) -> None:
    async def answer(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        assert message is not None and message.reply_to_message is not None
        quoted = message.reply_to_message
        await message.reply_text(
            f"to {quoted.message_id} ({quoted.text}): {message.text}", do_quote=True
        )

    app.add_handler(MessageHandler(filters.REPLY & filters.TEXT, answer))
    forwarded = await app.bot.send_message(ADMIN, "Lead +15550001: is it free?")
    await _start_polling(app)

    fake.send_text(ADMIN, "Yes, it is", reply_to=forwarded.message_id)

    [_, reply] = await fake.wait_for_sent(n=2, chat_id=ADMIN)
    assert reply.text == f"to {forwarded.message_id} (Lead +15550001: is it free?): Yes, it is"
    # The user's message took id 2, the answer quotes it.
    assert reply.reply_to_message_id == 2
    assert reply.message["reply_to_message"]["text"] == "Yes, it is"


async def test_shutdown_is_clean(fake: FakeTelegram) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        application = _build(fake)

        async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
            assert update.effective_message is not None
            await update.effective_message.reply_text("hi")

        application.add_handler(CommandHandler("start", start))
        await application.initialize()
        await _start_polling(application)
        update = fake.send_text(ADMIN, "/start")
        await fake.wait_for_sent()
        assert application.updater is not None
        await application.updater.stop()
        await application.stop()
        await application.shutdown()
        await fake.stop()

    assert [str(w.message) for w in caught] == []
    last = fake.calls_of("getUpdates")[-1]
    assert (last.params["timeout"], last.params["offset"]) == (0, update["update_id"] + 1)
    others = asyncio.all_tasks() - {asyncio.current_task()}
    assert others == set()


async def test_get_updates_offset_semantics_and_long_poll(fake: FakeTelegram) -> None:
    url = f"{fake.root}/bot{TOKEN}/getUpdates"
    first = fake.send_text(ADMIN, "one")["update_id"]
    fake.send_text(ADMIN, "two")

    async with aiohttp.ClientSession() as http:

        async def poll(**params: Any) -> list[int]:
            async with http.post(url, json=params) as resp:
                body = await resp.json()
            assert body["ok"] is True
            return [u["update_id"] for u in body["result"]]

        assert await poll() == [first, first + 1]
        assert await poll(offset=0) == [first, first + 1]  # still pending
        assert await poll(offset=first + 1, limit=1) == [first + 1]
        waiting = asyncio.create_task(poll(offset=first + 2, timeout=30))
        await fake.wait_for_call("getUpdates", n=4)
        assert not waiting.done()
        third = fake.send_text(ADMIN, "three")["update_id"]
        assert await asyncio.wait_for(waiting, 1.0) == [third]


@pytest.mark.parametrize("encoding", ["json", "query", "form"])
async def test_json_query_and_form_bodies_are_accepted(fake: FakeTelegram, encoding: str) -> None:
    url = f"{fake.root}/bot{TOKEN}/sendMessage"
    params = {"chat_id": "7", "text": "42"}
    async with aiohttp.ClientSession() as http:
        if encoding == "json":
            request = http.post(url, json={"chat_id": 7, "text": "42"})
        elif encoding == "query":
            request = http.get(url, params=params)
        else:
            request = http.post(url, data=params)
        async with request as resp:
            body = await resp.json()

    assert body["result"]["text"] == "42"
    assert fake.sent[0].params == {"chat_id": 7, "text": "42"}


async def test_stop_ends_a_pending_long_poll(fake: FakeTelegram) -> None:
    async with aiohttp.ClientSession() as http:

        async def poll() -> Any:
            async with http.post(f"{fake.root}/bot{TOKEN}/getUpdates?timeout=30") as resp:
                return await resp.json()

        waiting = asyncio.create_task(poll())
        await fake.wait_for_call("getUpdates")
        await asyncio.wait_for(fake.stop(), 1.0)
        assert await asyncio.wait_for(waiting, 1.0) == {"ok": True, "result": []}


async def test_errors_have_telegrams_envelope(fake: FakeTelegram) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{fake.root}/botBAD/getMe") as resp:
            unauthorized = (resp.status, await resp.json())
        async with http.post(f"{fake.root}/bot{TOKEN}/fooBar") as resp:
            unknown = (resp.status, await resp.json())
        fake.fail_next("getMe")
        async with http.post(f"{fake.root}/bot{TOKEN}/getMe") as resp:
            limited = (resp.status, await resp.json())

    assert unauthorized == (401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
    assert unknown == (
        404,
        {"ok": False, "error_code": 404, "description": "Not Found: method not found"},
    )
    assert limited == (
        429,
        {
            "ok": False,
            "error_code": 429,
            "description": "Too Many Requests: retry after 1",
            "parameters": {"retry_after": 1},
        },
    )


async def test_wait_for_sent_times_out_with_what_was_sent(fake: FakeTelegram, app: App) -> None:
    await app.bot.send_message(ADMIN, "only one")

    with pytest.raises(AssertionError, match="only one"):
        await fake.wait_for_sent(n=2, timeout=0.05)
