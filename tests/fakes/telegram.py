"""A fake Telegram Bot API server on 127.0.0.1.

The real python-telegram-bot talks real HTTP to it, so tests cover request encoding
(form, multipart), offsets of the polling loop and the mapping of error answers to PTB
exceptions instead of trusting a mocked ``Bot``. Point PTB at it with
``base_url(f"{root}/bot")`` and ``base_file_url(f"{root}/file/bot")``.
"""

from __future__ import annotations

import asyncio
import json
import struct
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from types import TracebackType
from typing import Any

from aiohttp import BodyPartReader, hdrs, web

from scheduler.clock import Clock, SystemClock

TOKEN = "4242:fake-telegram-token"
BOT_ID = 4242
BOT_USERNAME = "DripTestBot"
BOT_USER: dict[str, Any] = {
    "id": BOT_ID,
    "is_bot": True,
    "first_name": "Drip Test Bot",
    "username": BOT_USERNAME,
    "can_join_groups": True,
    "can_read_all_group_messages": False,
    "supports_inline_queries": False,
}
BLOCKED = "Forbidden: bot was blocked by the user"

# Parameters whose values are strings on Telegram's side: never JSON-decoded, so a text of
# "42" stays a string.
_STRING_PARAMS = frozenset(
    {
        "text",
        "caption",
        "parse_mode",
        "url",
        "secret_token",
        "file_id",
        "callback_query_id",
        "inline_message_id",
        "language_code",
        "ip_address",
        "description",
        "short_description",
        "name",
        "title",
        "emoji",
        "action",
        "business_connection_id",
    }
)
#: send method -> the parameter that carries its file
_SEND_METHODS: dict[str, str | None] = {
    "sendMessage": None,
    "sendPhoto": "photo",
    "sendDocument": "document",
}
#: methods that fail with 403 once the user has blocked the bot
_CHAT_METHODS = frozenset({*_SEND_METHODS, "editMessageText", "sendChatAction"})


@dataclass(frozen=True)
class Upload:
    """One file part of a multipart request, exactly as it came over the wire."""

    name: str
    data: bytes
    filename: str | None
    content_type: str | None


@dataclass(frozen=True)
class Call:
    """One authorised request, whatever its outcome (failed ones included)."""

    method: str
    params: dict[str, Any]


@dataclass
class Sent:
    """A message the bot sent or edited, with what tests usually assert on lifted out."""

    method: str
    chat_id: int | str | None
    text: str | None
    caption: str | None
    reply_to_message_id: int | None
    reply_markup: Any
    file: bytes | None
    filename: str | None
    content_type: str | None
    parse_mode: str | None
    params: dict[str, Any]
    message: dict[str, Any] = field(default_factory=dict)

    @property
    def message_id(self) -> int:
        return int(self.message["message_id"])


@dataclass(frozen=True)
class StoredFile:
    file_id: str
    file_unique_id: str
    data: bytes
    filename: str | None
    mime_type: str | None
    file_path: str


@dataclass
class _Failure:
    error_code: int
    description: str
    retry_after: int | None


class ApiError(Exception):
    """Raised inside a method to answer with a Bot API error envelope."""

    def __init__(
        self, error_code: int, description: str, parameters: dict[str, Any] | None = None
    ) -> None:
        super().__init__(description)
        self.error_code = error_code
        self.description = description
        self.parameters = parameters

    def response(self) -> web.Response:
        body: dict[str, Any] = {
            "ok": False,
            "error_code": self.error_code,
            "description": self.description,
        }
        if self.parameters:
            body["parameters"] = self.parameters
        return web.json_response(body, status=self.error_code)


