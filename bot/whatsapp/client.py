"""A thin Graph API client for sending messages and fetching media.

It wraps one shared ``aiohttp.ClientSession`` (connection pooling is what makes thousands of
sends a second possible), pre-builds the URL, headers and timeouts once, and serialises each
payload itself. Every refusal is raised as :class:`WhatsAppApiError` with Meta's code; the
caller decides what it means.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp
from yarl import URL

from bot.whatsapp.errors import MediaTooLargeError, WhatsAppApiError, WhatsAppTransportError

_CHUNK = 64 * 1024
#: built once: ``json.dumps`` with options would build a new encoder on every send
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class SendResult:
    """Meta accepted the message (not yet delivered it)."""

    wamid: str
    wa_id: str | None
    #: the template pacing status (e.g. ``accepted``) when Meta reports one
    message_status: str | None


@dataclass(frozen=True, slots=True)
class MediaInfo:
    media_id: str
    url: str
    mime_type: str | None
    sha256: str | None
    file_size: int | None


class GraphClient:
    """Sends to ``{base_url}/{phone_number_id}/messages`` and reads ``{base_url}/{media_id}``.

    Pass the application's session to share its pool; with ``session=None`` the client opens
    its own on first use and closes it in :meth:`close` (or on leaving ``async with``).
    """

    def __init__(
        self,
        session: aiohttp.ClientSession | None,
        base_url: str,
        token: str,
        phone_number_id: str,
        *,
        timeout: float = 15.0,
        connect_timeout: float = 5.0,
        download_timeout: float = 120.0,
    ) -> None:
        self._session = session
        self._owns_session = session is None
        self._base = base_url.rstrip("/")
        self._token = token
        self._messages_url = URL(f"{self._base}/{phone_number_id}/messages")
        self._auth_headers = {"Authorization": f"Bearer {token}"}
        self._json_headers = {**self._auth_headers, "Content-Type": "application/json"}
        # A separate connect timeout lets a refused or unreachable host be told apart from a
        # request that went out and never got its answer.
        connect = min(connect_timeout, timeout)
        self._timeout = aiohttp.ClientTimeout(total=timeout, connect=connect)
        self._download_timeout = aiohttp.ClientTimeout(total=download_timeout, connect=connect)

    def __repr__(self) -> str:
        return f"GraphClient(base_url={self._base!r}, messages_url={str(self._messages_url)!r})"

    async def __aenter__(self) -> GraphClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the session if this client opened it; a shared one belongs to its owner."""
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def send(self, payload: dict[str, Any]) -> SendResult:
        """POST one message body (see :mod:`bot.whatsapp.messages`)."""
        body = _ENCODER.encode(payload).encode()
        try:
            async with self._http().post(
                self._messages_url, data=body, headers=self._json_headers, timeout=self._timeout
            ) as response:
                status = response.status
                raw = await response.read()
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as err:
            raise WhatsAppTransportError(f"could not connect: {err}", in_doubt=False) from err
        except (aiohttp.ClientError, TimeoutError) as err:
            reason = str(err) or type(err).__name__
            raise WhatsAppTransportError(f"no answer to the send: {reason}", in_doubt=True) from err
        data = _decode(raw)
        if data is not None and "error" not in data:
            try:
                message = data["messages"][0]
                wamid = message["id"]
                contacts = data.get("contacts") or [{}]
                return SendResult(
                    wamid=wamid,
                    wa_id=contacts[0].get("wa_id"),
                    message_status=message.get("message_status"),
                )
            except (KeyError, IndexError, TypeError, AttributeError):
                pass
        raise _api_error(status, data, raw, sending=True)

    async def media_info(self, media_id: str) -> MediaInfo:
        """Where an inbound medium can be downloaded (the URL is short-lived) and its size."""
        data = await self._get_json(f"{self._base}/{media_id}")
        try:
            size = data.get("file_size")
            return MediaInfo(
                media_id=str(data.get("id", media_id)),
                url=str(data["url"]),
                mime_type=data.get("mime_type"),
                sha256=data.get("sha256"),
                file_size=int(size) if size is not None else None,
            )
        except (KeyError, TypeError, ValueError) as err:
            raise WhatsAppApiError(
                f"unexpected media description: {data!r}"[:300], code=None, http_status=200
            ) from err

    async def download_media(self, url: str, max_bytes: int) -> bytes:
        """GET a media URL with the bearer token, refusing anything over ``max_bytes``.

        The token goes with the request, so only pass URLs that came from :meth:`media_info`.
        """
        try:
            async with self._http().get(
                url, headers=self._auth_headers, timeout=self._download_timeout
            ) as response:
                if response.status >= 300:
                    raw = await response.read()
                    raise _api_error(response.status, _decode(raw), raw, sending=False)
                length = response.content_length
                if length is not None and length > max_bytes:
                    raise MediaTooLargeError(length, max_bytes)
                chunks: list[bytes] = []
                received = 0
                async for chunk in response.content.iter_chunked(_CHUNK):
                    received += len(chunk)
                    if received > max_bytes:
                        raise MediaTooLargeError(received, max_bytes)
                    chunks.append(chunk)
                return b"".join(chunks)
        except (aiohttp.ClientError, TimeoutError) as err:
            raise WhatsAppTransportError(f"media download failed: {err}", in_doubt=False) from err

    async def fetch_media(self, media_id: str, max_bytes: int) -> tuple[MediaInfo, bytes]:
        """Look a medium up and download it, refusing it on its declared size first."""
        info = await self.media_info(media_id)
        if info.file_size is not None and info.file_size > max_bytes:
            raise MediaTooLargeError(info.file_size, max_bytes)
        return info, await self.download_media(info.url, max_bytes)

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            async with self._http().get(
                url, headers=self._auth_headers, timeout=self._timeout
            ) as response:
                status = response.status
                raw = await response.read()
        except (aiohttp.ClientError, TimeoutError) as err:
            reason = str(err) or type(err).__name__
            raise WhatsAppTransportError(f"no answer: {reason}", in_doubt=False) from err
        data = _decode(raw)
        if status >= 300 or data is None or "error" in data:
            raise _api_error(status, data, raw, sending=False)
        return data


def _decode(raw: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _as_code(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _api_error(
    status: int, data: dict[str, Any] | None, raw: bytes, *, sending: bool
) -> WhatsAppApiError:
    """Build the error from a Graph error body, or from the bare status when there is none.

    Without a Graph code, a 5xx or an unreadable success may still mean Meta took the message
    (a gateway gave up waiting, say), so a send is flagged in doubt.
    """
    error = data.get("error") if data is not None else None
    if isinstance(error, dict):
        code = error.get("code")
        error_data = error.get("error_data")
        details = error_data.get("details") if isinstance(error_data, dict) else None
        return WhatsAppApiError(
            str(error.get("message") or ""),
            code=_as_code(code),
            http_status=status,
            details=str(details) if details is not None else None,
            fbtrace_id=error.get("fbtrace_id"),
        )
    snippet = raw[:200].decode("utf-8", "replace").strip()
    message = f"unexpected response: {snippet}" if snippet else "empty response"
    in_doubt = sending and (status >= 500 or status < 300)
    return WhatsAppApiError(message, code=None, http_status=status, in_doubt=in_doubt)
