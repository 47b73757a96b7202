"""The fake Graph API of the tests, served from a process of its own for the benchmarks.

On a two-core machine the dispatcher and the fake must not share one event loop, or the
figures measure the fake as much as the dispatcher. The process binds a free port on
127.0.0.1 and prints ``READY <base url>`` (so no two runs race for a port), then answers one
command per line on stdin:

    stats   one JSON line: requests, accepted sends, distinct callback data, send rates
    quit    stop (so does end of input)

    python -m benchmarks.fake_graph_server --latency 0.1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import Counter
from collections.abc import Sequence
from typing import Any

from tests.fakes.graph import FakeGraph, RecordedRequest

READY = "READY"


def send_stats(sent: Sequence[RecordedRequest], requests: int) -> dict[str, Any]:
    """What the benchmark checks at the fake: every message once, and how fast they came.

    ``steady_rate`` leaves out the first second, which a token bucket may fill with its
    burst; ``peak_per_second`` is the most sends in any one-second span.
    """
    callbacks = Counter(
        record.json.get("biz_opaque_callback_data") if isinstance(record.json, dict) else None
        for record in sent
    )
    stamps = sorted(record.monotonic for record in sent)
    stats: dict[str, Any] = {
        "requests": requests,
        "sent": len(sent),
        "distinct_callbacks": len(callbacks),
        "repeated_callbacks": sum(count - 1 for count in callbacks.values() if count > 1),
        "span": stamps[-1] - stamps[0] if stamps else 0.0,
        "steady_rate": None,
        "peak_per_second": 0,
    }
    if len(stamps) > 1:
        settled = stamps[0] + 1.0
        steady = [stamp for stamp in stamps if stamp >= settled]
        if len(steady) > 1 and steady[-1] > steady[0]:
            stats["steady_rate"] = (len(steady) - 1) / (steady[-1] - steady[0])
        start = 0
        for end, stamp in enumerate(stamps):
            while stamp - stamps[start] >= 1.0:
                start += 1
            stats["peak_per_second"] = max(stats["peak_per_second"], end - start + 1)
    return stats


async def serve(latency: float) -> None:
    fake = FakeGraph(latency=latency)
    await fake.start()
    print(f"{READY} {fake.base_url}", flush=True)
    try:
        while True:
            line = await asyncio.to_thread(sys.stdin.readline)
            command = line.strip()
            if command == "stats":
                print(json.dumps(send_stats(fake.sent, len(fake.requests))), flush=True)
            elif not line or command == "quit":
                break
    finally:
        await fake.stop()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the fake Graph API until told to stop.")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.latency))


if __name__ == "__main__":
    main()
