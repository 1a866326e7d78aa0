"""Initial history schema: users, problems, images, attempts, candidates, messages, feedback.

Feedback here is a bare thumbs up/down; the free-text comment arrives in 0002.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def _ts() -> sa.Column:
    return sa.Column("created_at", sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ext_id", sa.String(128), nullable=False),
        _ts(),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("ext_id", name="uq_users_ext_id"),
    )
    op.create_table(
        "problems",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("subject", sa.String(32), nullable=False),
        sa.Column("problem_type", sa.String(32), nullable=True),
        sa.Column("question", sa.Text(), nullable=False),
        sa.Column("lang", sa.String(8), nullable=False),
        sa.Column("gold_answer", sa.Text(), nullable=True),
        _ts(),
        sa.PrimaryKeyConstraint("id", name="pk_problems"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_problems_user_id_users", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_problems_user_created", "problems", ["user_id", "created_at"])
    op.create_table(
        "problem_images",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("problem_id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("path", sa.String(1024), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_problem_images"),
        sa.ForeignKeyConstraint(
            ["problem_id"], ["problems.id"], name="fk_problem_images_problem_id_problems", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("problem_id", "position", name="uq_problem_images_problem_id"),
    )
    op.create_index("ix_problem_images_problem_id", "problem_images", ["problem_id"])
    op.create_index("ix_problem_images_sha256", "problem_images", ["sha256"])
    op.create_table(
        "attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("problem_id", sa.Integer(), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("backend", sa.String(50), nullable=False),
        sa.Column("sampling", sa.JSON(), nullable=False),
        sa.Column("timings", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        _ts(),
        sa.PrimaryKeyConstraint("id", name="pk_attempts"),
        sa.ForeignKeyConstraint(
            ["problem_id"], ["problems.id"], name="fk_attempts_problem_id_problems", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_attempts_problem_id", "attempts", ["problem_id"])
    op.create_table(
        "candidates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("attempt_id", sa.Integer(), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("thinking", sa.Text(), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("reward", sa.Float(), nullable=True),
        sa.Column("tokens", sa.Integer(), nullable=False),
        sa.Column("chosen", sa.Boolean(), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=True),
        sa.Column("agreement", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_candidates"),
        sa.ForeignKeyConstraint(
            ["attempt_id"], ["attempts.id"], name="fk_candidates_attempt_id_attempts", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("attempt_id", "idx", name="uq_candidates_attempt_id"),
    )
    op.create_index("ix_candidates_attempt_id", "candidates", ["attempt_id"])
    op.create_table(
        "messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("problem_id", sa.Integer(), nullable=False),
        sa.Column("attempt_id", sa.Integer(), nullable=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        _ts(),
        sa.PrimaryKeyConstraint("id", name="pk_messages"),
        sa.ForeignKeyConstraint(
            ["problem_id"], ["problems.id"], name="fk_messages_problem_id_problems", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["attempt_id"], ["attempts.id"], name="fk_messages_attempt_id_attempts", ondelete="SET NULL"
        ),
        sa.UniqueConstraint("problem_id", "position", name="uq_messages_problem_id"),
    )
    op.create_index("ix_messages_problem_id", "messages", ["problem_id"])
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("attempt_id", sa.Integer(), nullable=False),
        sa.Column("up", sa.Boolean(), nullable=False),
        _ts(),
        sa.PrimaryKeyConstraint("id", name="pk_feedback"),
        sa.ForeignKeyConstraint(
            ["attempt_id"], ["attempts.id"], name="fk_feedback_attempt_id_attempts", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_feedback_attempt_id", "feedback", ["attempt_id"])


def downgrade() -> None:
    for table in ("feedback", "messages", "candidates", "attempts", "problem_images", "problems", "users"):
        op.drop_table(table)
