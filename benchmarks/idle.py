"""Idle CPU of a quiet ``dripbot serve``: nothing to send, nobody calling.

``python -m bot.cli serve`` runs as a child on a fresh SQLite file with the console provider
and the default tick. After it has settled, its user plus system CPU time is read from
``/proc/<pid>/stat`` at the start and the end of a quiet span: the share of one core it
takes just to wait for work (ticks, minute checks, the webhook inbox).

    python -m benchmarks idle
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Final

from benchmarks.common import Figure, Goal, progress
from benchmarks.webhook import child_process, cpu_seconds, free_port, wait_until_up

NAME: Final = "idle"
#: issue 7: a quiet serve under 1 % of a core
GOAL_PERCENT: Final = 1.0


def run(*, settle: float = 5.0, span: float = 30.0) -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="dripbot-bench-") as tmp:
        port = free_port()
        env = dict(os.environ) | {
            "DRIPBOT_DATABASE_URL": f"sqlite+aiosqlite:///{Path(tmp) / 'idle.db'}",
            "DRIPBOT_PORT": str(port),
        }
        for name in ("DRIPBOT_WHATSAPP_TOKEN", "DRIPBOT_TELEGRAM_TOKEN"):
            env.pop(name, None)
        progress(f"idle: a quiet serve, {settle:g} s to settle, then {span:g} s measured")
        with child_process([sys.executable, "-m", "bot.cli", "serve"], env) as proc:
            wait_until_up(port, proc)
            time.sleep(settle)
            before, began = cpu_seconds(proc.pid), time.monotonic()
            time.sleep(span)
            used, elapsed = cpu_seconds(proc.pid) - before, time.monotonic() - began
    percent = used / elapsed * 100
    detail = (
        f"SQLite, console provider, default tick; {used:.2f} s CPU over {elapsed:.0f} s "
        "(utime + stime)"
    )
    return [Figure(NAME, "quiet serve", percent, "% of a core", Goal.at_most(GOAL_PERCENT), detail)]
