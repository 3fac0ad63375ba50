from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
from pathlib import Path

import pytest

from stepwatch.v1 import orchestrator_pb2 as pb
from ui_service import status_style
from ui_service.state import Connection, JobPageState, JobQuery, QueueState, day_range

UI = Path(__file__).resolve().parents[2] / "ui_service"


@pytest.mark.parametrize("enum", [status_style.STEP, status_style.JOB, status_style.CHILD],
                         ids=lambda e: e.name)
def test_every_enum_value_from_the_descriptor_has_an_entry(enum) -> None:
    # UNSPECIFIED (0) is never sent: it is shown as unknown, like any value the table lacks.
    assert {v.number for v in enum.values} - {0} == set(status_style.TABLE[enum])


@pytest.mark.parametrize(("enum", "number", "label", "colour"), [
    (status_style.STEP, pb.STEP_STATUS_FAILED, "Failed", "#d32f2f"),
    (status_style.STEP, pb.STEP_STATUS_COMPLETED, "Completed", "#2e7d32"),
    (status_style.JOB, pb.JOB_STATUS_COMPLETED_WITH_FAILURES, "Completed with failures", "#b45309"),
    (status_style.STEP, pb.STEP_STATUS_UNSPECIFIED, "Unknown (0)", status_style.GREY),
    (status_style.STEP, 99, "Unknown (99)", status_style.GREY),
    (status_style.JOB, 42, "Unknown (42)", status_style.GREY),
])
def test_looks(enum, number, label, colour) -> None:
    look = status_style.look(enum, number)
    assert (look.label, look.colour) == (label, colour)


def test_skipped_and_cancelled_look_unlike_completed() -> None:
    completed = status_style.look(status_style.STEP, pb.STEP_STATUS_COMPLETED)
    for n in (pb.STEP_STATUS_SKIPPED, pb.STEP_STATUS_CANCELLED):
        other = status_style.look(status_style.STEP, n)
        assert (other.colour, other.icon) != (completed.colour, completed.icon)
    assert status_style.look(status_style.STEP, pb.STEP_STATUS_RUNNING).animated


def test_page_state_replaces_and_never_computes() -> None:
    s = JobPageState("j")
    snap = pb.WatchJobResponse(snapshot=pb.JobSnapshot(seq=4, job=pb.Job(
        job_id="j", status=pb.JOB_STATUS_RUNNING,
        steps=[pb.Step(step_id="x", name="x", status=pb.STEP_STATUS_RUNNING)])))
    changed = s.apply(snap, now=1.0)
    assert changed.header and changed.steps == ("x",) and s.last_seq == 4
    done = pb.WatchJobResponse(event=pb.JobEvent(seq=5, step_changed=pb.Step(
        step_id="x", name="x", status=pb.STEP_STATUS_COMPLETED)))
    changed = s.apply(done, now=2.0)
    assert changed.steps == ("x",) and not changed.header
    assert s.job.status == pb.JOB_STATUS_RUNNING  # every step done, but the server has not said so
    s.reconnecting("UNAVAILABLE")
    assert s.stale and s.connection == Connection.RECONNECTING
    s.apply(pb.WatchJobResponse(heartbeat=pb.Heartbeat(head_seq=5)), now=3.0)
    assert not s.stale and s.last_seq == 5 and s.last_heard == 3.0
    assert s.events[0].seq == 5 and "Completed" in s.events[0].text


def test_history_fills_the_event_panel_below_live_events() -> None:
    s = JobPageState("j")
    s.apply(pb.WatchJobResponse(snapshot=pb.JobSnapshot(seq=3, job=pb.Job(job_id="j"))), now=0)
    s.apply(pb.WatchJobResponse(event=pb.JobEvent(seq=4, job_changed=pb.Job(job_id="j"))), now=0)
    older = [pb.JobEvent(seq=n, job_changed=pb.Job(job_id="j")) for n in (2, 3, 4)]
    assert s.add_history(older)
    assert [line.seq for line in s.events] == [4, 3, 2]
    assert s.last_seq == 4 and not s.add_history(older)


def job_at(job_id: str, status: int, name: str, when: dt.datetime) -> pb.Job:
    j = pb.Job(job_id=job_id, status=status, definition_name=name)
    j.created_at.FromDatetime(when)
    return j


NOON = dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC)


