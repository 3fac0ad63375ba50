"""A batch of rows written (or read) in one statement, in each database's own way.

Why not ``executemany``: SQLite's driver lets go of the GIL around every row's step and takes
it back after. With the event loop and the children's threads busy, each retake waits its
turn, so a 1,000-row batch costs several times what it costs alone (SQLAlchemy Core's own
executemany of the summarize bench's row writes: 14,400 children/s alone, 4,600 beside two
busy threads; the same rows as one statement: 25,000-47,000 either way). SQLite reads a batch
as one JSON array (``json_each``); PostgreSQL as arrays (``unnest``): one statement, one wait.

SQLite's JSON functions end a string at a NUL character, so a batch whose text holds one
(after JSON escaping: ``\\u0000``) goes row by row instead; the recorder already shows NULs
of output as "." (PostgreSQL refuses them), so that path is for odd keys and paths only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, TextClause, insert, select, text

from .. import rules
from .rows import _CHILD_ENDS, _CHILD_STARTS, _UNFINISHED_IN, IN_CHUNK, C, D, L
from .values import ChildChange, LogLine

__all__ = ["ArrayRows", "JsonRows", "RowBatches"]

#: A document as stored: its path, its tags (JSON list) and its attrs (JSON object).
StoredDocument = tuple[str, str, str]


def _json(rows: Any) -> str | None:
    """``rows`` as one compact JSON text, or None where SQLite would cut a string short."""
    out = json.dumps(rows, ensure_ascii=False, separators=(",", ":"))
    return None if "\\u0000" in out else out


class RowBatches:
    """Row by row (executemany): right everywhere, and the fallback of the batched ways."""

    def insert_children(self, c: Connection, step_id: str, attempt: int, status: int,
                        keys: Sequence[str]) -> None:
        c.execute(insert(C), [{"step_id": step_id, "attempt": attempt, "idx": i, "key": k,
                               "status": status, "error": None} for i, k in enumerate(keys)])

    def move_children(self, c: Connection, step_id: str, attempt: int,
                      starts: list[ChildChange], ends: list[ChildChange],
                      started: dict[int, int]) -> None:
        """``starts``: children still running; ``ends`` after them (a child that started and
        ended in one batch ends ended), with ``started``: the start times of those that also
        started in this batch (None keeps the one written before)."""
        if starts:
            c.execute(_CHILD_STARTS, [{"b_step": step_id, "b_attempt": attempt,
                                       "b_idx": ch.child, "b_status": int(ch.status),
                                       "b_at": ch.at} for ch in starts])
        if ends:
            c.execute(_CHILD_ENDS, [
                {"b_step": step_id, "b_attempt": attempt, "b_idx": ch.child,
                 "b_status": int(ch.status), "b_error": ch.error, "b_reason": _reason(ch.error),
                 "b_started": started.get(ch.child), "b_at": ch.at, "b_bytes": ch.output_bytes,
                 "b_result": ch.result} for ch in ends])

    def insert_logs(self, c: Connection, step_id: str, attempt: int, after: int,
                    lines: Sequence[LogLine]) -> None:
        """``lines`` numbered from ``after + 1``."""
        c.execute(insert(L), [
            {"step_id": step_id, "attempt": attempt, "offset": after + n, "child_idx": line.child,
             "stream": line.stream, "text": line.text, "at": line.at}
            for n, line in enumerate(lines, 1)])

    def documents(self, c: Connection, job_id: str, paths: Sequence[str]) -> dict[str, StoredDocument]:
        """The stored documents of these paths (those that exist), by path."""
        out: dict[str, StoredDocument] = {}
        for i in range(0, len(paths), IN_CHUNK):
            for row in c.execute(select(D.c.path, D.c.tags, D.c.attrs).where(
                    D.c.job_id == job_id, D.c.path.in_(paths[i:i + IN_CHUNK]))):
                out[row.path] = (row.path, row.tags, row.attrs)
        return out

    def put_documents(self, c: Connection, job_id: str, docs: Sequence[StoredDocument]) -> None:
        """Insert these documents, or overwrite the tags and attrs of those that exist (one
        upsert per row: the caller has just read what is stored)."""
        if docs:
            c.execute(_UPSERT_DOCUMENT, [{"job": job_id, "path": p, "tags": t, "attrs": a}
                                         for p, t, a in docs])


# Both databases speak this upsert (on the unique (job_id, path)).
_UPSERT_DOCUMENT = text(
    "INSERT INTO documents (job_id, path, tags, attrs) VALUES (:job, :path, :tags, :attrs) "
    "ON CONFLICT (job_id, path) DO UPDATE SET tags = excluded.tags, attrs = excluded.attrs")


def _reason(error: str | None) -> int | None:
    reason = rules.child_ended_reason(error)
    return None if reason is None else int(reason)


# SQLite: the batch arrives as one JSON array, materialized first so the planner looks each
# row up through the unique (step_id, attempt, idx) index (unmaterialized, it scanned the
# step's children once per array element).
_JSON_INSERT_CHILDREN = text(
    "INSERT INTO children (step_id, attempt, idx, key, status) "
    "SELECT :step, :attempt, key, value, :status FROM json_each(:rows)")

_JSON_CHILD_STARTS = text(
    "WITH d(idx, st, at) AS MATERIALIZED "
    "(SELECT value->>0, value->>1, value->>2 FROM json_each(:rows)) "
    "UPDATE children SET status = d.st, started_at = d.at FROM d "
    "WHERE children.step_id = :step AND children.attempt = :attempt AND children.idx = d.idx "
    f"AND children.status IN ({_UNFINISHED_IN})")

_JSON_CHILD_ENDS = text(
    "WITH d(idx, st, err, reason, started, at, bytes, res) AS MATERIALIZED "
    "(SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5, value->>6, "
    "value->>7 FROM json_each(:rows)) "
    "UPDATE children SET status = d.st, error = d.err, error_reason = d.reason, "
    "started_at = coalesce(d.started, children.started_at), finished_at = d.at, "
    "output_bytes = d.bytes, result = d.res FROM d "
    "WHERE children.step_id = :step AND children.attempt = :attempt AND children.idx = d.idx "
    f"AND children.status IN ({_UNFINISHED_IN})")

_JSON_INSERT_LOGS = text(
    'INSERT INTO log_chunks (step_id, attempt, "offset", child_idx, stream, text, at) '
    "SELECT :step, :attempt, :after + key + 1, value->>0, value->>1, value->>2, value->>3 "
    "FROM json_each(:rows)")

# One row back, not a row per document (each row would be another wait for the GIL).
_JSON_DOCUMENTS = text(
    "SELECT json_group_array(json_array(path, tags, attrs)) FROM documents "
    "WHERE job_id = :job AND path IN (SELECT value FROM json_each(:paths))")

_JSON_PUT_DOCUMENTS = text(
    "INSERT INTO documents (job_id, path, tags, attrs) "
    "SELECT :job, value->>0, value->>1, value->>2 FROM json_each(:rows) WHERE true "
    "ON CONFLICT (job_id, path) DO UPDATE SET tags = excluded.tags, attrs = excluded.attrs")


class JsonRows(RowBatches):
    """SQLite: each batch as one statement over a JSON array."""

    def insert_children(self, c: Connection, step_id: str, attempt: int, status: int,
                        keys: Sequence[str]) -> None:
        rows = _json(list(keys))
        if rows is None:
            return super().insert_children(c, step_id, attempt, status, keys)
        c.execute(_JSON_INSERT_CHILDREN, {"step": step_id, "attempt": attempt,
                                          "status": status, "rows": rows})

    def move_children(self, c: Connection, step_id: str, attempt: int,
                      starts: list[ChildChange], ends: list[ChildChange],
                      started: dict[int, int]) -> None:
        first = _json([[ch.child, int(ch.status), ch.at] for ch in starts])
        then = _json([[ch.child, int(ch.status), ch.error, _reason(ch.error), started.get(ch.child),
                       ch.at, ch.output_bytes, ch.result] for ch in ends])
        if first is None or then is None:
            return super().move_children(c, step_id, attempt, starts, ends, started)
        key = {"step": step_id, "attempt": attempt}
        if starts:
            c.execute(_JSON_CHILD_STARTS, {**key, "rows": first})
        if ends:
            c.execute(_JSON_CHILD_ENDS, {**key, "rows": then})

    def insert_logs(self, c: Connection, step_id: str, attempt: int, after: int,
                    lines: Sequence[LogLine]) -> None:
        rows = _json([[line.child, line.stream, line.text, line.at] for line in lines])
        if rows is None:
            return super().insert_logs(c, step_id, attempt, after, lines)
        c.execute(_JSON_INSERT_LOGS, {"step": step_id, "attempt": attempt, "after": after,
                                      "rows": rows})

    def documents(self, c: Connection, job_id: str, paths: Sequence[str]) -> dict[str, StoredDocument]:
        asked = _json(list(paths))
        if asked is None:
            return super().documents(c, job_id, paths)
        found = json.loads(c.execute(_JSON_DOCUMENTS, {"job": job_id, "paths": asked}).scalar_one())
        return {p: (p, t, a) for p, t, a in found}

    def put_documents(self, c: Connection, job_id: str, docs: Sequence[StoredDocument]) -> None:
        rows = _json([list(d) for d in docs])
        if rows is None:
            return super().put_documents(c, job_id, docs)
        c.execute(_JSON_PUT_DOCUMENTS, {"job": job_id, "rows": rows})


# Each element of a batch finds its child by the unique (step_id, attempt, idx) key, in a
# LATERAL subquery (LIMIT 1 keeps it from being made a join), and the UPDATE takes that row
# by its ctid. A plain join of the batch to children is left to the planner, whose estimate
# for a step's children is one row when its statistics predate them (a new step's 30,000
# children, inserted in this very transaction): psycopg prepares a statement run 5 times,
# and the generic plan scanned the step's 30,000 children once per batch element (7-15 s
# for 2,000, the job's row locked meanwhile, its lease lost). `status + 0`: the status is
# checked on the row found, never looked up in ix_children_status. (Rows of a step are
# written only under its job's row lock: no concurrent update moves a ctid under us.)
_PG_UNFINISHED = f"children.status + 0 IN ({_UNFINISHED_IN})"


def _array_child_update(sets: str, arrays: str, names: str) -> TextClause:
    return text(
        f"UPDATE children SET {sets} FROM (SELECT d.*, c.tid FROM unnest({arrays}) AS d({names}) "
        "CROSS JOIN LATERAL (SELECT children.ctid AS tid FROM children "
        "WHERE children.step_id = :step AND children.attempt = :attempt "
        f"AND children.idx = d.idx AND {_PG_UNFINISHED} LIMIT 1) AS c) AS x "
        "WHERE children.ctid = x.tid")


_ARRAY_INSERT_CHILDREN = text(
    "INSERT INTO children (step_id, attempt, idx, key, status) "
    "SELECT :step, :attempt, d.n - 1, d.key, :status "
    "FROM unnest(CAST(:keys AS text[])) WITH ORDINALITY AS d(key, n)")

_ARRAY_CHILD_STARTS = _array_child_update(
    "status = x.st, started_at = x.at",
    "CAST(:idx AS integer[]), CAST(:st AS integer[]), CAST(:at AS bigint[])", "idx, st, at")

_ARRAY_CHILD_ENDS = _array_child_update(
    "status = x.st, error = x.err, error_reason = x.reason, "
    "started_at = coalesce(x.started, children.started_at), "
    "finished_at = x.at, output_bytes = x.bytes, result = x.res",
    "CAST(:idx AS integer[]), CAST(:st AS integer[]), CAST(:err AS text[]), "
    "CAST(:reason AS integer[]), CAST(:started AS bigint[]), CAST(:at AS bigint[]), "
    "CAST(:bytes AS bigint[]), CAST(:res AS text[])",
    "idx, st, err, reason, started, at, bytes, res")

_ARRAY_INSERT_LOGS = text(
    'INSERT INTO log_chunks (step_id, attempt, "offset", child_idx, stream, text, at) '
    "SELECT :step, :attempt, :after + d.n, d.child, d.stream, d.text, d.at FROM unnest("
    "CAST(:child AS integer[]), CAST(:stream AS integer[]), CAST(:text AS text[]), "
    "CAST(:at AS bigint[])) WITH ORDINALITY AS d(child, stream, text, at, n)")

# One lookup by (job_id, path) per path of the batch: `path = ANY(...)`, or a join, the planner
# answered with a scan of every document of the job (30,000 rows read for 500), once per
# batch. LIMIT 1 (a path is unique in its job) keeps the subquery from being made a join.
_ARRAY_DOCUMENTS = text(
    "SELECT x.path, x.tags, x.attrs FROM unnest(CAST(:paths AS text[])) AS d(path) "
    "CROSS JOIN LATERAL (SELECT path, tags, attrs FROM documents "
    "WHERE job_id = :job AND path = d.path LIMIT 1) AS x")

_ARRAY_PUT_DOCUMENTS = text(
    "INSERT INTO documents (job_id, path, tags, attrs) "
    "SELECT :job, d.path, d.tags, d.attrs FROM unnest("
    "CAST(:paths AS text[]), CAST(:tags AS text[]), CAST(:attrs AS text[])) AS d(path, tags, attrs) "
    "ON CONFLICT (job_id, path) DO UPDATE SET tags = excluded.tags, attrs = excluded.attrs")


class ArrayRows(RowBatches):
    """PostgreSQL: each batch as one statement over arrays (a round trip per batch)."""

    def insert_children(self, c: Connection, step_id: str, attempt: int, status: int,
                        keys: Sequence[str]) -> None:
        c.execute(_ARRAY_INSERT_CHILDREN, {"step": step_id, "attempt": attempt,
                                           "status": status, "keys": list(keys)})

    def move_children(self, c: Connection, step_id: str, attempt: int,
                      starts: list[ChildChange], ends: list[ChildChange],
                      started: dict[int, int]) -> None:
        key = {"step": step_id, "attempt": attempt}
        if starts:
            c.execute(_ARRAY_CHILD_STARTS, {**key, "idx": [ch.child for ch in starts],
                                            "st": [int(ch.status) for ch in starts],
                                            "at": [ch.at for ch in starts]})
        if ends:
            c.execute(_ARRAY_CHILD_ENDS, {
                **key, "idx": [ch.child for ch in ends], "st": [int(ch.status) for ch in ends],
                "err": [ch.error for ch in ends], "reason": [_reason(ch.error) for ch in ends],
                "started": [started.get(ch.child) for ch in ends], "at": [ch.at for ch in ends],
                "bytes": [ch.output_bytes for ch in ends], "res": [ch.result for ch in ends]})

    def insert_logs(self, c: Connection, step_id: str, attempt: int, after: int,
                    lines: Sequence[LogLine]) -> None:
        c.execute(_ARRAY_INSERT_LOGS, {
            "step": step_id, "attempt": attempt, "after": after,
            "child": [line.child for line in lines], "stream": [line.stream for line in lines],
            "text": [line.text for line in lines], "at": [line.at for line in lines]})

    def documents(self, c: Connection, job_id: str, paths: Sequence[str]) -> dict[str, StoredDocument]:
        rows = c.execute(_ARRAY_DOCUMENTS, {"job": job_id, "paths": list(paths)})
        return {r.path: (r.path, r.tags, r.attrs) for r in rows}

    def put_documents(self, c: Connection, job_id: str, docs: Sequence[StoredDocument]) -> None:
        c.execute(_ARRAY_PUT_DOCUMENTS, {"job": job_id, "paths": [d[0] for d in docs],
                                         "tags": [d[1] for d in docs],
                                         "attrs": [d[2] for d in docs]})