def _decode(key: str, value: Any) -> Any:
    """PTB json-dumps every non-str parameter; undo that the way Telegram would."""
    if not isinstance(value, str) or key in _STRING_PARAMS:
        return value
    if value in ("true", "false", "null") or value[:1] in ("{", "[", "-", *"0123456789"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _utf16_len(text: str) -> int:
    """Entity offsets and lengths count UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def _command_entities(text: str | None) -> list[dict[str, Any]]:
    if not text or not text.startswith("/"):
        return []
    command = text.split(maxsplit=1)[0]
    return [{"type": "bot_command", "offset": 0, "length": _utf16_len(command)}]


def _image_size(data: bytes) -> tuple[int, int]:
    """Width and height of a PNG (what the bot's charts are); other images pretend to be 1x1."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    return 1, 1


def _user(user_id: int) -> dict[str, Any]:
    return {
        "id": user_id,
        "is_bot": False,
        "first_name": f"User {user_id}",
        "language_code": "en",
    }


def _chat(chat_id: int) -> dict[str, Any]:
    if chat_id < 0:
        return {"id": chat_id, "type": "group", "title": f"Group {chat_id}"}
    return {"id": chat_id, "type": "private", "first_name": f"User {chat_id}"}


def _as_int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class FakeTelegram:
    """The Bot API methods the admin bot uses, plus helpers to play the user's side.

    Use as ``async with FakeTelegram() as fake:``; ``fake.root`` is the server root.
    """

    def __init__(self, token: str = TOKEN, *, clock: Clock | None = None) -> None:
        self.token = token
        self.clock: Clock = clock or SystemClock()
        self.root = ""
        self.calls: list[Call] = []
        self.sent: list[Sent] = []
        self.my_commands: list[dict[str, Any]] = []
        self.webhook_url = ""
        self.webhook_secret: str | None = None
        self.blocked_chats: set[int] = set()
        self.files: dict[str, StoredFile] = {}
        self._paths: dict[str, str] = {}
        self._file_seq = 0
        self._update_seq = 0
        self._updates: list[dict[str, Any]] = []
        self._message_seq: dict[int, int] = defaultdict(int)
        self._messages: dict[tuple[int, int], dict[str, Any]] = {}
        self._failures: dict[str, deque[_Failure]] = defaultdict(deque)
        self._changed = asyncio.Event()
        self._closing = False
        self._runner: web.AppRunner | None = None
        handlers: dict[str, Callable[[str, dict[str, Any]], Awaitable[Any]]] = {
            "getMe": self._get_me,
            "logOut": self._true,
            "close": self._true,
            "getUpdates": self._get_updates,
            "deleteWebhook": self._delete_webhook,
            "setWebhook": self._set_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "sendMessage": self._send,
            "sendPhoto": self._send,
            "sendDocument": self._send,
            "editMessageText": self._edit_message_text,
            "sendChatAction": self._true,
            "answerCallbackQuery": self._true,
            "deleteMessage": self._true,
            "getFile": self._get_file,
        }
        # Telegram matches method names case-insensitively.
        self._methods = {name.lower(): (name, fn) for name, fn in handlers.items()}

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_method)
        app.router.add_get("/file/bot{token}/{file_path:.+}", self._handle_file)
        # Cancelling the handler when PTB drops its long poll ends the server-side wait at once.
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.root = f"http://{host}:{port}"
        return self.root

    async def stop(self) -> None:
        self._closing = True
        self._notify()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeTelegram:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        """What to pass to ``ApplicationBuilder.base_url``."""
        return f"{self.root}/bot"

    @property
    def base_file_url(self) -> str:
        """What to pass to ``ApplicationBuilder.base_file_url``."""
        return f"{self.root}/file/bot"

    # -- the user's side -------------------------------------------------------------------

    def add_file(
        self,
        data: bytes,
        filename: str | None = None,
        mime_type: str | None = None,
        *,
        folder: str = "documents",
    ) -> str:
        """Store bytes as Telegram would after an upload; returns the file_id."""
        self._file_seq += 1
        n = self._file_seq
        suffix = PurePosixPath(filename).suffix if filename else ""
        stored = StoredFile(
            file_id=f"FILE{n:04d}-fake",
            file_unique_id=f"U{n:04d}",
            data=bytes(data),
            filename=filename,
            mime_type=mime_type,
            file_path=f"{folder}/file_{n}{suffix}",
        )
        self.files[stored.file_id] = stored
        self._paths[stored.file_path] = stored.file_id
        return stored.file_id

    def send_text(
        self,
        from_user_id: int,
        text: str,
        chat_id: int | None = None,
        reply_to: int | None = None,
    ) -> dict[str, Any]:
        """Queue a text message from a user; a leading "/" gets a bot_command entity."""
        chat = from_user_id if chat_id is None else chat_id
        message = self._user_message(from_user_id, chat, reply_to)
        message["text"] = text
        if entities := _command_entities(text):
            message["entities"] = entities
        return self.enqueue({"message": message})

    def send_document(
        self,
        from_user_id: int,
        data: bytes,
        filename: str,
        caption: str | None = None,
        mime_type: str = "text/csv",
        *,
        chat_id: int | None = None,
        reply_to: int | None = None,
    ) -> dict[str, Any]:
        """Queue a document from a user; getFile and the download then serve ``data``."""
        chat = from_user_id if chat_id is None else chat_id
        file_id = self.add_file(data, filename, mime_type)
        stored = self.files[file_id]
        message = self._user_message(from_user_id, chat, reply_to)
        message["document"] = {
            "file_id": file_id,
            "file_unique_id": stored.file_unique_id,
            "file_name": filename,
            "mime_type": mime_type,
            "file_size": len(stored.data),
        }
        if caption is not None:
            message["caption"] = caption
            if entities := _command_entities(caption):
                message["caption_entities"] = entities
        return self.enqueue({"message": message})

    def enqueue(self, update: dict[str, Any]) -> dict[str, Any]:
        """Queue any update body (``{"message": ...}``, ``{"callback_query": ...}``)."""
        self._update_seq += 1
        full = {"update_id": self._update_seq, **update}
        self._updates.append(full)
        self._notify()
        return full

    @property
    def pending_updates(self) -> list[dict[str, Any]]:
        """Updates not yet confirmed by a larger getUpdates offset."""
        return list(self._updates)

    def message(self, chat_id: int, message_id: int) -> dict[str, Any]:
        """A message of a chat, as the fake last answered it."""
        return self._messages[(chat_id, message_id)]

    # -- error injection -------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        error_code: int = 429,
        description: str | None = None,
        retry_after: int | None = 1,
        *,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` calls of ``method`` with an error.

        ``retry_after`` is only sent with a 429, as Telegram does; the description
        defaults to Telegram's wording for 429, 403 and 400.
        """
        after = retry_after if error_code == 429 else None
        if description is None:
            description = {
                429: f"Too Many Requests: retry after {after or 1}",
                403: BLOCKED,
                400: "Bad Request: injected failure",
            }.get(error_code, f"Error {error_code}")
        for _ in range(times):
            self._failures[method.lower()].append(_Failure(error_code, description, after))

    def block(self, chat_id: int) -> None:
        """The user blocked the bot: every send to that chat now answers 403."""
        self.blocked_chats.add(chat_id)

    def unblock(self, chat_id: int) -> None:
        self.blocked_chats.discard(chat_id)

    # -- waiting ---------------------------------------------------------------------------

    async def wait_for_sent(
        self,
        n: int = 1,
        chat_id: int | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109 - a default bound keeps a broken test from hanging
        method: str | None = None,
    ) -> list[Sent]:
        """All sent messages matching the filters, once there are at least ``n`` of them."""

        def matching() -> list[Sent]:
            return [
                s
                for s in self.sent
                if (chat_id is None or s.chat_id == chat_id)
                and (method is None or s.method.lower() == method.lower())
            ]

        if not await self._wait_until(lambda: len(matching()) >= n, timeout):
            seen = [(s.method, s.chat_id, s.text or s.caption) for s in self.sent]
            raise AssertionError(
                f"expected {n} sent message(s) (chat_id={chat_id}, method={method}) "
                f"within {timeout}s; sent so far: {seen}"
            )
        return matching()

    async def wait_for_call(
        self,
        method: str,
        n: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109 - as in wait_for_sent
    ) -> list[Call]:
        """All calls of ``method`` once there are at least ``n`` of them."""
        if not await self._wait_until(lambda: len(self.calls_of(method)) >= n, timeout):
            seen = [c.method for c in self.calls]
            raise AssertionError(f"expected {n} {method} call(s) within {timeout}s; got {seen}")
        return self.calls_of(method)

    def calls_of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method.lower() == method.lower()]

    async def _wait_until(self, predicate: Callable[[], bool], seconds: float) -> bool:
        """Wake on every change instead of polling; False if ``seconds`` pass first."""
        try:
            async with asyncio.timeout(seconds):
                while True:
                    changed = self._changed  # taken before the check, so no change is missed
                    if predicate():
                        return True
                    if self._closing:
                        return False
                    await changed.wait()
        except TimeoutError:
            return predicate()

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    # -- HTTP ------------------------------------------------------------------------------

    async def _handle_method(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return ApiError(401, "Unauthorized").response()
        params = await self._read_params(request)
        method, handler = self._methods.get(
            request.match_info["method"].lower(), (request.match_info["method"], None)
        )
        self.calls.append(Call(method, params))
        self._notify()
        if handler is None:
            return ApiError(404, "Not Found: method not found").response()
        try:
            self._check_failure(method, params)
            result = await handler(method, params)
        except ApiError as exc:
            return exc.response()
        return web.json_response({"ok": True, "result": result})

    async def _handle_file(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return ApiError(401, "Unauthorized").response()
        file_id = self._paths.get(request.match_info["file_path"])
        if file_id is None:
            return ApiError(404, "Not Found").response()
        stored = self.files[file_id]
        return web.Response(
            body=stored.data, content_type=stored.mime_type or "application/octet-stream"
        )

    async def _read_params(self, request: web.Request) -> dict[str, Any]:
        raw: dict[str, Any] = dict(request.query)
        if request.content_type == "application/json" and request.can_read_body:
            body = await request.json()
            if isinstance(body, dict):
                raw.update(body)
        elif request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                if not isinstance(part, BodyPartReader) or part.name is None:
                    continue
                if part.filename is not None:
                    raw[part.name] = Upload(
                        name=part.name,
                        data=bytes(await part.read(decode=True)),
                        filename=part.filename,
                        content_type=part.headers.get(hdrs.CONTENT_TYPE),
                    )
                else:
                    raw[part.name] = await part.text()
        elif request.content_type == "application/x-www-form-urlencoded":
            form = await request.post()
            raw.update({k: v for k, v in form.items() if isinstance(v, str)})
        return {key: _decode(key, value) for key, value in raw.items()}

    def _check_failure(self, method: str, params: dict[str, Any]) -> None:
        queue = self._failures.get(method.lower())
        if queue:
            failure = queue.popleft()
            parameters = (
                {"retry_after": failure.retry_after} if failure.retry_after is not None else None
            )
            raise ApiError(failure.error_code, failure.description, parameters)
        if method in _CHAT_METHODS and _as_int(params.get("chat_id")) in self.blocked_chats:
            raise ApiError(403, BLOCKED)

    # -- methods ---------------------------------------------------------------------------

    async def _true(self, method: str, params: dict[str, Any]) -> bool:
        return True

    async def _get_me(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        return dict(BOT_USER)

    async def _get_updates(self, method: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        if self.webhook_url:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = _as_int(params.get("offset")) or 0
        if offset > 0:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        elif offset < 0:
            self._updates = self._updates[offset:]
        limit = max(1, min(100, _as_int(params.get("limit")) or 100))
        allowed = params.get("allowed_updates") or []

        def selected() -> list[dict[str, Any]]:
            if allowed:
                return [u for u in self._updates if any(k in u for k in allowed)][:limit]
            return self._updates[:limit]

        timeout = float(params.get("timeout") or 0)
        if timeout > 0:
            await self._wait_until(lambda: bool(selected()), timeout)
        return selected()

    async def _delete_webhook(self, method: str, params: dict[str, Any]) -> bool:
        self.webhook_url = ""
        self.webhook_secret = None
        if params.get("drop_pending_updates"):
            self._updates.clear()
        return True

    async def _set_webhook(self, method: str, params: dict[str, Any]) -> bool:
        self.webhook_url = str(params.get("url") or "")
        self.webhook_secret = params.get("secret_token")
        if params.get("drop_pending_updates"):
            self._updates.clear()
        return True

    async def _get_webhook_info(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": self.webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }

    async def _set_my_commands(self, method: str, params: dict[str, Any]) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise ApiError(400, "Bad Request: can't parse commands JSON object")
        self.my_commands = commands
        return True

    async def _get_my_commands(self, method: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        return list(self.my_commands)

    async def _delete_my_commands(self, method: str, params: dict[str, Any]) -> bool:
        self.my_commands = []
        return True

    async def _send(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = self._chat_id(params)
        reply_to = self._reply_to_id(params)
        kind = _SEND_METHODS[method]
        content: dict[str, Any] = {}
        upload: Upload | None = None
        stored: StoredFile | None = None
        if kind is None:
            text = params.get("text")
            if not isinstance(text, str) or not text.strip():
                raise ApiError(400, "Bad Request: message text is empty")
            if len(text) > 4096:
                raise ApiError(400, "Bad Request: message is too long")
            content["text"] = text
        else:
            caption = params.get("caption")
            if isinstance(caption, str) and len(caption) > 1024:
                raise ApiError(400, "Bad Request: message caption is too long")
            upload, stored = self._file_param(params, kind)
            content.update(self._media(kind, stored))
            if isinstance(caption, str) and caption:
                content["caption"] = caption
        markup = params.get("reply_markup")
        if isinstance(markup, dict) and "inline_keyboard" in markup:
            content["reply_markup"] = markup
        message = {**self._bot_message(chat_id, reply_to, params), **content}
        self._store(message)
        self.sent.append(
            Sent(
                method=method,
                chat_id=chat_id,
                text=message.get("text"),
                caption=message.get("caption"),
                reply_to_message_id=reply_to,
                reply_markup=markup,
                file=stored.data if stored is not None else None,
                filename=upload.filename if upload is not None else None,
                content_type=upload.content_type if upload is not None else None,
                parse_mode=params.get("parse_mode"),
                params=params,
                message=message,
            )
        )
        self._notify()
        return message

    @staticmethod
    def _media(kind: str, stored: StoredFile) -> dict[str, Any]:
        ids = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": len(stored.data),
        }
        if kind == "photo":
            width, height = _image_size(stored.data)
            return {"photo": [{**ids, "width": width, "height": height}]}
        document: dict[str, Any] = dict(ids)
        if stored.filename:
            document["file_name"] = stored.filename
        if stored.mime_type:
            document["mime_type"] = stored.mime_type
        return {kind: document}

    async def _edit_message_text(
        self, method: str, params: dict[str, Any]
    ) -> dict[str, Any] | bool:
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if params.get("inline_message_id"):
            return True
        chat_id = self._chat_id(params)
        message_id = _as_int(params.get("message_id"))
        message = self._messages.get((chat_id, message_id or 0))
        if message is None:
            raise ApiError(400, "Bad Request: message to edit not found")
        if message["from"]["id"] != BOT_ID:
            raise ApiError(400, "Bad Request: message can't be edited")
        markup = params.get("reply_markup")
        if message.get("text") == text and message.get("reply_markup") == markup:
            raise ApiError(
                400,
                "Bad Request: message is not modified: specified new message content and "
                "reply markup are exactly the same as a current content and reply markup "
                "of the message",
            )
        message = {**message, "text": text, "edit_date": self._now()}
        message.pop("reply_markup", None)
        if isinstance(markup, dict) and "inline_keyboard" in markup:
            message["reply_markup"] = markup
        self._store(message)
        self.sent.append(
            Sent(
                method="editMessageText",
                chat_id=chat_id,
                text=text,
                caption=None,
                reply_to_message_id=None,
                reply_markup=markup,
                file=None,
                filename=None,
                content_type=None,
                parse_mode=params.get("parse_mode"),
                params=params,
                message=message,
            )
        )
        self._notify()
        return message

    async def _get_file(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        stored = self.files.get(str(params.get("file_id") or ""))
        if stored is None:
            raise ApiError(400, "Bad Request: invalid file_id")
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": len(stored.data),
            "file_path": stored.file_path,
        }

    # -- message building ------------------------------------------------------------------

    def _now(self) -> int:
        return int(self.clock.now().timestamp())

    def _chat_id(self, params: dict[str, Any]) -> int:
        chat_id = _as_int(params.get("chat_id"))
        if chat_id is None:
            raise ApiError(400, "Bad Request: chat not found")
        return chat_id

    def _reply_to_id(self, params: dict[str, Any]) -> int | None:
        reply = params.get("reply_parameters")
        if isinstance(reply, dict):
            return _as_int(reply.get("message_id"))
        return _as_int(params.get("reply_to_message_id"))

    def _next_message_id(self, chat_id: int) -> int:
        # A private chat numbers both directions with one sequence, as Telegram does.
        self._message_seq[chat_id] += 1
        return self._message_seq[chat_id]

    def _quoted(self, chat_id: int, message_id: int) -> dict[str, Any] | None:
        quoted = self._messages.get((chat_id, message_id))
        if quoted is None:
            return None
        # Telegram does not nest replies more than one level deep.
        return {k: v for k, v in quoted.items() if k != "reply_to_message"}

    def _user_message(
        self, from_user_id: int, chat_id: int, reply_to: int | None
    ) -> dict[str, Any]:
        quoted = None if reply_to is None else self._quoted(chat_id, reply_to)
        if reply_to is not None and quoted is None:
            raise ValueError(f"no message {reply_to} in chat {chat_id} to reply to")
        message: dict[str, Any] = {
            "message_id": self._next_message_id(chat_id),
            "date": self._now(),
            "chat": _chat(chat_id),
            "from": _user(from_user_id),
        }
        if quoted is not None:
            message["reply_to_message"] = quoted
        self._messages[(chat_id, message["message_id"])] = message
        return message

    def _bot_message(
        self, chat_id: int, reply_to: int | None, params: dict[str, Any]
    ) -> dict[str, Any]:
        quoted = None
        if reply_to is not None:
            quoted = self._quoted(chat_id, reply_to)
            reply = params.get("reply_parameters")
            allow = params.get("allow_sending_without_reply") or (
                isinstance(reply, dict) and reply.get("allow_sending_without_reply")
            )
            if quoted is None and not allow:
                raise ApiError(400, "Bad Request: message to be replied not found")
        message: dict[str, Any] = {
            "message_id": self._next_message_id(chat_id),
            "date": self._now(),
            "chat": _chat(chat_id),
            "from": {k: BOT_USER[k] for k in ("id", "is_bot", "first_name", "username")},
        }
        if quoted is not None:
            message["reply_to_message"] = quoted
        return message

    def _store(self, message: dict[str, Any]) -> None:
        self._messages[(message["chat"]["id"], message["message_id"])] = message

    def _file_param(self, params: dict[str, Any], kind: str) -> tuple[Upload | None, StoredFile]:
        value = params.get(kind)
        if isinstance(value, Upload):
            folder = "photos" if kind == "photo" else "documents"
            file_id = self.add_file(value.data, value.filename, value.content_type, folder=folder)
            return value, self.files[file_id]
        if isinstance(value, str) and value.startswith("attach://"):
            attached = params.get(value.removeprefix("attach://"))
            if isinstance(attached, Upload):
                return self._file_param({**params, kind: attached}, kind)
        if isinstance(value, str) and value in self.files:
            return None, self.files[value]
        if isinstance(value, str) and value.startswith(("http://", "https://")):
            name = PurePosixPath(value.split("?", 1)[0]).name or None
            folder = "photos" if kind == "photo" else "documents"
            file_id = self.add_file(b"", name, None, folder=folder)
            return None, self.files[file_id]
        raise ApiError(400, f"Bad Request: there is no {kind} in the request")
