"""Build docs/images/stats-example.png: the /stats chart for a realistic sequence.

A throwaway SQLite database gets a four-step sequence and a few hundred contacts enrolled
day by day over three weeks through the real engine; each message that came due is then
given a plausible fate (sent, delivered, read, failed, skipped), some leads reply and a few
opt out. Run it from the project root: ``.venv/bin/python docs/make_example_chart.py``.
"""

from __future__ import annotations

import asyncio
import random
import sys
import tempfile
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import bindparam, select, update

from handlers.chart import render_chart
from handlers.stats import collect_stats, summary_text
from scheduler.enrollment import ContactInput, enroll
from scheduler.options import EngineOptions
from scheduler.sequences import create_sequence
from scheduler.steps import StepSpec, TemplateRef, Timing
from storage.database import Database
from storage.models import Contact, Enrollment, OutboundMessage

OUT = Path(__file__).resolve().parent / "images" / "stats-example.png"
NOW = datetime(2026, 3, 16, 17, 30, tzinfo=UTC)
FIRST_DAY = NOW - timedelta(days=21)

STEPS = [
    StepSpec(Timing(day=1), "template", template=TemplateRef("welcome", "en", ("{first_name}",))),
    StepSpec(
        Timing(day=3, at=time(10, 0)),
        "media",
        body="Here's a quick tip, {first_name|there}",
        media_url="https://example.com/tip.jpg",
        media_type="image",
        fallback=TemplateRef("tip_of_the_week", "en", ("{first_name|there}",)),
    ),
    StepSpec(Timing(day=7), "template", template=TemplateRef("check_in", "en", ())),
    StepSpec(Timing(day=14), "template", template=TemplateRef("offer", "en", ("20%",))),
]
#: chance that a step's message ends sent / failed / skipped (the rest stays sent)
FAIL, SKIP = 0.02, 0.03
DELIVER, READ = 0.95, {1: 0.82, 2: 0.7, 3: 0.6, 4: 0.55}
#: chance that a lead replies after a given step / opts out after it
REPLY = {1: 0.08, 2: 0.05, 3: 0.06, 4: 0.04}
OPT_OUT = {1: 0.01, 2: 0.02, 3: 0.015, 4: 0.02}


async def build(db: Database, rng: random.Random) -> None:
    options = EngineOptions(default_region="DE", send_window=None, daily_reach_limit=None)
    await create_sequence(db, "Onboarding", STEPS, now=FIRST_DAY, description="new sign-ups")
    number = 0
    for hour in range(0, 21 * 24, 3):  # sign-ups trickle in all day, a little more each week
        joined = []
        for _ in range(rng.randint(0, 2 + hour // 120)):
            number += 1
            joined.append(ContactInput(f"+49 151 2{number:07d}", name=f"Lead {number}"))
        at = FIRST_DAY + timedelta(hours=hour, minutes=rng.randint(0, 179))
        if joined:
            await enroll(db, "Onboarding", joined, now=at, options=options)
    await settle(db, rng)


async def settle(db: Database, rng: random.Random) -> None:
    """Give every message that came due a fate, as the dispatcher and webhooks would."""
    async with db.engine.begin() as conn:
        rows = list(
            await conn.execute(
                select(
                    OutboundMessage.id,
                    OutboundMessage.enrollment_id,
                    OutboundMessage.contact_id,
                    OutboundMessage.due_at,
                )
                .where(OutboundMessage.due_at <= NOW)
                .order_by(OutboundMessage.enrollment_id, OutboundMessage.due_at)
            )
        )
        messages: list[dict[str, Any]] = []
        ended: dict[int, dict[str, Any]] = {}
        position: dict[int, int] = {}
        for row in rows:
            if row.enrollment_id in ended:
                continue
            step = position[row.enrollment_id] = position.get(row.enrollment_id, 0) + 1
            messages.append(fate(row.id, row.due_at, step, rng))
            sent_at = messages[-1]["sent_at"]
            if sent_at is None:
                continue
            if rng.random() < REPLY[step]:
                replied = min(NOW, sent_at + timedelta(minutes=rng.randint(5, 600)))
                await conn.execute(
                    update(Enrollment)
                    .where(Enrollment.id == row.enrollment_id, Enrollment.replied_at.is_(None))
                    .values(replied_at=replied)
                )
            if rng.random() < OPT_OUT[step]:
                gone = min(NOW, sent_at + timedelta(hours=rng.randint(1, 20)))
                ended[row.enrollment_id] = {"eid": row.enrollment_id, "at": gone}
                await conn.execute(
                    update(Contact).where(Contact.id == row.contact_id).values(opted_out_at=gone)
                )
        await conn.execute(
            update(OutboundMessage)
            .where(OutboundMessage.id == bindparam("mid"))
            .values(
                status=bindparam("status"),
                sent_at=bindparam("sent_at"),
                delivered_at=bindparam("delivered_at"),
                read_at=bindparam("read_at"),
                failed_at=bindparam("failed_at"),
                updated_at=bindparam("changed"),
            ),
            messages,
        )
        if ended:
            await conn.execute(
                update(Enrollment)
                .where(Enrollment.id == bindparam("eid"))
                .values(status="opted_out", ended_at=bindparam("at")),
                list(ended.values()),
            )
            await conn.execute(
                update(OutboundMessage)
                .where(
                    OutboundMessage.enrollment_id == bindparam("eid"),
                    OutboundMessage.status == "scheduled",
                )
                .values(status="cancelled", updated_at=bindparam("at")),
                list(ended.values()),
            )
        finished = [
            {"eid": eid, "at": NOW}
            for eid, steps in position.items()
            if steps == len(STEPS) and eid not in ended
        ]
        if finished:
            await conn.execute(
                update(Enrollment)
                .where(Enrollment.id == bindparam("eid"))
                .values(status="completed", completed_at=bindparam("at")),
                finished,
            )


def fate(message_id: int, due: datetime, step: int, rng: random.Random) -> dict[str, Any]:
    sent = due + timedelta(seconds=rng.randint(1, 90))
    row: dict[str, Any] = {
        "mid": message_id,
        "status": "sent",
        "sent_at": sent,
        "delivered_at": None,
        "read_at": None,
        "failed_at": None,
        "changed": sent,
    }
    luck = rng.random()
    if luck < SKIP:
        return row | {"status": "skipped", "sent_at": None}
    if luck < SKIP + FAIL:
        return row | {"status": "failed", "sent_at": None, "failed_at": sent}
    if rng.random() < DELIVER:
        delivered = sent + timedelta(seconds=rng.randint(2, 3600))
        if delivered <= NOW:
            row |= {"status": "delivered", "delivered_at": delivered, "changed": delivered}
            if rng.random() < READ[step]:
                read = delivered + timedelta(minutes=rng.randint(1, 900))
                if read <= NOW:
                    row |= {"status": "read", "read_at": read, "changed": read}
    return row


async def main() -> None:
    rng = random.Random(2026)
    with tempfile.TemporaryDirectory() as folder:
        db = await Database.open(
            f"sqlite+aiosqlite:///{folder}/example.db", workspace="default", now=FIRST_DAY
        )
        try:
            await build(db, rng)
            report = await collect_stats(db, NOW, sequence="Onboarding", timezone="Europe/Berlin")
        finally:
            await db.close()
    print(summary_text(report))
    png = render_chart(report)
    assert png is not None
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_bytes(png)
    print(f"wrote {OUT} ({len(png) // 1024} KB)")


if __name__ == "__main__":
    asyncio.run(main())
