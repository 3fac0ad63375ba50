from pathlib import Path

from alembic import command
from sqlalchemy import inspect

from orchestrator_service.migrations import alembic_config
from orchestrator_service.store import Store


def test_migrations_build_exactly_the_models_schema(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'm.db'}")
    store.migrate()
    assert {"jobs", "steps", "children", "documents", "events"} <= set(
        inspect(store.engine).get_table_names())
    # Raises if the models and the migrated schema differ (a migration is missing).
    command.check(alembic_config(store.engine))
    store.migrate()  # idempotent at head
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    store.close()
