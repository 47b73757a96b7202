"""The admin interpreter end to end, on both databases: what an admin types, what they read,
and what the database holds afterwards."""

from __future__ import annotations

from datetime import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from handlers.interpreter import REFUSAL, Admins, Interpreter
from handlers.replies import Actor, Upload
from scheduler.clock import ManualClock
from scheduler.options import EngineOptions, Window
from scheduler.ports import LogAlerts
from storage.database import Database
from storage.models import Contact, Enrollment, OutboundMessage, Sequence, Step

CLI = Actor("cli", "console")
THREE_STEPS = "\n".join(
    [
        "/newsequence Welcome",
        "Day 1: Hi {first_name|there}! Welcome aboard.",
        "Day 3 at 10:00: image https://example.com/tip.jpg | Here's a quick tip, {name}"
        " || template tip_fallback en {first_name|there}",
        "Day 7: template welcome_week en {first_name|there}",
        "after 2h: Did you get a chance to look? || template nudge en",
    ]
)


@pytest.fixture
def interpreter(db: Database, clock: ManualClock) -> Interpreter:
    options = EngineOptions(
        default_timezone="Europe/Berlin",
        default_region="DE",
        send_window=Window(time(6, 0), time(21, 0)),
    )
    return Interpreter(
        db=db,
        clock=clock,
        options=options,
        admins=Admins(telegram_ids=frozenset({"42"})),
        alerts=LogAlerts(),
    )


async def count(db: Database, model: type) -> int:
    async with db.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(model))).scalar_one())


async def test_the_spec_sequence_can_be_defined_enrolled_and_inspected(
    interpreter: Interpreter, db: Database, tmp_path: Path
) -> None:
    created = await interpreter.run(CLI, THREE_STEPS)
    assert created.ok, created.text
    assert "Created sequence 'Welcome' with 4 steps" in created.text
    # 'after 2h' sorts before Day 3: steps are numbered in send order
    assert "2. after 2h" in created.text
    assert "Day 1" in created.text and "more than 24 hours" not in created.text.split("⚠")[0]

    single = await interpreter.run(CLI, "/enroll welcome +49 151 23456789 Ana Lima")
    assert single.ok, single.text
    assert "Enrolled Ana Lima (+4915123456789) into 'Welcome'" in single.text
    assert "Next: step 1 of 4" in single.text and "Europe/Berlin" in single.text

    bulk = await interpreter.run(
        CLI, "/enroll Welcome\n+4915123456780 Ben\n0151 2345 6781 Cleo\nnot-a-number Dan"
    )
    assert "Enrolled 2 of 3" in bulk.text
    assert "line 4" in bulk.text and "Invalid: 1" in bulk.text

    csv_file = tmp_path / "leads.csv"
    csv_file.write_text(
        "Phone;Name;Company;plan\n+4915123456782;Eva;ACME;gold\n+4915123456782;Eva;ACME;gold\n"
        "+4915123456789;Ana;;\n",
        encoding="utf-8-sig",
    )
    from_file = await interpreter.run(CLI, f"/enroll Welcome {csv_file}")
    assert "Enrolled 1 of 3" in from_file.text
    assert "Duplicates in this import: 1" in from_file.text and "line 3" in from_file.text
    assert "Already enrolled: 1" in from_file.text and "line 4" in from_file.text

    contact = await interpreter.run(CLI, "/contact +4915123456782")
    assert contact.ok, contact.text
    assert "Eva (+4915123456782)" in contact.text
    assert "company: ACME" in contact.text and "plan=gold" in contact.text
    assert "Next: step 1 of 4 in 'Welcome' at Mon 2 Mar 2026 10:00 Europe/Berlin" in contact.text

    preview = await interpreter.run(CLI, "/preview Welcome +4915123456782")
    assert "Hi Eva! Welcome aboard." in preview.text
    assert "template welcome_week (en): Eva" in preview.text
    assert "{" not in preview.text.replace("{first_name|there}", "")

    assert await count(db, Enrollment) == 4
    assert await count(db, OutboundMessage) == 16


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/frobnicate", "/frobnicate"),
        ("/newsequence", "name"),
        ("/newsequence X\nDay 1: hi\nDya 3: oops", "line 3"),
        ("/addstep", "sequence"),
        ("/enroll nosuch +4915123456789", "no sequence named 'nosuch'"),
        ("/removestep Welcome 9", "has no step 9"),
        ("/contact +4915100000000", "no contact"),
        ("/contact banana", "not a valid phone number"),
        ("/pause nosuch", "no sequence"),
        ("/clone Welcome welcome", "already exists"),
    ],
)
async def test_bad_input_gets_one_clear_line_and_changes_nothing(
    interpreter: Interpreter, db: Database, text: str, expected: str
) -> None:
    await interpreter.run(CLI, "/newsequence Welcome\nDay 1: template hello en")
    before = (await count(db, Sequence), await count(db, Step), await count(db, Contact))
    reply = await interpreter.run(CLI, text)
    assert not reply.ok
    assert expected.lower() in reply.text.lower()
    after = (await count(db, Sequence), await count(db, Step), await count(db, Contact))
    assert after == before


