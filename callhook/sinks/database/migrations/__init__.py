"""Alembic revisions of the database sink's schema, applied by `migrate.py` at sink start.

Revisions are written by hand, one file per step in `versions/`, each self-contained (no
imports from `tables.py`, which only describes the newest schema). The test suite checks
that the migrated schema matches `tables.py` on PostgreSQL and SQLite.
"""
