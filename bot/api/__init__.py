"""The REST API (``/api``): sequences, enrollments and stats for forms, CRMs and scripts."""

from __future__ import annotations

from bot.api.routes import setup_api

__all__ = ["setup_api"]
