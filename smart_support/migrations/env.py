"""Alembic environment: runs on the connection that Storage.migrate hands over (under its
lock), or on a fresh engine when the alembic command line is pointed at a URL."""
from alembic import context
from sqlalchemy import create_engine

from smart_support.storage import metadata

config = context.config


def run(connection) -> None:
    context.configure(connection=connection, target_metadata=metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=metadata,
                      literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
elif config.attributes.get("connection") is not None:
    run(config.attributes["connection"])
else:
    with create_engine(config.get_main_option("sqlalchemy.url")).connect() as connection:
        run(connection)
        connection.commit()
