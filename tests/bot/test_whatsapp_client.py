"""The Graph client over real HTTP against the fake Graph API."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from bot.whatsapp.client import GraphClient
from bot.whatsapp.errors import MediaTooLargeError, WhatsAppApiError, WhatsAppTransportError
from bot.whatsapp.messages import media_message, template_message, text_message
from tests.fakes.graph import TOKEN, FakeGraph

PHONE_NUMBER_ID = "1098765432"
ENVELOPE = {"messaging_product": "whatsapp", "recipient_type": "individual"}


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


@pytest.fixture
def client(graph: FakeGraph, session: aiohttp.ClientSession) -> GraphClient:
    return GraphClient(session, graph.base_url, TOKEN, PHONE_NUMBER_ID, timeout=2.0)


PAYLOADS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "text, '+' added, callback data",
        text_message("16505551234", "Hi Ana", callback_data="msg:42"),
        {
            **ENVELOPE,
            "to": "+16505551234",
            "type": "text",
            "biz_opaque_callback_data": "msg:42",
            "text": {"body": "Hi Ana", "preview_url": False},
        },
    ),
    (
        "text with preview",
        text_message("+4915112345678", "See https://example.com", preview_url=True),
        {
            **ENVELOPE,
            "to": "+4915112345678",
            "type": "text",
            "text": {"body": "See https://example.com", "preview_url": True},
        },
    ),
    (
        "image with caption",
        media_message("+16505551234", "image", "https://x.test/a.jpg", "A tip", "msg:7"),
        {
            **ENVELOPE,
            "to": "+16505551234",
            "type": "image",
            "biz_opaque_callback_data": "msg:7",
            "image": {"link": "https://x.test/a.jpg", "caption": "A tip"},
        },
    ),
    (
        "video without caption",
        media_message("+16505551234", "video", "https://x.test/v.mp4"),
        {
            **ENVELOPE,
            "to": "+16505551234",
            "type": "video",
            "video": {"link": "https://x.test/v.mp4"},
        },
    ),
    (
        "document with filename",
        media_message(
            "+16505551234", "document", "https://x.test/d.pdf", "Price list", filename="prices.pdf"
        ),
        {
            **ENVELOPE,
            "to": "+16505551234",
            "type": "document",
            "document": {
                "link": "https://x.test/d.pdf",
                "caption": "Price list",
                "filename": "prices.pdf",
            },
        },
    ),
    (
        "audio drops caption and filename",
        media_message("+16505551234", "audio", "https://x.test/a.ogg", "ignored", filename="a.ogg"),
        {
            **ENVELOPE,
            "to": "+16505551234",
            "type": "audio",
            "audio": {"link": "https://x.test/a.ogg"},
        },
    ),
    (
        "template with header image and body params",
        template_message(
            "16505551234",
            "drip_day3",
            "en_US",
            ["Ana", "SB-1001"],
            header=("image", "https://x.test/h.png"),
            callback_data="msg:9",
        ),
        {
            **ENVELOPE,
            "to": "+16505551234",
            "type": "template",
            "biz_opaque_callback_data": "msg:9",
            "template": {
                "name": "drip_day3",
                "language": {"code": "en_US"},
                "components": [
                    {
                        "type": "header",
                        "parameters": [
                            {"type": "image", "image": {"link": "https://x.test/h.png"}}
                        ],
                    },
                    {
                        "type": "body",
                        "parameters": [
                            {"type": "text", "text": "Ana"},
                            {"type": "text", "text": "SB-1001"},
                        ],
                    },
                ],
            },
        },
    ),
    (
        "template without parameters has no components",
        template_message("+16505551234", "hello_world", "en", []),
        {
            **ENVELOPE,
            "to": "+16505551234",
            "type": "template",
            "template": {"name": "hello_world", "language": {"code": "en"}},
        },
    ),
]


@pytest.mark.parametrize(
    ("payload", "expected"), [(p, e) for _, p, e in PAYLOADS], ids=[name for name, _, _ in PAYLOADS]
)
async def test_each_message_kind_goes_out_as_the_exact_json(
    graph: FakeGraph, client: GraphClient, payload: dict[str, Any], expected: dict[str, Any]
) -> None:
    result = await client.send(payload)

    (request,) = graph.requests
    assert request.json == expected
    assert request.method == "POST"
    assert request.path == f"/v25.0/{PHONE_NUMBER_ID}/messages"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Content-Type"] == "application/json"
    assert result.wamid == request.wamid
    assert result.wa_id == expected["to"].lstrip("+")


async def test_template_sends_report_the_pacing_status(client: GraphClient) -> None:
    template = await client.send(template_message("+111", "t", "en", ["x"]))
    text = await client.send(text_message("+111", "x"))

    assert template.message_status == "accepted"
    assert text.message_status is None
    assert template.wamid != text.wamid


async def test_concurrent_sends_get_unique_wamids(graph: FakeGraph, client: GraphClient) -> None:
    results = await asyncio.gather(
        *(client.send(text_message(f"+1555000{i:04d}", "hi")) for i in range(200))
    )
    sent = await graph.wait_for_sends(200, timeout=5)

    assert len({r.wamid for r in results}) == 200
    assert {r.wamid for r in results} == {s.wamid for s in sent}


@pytest.mark.parametrize(
    ("code", "http_status"),
    [
        (131047, 400),
        (130429, 429),
        (131000, 500),
        (131016, 503),
        (2, 503),
        (131026, 400),
        (132001, 404),
        (368, 403),
        (131056, 200),  # classified by code even on a success status
    ],
)
async def test_graph_errors_carry_the_code_whatever_the_http_status(
    graph: FakeGraph, client: GraphClient, code: int, http_status: int
) -> None:
    graph.fail_next(1, code, http_status, message="details from Meta")

    with pytest.raises(WhatsAppApiError) as caught:
        await client.send(text_message("+16505551234", "hi"))

    error = caught.value
    assert not isinstance(error, WhatsAppTransportError)
    assert error.code == code
    assert error.http_status == http_status
    assert error.details == "details from Meta"
    assert error.fbtrace_id is not None and error.fbtrace_id.startswith("fake-trace-")
    assert error.message.startswith(f"(#{code})")
    assert error.in_doubt is False
    assert error.meaning is not None and error.describe().startswith(f"{code} {error.meaning}")


async def test_a_wrong_token_is_code_190_on_401(
    graph: FakeGraph, session: aiohttp.ClientSession
) -> None:
    client = GraphClient(session, graph.base_url, "stale-token", PHONE_NUMBER_ID)

    with pytest.raises(WhatsAppApiError) as caught:
        await client.send(text_message("+16505551234", "hi"))

    assert (caught.value.code, caught.value.http_status) == (190, 401)
    assert "access token expired or invalid" in str(caught.value)
    assert graph.sent == []


async def test_a_non_json_bad_gateway_has_no_code_and_is_in_doubt(
    graph: FakeGraph, client: GraphClient
) -> None:
    graph.fail_next(1, None, 502)

    with pytest.raises(WhatsAppApiError) as caught:
        await client.send(text_message("+16505551234", "hi"))

    assert caught.value.code is None
    assert caught.value.http_status == 502
    assert caught.value.in_doubt is True
    assert caught.value.describe().startswith("HTTP 502")


async def test_a_timeout_after_sending_is_a_transport_error_in_doubt(
    graph: FakeGraph, session: aiohttp.ClientSession
) -> None:
    graph.hang = True
    client = GraphClient(session, graph.base_url, TOKEN, PHONE_NUMBER_ID, timeout=0.2)

    with pytest.raises(WhatsAppTransportError) as caught:
        await client.send(text_message("+16505551234", "hi"))

    assert caught.value.in_doubt is True
    assert caught.value.code is None
    # the fake took the message before going silent: exactly the case a blind resend duplicates
    assert [r.wamid for r in graph.sent] == ["wamid.1"]


async def test_a_refused_connection_is_safe_to_retry(session: aiohttp.ClientSession) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = GraphClient(session, f"http://127.0.0.1:{port}/v25.0", TOKEN, PHONE_NUMBER_ID)

    with pytest.raises(WhatsAppTransportError) as caught:
        await client.send(text_message("+16505551234", "hi"))

    assert caught.value.in_doubt is False


async def test_an_owned_session_is_opened_and_closed_by_the_client(graph: FakeGraph) -> None:
    async with GraphClient(None, graph.base_url, TOKEN, PHONE_NUMBER_ID) as client:
        result = await client.send(text_message("+16505551234", "hi"))
        session = client._http()

    assert result.wamid == "wamid.1"
    assert session.closed


async def test_the_token_stays_out_of_repr(graph: FakeGraph, client: GraphClient) -> None:
    assert TOKEN not in repr(client)


async def test_media_info_and_download(graph: FakeGraph, client: GraphClient) -> None:
    content = b"phone,name\n+16505551234,Ana\n"
    graph.add_media("777", content, "text/csv")

    info, downloaded = await client.fetch_media("777", max_bytes=1024)

    assert downloaded == content
    assert info.media_id == "777"
    assert info.mime_type == "text/csv"
    assert info.file_size == len(content)
    assert info.sha256 == hashlib.sha256(content).hexdigest()
    assert [r.path for r in graph.requests] == ["/v25.0/777", "/download/777"]
    assert all(r.headers["Authorization"] == f"Bearer {TOKEN}" for r in graph.requests)


async def test_a_declared_size_over_the_cap_is_refused_before_downloading(
    graph: FakeGraph, client: GraphClient
) -> None:
    graph.add_media("big", b"x" * 10, file_size=50_000_000)

    with pytest.raises(MediaTooLargeError) as caught:
        await client.fetch_media("big", max_bytes=1_000_000)

    assert caught.value.size == 50_000_000
    assert [r.path for r in graph.requests] == ["/v25.0/big"]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_download_over_the_cap_is_refused(
    graph: FakeGraph, client: GraphClient, chunked: bool
) -> None:
    graph.add_media("m", b"y" * 100_000, file_size=10, chunked=chunked)
    info = await client.media_info("m")

    with pytest.raises(MediaTooLargeError, match="over the 50000-byte limit"):
        await client.download_media(info.url, max_bytes=50_000)


async def test_a_download_without_the_bearer_token_is_refused(
    graph: FakeGraph, client: GraphClient, session: aiohttp.ClientSession
) -> None:
    graph.add_media("m", b"secret")
    info = await client.media_info("m")

    async with session.get(info.url) as response:
        assert response.status == 401
    stale = GraphClient(session, graph.base_url, "stale-token", PHONE_NUMBER_ID)
    with pytest.raises(WhatsAppApiError) as caught:
        await stale.download_media(info.url, max_bytes=1024)
    assert caught.value.code == 190


async def test_an_unknown_media_id_is_a_graph_error(client: GraphClient) -> None:
    with pytest.raises(WhatsAppApiError) as caught:
        await client.media_info("nope")

    assert caught.value.code == 100


async def test_the_fake_fails_one_recipient_and_counts_down(
    graph: FakeGraph, client: GraphClient
) -> None:
    graph.fail_for("+222", 131026, times=2)
    codes: list[int | None] = []
    for to in ("+111", "222", "+222", "+222"):
        try:
            await client.send(text_message(to, "hi"))
            codes.append(None)
        except WhatsAppApiError as err:
            codes.append(err.code)

    assert codes == [None, 131026, 131026, None]
    assert [r.status for r in graph.requests] == [200, 400, 400, 200]


async def test_the_fake_chaos_is_reproducible_with_a_seed(
    graph: FakeGraph, client: GraphClient
) -> None:
    async def run() -> list[int | None]:
        outcomes: list[int | None] = []
        for _ in range(40):
            try:
                await client.send(text_message("+111", "hi"))
                outcomes.append(0)
            except WhatsAppApiError as err:
                outcomes.append(err.code)
        return outcomes

    graph.chaos(0.5, seed=7, kinds=("rate_limit", "server_error", "bad_gateway"))
    first = await run()
    graph.chaos(0.5, seed=7, kinds=("rate_limit", "server_error", "bad_gateway"))
    second = await run()

    assert first == second
    assert 0 in first and len(set(first)) > 2
    assert set(first) <= {0, 130429, 131000, 131016, 2, None}


async def test_the_fake_latency_delays_answers(graph: FakeGraph, client: GraphClient) -> None:
    graph.latency = 0.05
    loop = asyncio.get_running_loop()

    started = loop.time()
    await client.send(text_message("+111", "hi"))

    assert loop.time() - started >= 0.05


async def test_waiting_for_sends_times_out_with_a_count(graph: FakeGraph) -> None:
    with pytest.raises(TimeoutError, match="for 1 sends, got 0"):
        await graph.wait_for_sends(1, timeout=0.05)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: media_message("+1", "sticker", "https://x.test/s.webp"), "unknown media type"),
        (
            lambda: template_message("+1", "t", "en", [], header=("audio", "https://x.test/a")),
            "header cannot be 'audio'",
        ),
    ],
)
def test_builders_refuse_what_meta_would_reject(build: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()
