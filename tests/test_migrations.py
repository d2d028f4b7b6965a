"""Alembic migrations (smart_support/migrations) on SQLite and PostgreSQL: they build the schema
that storage.metadata describes, adopt v1 databases, and run once under concurrent start-ups."""
from __future__ import annotations

import contextlib
import threading
from datetime import datetime, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, insert, select

from smart_support import migrations
from smart_support.storage import Storage, alerts, feedback, metadata, predictions

V1_TABLES = {"predictions", "feedback", "alerts"}
DESK_TABLES = {"agents", "incidents", "tickets"}
ALL_TABLES = V1_TABLES | DESK_TABLES


@contextlib.contextmanager
def storage(url: str):
    store = Storage(url)
    try:
        yield store
    finally:
        store.engine.dispose()


@contextlib.contextmanager
def engine_for(url: str):
    engine = create_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def tables(engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def revision(engine) -> str | None:
    with engine.connect() as connection:
        return migrations.current(connection)


def columns(engine) -> dict[str, set[str]]:
    return {name: {c["name"] for c in inspect(engine).get_columns(name)} for name in ALL_TABLES}


def test_there_is_one_head_revision():
    assert migrations.head() == "0002"


def test_migrating_an_empty_database_reaches_head(database_url):
    with storage(database_url) as store:
        assert revision(store.engine) is None
        assert tables(store.engine) == set()
        store.migrate()
        assert revision(store.engine) == migrations.head()
        assert tables(store.engine) == ALL_TABLES


def test_migrating_twice_is_a_no_op(database_url):
    with storage(database_url) as store:
        store.migrate()
        store.add_feedback({"subject": "s", "description": "d", "category": "Billing"})
        schema = columns(store.engine)
        store.migrate()
        assert revision(store.engine) == migrations.head()
        assert columns(store.engine) == schema
        assert [r["subject"] for r in store.feedback_rows()] == ["s"]
    with storage(database_url) as other:  # a second process starting up later
        other.migrate()
        assert revision(other.engine) == migrations.head()
        assert len(other.feedback_rows()) == 1


def test_the_migrated_schema_matches_the_models(database_url):
    with storage(database_url) as store:
        store.migrate()
        with store.engine.connect() as connection:
            context = MigrationContext.configure(connection)
            differences = compare_metadata(context, metadata)
    assert differences == []


def test_migrating_to_the_first_revision_creates_only_the_v1_tables(database_url):
    with storage(database_url) as store:
        store.migrate("0001")
        assert revision(store.engine) == "0001"
        assert tables(store.engine) == V1_TABLES
        store.migrate()
        assert revision(store.engine) == migrations.head()
        assert tables(store.engine) == ALL_TABLES


def test_downgrading_to_base_removes_the_tables_and_migrate_restores_them(database_url):
    with storage(database_url) as store:
        store.migrate()
        with store.engine.connect() as connection:
            migrations.downgrade(connection, "base")
        assert revision(store.engine) is None
        assert tables(store.engine) == set()
        store.migrate()
        assert revision(store.engine) == migrations.head()
        assert tables(store.engine) == ALL_TABLES
        record = store.add_feedback({"subject": "s", "description": "d", "category": "Legal"})
        assert store.feedback_rows()[0]["id"] == record["id"]


def test_downgrading_one_step_removes_only_the_desk_tables(database_url):
    with storage(database_url) as store:
        store.migrate()
        store.add_feedback({"subject": "kept", "description": "d", "category": "Billing"})
        with store.engine.connect() as connection:
            migrations.downgrade(connection, "0001")
        assert revision(store.engine) == "0001"
        assert tables(store.engine) == V1_TABLES
        assert [r["subject"] for r in store.feedback_rows()] == ["kept"]


def test_a_database_written_by_v1_is_adopted(database_url):
    created = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    with engine_for(database_url) as engine:
        with engine.begin() as connection:  # what v1 did at start-up: create its own tables
            for table in (predictions, feedback, alerts):
                table.create(connection)
            connection.execute(insert(feedback), {
                "created_at": created, "ticket_id": "T-1", "subject": "refund",
                "description": "charged twice", "category": "Billing", "agent": "ana"})
        assert tables(engine) == V1_TABLES
        assert "alembic_version" not in inspect(engine).get_table_names()
    with storage(database_url) as store:
        store.migrate()
        assert revision(store.engine) == migrations.head()
        assert tables(store.engine) == ALL_TABLES
        rows = store.feedback_rows()
        assert len(rows) == 1
        assert (rows[0]["ticket_id"], rows[0]["subject"], rows[0]["description"],
                rows[0]["category"], rows[0]["agent"]) == \
            ("T-1", "refund", "charged twice", "Billing", "ana")
        assert rows[0]["created_at"] == created
        with store.engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), metadata)
        assert differences == []
        # and the adopted database is writable through the new code
        store.add_feedback({"subject": "new", "description": "d", "category": "Legal"})
        with store.engine.connect() as connection:
            subjects = connection.execute(select(feedback.c.subject)
                                          .order_by(feedback.c.id)).scalars().all()
        assert subjects == ["refund", "new"]


def test_concurrent_start_ups_migrate_a_fresh_database_once(database_url):
    workers = 4
    barrier = threading.Barrier(workers)
    errors: list[BaseException] = []
    # Should the migration lock ever break, racing start-ups block on each other's DDL; a lock
    # timeout turns that into a failure here instead of a hung suite (SQLite's own is 30 s).
    url = f"{database_url}%20-clock_timeout%3D20s" if "options=" in database_url \
        else database_url

    def start_up():
        try:
            with storage(url) as store:
                barrier.wait(timeout=30)
                store.migrate()
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=start_up, daemon=True) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    with engine_for(database_url) as engine:
        assert revision(engine) == migrations.head()
        assert tables(engine) == ALL_TABLES
        with engine.connect() as connection:
            versions = connection.exec_driver_sql(
                "SELECT version_num FROM alembic_version").scalars().all()
    assert versions == [migrations.head()]


def test_the_schema_comparison_would_notice_a_model_the_migrations_lack(database_url):
    """Guards the comparison above against passing vacuously."""
    from sqlalchemy import Column, MetaData, String

    changed = MetaData()
    for table in metadata.sorted_tables:
        table.to_metadata(changed)
    changed.tables["agents"].append_column(Column("team", String(50)))
    with storage(database_url) as store:
        store.migrate()
        with store.engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), changed)
    assert [(d[0], d[2], d[3].name) for d in differences] == [("add_column", "agents", "team")]


def test_the_db_command_line_upgrades_reports_and_refuses_unknown_revisions(tmp_path):
    from click.testing import CliRunner

    from smart_support.cli import main

    env = {"SMART_SUPPORT_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}
    runner = CliRunner()
    before = runner.invoke(main, ["db", "current"], env=env)
    assert before.exit_code == 0 and f"current None  head {migrations.head()}" in before.output
    assert runner.invoke(main, ["db", "upgrade"], env=env).exit_code == 0
    after = runner.invoke(main, ["db", "current"], env=env)
    assert f"current {migrations.head()}" in after.output
    bad = runner.invoke(main, ["db", "upgrade", "--revision", "nope"], env=env)
    assert bad.exit_code == 1 and "nope" in bad.output and "Traceback" not in bad.output
