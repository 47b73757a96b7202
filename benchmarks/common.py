"""What every benchmark shares: child processes, figures and their table, the machine.

Each measurement runs in a fresh child process. Its peak RSS is then the measured work's own
(plus the interpreter's), read from the kernel when the child is reaped, and one benchmark's
caches, threads or event loop never weigh on the next one's figures. A child reports one
JSON line on stdout, after a marker, and logs nothing else there.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Final

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

#: the repository root: children run from here so ``benchmarks`` and ``tests`` import
ROOT: Final = Path(__file__).resolve().parent.parent
#: a database on the benchmark's PostgreSQL server to connect to while creating the others
#: (the same variable and default as the test suite's)
PG_ADMIN_DSN: Final = os.environ.get("DRIPBOT_TEST_PG_DSN", "postgresql://127.0.0.1:5432/test")
_PG_HOST: Final = PG_ADMIN_DSN.split("//", 1)[1].rsplit("/", 1)[0]
RESULT_MARKER: Final = "BENCHMARK-RESULT "


class BenchmarkError(RuntimeError):
    """A benchmark could not produce its figures (a child failed, a check did not hold)."""


@dataclass(frozen=True)
class Goal:
    """A target from the issues: a floor, a ceiling, or both (a rate held within a band)."""

    low: float | None = None
    high: float | None = None

    @classmethod
    def at_least(cls, value: float) -> Goal:
        return cls(low=value)

    @classmethod
    def at_most(cls, value: float) -> Goal:
        return cls(high=value)

    @classmethod
    def within(cls, target: float, share: float) -> Goal:
        return cls(low=target * (1 - share), high=target * (1 + share))

    def met(self, value: float) -> bool:
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)

    def describe(self, unit: str) -> str:
        if self.low is not None and self.high is not None:
            return f"{format_number(self.low)}–{format_number(self.high)} {unit}"
        if self.low is not None:
            return f"≥ {format_number(self.low)} {unit}"
        assert self.high is not None
        return f"≤ {format_number(self.high)} {unit}"


@dataclass(frozen=True)
class Figure:
    """One measured number, as it appears in the table. ``checked`` is False when the run
    behind it broke a promise (a message lost or sent twice): then no speed counts."""

    benchmark: str
    case: str
    value: float
    unit: str
    goal: Goal | None = None
    detail: str = ""
    checked: bool = True

    @property
    def verdict(self) -> str:
        if not self.checked:
            return "FAILED CHECK"
        if self.goal is None:
            return ""
        return "met" if self.goal.met(self.value) else "NOT MET"


@dataclass(frozen=True)
class ChildRun:
    """What a child reported, and what the kernel says it cost."""

    result: dict[str, Any]
    peak_rss_mb: float


def format_number(value: float) -> str:
    """Thousands separated; one decimal below 100, where it still says something."""
    if abs(value) >= 100 or value == int(value):
        return f"{value:,.0f}"
    return f"{value:,.1f}"


def run_child(module: str, args: Sequence[str]) -> ChildRun:
    """Run ``python -m module *args`` to completion and return its result and peak RSS.

    The child is reaped with ``wait4`` so its rusage is its own, not the maximum over every
    child this process ever had (which is all ``RUSAGE_CHILDREN`` can tell).
    """
    command = [sys.executable, "-m", module, *args]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        output = proc.stdout.read()
    finally:
        proc.stdout.close()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise BenchmarkError(f"{' '.join(command[2:])} exited with {proc.returncode}")
    for line in reversed(output.splitlines()):
        if line.startswith(RESULT_MARKER):
            result = json.loads(line.removeprefix(RESULT_MARKER))
            break
    else:
        raise BenchmarkError(f"{' '.join(command[2:])} reported no result")
    return ChildRun(result, usage.ru_maxrss / 1024)  # Linux reports kilobytes


def progress(text: str) -> None:
    """A line on stderr while a long run goes on; stdout keeps the table."""
    print(f"... {text}", file=sys.stderr, flush=True)


def report(result: dict[str, Any]) -> None:
    """The child's side of :func:`run_child`: hand the figures to the parent."""
    print(RESULT_MARKER + json.dumps(result), flush=True)


# --- databases ----------------------------------------------------------------------------


@contextmanager
def database(backend: str, directory: Path, name: str) -> Iterator[str]:
    """A fresh database URL on ``backend`` ("sqlite" or "postgres"), gone afterwards."""
    if backend == "postgres":
        with postgres_database() as url:
            yield url
        return
    path = directory / f"{name}.db"
    try:
        yield f"sqlite+aiosqlite:///{path}"
    finally:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


def postgres_available() -> bool:
    try:
        asyncio.run(_pg_admin("SELECT 1"))
    except (OSError, DBAPIError):
        return False
    return True


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one measurement, dropped afterwards."""
    name = f"dripbot_bench_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+asyncpg://{_PG_HOST}/{name}"
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _pg_admin(statement: str) -> str:
    """Run one statement outside a transaction (CREATE DATABASE needs that); its first value."""
    admin = PG_ADMIN_DSN.replace("postgresql://", "postgresql+asyncpg://", 1)
    engine = create_async_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            result = await conn.execute(text(statement))
            return str(result.scalar()) if result.returns_rows else ""
    finally:
        await engine.dispose()


# --- the machine --------------------------------------------------------------------------


def machine() -> dict[str, str]:
    """What the figures were measured on, for the table's header and the README."""
    try:
        postgres = asyncio.run(_pg_admin("SHOW server_version"))
    except (OSError, DBAPIError):
        postgres = "unavailable"
    return {
        "CPU": _cpu_model(),
        "cores": str(os.cpu_count() or "?"),
        "RAM": _memory(),
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "SQLite": sqlite3.sqlite_version,
        "PostgreSQL": postgres,
        "SQLAlchemy": _version("sqlalchemy"),
        "aiohttp": _version("aiohttp"),
        "aiosqlite": _version("aiosqlite"),
        "asyncpg": _version("asyncpg"),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory() -> str:
    try:
        with open("/proc/meminfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("MemTotal:"):
                    return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


# --- the table ----------------------------------------------------------------------------

_COLUMNS: Final = ("benchmark", "case", "result", "goal", "", "detail")


def table_rows(figures: Sequence[Figure]) -> list[tuple[str, ...]]:
    return [
        (
            figure.benchmark,
            figure.case,
            f"{format_number(figure.value)} {figure.unit}",
            figure.goal.describe(figure.unit) if figure.goal else "",
            figure.verdict,
            figure.detail,
        )
        for figure in figures
    ]


def format_table(figures: Sequence[Figure]) -> str:
    """A plain aligned table for the terminal."""
    rows = [_COLUMNS, *table_rows(figures)]
    widths = [max(len(row[at]) for row in rows) for at in range(len(_COLUMNS))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


def format_markdown(figures: Sequence[Figure]) -> str:
    """The same table in Markdown, to paste into benchmarks/README.md."""
    header = ("benchmark", "case", "result", "goal", "met", "detail")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(figures)]
    return "\n".join(lines)


def format_machine(description: dict[str, str]) -> str:
    return "\n".join(f"{key + ':':<12} {value}" for key, value in description.items())
