"""Initial schema: sites, products, jobs, composites, published items, downloads

Revision ID: 0001
Revises:
Create Date: 2026-11-24

Generated with ``python -m l2a.production.db revision`` from l2a.production.models.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sites",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sites")),
        sa.UniqueConstraint("name", name=op.f("uq_sites_name")),
    )
    op.create_table(
        "products",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("platform", sa.String(length=8), nullable=False),
        sa.Column("tile", sa.String(length=8), nullable=False),
        sa.Column("sensing_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("level", sa.String(length=4), nullable=False),
        sa.Column("baseline", sa.String(length=8), nullable=False),
        sa.Column("discriminator", sa.String(length=16), nullable=False),
        sa.Column("relative_orbit", sa.Integer(), nullable=True),
        sa.Column("cloud_cover", sa.Float(), nullable=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("local_path", sa.Text(), nullable=True),
        sa.Column(
            "state",
            sa.Enum(
                "discovered",
                "queued",
                "running",
                "done",
                "failed",
                "superseded",
                "ignored",
                name="productstate",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("checksum", sa.String(length=160), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("site_id", sa.Integer(), nullable=True),
        sa.Column("superseded_by_id", sa.Integer(), nullable=True),
        sa.Column("discovered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name=op.f("fk_products_site_id_sites"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["superseded_by_id"],
            ["products.id"],
            name=op.f("fk_products_superseded_by_id_products"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_products")),
        sa.UniqueConstraint(
            "key", "baseline", "discriminator", name=op.f("uq_products_key_baseline_discriminator")
        ),
    )
    op.create_index(op.f("ix_products_key"), "products", ["key"], unique=False)
    op.create_index("ix_products_state", "products", ["state"], unique=False)
    op.create_index("ix_products_tile_sensing", "products", ["tile", "sensing_time"], unique=False)

    op.create_table(
        "downloads",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.String(length=255), nullable=False),
        sa.Column("asset", sa.String(length=100), nullable=True),
        sa.Column("product_id", sa.Integer(), nullable=True),
        sa.Column("user", sa.String(length=255), nullable=False),
        sa.Column("client", sa.String(length=255), nullable=True),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["products.id"],
            name=op.f("fk_downloads_product_id_products"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_downloads")),
    )
    op.create_index(op.f("ix_downloads_item_id"), "downloads", ["item_id"], unique=False)
    op.create_index("ix_downloads_time", "downloads", ["time"], unique=False)

    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("tile", sa.String(length=8), nullable=False),
        sa.Column("sensing_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "mode",
            sa.Enum("INIT", "NOMINAL", "BACKWARD", name="jobmode", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column(
            "state",
            sa.Enum(
                "queued",
                "running",
                "done",
                "failed",
                "cancelled",
                name="jobstate",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=True),
        sa.Column("worker", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("output_path", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["products.id"],
            name=op.f("fk_jobs_product_id_products"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    op.create_index("ix_jobs_claim", "jobs", ["state", "not_before", "priority"], unique=False)
    op.create_index(op.f("ix_jobs_product_id"), "jobs", ["product_id"], unique=False)
    op.create_index("ix_jobs_tile_sensing", "jobs", ["tile", "sensing_time"], unique=False)

    op.create_table(
        "published_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.String(length=255), nullable=False),
        sa.Column("collection", sa.String(length=100), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=True),
        sa.Column("href", sa.Text(), nullable=False),
        sa.Column("checksum", sa.String(length=160), nullable=True),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["products.id"],
            name=op.f("fk_published_items_product_id_products"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_published_items")),
        sa.UniqueConstraint("item_id", name=op.f("uq_published_items_item_id")),
    )
    op.create_index(
        op.f("ix_published_items_product_id"), "published_items", ["product_id"], unique=False
    )

    op.create_table(
        "composites",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tile", sa.String(length=8), nullable=False),
        sa.Column("date", sa.DateTime(timezone=True), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_composites_job_id_jobs"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_composites")),
        sa.UniqueConstraint("tile", "date", name=op.f("uq_composites_tile_date")),
    )


def downgrade() -> None:
    op.drop_table("composites")
    op.drop_index(op.f("ix_published_items_product_id"), table_name="published_items")

    op.drop_table("published_items")
    op.drop_index("ix_jobs_tile_sensing", table_name="jobs")
    op.drop_index(op.f("ix_jobs_product_id"), table_name="jobs")
    op.drop_index("ix_jobs_claim", table_name="jobs")

    op.drop_table("jobs")
    op.drop_index("ix_downloads_time", table_name="downloads")
    op.drop_index(op.f("ix_downloads_item_id"), table_name="downloads")

    op.drop_table("downloads")
    op.drop_index("ix_products_tile_sensing", table_name="products")
    op.drop_index("ix_products_state", table_name="products")
    op.drop_index(op.f("ix_products_key"), table_name="products")

    op.drop_table("products")
    op.drop_table("sites")
