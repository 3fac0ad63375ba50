"""The product's promise, as checks a test can run on what a reader received.

Each function returns the problems it found (empty: the invariant holds), so a
test can collect every inconsistency of a run and print them all.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path

from stepwatch.v1 import orchestrator_pb2 as pb

TERMINAL_STEP = {pb.STEP_STATUS_COMPLETED, pb.STEP_STATUS_FAILED, pb.STEP_STATUS_SKIPPED,
                 pb.STEP_STATUS_CANCELLED}
CHILD_STATUS = {1: "pending", 2: "running", 3: "completed", 4: "failed", 5: "cancelled"}


def step_problems(step: pb.Step, where: str) -> list[str]:
    """Counts add up; a terminal step has no pending or running child."""
    c = step.children
    out = []
    if c.total != c.pending + c.running + c.completed + c.failed + c.cancelled:
        out.append(f"{where}: step {step.name} counts do not add up: {_counts(c)}")
    if step.status in TERMINAL_STEP and (c.pending or c.running):
        out.append(f"{where}: step {step.name} is {pb.StepStatus.Name(step.status)} with "
                   f"unfinished children: {_counts(c)}")
    return out


def job_problems(job: pb.Job, where: str) -> list[str]:
    """Every step's counts, and the job's step counts equal its steps' statuses."""
    out = [p for s in job.steps for p in step_problems(s, where)]
    if job.steps:
        by = Counter(s.status for s in job.steps)
        sc = job.step_counts
        want = (len(job.steps), by[pb.STEP_STATUS_PENDING], by[pb.STEP_STATUS_RUNNING],
                by[pb.STEP_STATUS_COMPLETED], by[pb.STEP_STATUS_FAILED],
                by[pb.STEP_STATUS_SKIPPED], by[pb.STEP_STATUS_CANCELLED])
        got = (sc.total, sc.pending, sc.running, sc.completed, sc.failed, sc.skipped, sc.cancelled)
        if got != want:
            out.append(f"{where}: job step_counts {got} != the steps' statuses {want}")
    return out


def child_rows(db: Path | str) -> dict[tuple[str, int], Counter[str]]:
    """(step_id, attempt) -> child rows by status, read straight from the database: a SQLite
    file (read-only, its own connection) or a PostgreSQL URL."""
    q = "SELECT step_id, attempt, status, count(*) FROM children GROUP BY step_id, attempt, status"
    out: dict[tuple[str, int], Counter[str]] = {}
    if isinstance(db, str):
        from sqlalchemy import create_engine, text
        from sqlalchemy.pool import NullPool

        engine = create_engine(db, poolclass=NullPool)
        with engine.connect() as conn:
            rows = list(conn.execute(text(q)))
        engine.dispose()
    else:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            rows = list(conn.execute(q))
    for step_id, attempt, status, n in rows:
        out.setdefault((step_id, attempt), Counter())[CHILD_STATUS[status]] = n
    return out


def rows_problems(job: pb.Job, rows: dict[tuple[str, int], Counter[str]], where: str) -> list[str]:
    """The counts a reader got equal the child rows of the step's current attempt."""
    out = []
    for s in job.steps:
        got = rows.get((s.step_id, s.attempt), Counter())
        c = s.children
        mine = {"pending": c.pending, "running": c.running, "completed": c.completed,
                "failed": c.failed, "cancelled": c.cancelled}
        if any(got[k] != v for k, v in mine.items()) or sum(got.values()) != c.total:
            out.append(f"{where}: step {s.name} attempt {s.attempt} counts {_counts(c)} != "
                       f"child rows {dict(got)}")
    return out


def _counts(c: pb.ChildCounts) -> str:
    return (f"total={c.total} pending={c.pending} running={c.running} completed={c.completed} "
            f"failed={c.failed} cancelled={c.cancelled}")
