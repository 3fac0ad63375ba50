"""A batch written in one statement (SQLite's json_each, PostgreSQL's unnest) leaves exactly the
rows that writing it row by row leaves: child moves, log lines, documents merged, on both
databases, for any batch (odd text, NULs, nested attrs, tags added twice). And it is one
statement: without a NUL in its text, a batch is not written as an executemany."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, event, insert, select

from orchestrator_service.statuses import ChildStatus
from orchestrator_service.step_types.base import DocumentPut
from orchestrator_service.store import Store, batched
from orchestrator_service.store.batched import RowBatches
from orchestrator_service.store.changes import _put_documents
from orchestrator_service.store.rows import C, D, J, L, S
from orchestrator_service.store.values import ChildChange, LogLine

_ids = itertools.count()
_ENDED = [ChildStatus.COMPLETED, ChildStatus.FAILED, ChildStatus.CANCELLED]


def _text(nul: bool) -> st.SearchStrategy[str]:
    # PostgreSQL's text refuses NUL; lone surrogates are refused by both drivers either way.
    return st.text(st.characters(blacklist_categories=["Cs"],
                                 blacklist_characters=[] if nul else ["\x00"]), max_size=12)


@st.composite
def _moves(draw: st.DrawFn, nul: bool) -> tuple[list[str], list[tuple[list[ChildChange], list[ChildChange]]]]:
    n = draw(st.integers(1, 12))
    keys = draw(st.lists(_text(nul), min_size=n, max_size=n))
    idx = st.integers(0, n - 1)
    change = st.builds(ChildChange, child=idx, status=st.just(ChildStatus.RUNNING),
                       at=st.integers(0, 2**62))
    end = st.builds(ChildChange, child=idx, status=st.sampled_from(_ENDED), at=st.integers(0, 2**62),
                    error=st.none() | _text(nul), output_bytes=st.integers(0, 2**40),
                    result=st.none() | _text(nul))
    batches = draw(st.lists(st.tuples(st.lists(change, unique_by=lambda c: c.child, max_size=n),
                                      st.lists(end, unique_by=lambda c: c.child, max_size=n)),
                            max_size=4))
    return keys, batches


_attrs = st.dictionaries(st.sampled_from(["a", "b", "c"]),
                         st.none() | st.integers() | _text(False)
                         | st.dictionaries(st.sampled_from(["x", "y"]), st.integers(), max_size=2),
                         max_size=3)
_puts = st.lists(st.builds(DocumentPut, path=st.sampled_from(["p", "q", "dir/r", "é s"]),
                           tags=st.lists(st.sampled_from(["t1", "t2", "t3"]), max_size=2).map(tuple),
                           attrs=_attrs), max_size=5)


class _Db:
    """One migrated database; every example writes under job and step ids of its own."""

    def __init__(self, url: str) -> None:
        self.store = Store(url)
        self.store.migrate()
        self.engine: Engine = self.store.engine
        self.rows: RowBatches = self.store.dialect.rows
        self.executemany = 0
        event.listen(self.engine, "before_cursor_execute", self._count)

    def _count(self, _c: Any, _cur: Any, _stmt: str, _params: Any, _ctx: Any, many: bool) -> None:
        self.executemany += bool(many)

    def new_step(self, c: Connection) -> tuple[str, str]:
        n = next(_ids)
        job, step = f"j{n}", f"s{n}"
        c.execute(insert(J).values(job_id=job, definition_name="t", definition_toml="",
                                   on_step_failure="stop", status=2, created_at=0))
        c.execute(insert(S).values(step_id=step, job_id=job, idx=0, name="s", type="shell",
                                   depends_on="[]", options="{}", max_attempts=1,
                                   max_child_failures=0, concurrency=1, status=2, created_at=0,
                                   attempt=1))
        return job, step


@pytest.fixture
def db(db_url: str) -> Iterator[_Db]:
    d = _Db(db_url)
    yield d
    d.store.close()


def _children(c: Connection, step: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in c.execute(
        select(C.c.idx, C.c.key, C.c.status, C.c.error, C.c.error_reason, C.c.started_at,
               C.c.finished_at, C.c.output_bytes, C.c.result)
        .where(C.c.step_id == step).order_by(C.c.idx))]


def _write_moves(c: Connection, rows: RowBatches, step: str, keys: list[str],
                 batches: list[tuple[list[ChildChange], list[ChildChange]]]) -> None:
    rows.insert_children(c, step, 1, int(ChildStatus.PENDING), keys)
    for starts, ends in batches:
        started = {ch.child: ch.at for ch in starts}
        rows.move_children(c, step, 1, starts, ends, started)


def _nul(*texts: str | None) -> bool:
    """Whether SQLite's way falls back to row by row (a NUL, or what its JSON escape looks like)."""
    return any(t is not None and ("\x00" in t or "\\u0000" in t) for t in texts)


_SETTINGS = settings(max_examples=40, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])


