"""Write a migration from the difference between the models and the migrated schema.

Usage: ``python -m storage.migrations.autogenerate "message" 0002``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from alembic import command

from storage.migrate import alembic_config


def main() -> None:
    message, rev_id = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory() as folder:
        config = alembic_config()
        url = f"sqlite+aiosqlite:///{Path(folder) / 'autogen.db'}"
        config.set_main_option("sqlalchemy.url", url)
        command.upgrade(config, "head")
        command.revision(config, message=message, autogenerate=True, rev_id=rev_id)


if __name__ == "__main__":
    main()
