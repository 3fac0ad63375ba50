"""Alembic migrations. The server upgrades the schema to head at start.

On PostgreSQL the upgrade runs under a session advisory lock, so replicas that
start together on an empty database migrate one after the other (the later
ones find the schema at head and do nothing).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, text

__all__ = ["alembic_config", "upgrade_to_head"]

HERE = Path(__file__).parent
# "StepwMig" as a 64-bit number: the advisory lock key of a schema migration.
MIGRATION_LOCK_KEY = 0x537465_70774D6967


def alembic_config(engine: Engine) -> Config:
    # The engine is handed over as an object (env.py uses it): the URL never passes through
    # Alembic's ConfigParser, where a '%' (an encoded password) would be read as interpolation.
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade_to_head(engine: Engine) -> None:
    if engine.url.get_backend_name() != "postgresql":
        command.upgrade(alembic_config(engine), "head")
        return
    with engine.connect() as lock:
        lock.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
        lock.commit()
        try:
            command.upgrade(alembic_config(engine), "head")
        finally:
            lock.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
            lock.commit()
