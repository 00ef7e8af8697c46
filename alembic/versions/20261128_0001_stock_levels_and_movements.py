"""stock levels and movements

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PRODUCT_ID = sa.String(64).with_variant(sa.String(64, collation="C"), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "stock_levels",
        sa.Column("product_id", PRODUCT_ID, nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "quantity >= 0 AND quantity <= 1000000000",
            name=op.f("ck_stock_levels_quantity_range"),
        ),
        sa.PrimaryKeyConstraint("product_id", name=op.f("pk_stock_levels")),
    )
    op.create_table(
        "movements",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("product_id", PRODUCT_ID, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("delta", sa.BigInteger(), nullable=False),
        sa.Column("quantity_after", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(200), nullable=True),
        sa.Column("purchase_id", sa.String(36), nullable=True),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_movements")),
    )
    op.create_index("ix_movements_product_id_id", "movements", ["product_id", "id"])
    op.create_index(op.f("ix_movements_purchase_id"), "movements", ["purchase_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_movements_purchase_id"), table_name="movements")
    op.drop_index("ix_movements_product_id_id", table_name="movements")
    op.drop_table("movements")
    op.drop_table("stock_levels")
