"""Create the enrolment tables: users, totp_tokens, passwords, key_check.

Revision ID: 0001
Revises:
Create Date: 2025-11-25

The tables are written out here rather than taken from ``sql_enrolments.metadata``: a revision
is a frozen record of one schema step, while the metadata follows the latest one.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("username", sa.String(255), nullable=False),
        sa.Column("display_name", sa.String(255), nullable=False, server_default=""),
        sa.Column("email", sa.String(255), nullable=False, server_default=""),
        sa.Column("phone", sa.String(32), nullable=False, server_default=""),
        sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("username", name="uq_users_username"),
    )
    op.create_table(
        "totp_tokens",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("secret_enc", sa.Text(), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("digits", sa.Integer(), nullable=False),
        sa.Column("time_step", sa.Integer(), nullable=False),
        sa.Column("algorithm", sa.String(16), nullable=False),
        sa.Column("serial", sa.String(255), nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_totp_tokens"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_totp_tokens_user_id_users", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_totp_tokens_user_id", "totp_tokens", ["user_id"])
    op.create_index("ix_totp_tokens_key_id", "totp_tokens", ["key_id"])
    op.create_table(
        "passwords",
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("hash", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name="pk_passwords"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_passwords_user_id_users", ondelete="CASCADE"
        ),
    )
    op.create_table(
        "key_check",
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("check_enc", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key_id", name="pk_key_check"),
    )


def downgrade() -> None:
    op.drop_table("key_check")
    op.drop_table("passwords")
    op.drop_index("ix_totp_tokens_key_id", table_name="totp_tokens")
    op.drop_index("ix_totp_tokens_user_id", table_name="totp_tokens")
    op.drop_table("totp_tokens")
    op.drop_table("users")
