"""Storage: SQLAlchemy models, Alembic migrations, one repository module per aggregate."""
