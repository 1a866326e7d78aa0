"""Problems are numbered per user (1, 2, 3 ...), and a number is never given twice.

``problems.number`` is what the page shows ("#3"); ``users.last_number`` counts a user's problems and
only goes up, so a deleted problem's number is not reused. Existing problems are numbered per user in
id order and each counter starts at the user's highest number. A unique index on (user_id, number)
guards the rule.

Only ``ADD COLUMN``, ``UPDATE`` and ``CREATE INDEX``: on SQLite a batch rebuild of ``problems`` would
drop the table, and with foreign keys on that cascades into every image, attempt and message of it.
For the same reason the downgrade drops the columns with SQLite's own ``ALTER TABLE ... DROP COLUMN``
(SQLite 3.35+) rather than a rebuild.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("users", sa.Column("last_number", sa.Integer(), nullable=False, server_default=sa.text("0")))
    op.add_column("problems", sa.Column("number", sa.Integer(), nullable=False, server_default=sa.text("0")))
    op.execute(sa.text(
        "UPDATE problems SET number = (SELECT COUNT(*) FROM problems AS older "
        "WHERE older.user_id = problems.user_id AND older.id <= problems.id)"
    ))
    op.execute(sa.text(
        "UPDATE users SET last_number = (SELECT COALESCE(MAX(problems.number), 0) FROM problems "
        "WHERE problems.user_id = users.id)"
    ))
    op.create_index("ix_problems_user_number", "problems", ["user_id", "number"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_problems_user_number", table_name="problems")
    for table, column in (("problems", "number"), ("users", "last_number")):
        op.execute(sa.text(f"ALTER TABLE {table} DROP COLUMN {column}"))
