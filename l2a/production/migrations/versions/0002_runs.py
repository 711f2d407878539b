"""Runs: who drives ``l2a run``/``watch``/``demo``, on which cluster, and its dask dashboard link

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24

Generated with ``python -m l2a.production.db revision`` from l2a.production.models.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("runner", sa.String(length=255), nullable=False),
        sa.Column("command", sa.String(length=16), nullable=False),
        sa.Column("cluster", sa.String(length=32), nullable=False),
        sa.Column("scheduler", sa.String(length=512), nullable=True),
        sa.Column("dashboard_link", sa.String(length=512), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
    )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index("ix_runs_started", ["started_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_started")
    op.drop_table("runs")
