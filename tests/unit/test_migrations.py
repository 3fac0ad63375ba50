from alembic import command
from sqlalchemy import inspect

from orchestrator_service.migrations import alembic_config
from orchestrator_service.store import Store


def test_migrations_build_exactly_the_models_schema(db_url: str) -> None:
    store = Store(db_url)
    store.migrate()
    assert {"jobs", "steps", "children", "documents", "events"} <= set(
        inspect(store.engine).get_table_names())
    # Raises if the models and the migrated schema differ (a migration is missing).
    command.check(alembic_config(store.engine))
    store.migrate()  # idempotent at head
    with store.engine.connect() as conn:
        if store.dialect.shared:  # 64-bit ids everywhere an id grows
            ids = {t: c["type"].__class__.__name__ for t in
                   ("jobs", "children", "documents", "events", "log_chunks")
                   for c in inspect(conn).get_columns(t) if c["name"] == "id"}
            assert set(ids.values()) == {"BIGINT"}, ids
        else:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    store.close()
