"""``dripbot admin``: the admin commands in a terminal, on the same database as ``serve``.

The same interpreter answers here as in Telegram and WhatsApp; documents and charts are
written to files in the current directory and their paths printed.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TextIO

from bot.config import Settings
from bot.wiring import build_interpreter
from handlers.interpreter import Interpreter
from handlers.replies import Actor, Reply
from scheduler.clock import Clock, SystemClock
from storage.database import Database

PROMPT = "dripbot> "
CLI_ACTOR = Actor(channel="cli", identifier="console")


async def run_admin(
    settings: Settings,
    command: str | None,
    *,
    clock: Clock | None = None,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    output_dir: Path | None = None,
) -> int:
    """Run one command (exit 0 if it succeeded, 1 if not) or an interactive prompt."""
    clock = clock or SystemClock()
    out = stdout or sys.stdout
    folder = output_dir or Path.cwd()
    db = await Database.open(settings.database_url, workspace=settings.workspace, now=clock.now())
    try:
        interpreter = build_interpreter(settings, db, clock)
        if command is not None:
            reply = await interpreter.run(CLI_ACTOR, command)
            await _print(reply, out, folder)
            return 0 if reply.ok else 1
        return await _prompt(interpreter, stdin or sys.stdin, out, folder)
    finally:
        await db.close()


async def _prompt(interpreter: Interpreter, stdin: TextIO, out: TextIO, folder: Path) -> int:
    """Read commands until EOF; a command ending in ':' or a blank line continues a block.

    Multi-line commands (/newsequence with steps, /enroll with numbers) are entered line by
    line and finished with an empty line.
    """
    print(
        "dripbot admin — /help lists the commands; an empty line ends a multi-line one; "
        "Ctrl-D quits.",
        file=out,
    )
    buffer: list[str] = []
    while True:
        print(PROMPT if not buffer else "... ", end="", file=out, flush=True)
        line = await asyncio.to_thread(stdin.readline)
        if not line:
            if buffer:
                await _print(await interpreter.run(CLI_ACTOR, "\n".join(buffer)), out, folder)
            print(file=out)
            return 0
        line = line.rstrip("\n")
        if line.strip() in ("quit", "exit", "/quit", "/exit") and not buffer:
            return 0
        if buffer and not line.strip():
            await _print(await interpreter.run(CLI_ACTOR, "\n".join(buffer)), out, folder)
            buffer = []
            continue
        if not line.strip():
            continue
        if not buffer and not _opens_block(line):
            await _print(await interpreter.run(CLI_ACTOR, line), out, folder)
            continue
        buffer.append(line)


def _opens_block(line: str) -> bool:
    """Commands that take lines after them: /newsequence and a bare /enroll <seq>."""
    words = line.split()
    if not words:
        return False
    head = words[0].lower()
    return head == "/newsequence" or (head == "/enroll" and len(words) == 2)


async def _print(reply: Reply, out: TextIO, folder: Path) -> None:
    if reply.text:
        print(reply.text, file=out, flush=True)
    for attachment in (reply.document, reply.image):
        if attachment is None:
            continue
        path = folder / attachment.filename
        await asyncio.to_thread(path.write_bytes, attachment.data)
        print(f"(saved {path})", file=out, flush=True)
