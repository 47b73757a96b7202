"""``dripbot apikey create|list|revoke``: REST API keys from the command line.

``create`` prints the key once, alone on standard output (so ``KEY=$(dripbot apikey create
--scope public)`` works) and the explanation on standard error. The key cannot be shown
again: only its hash is stored.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import TextIO

from bot.config import Settings
from scheduler.clock import Clock, SystemClock
from storage.api_keys import (
    SCOPES,
    ApiKeyRecord,
    create_api_key,
    list_api_keys,
    revoke_api_key,
)
from storage.database import Database
from storage.errors import StorageError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dripbot apikey",
        description="Manage REST API keys. Admin keys reach every /api route; public keys "
        "only /api/public/* (forms).",
    )
    commands = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = commands.add_parser("create", help="make a key and print it once")
    create.add_argument("--scope", required=True, choices=SCOPES, help="admin or public")
    create.add_argument("--name", default="", help="a label, e.g. the form or system using it")
    commands.add_parser("list", help="list keys (prefix, scope, name, state)")
    revoke = commands.add_parser("revoke", help="revoke a key by its id or prefix")
    revoke.add_argument("key", metavar="ID-OR-PREFIX")
    return parser


def apikey_main(
    args: Sequence[str],
    settings: Settings,
    *,
    clock: Clock | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run ``dripbot apikey <args>``; the exit status."""
    stdout, stderr = out or sys.stdout, err or sys.stderr
    parser = build_parser()
    try:
        parsed = parser.parse_args(list(args))
    except SystemExit as exit_:  # --help and usage errors
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    return asyncio.run(_run(parsed, settings, clock or SystemClock(), stdout, stderr))


async def _run(
    args: argparse.Namespace, settings: Settings, clock: Clock, out: TextIO, err: TextIO
) -> int:
    db = await Database.open(settings.database_url, workspace=settings.workspace, now=clock.now())
    try:
        if args.action == "create":
            made = await create_api_key(db, scope=args.scope, name=args.name, now=clock.now())
            label = f" {made.record.name!r}" if made.record.name else ""
            print(
                f"Created {made.record.scope} API key {made.record.id}{label} "
                f"(prefix {made.record.prefix}). It is shown only now; keep it somewhere safe.",
                file=err,
            )
            print(made.plaintext, file=out)
        elif args.action == "list":
            keys = await list_api_keys(db)
            if not keys:
                print("No API keys yet: dripbot apikey create --scope admin|public", file=out)
            for key in keys:
                print(_line(key), file=out)
        else:
            revoked = await revoke_api_key(db, args.key, now=clock.now())
            print(f"Revoked: {_line(revoked)}", file=out)
    except StorageError as problem:
        print(f"dripbot apikey: {problem}", file=err)
        return EXIT_FAILURE
    finally:
        await db.close()
    return EXIT_OK


def _line(key: ApiKeyRecord) -> str:
    state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M} UTC" if key.revoked_at else "active"
    name = key.name or "-"
    return (
        f"{key.id:>4}  {key.prefix}...  {key.scope:<6}  {state:<24}  "
        f"created {key.created_at:%Y-%m-%d}  {name}"
    )
