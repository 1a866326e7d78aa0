"""Attempt status "interrupted" (a run the app was killed in the middle of); the status set enforced.

The allowed statuses become running, done, error, stopped, interrupted. ``Store.mark_interrupted``
(run when the app starts) moves attempts a killed process left "running" to "interrupted"; the index
on ``attempts.status`` keeps that scan cheap. The set is enforced by the database: a CHECK
constraint on PostgreSQL; on SQLite, triggers (adding a CHECK there would mean rebuilding the table,
and dropping ``attempts`` with foreign keys on would cascade into candidates and feedback).

Revision ID: 0003
Revises: 0002
Create Date: 2025-01-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

STATUSES = ("running", "done", "error", "stopped", "interrupted")
_IN = "status IN (" + ", ".join(f"'{s}'" for s in STATUSES) + ")"


def upgrade() -> None:
    op.create_index("ix_attempts_status", "attempts", ["status"])
    if op.get_bind().dialect.name == "sqlite":
        for event in ("INSERT", "UPDATE OF status"):
            name = "ck_attempts_status_" + event.split()[0].lower()
            op.execute(sa.text(
                f"CREATE TRIGGER {name} BEFORE {event} ON attempts "
                f"WHEN NOT (NEW.{_IN}) BEGIN SELECT RAISE(ABORT, 'invalid attempt status'); END"
            ))
    else:
        op.create_check_constraint(op.f("ck_attempts_status"), "attempts", sa.text(_IN))


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(sa.text("DROP TRIGGER IF EXISTS ck_attempts_status_insert"))
        op.execute(sa.text("DROP TRIGGER IF EXISTS ck_attempts_status_update"))
    else:
        op.drop_constraint(op.f("ck_attempts_status"), "attempts", type_="check")
    op.execute(sa.text("UPDATE attempts SET status = 'error' WHERE status = 'interrupted'"))
    op.drop_index("ix_attempts_status", table_name="attempts")
