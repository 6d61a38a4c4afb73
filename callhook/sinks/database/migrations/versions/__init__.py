"""Schema revisions, oldest first: `0001_...`, `0002_...` (Alembic skips this file)."""
