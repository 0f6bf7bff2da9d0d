"""products.availability: the schema.org availability a product page showed (InStock, ...)

Revision ID: 0003_availability
Revises: 0002
Create Date: 2026-12-03 13:30:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0003_availability'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('products') as batch:
        batch.add_column(sa.Column('availability', sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('products') as batch:
        batch.drop_column('availability')
