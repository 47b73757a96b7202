"""Persistence: SQLAlchemy models, engine set-up, queries and migrations.

This package imports nothing from ``bot``, ``handlers`` or ``scheduler``: it is the floor
the rest of the house stands on.
"""
