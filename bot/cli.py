"""``dripbot``: the command line (``serve``, ``migrate``, ``admin``).

Settings are read once here and passed down. A bad value ends the program with one line
naming the variable and exit status 2, before anything is opened.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version

from aiohttp import web
from alembic.runtime.migration import MigrationContext
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from bot import heap
from bot.admin_console import run_admin
from bot.apikey_cli import apikey_main
from bot.app import create_app
from bot.config import ConfigError, Settings, load_settings
from bot.logs import configure_logging, mask_line, safe_url, secrets_of
from scheduler.clock import SystemClock
from storage.database import Database

log = logging.getLogger("dripbot")

#: seconds ``serve`` waits for requests in progress when told to stop
SHUTDOWN_TIMEOUT = 10.0

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _version() -> str:
    try:
        return version("dripbot")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dripbot",
        description="WhatsApp drip sequences, administered from chat.",
        epilog="Configuration comes from DRIPBOT_* environment variables and a .env file; "
        "nothing is required to start.",
    )
    parser.add_argument("--version", action="version", version=f"dripbot {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser(
        "serve",
        help="run the server: webhook, REST API, health, metrics and the dispatch scheduler",
        description="Apply pending migrations, then serve until SIGTERM or Ctrl-C.",
    )
    serve.add_argument("--host", help="address to listen on (default: DRIPBOT_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default: DRIPBOT_PORT, 8080)")

    commands.add_parser(
        "migrate",
        help="apply pending database migrations and print the schema revision",
        description="Bring the database at DRIPBOT_DATABASE_URL up to date.",
    )

    admin = commands.add_parser(
        "admin",
        help="run one admin chat command locally, or open a prompt",
        description='Run an admin command as in Telegram, e.g. dripbot admin "/list"; '
        "with no command, open an interactive prompt.",
    )
    admin.add_argument("text", nargs="?", metavar="COMMAND", help="the command, quoted")

    apikey = commands.add_parser(
        "apikey",
        help="create, list or revoke REST API keys",
        description="dripbot apikey create --scope admin|public [--name N] prints a new key "
        "once; dripbot apikey list; dripbot apikey revoke <id|prefix>.",
    )
    apikey.add_argument("args", nargs=argparse.REMAINDER, help="create | list | revoke ...")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version and usage errors
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    overrides = {}
    if args.command == "serve":
        overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    try:
        settings = load_settings(**overrides)
    except ConfigError as err:
        print(f"dripbot: {err}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(settings)
    if args.command == "serve":
        return _guarded(serve, settings, "could not start")
    if args.command == "migrate":
        return _guarded(migrate, settings, "cannot use the database")
    if args.command == "apikey":
        return _guarded(lambda s: apikey_main(args.args, s), settings, "cannot use the database")
    return admin(settings, args.text)


def _guarded(command: Callable[[Settings], int], settings: Settings, failure: str) -> int:
    """Run ``command``, turning an unusable database or address into one clear line."""
    try:
        return command(settings)
    except (ArgumentError, NoSuchModuleError) as err:
        message = mask_line(str(err), secrets_of(settings))
        print(f"dripbot: DRIPBOT_DATABASE_URL: {message}", file=sys.stderr)
        return EXIT_USAGE
    except (SQLAlchemyError, OSError) as err:
        message = mask_line(
            str(err).splitlines()[0] if str(err) else repr(err), secrets_of(settings)
        )
        print(f"dripbot: {failure}: {message}", file=sys.stderr)
        return EXIT_FAILURE


def serve(settings: Settings) -> int:
    log.info(
        "dripbot %s starting: database %s, listening on %s:%s",
        _version(),
        safe_url(settings.database_url),
        settings.host,
        settings.port,
    )
    app = create_app(settings)
    app.on_startup.append(heap.on_startup)
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        handle_signals=True,
        shutdown_timeout=SHUTDOWN_TIMEOUT,
        print=_announce,
    )
    log.info("dripbot stopped")
    return EXIT_OK


def _announce(text: str) -> None:
    """aiohttp's banner, as a log line."""
    first = text.strip().splitlines()[0] if text.strip() else text
    log.info("%s", first.strip("= ").replace("Running on", "serving on"))


def migrate(settings: Settings) -> int:
    revision = asyncio.run(_migrate(settings))
    print(f"{safe_url(settings.database_url)}: schema at revision {revision}")
    return EXIT_OK


async def _migrate(settings: Settings) -> str:
    db = await Database.open(
        settings.database_url, workspace=settings.workspace, now=SystemClock().now()
    )
    try:
        async with db.engine.connect() as conn:
            revision = await conn.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_revision()
            )
    finally:
        await db.close()
    return str(revision)


def admin(settings: Settings, text: str | None) -> int:
    return _guarded(lambda s: asyncio.run(run_admin(s, text)), settings, "admin command failed")


if __name__ == "__main__":
    sys.exit(main())
