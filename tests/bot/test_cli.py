"""The ``dripbot`` command line, called in-process."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from bot.cli import main
from bot.logs import mask_line
from storage.migrate import alembic_config

pytestmark = pytest.mark.usefixtures("clean_env", "restore_logging")

#: the newest migration, which ``migrate`` must reach
HEAD = ScriptDirectory.from_config(alembic_config()).get_current_head()


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory, as on a fresh machine."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_migrate_creates_the_schema_in_the_default_sqlite_file(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["migrate"]) == 0
    out = capsys.readouterr().out
    assert out == f"sqlite+aiosqlite:///./dripbot.db: schema at revision {HEAD}\n"
    with sqlite3.connect(workdir / "dripbot.db") as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        revision = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    assert {"sequences", "contacts", "outbound_messages", "workspaces"} <= tables
    assert revision == [(HEAD,)]


def test_migrate_twice_is_harmless(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate"]) == 0
    assert main(["migrate"]) == 0
    assert capsys.readouterr().out.count(f"schema at revision {HEAD}") == 2


def test_migrate_uses_the_configured_database(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    target = workdir / "data" / "bot.db"
    monkeypatch.setenv("DRIPBOT_DATABASE_URL", f"sqlite+aiosqlite:///{target}")
    assert main(["migrate"]) == 0
    assert target.exists()
    assert not (workdir / "dripbot.db").exists()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DRIPBOT_PORT", "abc"),
        ("DRIPBOT_PORT", "70000"),
        ("DRIPBOT_SEND_WINDOW", "25:00-26:00"),
        ("DRIPBOT_TIMEZONE", "Mars/Base"),
        ("DRIPBOT_TICK_SECONDS", "0"),
        ("DRIPBOT_DAILY_REACH_LIMIT", "lots"),
    ],
)
@pytest.mark.parametrize("command", ["serve", "migrate"])
def test_a_bad_value_stops_with_one_line_naming_the_variable(
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
    variable: str,
    value: str,
) -> None:
    monkeypatch.setenv(variable, value)
    assert main([command]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"dripbot: {variable}: ")
    assert not (workdir / "dripbot.db").exists()


def test_an_unusable_database_url_names_the_variable(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DRIPBOT_DATABASE_URL", "nosuchdb://user:hunter2@host/db")
    assert main(["migrate"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dripbot: DRIPBOT_DATABASE_URL: ")
    assert "hunter2" not in err


def test_help_lists_the_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("serve", "migrate", "admin"):
        assert command in out
    assert "DRIPBOT_" in out


def test_serve_help_names_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--host" in out and "--port" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == "dripbot 0.1.0\n"


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().err


# --- the logging the CLI sets up -------------------------------------------------------------

MASKING = [
    ("an E.164 number", "to +4915123456789 ok", "to +49*******6789 ok"),
    ("a bare WhatsApp id", "wa_id 4915123456789,", "wa_id 49*******6789,"),
    ("a bearer token", "Authorization: Bearer EAAG123abc.x", "Authorization: Bearer ***"),
    (
        "a Telegram token in a URL",
        "GET https://api.telegram.org/bot123456789:AAE_abcdefghijklmnopqrstuvwxyz0123/getMe",
        "GET https://api.telegram.org/bot***/getMe",
    ),
    ("a database password", "postgresql+asyncpg://u:pw@h/db", "postgresql+asyncpg://u:***@h/db"),
    ("a configured secret", "verify token s3cret-value", "verify token ***"),
    (
        "ordinary numbers stay",
        "2026-11-21 11:53:58,837 message 123 dripbot:42 127.0.0.1:8080 +0000",
        "2026-11-21 11:53:58,837 message 123 dripbot:42 127.0.0.1:8080 +0000",
    ),
]


@pytest.mark.parametrize(("case", "line", "expected"), MASKING, ids=[c[0] for c in MASKING])
def test_log_lines_hide_phones_and_secrets(case: str, line: str, expected: str) -> None:
    assert mask_line(line, ["s3cret-value"]) == expected


def test_configured_secrets_never_reach_the_log(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DRIPBOT_WHATSAPP_TOKEN", "EAAGtopsecret")
    monkeypatch.setenv("DRIPBOT_WHATSAPP_APP_SECRET", "appsecret42")
    assert main(["migrate"]) == 0  # sets up logging as every command does
    logging.getLogger("bot.test").warning(
        "token EAAGtopsecret, secret appsecret42, contact +4915123456789"
    )
    err = capsys.readouterr().err
    assert "WARNING bot.test: token ***, secret ***, contact +49*******6789" in err
    assert "EAAGtopsecret" not in err and "appsecret42" not in err


def test_apikey_create_prints_a_key_once_and_admin_runs_commands(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["apikey", "create", "--scope", "public", "--name", "form"]) == 0
    key = capsys.readouterr().out.strip()
    assert key and " " not in key
    assert main(["apikey", "list"]) == 0
    listing = capsys.readouterr().out
    assert "form" in listing and "public" in listing and key not in listing
    assert main(["admin", "/newsequence Tips\nDay 1: template hi en"]) == 0
    assert "Created sequence 'Tips'" in capsys.readouterr().out
    assert main(["admin", "/frobnicate"]) == 1
    assert "/frobnicate" in capsys.readouterr().out
