"""The README is part of the product: its configuration table must match the settings."""

from __future__ import annotations

import re
from pathlib import Path

from bot.config import Settings
from handlers.help import ENTRIES

README = Path(__file__).resolve().parent.parent / "README.md"


def test_every_setting_is_in_the_configuration_table_and_nothing_else() -> None:
    text = README.read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `(DRIPBOT_[A-Z0-9_]+)` \|", text, flags=re.MULTILINE))
    expected = {f"DRIPBOT_{name.upper()}" for name in Settings.model_fields}
    assert documented == expected


def test_every_admin_command_is_in_the_readme() -> None:
    text = README.read_text(encoding="utf-8")
    missing = [entry.name for entry in ENTRIES if f"/{entry.name.split()[0]}" not in text]
    assert missing == []
