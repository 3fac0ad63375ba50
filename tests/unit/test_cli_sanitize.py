"""Every server string the CLI prints is shown, never obeyed: whatever a job, step, log line
or error holds, the output has no raw control character and printing never raises (rich
markup in data is text too)."""

from __future__ import annotations

import io
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from stepwatch import cli
from stepwatch import render as render_mod
from stepwatch.sanitize import printable
from stepwatch.v1 import orchestrator_pb2 as pb

RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
HOSTILE = ["\x1b]0;pwned\x07", "\x1b[2J", "\x1b]52;c;ZWNobyBoaQ==\x07",
           "\x1b]8;;http://evil.example\x1b\\link\x1b]8;;\x1b\\", "\x1b[1A\x1b[K", "...[/]",
           "[link=http://evil.example]x[/link]", "[bold red]fake[/]", "\x9b31m", "\u202eevil"]
texts = st.one_of(st.text(max_size=80), st.sampled_from(HOSTILE),
                  st.lists(st.sampled_from(HOSTILE), max_size=4).map("".join))


def capture() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=120, color_system=None, force_terminal=False), out


def hostile_job(name: str, message: str, line: str) -> pb.Job:
    job = pb.Job(job_id=name[:40] or "j", definition_name=name, status=pb.JOB_STATUS_FAILED)
    job.failure.reason = pb.FAILURE_REASON_JOB_STOPPED
    job.failure.message = message
    step = job.steps.add(step_id="s1", name=name + line, type=line, status=pb.STEP_STATUS_FAILED)
    step.failure.reason = pb.FAILURE_REASON_EXECUTION_FAILED
    step.failure.message = message
    return job


@settings(max_examples=300, deadline=None)
@given(name=texts, message=texts, line=texts)
def test_no_raw_control_character_reaches_the_terminal(name: str, message: str, line: str) -> None:
    console, out = capture()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cli, "console", console)
        render(console, name, message, line)
    assert not RAW_CONTROL.search(out.getvalue()), repr(out.getvalue())


def render(console: Console, name: str, message: str, line: str) -> None:
    console.print(cli.job_view(hostile_job(name, message, line)))
    console.print(cli.job_view(hostile_job(name, message, line), height=24))
    for stream in (pb.LOG_STREAM_STDOUT, pb.LOG_STREAM_STDERR, pb.LOG_STREAM_SYSTEM):
        render_mod.print_chunk(console, pb.LogChunk(text=f"{line}\n{message}\n", stream=stream,
                                                 child_index=3))


@pytest.mark.parametrize("text", HOSTILE)
def test_markup_and_escapes_in_data_are_printed_as_typed(
        text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    console, out = capture()
    monkeypatch.setattr(cli, "console", console)
    render_mod.print_chunk(console, pb.LogChunk(text=text + "\n", stream=pb.LOG_STREAM_STDOUT))
    assert out.getvalue() == printable(text) + "\n"


@given(st.text())
def test_printable_escapes_exactly_the_control_characters(text: str) -> None:
    out = printable(text)
    assert not RAW_CONTROL.search(out)
    if not RAW_CONTROL.search(text):
        assert out == text
