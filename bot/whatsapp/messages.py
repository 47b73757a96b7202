"""The JSON bodies of ``POST /{phone_number_id}/messages``, built as plain dicts.

Pure functions so the exact wire shape is testable without HTTP and cheap enough to build
thousands of times a second.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

MEDIA_TYPES = frozenset({"image", "video", "document", "audio"})
HEADER_MEDIA_TYPES = frozenset({"image", "video", "document"})


def recipient(to: str) -> str:
    """The number with its ``+``: without it Meta prepends the *business* number's country code,
    which can reach the wrong person."""
    number = to.strip()
    return number if number.startswith("+") else f"+{number}"


def _envelope(to: str, kind: str, callback_data: str | None) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": recipient(to),
        "type": kind,
    }
    if callback_data is not None:
        payload["biz_opaque_callback_data"] = callback_data
    return payload


def text_message(
    to: str, body: str, *, preview_url: bool = False, callback_data: str | None = None
) -> dict[str, Any]:
    payload = _envelope(to, "text", callback_data)
    payload["text"] = {"body": body, "preview_url": preview_url}
    return payload


def media_message(
    to: str,
    media_type: str,
    link: str,
    caption: str | None = None,
    callback_data: str | None = None,
    filename: str | None = None,
) -> dict[str, Any]:
    """A media message by link. Audio takes no caption and only documents take a filename:
    Meta rejects the others, so they are left out rather than sent."""
    if media_type not in MEDIA_TYPES:
        raise ValueError(f"unknown media type {media_type!r}")
    media: dict[str, Any] = {"link": link}
    if caption and media_type != "audio":
        media["caption"] = caption
    if filename and media_type == "document":
        media["filename"] = filename
    payload = _envelope(to, media_type, callback_data)
    payload[media_type] = media
    return payload


def template_message(
    to: str,
    name: str,
    language: str,
    body_params: Sequence[str] = (),
    header: tuple[str, str] | None = None,
    callback_data: str | None = None,
) -> dict[str, Any]:
    """An approved template with positional body parameters and an optional header medium
    given as ``(media type, link)``."""
    components: list[dict[str, Any]] = []
    if header is not None:
        header_type, link = header
        if header_type not in HEADER_MEDIA_TYPES:
            raise ValueError(f"a template header cannot be {header_type!r}")
        components.append(
            {"type": "header", "parameters": [{"type": header_type, header_type: {"link": link}}]}
        )
    if body_params:
        components.append(
            {"type": "body", "parameters": [{"type": "text", "text": p} for p in body_params]}
        )
    template: dict[str, Any] = {"name": name, "language": {"code": language}}
    if components:
        template["components"] = components
    payload = _envelope(to, "template", callback_data)
    payload["template"] = template
    return payload
