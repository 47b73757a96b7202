"""Fixtures of the fault drills: a work directory for the processes' logs, the fake Graph
API, and a way to print each drill's figures where the person running the tests sees them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

Report = Callable[[str], None]


@pytest.fixture
def report(capsys: pytest.CaptureFixture[str]) -> Report:
    """Print a line past pytest's capture: the figures are the point of a drill."""

    def emit(line: str) -> None:
        with capsys.disabled():
            print(f"\n{line}", flush=True)

    return emit


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """Where the drill's processes run and write their logs (no stray .env is read)."""
    return tmp_path
