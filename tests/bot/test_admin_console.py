"""`dripbot admin`: one command, or an interactive prompt, on the service's database."""

from __future__ import annotations

import io
from pathlib import Path

from bot.admin_console import run_admin
from bot.config import Settings
from scheduler.clock import ManualClock


def settings_for(path: Path) -> Settings:
    return Settings(
        database_url=f"sqlite+aiosqlite:///{path / 'dripbot.db'}",
        timezone="Europe/Berlin",
        default_region="DE",
        _env_file=None,  # type: ignore[call-arg]
    )


async def test_one_command_prints_its_answer_and_exit_status(
    tmp_path: Path, clock: ManualClock
) -> None:
    settings = settings_for(tmp_path)
    out = io.StringIO()
    code = await run_admin(
        settings, "/newsequence Tips\nDay 1: template hi en", clock=clock, stdout=out
    )
    assert code == 0
    assert "Created sequence 'Tips' with 1 step" in out.getvalue()
    out = io.StringIO()
    code = await run_admin(settings, "/enroll Tips 12", clock=clock, stdout=out)
    assert code == 1
    assert "Invalid: 1" in out.getvalue()


async def test_interactive_prompt_runs_multi_line_commands(
    tmp_path: Path, clock: ManualClock
) -> None:
    settings = settings_for(tmp_path)
    script = "\n".join(
        [
            "/newsequence Welcome",
            "Day 1: template welcome en {first_name|there}",
            "Day 3 at 10:00: template tip en",
            "",
            "/enroll Welcome",
            "+4915123456789 Ana Lima",
            "+4915123456780 Ben",
            "",
            "/contact +4915123456789",
            "/export Welcome",
        ]
    )
    out = io.StringIO()
    code = await run_admin(
        settings,
        None,
        clock=clock,
        stdin=io.StringIO(script + "\n"),
        stdout=out,
        output_dir=tmp_path,
    )
    text = out.getvalue()
    assert code == 0
    assert "Created sequence 'Welcome' with 2 steps" in text
    assert "Enrolled 2 of 2 into 'Welcome'" in text
    assert "Next: step 1 of 2 in 'Welcome' at Mon 2 Mar 2026 10:00 Europe/Berlin" in text
    exported = tmp_path / "welcome-enrollments.csv"
    assert exported.exists()
    assert "+4915123456789,Ana Lima" in exported.read_text()
