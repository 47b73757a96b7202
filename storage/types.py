"""Column types.

SQLite stores datetimes without their offset; this type insists on aware UTC values going
in and re-attaches UTC coming out, so the rest of the code only ever sees aware instants.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on every backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r} given to a UTC column")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        """On SQLite, write the very text SQLAlchemy's DATETIME would, without its slow path.

        Bulk imports bind a dozen timestamps per row; ``isoformat`` is several times faster
        than the generic formatter, and the stored text (and so its ordering) is unchanged.
        """
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)
        # An import binds a handful of distinct instants a million times: remember them.
        cache: dict[datetime, str] = {}

        def process(value: datetime | None) -> str | None:
            if value is None:
                return None
            text = cache.get(value)
            if text is not None and value.tzinfo is not None:
                return text
            if value.tzinfo is None or value.utcoffset() is None:
                raise ValueError(f"naive datetime {value!r} given to a UTC column")
            text = value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
            if len(cache) >= 4096:
                cache.clear()
            cache[value] = text
            return text

        return process

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], Any] | None:
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)

        def process(value: str | datetime | None) -> datetime | None:
            if value is None:
                return None
            if isinstance(value, str):
                value = datetime.fromisoformat(value)
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

        return process

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # raw SQL paths on SQLite
            value = datetime.fromisoformat(value)
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
