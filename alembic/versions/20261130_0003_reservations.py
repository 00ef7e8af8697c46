"""reservations: held stock

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PRODUCT_ID = sa.String(64).with_variant(sa.String(64, collation="C"), "postgresql")


def upgrade() -> None:
    # A column constraint, so that SQLite adds it with ALTER TABLE ADD COLUMN instead of
    # rebuilding the table; both engines check it on every row, whichever column changes.
    op.add_column(
        "stock_levels",
        sa.Column(
            "reserved",
            sa.BigInteger(),
            sa.CheckConstraint(
                "reserved >= 0 AND reserved <= quantity",
                name=op.f("ck_stock_levels_reserved_range"),
            ),
            nullable=False,
            server_default="0",
        ),
    )
    op.create_table(
        "reservations",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reference", sa.String(100), nullable=True),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("purchase_id", sa.String(36), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reservations")),
    )
    op.create_index("ix_reservations_status_expires_at", "reservations", ["status", "expires_at"])
    op.create_index("ix_reservations_created_at_id", "reservations", ["created_at", "id"])
    op.create_table(
        "reservation_lines",
        sa.Column("reservation_id", sa.String(36), nullable=False),
        sa.Column("product_id", PRODUCT_ID, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("unit_price", sa.String(40), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("held", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["reservation_id"],
            ["reservations.id"],
            name=op.f("fk_reservation_lines_reservation_id_reservations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("reservation_id", "product_id", name=op.f("pk_reservation_lines")),
    )
    op.create_index(
        "ix_reservation_lines_held_product_id_expires_at",
        "reservation_lines",
        ["held", "product_id", "expires_at"],
    )
    op.create_index("ix_reservation_lines_product_id", "reservation_lines", ["product_id"])


def downgrade() -> None:
    op.drop_index("ix_reservation_lines_product_id", table_name="reservation_lines")
    op.drop_index("ix_reservation_lines_held_product_id_expires_at", table_name="reservation_lines")
    op.drop_table("reservation_lines")
    op.drop_index("ix_reservations_created_at_id", table_name="reservations")
    op.drop_index("ix_reservations_status_expires_at", table_name="reservations")
    op.drop_table("reservations")
    op.drop_column("stock_levels", "reserved")
