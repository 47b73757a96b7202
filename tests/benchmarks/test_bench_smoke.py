"""The benchmarks at toy sizes, so they keep working as the code under them changes.

Nothing here is timed: each run must finish, pass its own checks (every message sent
exactly once, the import's report matching the database) and report positive figures.
"""

from __future__ import annotations

import pytest

from benchmarks import claim, csv_import, dispatch, idle, replicas, webhook
from benchmarks.common import Goal, format_markdown, format_table, postgres_available
from benchmarks.fake_graph_server import send_stats
from tests.fakes.graph import RecordedRequest

pytestmark = pytest.mark.slow


def test_the_csv_import_benchmark_reports_speed_memory_and_the_counts() -> None:
    figures = csv_import.run(400, postgres=False)

    assert [figure.unit for figure in figures] == ["rows/s", "MB peak RSS"]
    assert all(figure.value > 0 and figure.checked for figure in figures)
    assert "enrolled" in figures[0].detail
    assert "csv import" in format_table(figures)


def test_the_dispatch_benchmark_sends_every_message_once_through_the_real_path() -> None:
    chosen = [
        dispatch.Case("raw client", "none", 150, concurrency=16),
        dispatch.Case("SQLite", "sqlite", 240, batch_size=100, concurrency=16),
    ]

    figures = dispatch.run(chosen)

    assert [figure.case for figure in figures] == ["raw client", "SQLite"]
    assert all(figure.checked for figure in figures), [figure.detail for figure in figures]
    assert all(figure.value > 0 for figure in figures)
    assert "| dispatch | SQLite |" in format_markdown(figures)


def test_the_webhook_benchmark_absorbs_signed_statuses_through_serve() -> None:
    figures = webhook.run(seconds=0.5, messages=100, concurrency=4)

    assert [figure.case for figure in figures] == [
        "raw loopback, 1 per POST",
        "SQLite, 1 status per POST",
        "SQLite, 1 status per POST, POST p99",
        "SQLite, 1 status per POST, offered 3,000/s",
        "SQLite, 1 status per POST, offered 3,000/s, POST p99",
        "raw loopback, 100 per POST",
        "SQLite, 100 statuses per POST",
        "SQLite, 100 statuses per POST, POST p99",
        "SQLite, 100 statuses per POST, offered 3,000/s",
        "SQLite, 100 statuses per POST, offered 3,000/s, POST p99",
    ]
    assert all(figure.checked and figure.value > 0 for figure in figures), [
        figure.detail for figure in figures
    ]
    assert "100 messages moved to delivered/read" in figures[1].detail


def test_the_claim_benchmark_claims_the_due_rows_of_a_filled_database() -> None:
    figures = claim.run(4_000, repeats=2, postgres=False)

    assert [figure.case for figure in figures] == ["SQLite, 4,000 enrollments, p99"]
    # every timed claim took a full batch of the newest import's rows
    assert figures[0].checked and figures[0].value > 0
    assert "committed claims of 500 rows each; 1,500 due" in figures[0].detail


def test_the_idle_benchmark_reads_the_cpu_of_a_quiet_serve() -> None:
    figures = idle.run(settle=0.5, span=1.0)

    assert [figure.case for figure in figures] == ["quiet serve"]
    assert 0 <= figures[0].value < 100


@pytest.mark.skipif(not postgres_available(), reason="PostgreSQL is not running")
def test_the_replicas_benchmark_sends_every_message_once_across_processes() -> None:
    figures = replicas.run(messages=120, concurrency=8, batch=8, counts=(1, 2), latencies=(0.0,))

    assert [figure.case for figure in figures] == [
        "1 × dispatcher, no latency",
        "2 × dispatcher, no latency",
    ]
    assert all(figure.checked and figure.value > 0 for figure in figures), [
        figure.detail for figure in figures
    ]
    assert "duplicates 0" in figures[1].detail


def _sent(stamp: float, callback: str) -> RecordedRequest:
    body = {"to": "+4915100000001", "biz_opaque_callback_data": callback}
    return RecordedRequest("POST", "/v25.0/1/messages", {}, body, stamp, stamp, 200, "wamid.1")


@pytest.mark.parametrize(
    ("stamps", "callbacks", "repeated", "peak", "steady"),
    [
        ([], [], 0, 0, None),
        ([0.0, 0.5], ["a", "b"], 0, 2, None),
        # a burst of three in the first second, then one every half second
        ([0.0, 0.1, 0.2, 1.0, 1.5, 2.0, 2.5], list("abcdefg"), 0, 3, 2.0),
        ([0.0, 2.0, 4.0], ["a", "a", "b"], 1, 1, 0.5),
    ],
)
def test_send_stats_count_repeats_and_rates(
    stamps: list[float], callbacks: list[str], repeated: int, peak: int, steady: float | None
) -> None:
    stats = send_stats([_sent(s, c) for s, c in zip(stamps, callbacks, strict=True)], 9)

    assert stats["requests"] == 9
    assert stats["sent"] == len(stamps)
    assert stats["repeated_callbacks"] == repeated
    assert stats["peak_per_second"] == peak
    assert stats["steady_rate"] == steady


@pytest.mark.parametrize(
    ("goal", "value", "met", "described"),
    [
        (Goal.at_least(3000), 3000, True, "≥ 3,000 msg/s"),
        (Goal.at_least(3000), 2999, False, "≥ 3,000 msg/s"),
        (Goal.at_most(500), 501, False, "≤ 500 msg/s"),
        (Goal.within(200, 0.05), 209, True, "190–210 msg/s"),
        (Goal.within(200, 0.05), 189, False, "190–210 msg/s"),
    ],
)
def test_goals_are_met_or_not(goal: Goal, value: float, met: bool, described: str) -> None:
    assert goal.met(value) is met
    assert goal.describe("msg/s") == described