@pytest.mark.parametrize(("query", "matches"), [
    (JobQuery(), True),
    (JobQuery(status=pb.JOB_STATUS_RUNNING), True),
    (JobQuery(status=pb.JOB_STATUS_FAILED), False),
    (JobQuery(name_prefix="nightly"), True),
    (JobQuery(name_prefix="Nightly"), False),  # case-sensitive, as ListJobs is
    (JobQuery(created_after=NOON), True),  # at or after
    (JobQuery(created_after=NOON + dt.timedelta(seconds=1)), False),
    (JobQuery(created_before=NOON), False),  # strictly before
    (JobQuery(created_before=NOON + dt.timedelta(seconds=1)), True),
])
def test_a_query_matches_jobs_as_list_jobs_filters(query: JobQuery, matches: bool) -> None:
    assert query.matches(job_at("a", pb.JOB_STATUS_RUNNING, "nightly-build", NOON)) is matches


def test_day_range_covers_whole_local_days() -> None:
    tz = dt.timezone(dt.timedelta(hours=2))
    after, before = day_range("2026-11-20", "2026-11-21", tz)
    assert after == dt.datetime(2026, 11, 19, 22, tzinfo=dt.UTC)
    assert before == dt.datetime(2026, 11, 21, 22, tzinfo=dt.UTC)  # all of the 21st
    assert day_range("", "not a date", tz) == (None, None)


def test_queue_state_pages_and_takes_live_changes() -> None:
    q = QueueState()
    a = job_at("a", pb.JOB_STATUS_RUNNING, "x", NOON)
    q.show([a], "next")
    # (Re)connected: read the page again.
    assert q.apply(pb.WatchJobsResponse(snapshot=pb.JobsSnapshot())) == ([], True)
    done = job_at("a", pb.JOB_STATUS_FAILED, "x", NOON)
    assert q.apply(pb.WatchJobsResponse(job_changed=done)) == (["a"], False)
    assert q.jobs["a"].status == pb.JOB_STATUS_FAILED  # replaced, as sent
    new = job_at("b", pb.JOB_STATUS_PENDING, "x", NOON + dt.timedelta(seconds=5))
    assert q.apply(pb.WatchJobsResponse(job_changed=new)) == (["b"], False)
    assert q.order() == ["b", "a"]
    q.query = JobQuery(name_prefix="y")  # a new job the query does not ask for stays off
    assert q.apply(pb.WatchJobsResponse(job_changed=job_at("c", 1, "x", NOON))) == ([], False)
    assert q.apply(pb.WatchJobsResponse(job_deleted="zz")) == ([], False)  # not on this page
    assert q.apply(pb.WatchJobsResponse(job_deleted="a")) == ([], True)  # on it: read again
    q.query, q.tokens = JobQuery(), ["", "next"]  # page 2 holds older jobs: no new ones
    assert q.page == 2
    assert q.apply(pb.WatchJobsResponse(job_changed=job_at("d", 1, "x", NOON))) == ([], False)


IMPORT = re.compile(r"^\s*(from|import)\s+(orchestrator_service|sqlalchemy)\b", re.M)


def test_ui_service_imports_nothing_from_the_orchestrator_or_the_database() -> None:
    offenders = [str(p) for p in UI.rglob("*.py") if IMPORT.search(p.read_text())]
    assert offenders == []
    # And at run time: importing the whole UI loads neither.
    code = ("import sys, ui_service.app, ui_service.pages.job, ui_service.pages.queue; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('orchestrator_service', 'sqlalchemy')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=UI.parent)


def test_a_new_status_value_needs_only_the_status_module(monkeypatch: pytest.MonkeyPatch) -> None:
    """Adding a value (say STEP_STATUS_PAUSED = 7) to the proto and to stepwatch.status is all:
    the page and the CLI render it from its entry, with no change of their own."""
    from stepwatch import cli, render, status

    assert status_style.look(status_style.STEP, 7).label == "Unknown (7)"
    paused = status.Presentation("Paused", status.Tone.PARTIAL, terminal=False)
    monkeypatch.setitem(status.TABLE[status.STEP], 7, paused)
    look = status_style.look(status_style.STEP, 7)
    assert (look.label, look.colour) == ("Paused", status_style.TONE_LOOK[status.Tone.PARTIAL][0])
    text = cli.styled(status.STEP, 7)
    assert (text.plain, str(text.style)) == ("Paused", render.TONE_STYLE[status.Tone.PARTIAL])


def test_the_status_labels_and_colours_live_in_one_place() -> None:
    """No reader module spells a status label or a badge colour itself."""
    readers = [*UI.rglob("*.py"), *(UI.parent / "stepwatch" / "cli").glob("*.py")]
    for path in readers:
        if path.name == "status_style.py":
            continue
        text = path.read_text()
        for label in ('"Completed with failures"', '"Failed"', '"Skipped"', "#d32f2f", "#2e7d32",
                      "#1976d2", "#1565c0"):
            assert label not in text, f"{path.name} spells {label} itself"