@_SETTINGS
@given(data=st.data())
def test_child_moves_equal_row_by_row(db: _Db, data: st.DataObject) -> None:
    keys, batches = data.draw(_moves(db.store.dialect.name == "sqlite"))
    with db.engine.begin() as c:
        _, batched = db.new_step(c)
        _, by_row = db.new_step(c)
        before = db.executemany
        _write_moves(c, db.rows, batched, keys, batches)
        texts = [*keys, *(t for _, ends in batches for ch in ends for t in (ch.error, ch.result))]
        if not _nul(*texts):
            assert db.executemany == before, "a batch without NULs went row by row"
        _write_moves(c, RowBatches(), by_row, keys, batches)
        assert _children(c, batched) == _children(c, by_row)


@_SETTINGS
@given(data=st.data())
def test_log_lines_equal_row_by_row(db: _Db, data: st.DataObject) -> None:
    nul = db.store.dialect.name == "sqlite"
    line = st.builds(LogLine, child=st.none() | st.integers(0, 10**6), stream=st.integers(1, 2),
                     text=_text(nul), at=st.integers(0, 2**62))
    chunks = data.draw(st.lists(st.lists(line, min_size=1, max_size=6), max_size=3))
    with db.engine.begin() as c:
        _, batched = db.new_step(c)
        _, by_row = db.new_step(c)
        for step, rows in ((batched, db.rows), (by_row, RowBatches())):
            head = 0
            for lines in chunks:
                before = db.executemany
                rows.insert_logs(c, step, 1, head, lines)
                if rows is db.rows and not _nul(*(x.text for x in lines)):
                    assert db.executemany == before, "a batch without NULs went row by row"
                head += len(lines)
        got = {step: [tuple(r) for r in c.execute(
            select(L.c.offset, L.c.child_idx, L.c.stream, L.c.text, L.c.at)
            .where(L.c.step_id == step).order_by(L.c.offset))] for step in (batched, by_row)}
        assert got[batched] == got[by_row]
        assert [r[0] for r in got[batched]] == list(range(1, sum(map(len, chunks)) + 1))


@_SETTINGS
@given(rounds=st.lists(_puts, max_size=4))
def test_documents_merge_equal_row_by_row(db: _Db, rounds: list[list[DocumentPut]]) -> None:
    with db.engine.begin() as c:
        batched, _ = db.new_step(c)
        by_row, _ = db.new_step(c)
        for puts in rounds:
            before = db.executemany
            _put_documents(c, db.rows, batched, puts)
            assert db.executemany == before, "a batch without NULs went row by row"
            _put_documents(c, RowBatches(), by_row, puts)
        got = {job: [tuple(r) for r in c.execute(
            select(D.c.path, D.c.tags, D.c.attrs).where(D.c.job_id == job).order_by(D.c.path))]
            for job in (batched, by_row)}
    assert got[batched] == got[by_row]
    # And what is stored is the merge: tags added once in order, attrs overwritten by key.
    want: dict[str, tuple[list[str], dict[str, Any]]] = {}
    for put in (p for puts in rounds for p in puts):
        tags, attrs = want.setdefault(put.path, ([], {}))
        tags += [t for t in put.tags if t not in tags]
        attrs.update(put.attrs)
    assert {p: (json.loads(t), json.loads(a)) for p, t, a in got[batched]} == want


def _numbered(sql: str) -> tuple[str, list[str]]:
    """``:name`` parameters as PREPARE's ``$1``...; the names in their order."""
    names: list[str] = []

    def number(m: re.Match[str]) -> str:
        if m[1] not in names:
            names.append(m[1])
        return f"${names.index(m[1]) + 1}"

    return re.sub(r"(?<![:\w]):(\w+)", number, sql), names


def test_a_batch_finds_each_child_by_its_key_whatever_the_planner_knows(pg_url: str) -> None:
    """The generic plan (psycopg prepares a statement run 5 times) for a step whose children
    were inserted in this very transaction, so the statistics know none of them: each
    element of the batch looks its child up by the unique key, and the update takes that
    row by ctid. A join left to the planner read all the step's children once per element
    (its estimate: one child): 7-15 s for a batch of 2,000 among 30,000."""
    d = _Db(pg_url)
    try:
        with d.engine.begin() as c:
            _, step = d.new_step(c)
            d.rows.insert_children(c, step, 1, int(ChildStatus.PENDING),
                                   [f"k{i}" for i in range(3000)])
            c.exec_driver_sql("SET LOCAL plan_cache_mode = force_generic_plan")
            literal = {"step": f"'{step}'", "attempt": "1", "err": "'{NULL}'", "res": "'{NULL}'"}
            for name, stmt in (("starts", batched._ARRAY_CHILD_STARTS),
                               ("ends", batched._ARRAY_CHILD_ENDS)):
                sql, params = _numbered(stmt.text)
                c.exec_driver_sql(f"PREPARE {name} AS {sql}")
                args = ", ".join(literal.get(p, "'{1}'") for p in params)
                plan = "\n".join(r[0] for r in c.exec_driver_sql(f"EXPLAIN EXECUTE {name}({args})"))
                assert re.search(r"Index Cond: .*\(idx = d\.idx\)", plan), plan
                assert "Tid Scan on children" in plan, plan
                assert "Seq Scan" not in plan and "Join Filter" not in plan, plan
    finally:
        d.store.close()
