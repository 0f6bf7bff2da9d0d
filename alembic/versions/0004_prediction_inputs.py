"""predictions: a title-aware model's guess from the picture alone and from the title alone

Revision ID: 0004_prediction_inputs
Revises: 0003_availability
Create Date: 2026-12-03 14:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0004_prediction_inputs'
down_revision = '0003_availability'
branch_labels = None
depends_on = None

FKS = {
    'image_category_id': 'fk_predictions_image_category_id_categories',
    'title_category_id': 'fk_predictions_title_category_id_categories',
}


def upgrade() -> None:
    with op.batch_alter_table('predictions') as batch:
        for column, name in FKS.items():
            batch.add_column(sa.Column(column, sa.Integer(), nullable=True))
            batch.create_foreign_key(name, 'categories', [column], ['id'])
        batch.add_column(sa.Column('image_confidence', sa.Float(), nullable=True))
        batch.add_column(sa.Column('title_confidence', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('predictions') as batch:
        for column, name in FKS.items():
            batch.drop_constraint(name, type_='foreignkey')
            batch.drop_column(column)
        batch.drop_column('image_confidence')
        batch.drop_column('title_confidence')
