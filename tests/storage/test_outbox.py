"""The outbox's write-back when a status webhook got there first."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from handlers.events import DeliveryStatus
from handlers.statuses import apply_progress
from scheduler.clock import ManualClock
from scheduler.enrollment import ContactInput, enroll
from scheduler.options import EngineOptions
from scheduler.sequences import create_sequence
from scheduler.steps import StepSpec, TemplateRef, Timing
from storage.database import Database
from storage.models import Enrollment, OutboundMessage
from storage.outbox import claim, record_results

STEP = StepSpec(Timing(day=1), "template", template=TemplateRef("hello", "en"))


async def test_a_status_that_overtook_the_write_back_keeps_its_state_and_gets_the_payload(
    db: Database, clock: ManualClock
) -> None:
    options = EngineOptions(default_region="DE", daily_reach_limit=None)
    await create_sequence(db, "Seq", [STEP], now=clock.now())
    await enroll(db, "Seq", [ContactInput("+4915123456789")], now=clock.now(), options=options)
    async with db.engine.begin() as conn:
        [item] = await claim(
            conn, db.workspace_id, now=clock.now(), limit=5, lease=timedelta(minutes=2)
        )
    delivered = DeliveryStatus(
        "wamid.A", "delivered", clock.now(), callback_data=f"dripbot:{item.id}"
    )
    async with db.engine.begin() as conn:
        await apply_progress(conn, [delivered], now=clock.now())
    result = {
        "id": item.id,
        "status": "sent",
        "due_at": item.due_at,
        "wamid": "wamid.A",
        "sent_at": clock.now(),
        "failed_at": None,
        "error_code": None,
        "error_detail": None,
        "deferred_reason": None,
        "payload": {"kind": "template", "template": "hello"},
        "dry_run": False,
        "business_initiated": True,
        "lease_until": None,
        "attempts": 1,
    }
    async with db.engine.begin() as conn:
        await record_results(conn, [result], now=clock.now())
    async with db.engine.connect() as conn:
        row = (await conn.execute(select(OutboundMessage))).one()
        enrollment = (await conn.execute(select(Enrollment.status))).scalar_one()
    assert row.status == "delivered" and row.wamid == "wamid.A"
    assert row.payload == {"kind": "template", "template": "hello"}
    assert row.business_initiated and row.sent_at == clock.now() and row.lease_until is None
    assert enrollment == "completed"  # the webhook settled its last message