async def test_a_broken_csv_upload_leaves_nothing_behind(
    interpreter: Interpreter, db: Database
) -> None:
    await interpreter.run(CLI, "/newsequence Welcome\nDay 1: template hello en")
    good = "phone,name\n" + "".join(f"+49151234567{i:02d},Lead {i}\n" for i in range(40))
    broken = good.encode() + b"+4915123456799,\xff\xfe broken\n"
    reply = await interpreter.run(CLI, "/enroll Welcome", Upload("leads.csv", broken))
    assert not reply.ok
    assert "line 42" in reply.text.lower()
    assert await count(db, Enrollment) == 0
    assert await count(db, Contact) == 0


async def test_non_admins_get_one_polite_refusal_and_then_silence(
    interpreter: Interpreter, db: Database
) -> None:
    stranger = Actor("telegram", "666")
    first = await interpreter.run(stranger, "/sequences")
    second = await interpreter.run(stranger, "/newsequence Mine\nDay 1: hi")
    assert first.text == REFUSAL and not first.ok
    assert second.text == "" and not second.ok
    assert await count(db, Sequence) == 0
    admin = await interpreter.run(Actor("telegram", "42"), "/sequences")
    assert admin.ok and "No sequences yet" in admin.text


async def test_pause_resume_archive_and_opt_out(
    interpreter: Interpreter, db: Database, clock: ManualClock
) -> None:
    await interpreter.run(CLI, "/newsequence Tips\nDay 1: template a en\nDay 3: template b en")
    await interpreter.run(CLI, "/enroll tips +4915123456789 Ana")
    assert "Paused" in (await interpreter.run(CLI, "/pause tips")).text
    clock.advance(hours=5)
    resumed = await interpreter.run(CLI, "/resume tips")
    assert "moved later" in resumed.text
    async with db.engine.connect() as conn:
        dues = sorted((await conn.execute(select(OutboundMessage.due_at))).scalars())
    assert dues[0] == clock.now()  # the Day-1 step, shifted by the 5 hours paused

    opted = await interpreter.run(CLI, "/optout +4915123456789")
    assert "Opted out Ana" in opted.text
    again = await interpreter.run(CLI, "/enroll tips +4915123456789")
    assert "Opted out (refused): 1" in again.text
    optouts = await interpreter.run(CLI, "/optouts")
    assert "Ana" in optouts.text
    archived = await interpreter.run(CLI, "/archive tips")
    assert "Archived 'Tips'" in archived.text
    sequences = await interpreter.run(CLI, "/sequences")
    assert "Tips [archived]" in sequences.text and "1 opted out" in sequences.text


async def test_help_lists_every_command(interpreter: Interpreter) -> None:
    reply = await interpreter.run(CLI, "/help")
    for command in ("/newsequence", "/enroll", "/contact", "/preview", "/queue", "/stats"):
        assert command in reply.text


async def test_a_new_window_re_times_pending_steps_and_removing_the_last_step_completes(
    interpreter: Interpreter, db: Database, clock: ManualClock
) -> None:
    await interpreter.run(CLI, "/newsequence Tips\nDay 1: template a en\nDay 2: template b en")
    await interpreter.run(CLI, "/enroll tips +4915123456789 Ana")
    reply = await interpreter.run(CLI, "/setwindow tips 12:00-13:00")
    assert reply.ok, reply.text
    async with db.engine.connect() as conn:
        dues = sorted((await conn.execute(select(OutboundMessage.due_at))).scalars())
    # Berlin is UTC+1 in March: noon local is 11:00 UTC, on day 1 and on day 2
    assert [d.strftime("%d %H:%M") for d in dues] == ["02 11:00", "03 11:00"]

    await interpreter.run(CLI, "/removestep tips 2")
    await interpreter.run(CLI, "/removestep tips 1")
    async with db.engine.connect() as conn:
        status = (await conn.execute(select(Enrollment.status))).scalar_one()
    assert status == "completed"
