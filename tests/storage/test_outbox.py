"""The outbox: the write-back when a status webhook got there first, and the claim's indexes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import event, select

from handlers.events import DeliveryStatus
from handlers.status_progress import apply_progress
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


async def test_both_halves_of_the_claim_read_only_their_status_through_the_claim_index(
    sqlite_db: Database, clock: ManualClock
) -> None:
    """Neither half may scan the outbox: at a million rows that is the claim's whole cost."""
    statements: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, sql: str, params: Any, *_: Any) -> None:
        statements.append((sql, params))

    event.listen(sqlite_db.engine.sync_engine, "before_cursor_execute", record)
    try:
        async with sqlite_db.engine.begin() as conn:
            await claim(
                conn, sqlite_db.workspace_id, now=clock.now(), limit=10, lease=timedelta(minutes=2)
            )
    finally:
        event.remove(sqlite_db.engine.sync_engine, "before_cursor_execute", record)
    plans = []
    async with sqlite_db.engine.connect() as conn:
        for sql, params in statements:
            rows = await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params)
            plans.append(" ".join(str(row[-1]) for row in rows))
    reclaim, fresh = plans
    assert "SEARCH outbound_messages USING INDEX ix_outbound_claim (status=?)" in reclaim
    assert "ix_outbound_claim (status=? AND due_at<?)" in fresh
    assert "SCAN outbound_messages" not in reclaim + fresh
