"""A fake WhatsApp Graph API on 127.0.0.1, for tests and throughput benchmarks.

It answers sends the way Meta does (unique wamids, the real success and error shapes),
records every request, and can be scripted to fail: the next N sends, one recipient, a
seeded share of chaos (429, 5xx, timeouts), latency, hanging, a wrong token. Media look-ups
and downloads work against media added with :meth:`FakeGraph.add_media`. The work per request
is kept small so benchmarks measure the client, not the fake.

Like Meta, it can also report what became of each accepted message: with
:meth:`FakeGraph.echo_statuses` every accepted send is followed by signed status webhooks
(``sent``, ``delivered``) to a receiver, retried with backoff while the receiver is down or
refuses them, so a sender whose answer was lost can be settled by its status.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import random
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import aiohttp
from aiohttp import web

from bot.whatsapp.errors import ERROR_MEANINGS
from bot.whatsapp.signature import sign

API_VERSION = "v25.0"
TOKEN = "test-token"

ChaosKind = Literal["rate_limit", "server_error", "bad_gateway", "timeout"]
CHAOS_KINDS: tuple[ChaosKind, ...] = ("rate_limit", "server_error", "bad_gateway", "timeout")

#: the WhatsApp Business Account id the status webhooks name (any digits would do)
WABA_ID = "102030405060708"
#: status webhook retries: the first pause, and the longest (Meta's schedule, sped up)
ECHO_RETRY_FIRST = 0.05
ECHO_RETRY_CAP = 0.5
#: how long one status POST may take before it counts as refused
ECHO_POST_TIMEOUT = 5.0


@dataclass(slots=True)
class RecordedRequest:
    method: str
    path: str
    headers: Mapping[str, str]
    #: the parsed JSON body (None for bodiless or unparsable requests)
    json: Any
    monotonic: float
    #: seconds since the epoch, when the request arrived
    wall: float
    #: the status answered (0 while unanswered, e.g. hanging)
    status: int = 0
    #: the wamid given, when the fake accepted the message
    wamid: str | None = None

    @property
    def to(self) -> str | None:
        return self.json.get("to") if isinstance(self.json, dict) else None


@dataclass(frozen=True, slots=True)
class Failure:
    """A scripted answer: a Graph error body with ``code``, or (``code=None``) a bare text body,
    as a proxy in front of Meta would give. ``hang`` never answers; with ``accept`` the message
    counts as sent first (the request reached Meta, the answer was lost)."""

    code: int | None
    http_status: int = 400
    message: str | None = None
    hang: bool = False
    accept: bool = False


@dataclass(slots=True)
class EchoedStatus:
    """One status webhook for an accepted message, as the fake posted it."""

    wamid: str
    status: str
    #: ``biz_opaque_callback_data`` of the send, echoed back
    callback_data: str | None
    #: POSTs made so far (refused ones included)
    attempts: int = 0
    #: seconds since the epoch when the receiver answered 200 (None until then)
    delivered_wall: float | None = None


@dataclass(frozen=True, slots=True)
class _EchoTarget:
    url: str
    app_secret: str
    statuses: tuple[str, ...]
    delay: float


@dataclass(slots=True)
class _RecipientRule:
    failure: Failure
    remaining: int | None


class FakeGraph:
    def __init__(self, *, token: str = TOKEN, latency: float = 0.0) -> None:
        self.token = token
        #: seconds to wait before answering any request
        self.latency = latency
        #: when true, sends are never answered (the client times out)
        self.hang = False
        #: whether a hanging send still counts as sent (Meta got it, the answer was lost)
        self.hang_accepts = True
        self.requests: list[RecordedRequest] = []
        self.sent: list[RecordedRequest] = []
        self._bearer = f"Bearer {token}"
        self._wamids = itertools.count(1)
        self._traces = itertools.count(1)
        self._next_failures: deque[Failure] = deque()
        self._recipient_rules: dict[str, _RecipientRule] = {}
        self._chaos_ratio = 0.0
        self._chaos_kinds: Sequence[ChaosKind] = CHAOS_KINDS
        self._rng = random.Random(0)
        self._media: dict[str, tuple[bytes, str, int, bool]] = {}
        self._waiters: list[tuple[bool, int, asyncio.Future[None]]] = []
        self._released: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self._root = ""
        #: every status webhook scheduled by :meth:`echo_statuses`, in acceptance order
        self.echoes: list[EchoedStatus] = []
        self._echo: _EchoTarget | None = None
        self._echo_session: aiohttp.ClientSession | None = None
        self._echo_tasks: set[asyncio.Task[None]] = set()
        self._echo_undelivered = 0
        self._echo_error: BaseException | None = None
        self._echo_idle = asyncio.Event()
        self._echo_idle.set()

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The Graph base including the version, as ``DRIPBOT_WHATSAPP_API_URL`` takes it."""
        if not self._root:
            raise RuntimeError("FakeGraph is not started")
        return f"{self._root}/{API_VERSION}"

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post(r"/{version:v\d+\.\d+}/{phone_number_id}/messages", self._send)
        app.router.add_get(r"/{version:v\d+\.\d+}/{media_id}", self._media_info)
        app.router.add_get("/download/{media_id}", self._download)
        app.router.add_route("*", "/{tail:.*}", self._unknown)
        self._released = asyncio.Event()
        self._runner = web.AppRunner(
            app, handler_cancellation=True, access_log=None, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self._root = f"http://{host}:{port}"
        return self.base_url

    async def stop(self) -> None:
        if self._released is not None:
            self._released.set()
        await self._stop_echoes()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for _, _, future in self._waiters:
            future.cancel()
        self._waiters.clear()

    async def __aenter__(self) -> FakeGraph:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- scripting -------------------------------------------------------------------------

    def fail_next(
        self,
        n: int = 1,
        code: int | None = 131000,
        http_status: int = 400,
        message: str | None = None,
    ) -> None:
        """Fail the next ``n`` sends; ``code=None`` answers a non-JSON body."""
        self._next_failures.extend([Failure(code, http_status, message)] * n)

    def fail_for(
        self,
        to: str,
        code: int | None,
        http_status: int = 400,
        message: str | None = None,
        times: int | None = None,
    ) -> None:
        """Fail every send to ``to`` (or only the next ``times``)."""
        self._recipient_rules[to.lstrip("+")] = _RecipientRule(
            Failure(code, http_status, message), times
        )

    def chaos(
        self, ratio: float, *, seed: int = 0, kinds: Sequence[ChaosKind] = CHAOS_KINDS
    ) -> None:
        """Fail a seeded random ``ratio`` of sends with one of ``kinds``; ``ratio=0`` stops it."""
        self._chaos_ratio = ratio
        self._chaos_kinds = tuple(kinds)
        self._rng = random.Random(seed)

    def add_media(
        self,
        media_id: str,
        content: bytes,
        mime_type: str = "application/octet-stream",
        *,
        file_size: int | None = None,
        chunked: bool = False,
    ) -> None:
        """Serve ``content`` for ``media_id``; ``file_size`` overrides the declared size and
        ``chunked`` leaves out Content-Length, so a size cap must act while streaming."""
        declared = len(content) if file_size is None else file_size
        self._media[media_id] = (content, mime_type, declared, chunked)

    def reset(self) -> None:
        """Forget recorded requests and scripted failures."""
        self.requests.clear()
        self.sent.clear()
        self._next_failures.clear()
        self._recipient_rules.clear()
        self._chaos_ratio = 0.0
        self.hang = False
        self.latency = 0.0

    # -- status webhooks -----------------------------------------------------------------

    def echo_statuses(
        self,
        webhook_url: str,
        app_secret: str,
        statuses: Sequence[str] = ("sent", "delivered"),
        delay: float = 0.05,
    ) -> None:
        """From now on, follow every accepted send with its ``statuses``, as Meta does.

        ``delay`` seconds after the acceptance the statuses are POSTed one after the other to
        ``webhook_url``, in Meta's shape and signed with ``app_secret``; each is retried with
        backoff until the receiver answers 200 (connection refused, a timeout or any other
        status is retried), until :meth:`stop`. A hanging send that still counts as accepted
        is echoed too: that is how its sender learns the outcome. :meth:`reset` leaves the
        echo on.
        """
        self._echo = _EchoTarget(webhook_url, app_secret, tuple(statuses), delay)

    # A plain ``timeout`` argument reads best in tests, as for the other waits.
    async def wait_echoes_delivered(self, timeout: float = 10.0) -> list[EchoedStatus]:  # noqa: ASYNC109
        """Wait until every status webhook scheduled so far was answered 200."""
        try:
            await asyncio.wait_for(self._echo_idle.wait(), timeout)
        except TimeoutError:
            raise TimeoutError(
                f"waited {timeout}s for status webhooks, {self._echo_undelivered} not yet delivered"
            ) from None
        if self._echo_error is not None:
            raise RuntimeError("posting a status webhook failed") from self._echo_error
        return list(self.echoes)

    def _schedule_echo(self, request: web.Request, payload: dict[str, Any], wamid: str) -> None:
        target = self._echo
        if target is None or not target.statuses:
            return
        callback = payload.get("biz_opaque_callback_data")
        callback_data = str(callback) if callback is not None else None
        echoes = [EchoedStatus(wamid, status, callback_data) for status in target.statuses]
        self.echoes.extend(echoes)
        self._echo_undelivered += len(echoes)
        self._echo_idle.clear()
        value = {
            "messaging_product": "whatsapp",
            "metadata": {
                "display_phone_number": "15550100001",
                "phone_number_id": request.match_info.get("phone_number_id", ""),
            },
        }
        recipient = str(payload["to"]).lstrip("+")
        task = asyncio.create_task(
            self._deliver_echoes(target, value, recipient, echoes, int(time.time()))
        )
        self._echo_tasks.add(task)
        task.add_done_callback(self._echo_done)

    def _echo_done(self, task: asyncio.Task[None]) -> None:
        self._echo_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # Kept for wait_echoes_delivered to raise: a bug here must not pass as silence.
            self._echo_error = task.exception()
            self._echo_idle.set()

    async def _deliver_echoes(
        self,
        target: _EchoTarget,
        value: dict[str, Any],
        recipient: str,
        echoes: list[EchoedStatus],
        accepted_at: int,
    ) -> None:
        await asyncio.sleep(target.delay)
        if self._echo_session is None:
            self._echo_session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=ECHO_POST_TIMEOUT)
            )
        for echo in echoes:
            status: dict[str, Any] = {
                "id": echo.wamid,
                "status": echo.status,
                "timestamp": str(accepted_at),
                "recipient_id": recipient,
            }
            if echo.callback_data is not None:
                status["biz_opaque_callback_data"] = echo.callback_data
            if echo.status in ("sent", "delivered"):
                status["pricing"] = {
                    "billable": True,
                    "pricing_model": "PMP",
                    "category": "marketing",
                    "type": "regular",
                }
            body = {
                "object": "whatsapp_business_account",
                "entry": [
                    {
                        "id": WABA_ID,
                        "changes": [{"value": value | {"statuses": [status]}, "field": "messages"}],
                    }
                ],
            }
            await self._post_until_taken(target, echo, json.dumps(body).encode())
            self._echo_undelivered -= 1
        if self._echo_undelivered == 0:
            self._echo_idle.set()

    async def _post_until_taken(self, target: _EchoTarget, echo: EchoedStatus, body: bytes) -> None:
        assert self._echo_session is not None
        headers = {
            "Content-Type": "application/json",
            "X-Hub-Signature-256": sign(body, target.app_secret),
        }
        pause = ECHO_RETRY_FIRST
        while True:
            echo.attempts += 1
            try:
                async with self._echo_session.post(target.url, data=body, headers=headers) as res:
                    await res.read()
                    if res.status == 200:
                        echo.delivered_wall = time.time()
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass  # the receiver is down or slow: Meta tries again later
            await asyncio.sleep(pause)
            pause = min(pause * 2, ECHO_RETRY_CAP)

    async def _stop_echoes(self) -> None:
        tasks = list(self._echo_tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._echo_tasks.clear()
        if self._echo_session is not None:
            await self._echo_session.close()
            self._echo_session = None

    # -- waiting ---------------------------------------------------------------------------

    # A plain ``timeout`` argument reads best in tests: ``wait_for_sends(3, timeout=1)``.
    async def wait_for_sends(self, n: int, timeout: float = 5.0) -> list[RecordedRequest]:  # noqa: ASYNC109
        """Wait until ``n`` messages were accepted; returns the accepted sends."""
        await self._wait(True, n, timeout)
        return list(self.sent)

    async def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[RecordedRequest]:  # noqa: ASYNC109
        """Wait until ``n`` requests of any kind arrived (failed sends included)."""
        await self._wait(False, n, timeout)
        return list(self.requests)

    async def _wait(self, sends: bool, n: int, seconds: float) -> None:
        if len(self.sent if sends else self.requests) >= n:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (sends, n, future)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(future, seconds)
        except TimeoutError:
            have = len(self.sent if sends else self.requests)
            what = "sends" if sends else "requests"
            raise TimeoutError(f"waited {seconds}s for {n} {what}, got {have}") from None
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)

    def _notify(self) -> None:
        sent, requests = len(self.sent), len(self.requests)
        for sends, n, future in self._waiters:
            if (sent if sends else requests) >= n and not future.done():
                future.set_result(None)

    # -- handlers --------------------------------------------------------------------------

    def _record(self, request: web.Request, body: Any) -> RecordedRequest:
        record = RecordedRequest(
            request.method, request.path, request.headers, body, time.monotonic(), time.time()
        )
        self.requests.append(record)
        if self._waiters:
            self._notify()
        return record

    async def _send(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = None
        record = self._record(request, payload)
        if self.latency:
            await asyncio.sleep(self.latency)
        if request.headers.get("Authorization") != self._bearer:
            return self._error(record, Failure(190, 401))
        if not isinstance(payload, dict) or "to" not in payload:
            return self._error(record, Failure(100, 400, "the request body is not a message"))
        failure = self._failure_for(str(payload["to"]))
        if failure is None and self.hang:
            failure = Failure(None, hang=True, accept=self.hang_accepts)
        if failure is None:
            return self._accept(record, payload, request)
        if failure.hang:
            if failure.accept:
                self._accept(record, payload, request)
                record.status = 0
            assert self._released is not None
            await self._released.wait()
            return web.Response(status=503)
        return self._error(record, failure)

    def _failure_for(self, to: str) -> Failure | None:
        if self._next_failures:
            return self._next_failures.popleft()
        if self._recipient_rules:
            rule = self._recipient_rules.get(to.lstrip("+"))
            if rule is not None:
                if rule.remaining is not None:
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        del self._recipient_rules[to.lstrip("+")]
                return rule.failure
        if self._chaos_ratio and self._rng.random() < self._chaos_ratio:
            return self._chaos_failure(self._rng.choice(self._chaos_kinds))
        return None

    def _chaos_failure(self, kind: ChaosKind) -> Failure:
        if kind == "rate_limit":
            return Failure(130429, 429)
        if kind == "server_error":
            code, status = self._rng.choice(((131000, 500), (131016, 503), (2, 503)))
            return Failure(code, status)
        if kind == "bad_gateway":
            return Failure(None, 502)
        return Failure(None, hang=True, accept=self.hang_accepts)

    def _accept(
        self, record: RecordedRequest, payload: dict[str, Any], request: web.Request
    ) -> web.Response:
        wamid = f"wamid.{next(self._wamids)}"
        to = str(payload["to"])
        message: dict[str, str] = {"id": wamid}
        if payload.get("type") == "template":
            message["message_status"] = "accepted"
        body = {
            "messaging_product": "whatsapp",
            "contacts": [{"input": to, "wa_id": to.lstrip("+")}],
            "messages": [message],
        }
        record.status = 200
        record.wamid = wamid
        self.sent.append(record)
        if self._waiters:
            self._notify()
        if self._echo is not None:
            self._schedule_echo(request, payload, wamid)
        return web.Response(body=json.dumps(body).encode(), content_type="application/json")

    def _error(self, record: RecordedRequest | None, failure: Failure) -> web.Response:
        if record is not None:
            record.status = failure.http_status
        if failure.code is None:
            return web.Response(
                status=failure.http_status,
                text="<html>Bad Gateway</html>",
                content_type="text/html",
            )
        meaning = ERROR_MEANINGS.get(failure.code, "error")
        body = {
            "error": {
                "message": f"(#{failure.code}) {meaning}",
                "type": "OAuthException",
                "code": failure.code,
                "error_data": {
                    "messaging_product": "whatsapp",
                    "details": failure.message or meaning,
                },
                "fbtrace_id": f"fake-trace-{next(self._traces)}",
            }
        }
        return web.Response(
            status=failure.http_status,
            body=json.dumps(body).encode(),
            content_type="application/json",
        )

    async def _media_info(self, request: web.Request) -> web.Response:
        record = self._record(request, None)
        if self.latency:
            await asyncio.sleep(self.latency)
        if request.headers.get("Authorization") != self._bearer:
            return self._error(record, Failure(190, 401))
        media_id = request.match_info["media_id"]
        media = self._media.get(media_id)
        if media is None:
            return self._error(record, Failure(100, 400, f"unknown media id {media_id}"))
        content, mime_type, declared, _ = media
        record.status = 200
        return web.json_response(
            {
                "messaging_product": "whatsapp",
                "url": f"{self._root}/download/{media_id}",
                "mime_type": mime_type,
                "sha256": hashlib.sha256(content).hexdigest(),
                "file_size": declared,
                "id": media_id,
            }
        )

    async def _download(self, request: web.Request) -> web.StreamResponse:
        record = self._record(request, None)
        if request.headers.get("Authorization") != self._bearer:
            return self._error(record, Failure(190, 401))
        media = self._media.get(request.match_info["media_id"])
        if media is None:
            return self._error(record, Failure(100, 404, "no such media"))
        content, mime_type, _, chunked = media
        record.status = 200
        if not chunked:
            return web.Response(body=content, content_type=mime_type)
        response = web.StreamResponse(headers={"Content-Type": mime_type})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(content), 16 * 1024):
            await response.write(content[start : start + 16 * 1024])
        await response.write_eof()
        return response

    async def _unknown(self, request: web.Request) -> web.Response:
        record = self._record(request, None)
        return self._error(record, Failure(100, 400, "unsupported request"))
