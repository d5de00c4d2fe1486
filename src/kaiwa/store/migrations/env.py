"""Alembic environment: kaiwa always hands over an open connection (see `store.db.migrate`)."""

from alembic import context

from kaiwa.store.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("kaiwa migrations run through kaiwa.store.db.migrate(), not the alembic CLI")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
