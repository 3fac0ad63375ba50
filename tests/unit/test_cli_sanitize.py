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
from stepwatch.cli.output import Output
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
    render(console, name, message, line)
    assert not RAW_CONTROL.search(out.getvalue()), repr(out.getvalue())


def test_piped_records_are_one_line_each_with_every_field_whole() -> None:
    """On a pipe a record is one line: a tab or newline inside a field is written escaped,
    so splitting on tabs gives the fields back whole."""
    console, out = capture()
    job = hostile_job("name\twith tab", "line one\nline two " + "x" * 300, "s")
    Output(console=console).records(render_mod.job_records(job))
    lines = out.getvalue().split("\n")
    assert lines[-1] == "" and len(lines) == 3  # two records, a final newline
    fields = lines[0].split("\t")
    assert fields[2] == "name\\twith tab" and fields[-1].endswith("x" * 300)
    assert "line one\\nline two" in fields[-1]


def render(console: Console, name: str, message: str, line: str) -> None:
    console.print(cli.job_view(hostile_job(name, message, line)))
    console.print(cli.job_view(hostile_job(name, message, line), height=24))
    piped = Output(console=console)
    piped.records(render_mod.job_records(hostile_job(name, message, line)))
    for stream in (pb.LOG_STREAM_STDOUT, pb.LOG_STREAM_STDERR, pb.LOG_STREAM_SYSTEM):
        chunk = pb.LogChunk(text=f"{line}\n{message}\n", stream=stream, child_index=3)
        render_mod.print_chunk(console, chunk)
        for text in render_mod.chunk_lines(chunk):
            piped.line(text)


@pytest.mark.parametrize("text", HOSTILE)
def test_markup_and_escapes_in_data_are_printed_as_typed(
        text: str) -> None:
    console, out = capture()
    render_mod.print_chunk(console, pb.LogChunk(text=text + "\n", stream=pb.LOG_STREAM_STDOUT))
    assert out.getvalue() == printable(text) + "\n"


@given(st.text())
def test_printable_escapes_exactly_the_control_characters(text: str) -> None:
    out = printable(text)
    assert not RAW_CONTROL.search(out)
    if not RAW_CONTROL.search(text):
        assert out == text
