"""Alembic environment for the history store.

Normally run by ``tutor.store.Store``, which passes an open connection in
``config.attributes["connection"]``. From the command line (new revisions, manual upgrades)::

    alembic -c tutor/alembic.ini upgrade head
    alembic -c tutor/alembic.ini revision --autogenerate -m "what changed"

uses ``R1V_DB_URL`` (or the default SQLite file, see ``tutor.settings``). Logging is left to the
application: this file does not call ``fileConfig``.
"""

from __future__ import annotations

from alembic import context

from tutor import settings
from tutor.store_schema import Base, make_engine

config = context.config
target_metadata = Base.metadata


def _configure(**kw: object) -> None:
    context.configure(target_metadata=target_metadata, compare_type=True, **kw)


def run_offline() -> None:
    """Print the SQL instead of running it (``alembic upgrade head --sql``)."""
    _configure(url=config.get_main_option("sqlalchemy.url") or settings.db_url(), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url") or settings.db_url())
    try:
        with engine.begin() as conn:
            _configure(connection=conn, render_as_batch=conn.dialect.name == "sqlite")
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
