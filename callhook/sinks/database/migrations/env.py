"""Alembic's environment script: migrates on the connection `migrate.py` lends it.

Callhook runs Alembic programmatically only; `migrate.py` opens the transaction (and on
PostgreSQL takes the advisory lock) and passes its connection in `config.attributes`.
"""

from __future__ import annotations

from alembic import context

from callhook.sinks.database.tables import metadata

context.configure(
    connection=context.config.attributes["connection"],
    target_metadata=metadata,
    version_table=context.config.attributes["version_table"],
)
with context.begin_transaction():
    context.run_migrations()
