"""Jobs that run themselves: ``stepwatch schedules ...`` and ``stepwatch webhooks ...``.

Like every command: tables on a terminal, tab-separated records on a pipe (columns as each
command's help says), the proto's JSON with --json; changes need the admin role.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Annotated, Any

import typer
from rich.text import Text

from stepwatch import status
from stepwatch.cli.base import JSON, app, call, fail, state
from stepwatch.cli.jobs import Inputs, _inputs, _submitted
from stepwatch.cli.output import Cell
from stepwatch.render import styled
from stepwatch.v1 import orchestrator_pb2 as pb
from stepwatch.words import ahead, relative

__all__ = ["schedules_app", "webhooks_app"]

schedules_app = typer.Typer(help="Run a definition on a cron schedule (admin to change).",
                            no_args_is_help=True)
webhooks_app = typer.Typer(help="Tell a URL when jobs finish or steps fail (admin to change).",
                           no_args_is_help=True)
app.add_typer(schedules_app, name="schedules")
app.add_typer(webhooks_app, name="webhooks")

OVERLAPS: dict[str, int] = {"skip": pb.OVERLAP_POLICY_SKIP, "allow": pb.OVERLAP_POLICY_ALLOW,
            "cancel_previous": pb.OVERLAP_POLICY_CANCEL_PREVIOUS}
CATCHUPS: dict[str, int] = {"none": pb.CATCHUP_POLICY_NONE, "latest": pb.CATCHUP_POLICY_LATEST,
            "all": pb.CATCHUP_POLICY_ALL}
EVENTS: dict[str, int] = {"job-finished": pb.NOTIFY_EVENT_JOB_FINISHED,
                          "step-failed": pb.NOTIFY_EVENT_STEP_FAILED}
ScheduleId = Annotated[str, typer.Argument(help="a schedule id (`stepwatch schedules list`)")]


def _when(ts: Any, tty: bool) -> str:
    if not ts.ByteSize():
        return "-"
    if not tty:
        return str(ts.ToJsonString())
    at, now = ts.ToDatetime(dt.UTC), dt.datetime.now(dt.UTC)
    return f"{at.astimezone():%Y-%m-%d %H:%M:%S} ({ahead(at, now) if at > now else relative(at, now)})"


def _name(table: Mapping[str, int], number: int) -> str:
    return next((k for k, v in table.items() if v == number), f"unknown ({number})")


def _schedule_row(s: pb.Schedule, tty: bool) -> list[Cell]:
    last: Cell = "-"
    if s.last_job_id:
        last = Text.assemble(s.last_job_id[:8] if tty else s.last_job_id, " ",
                             styled(status.JOB, s.last_job_status) if s.last_job_status
                             else Text("deleted", style="dim"))
    return [s.schedule_id[:8] if tty else s.schedule_id, s.definition_name,
            f"{s.cron} ({s.time_zone})", "paused" if s.paused else _when(s.next_run_time, tty),
            last, f"{_name(OVERLAPS, s.overlap)}/{_name(CATCHUPS, s.catchup)}",
            str(s.skipped), Text(s.last_error, style="red") if s.last_error else ""]


SCHEDULE_COLUMNS = ["schedule", "definition", "cron (zone)", "next run", "last job",
                    "overlap/catch-up", "skipped", "error"]


def _print_schedule(s: pb.Schedule, as_json: bool) -> None:
    if as_json:
        state.out.message(s)
    else:
        state.out.table(SCHEDULE_COLUMNS, [_schedule_row(s, state.out.tty)])


@schedules_app.command("list")
def schedules_list(as_json: JSON = False) -> None:
    """The schedules: next run, last job and its status.

    Piped: id, definition, cron (zone), next run (RFC 3339, or paused), last job and its
    status, overlap/catch-up, skipped runs, last error."""
    found = call(lambda c: c.list_schedules())
    if as_json:
        state.out.message(pb.ListSchedulesResponse(schedules=found))
        return
    state.out.table(SCHEDULE_COLUMNS, [_schedule_row(s, state.out.tty) for s in found])


@schedules_app.command("show")
def schedules_show(schedule_id: ScheduleId, as_json: JSON = False) -> None:
    """One schedule."""
    _print_schedule(call(lambda c: c.get_schedule(schedule_id)), as_json)


@schedules_app.command("create")
def schedules_create(
        definition: Annotated[str, typer.Argument(help="a definition name on the server")],
        cron: Annotated[str, typer.Option(help="5 fields (minute hour day month weekday), or "
                                          "6 with seconds first; e.g. '30 2 * * *'")],
        tz: Annotated[str, typer.Option("--tz", help="IANA time zone the fields are read in")]
        = "UTC",
        overlap: Annotated[str, typer.Option(help="a run due while the last still runs: skip, "
                                             "allow, cancel_previous")] = "skip",
        catchup: Annotated[str, typer.Option(help="runs missed while down: none, latest, "
                                             "all (the latest 100)")] = "none",
        paused: Annotated[bool, typer.Option("--paused", help="create it paused")] = False,
        description: Annotated[str, typer.Option(help="what it is for")] = "",
        input_: Inputs = None, as_json: JSON = False) -> None:
    """Create a schedule of DEFINITION (prints it; --json: the Schedule)."""
    if overlap not in OVERLAPS:
        fail(f"--overlap must be one of {', '.join(OVERLAPS)}")
    if catchup not in CATCHUPS:
        fail(f"--catchup must be one of {', '.join(CATCHUPS)}")
    given = _inputs(input_)
    made = call(lambda c: c.create_schedule(definition, cron, time_zone=tz, inputs=given,
                                            overlap=OVERLAPS[overlap], catchup=CATCHUPS[catchup],
                                            paused=paused, description=description))
    _print_schedule(made, as_json)


@schedules_app.command("pause")
def schedules_pause(schedule_id: ScheduleId, as_json: JSON = False) -> None:
    """Start no more jobs until resumed."""
    _print_schedule(call(lambda c: c.pause_schedule(schedule_id)), as_json)


@schedules_app.command("resume")
def schedules_resume(schedule_id: ScheduleId, as_json: JSON = False) -> None:
    """Start jobs again from the next nominal time (the paused stretch is not caught up)."""
    _print_schedule(call(lambda c: c.pause_schedule(schedule_id, paused=False)), as_json)


@schedules_app.command("delete")
def schedules_delete(schedule_id: ScheduleId) -> None:
    """Delete a schedule (the jobs it started stay)."""
    call(lambda c: c.delete_schedule(schedule_id))
    state.out.note(f"deleted schedule {schedule_id}")


@schedules_app.command("trigger")
def schedules_trigger(schedule_id: ScheduleId,
                      watch_: Annotated[bool, typer.Option("--watch", "-w",
                                                           help="then watch it")] = False,
                      as_json: JSON = False) -> None:
    """Start the schedule's job now (prints its id, as submit does)."""
    _submitted(call(lambda c: c.trigger_schedule(schedule_id)), as_json, watch_)


# -- webhooks ---------------------------------------------------------------------------------


@webhooks_app.command("list")
def webhooks_list(as_json: JSON = False) -> None:
    """The subscriptions. Piped: id, URL, events, statuses, definition."""
    found = call(lambda c: c.list_subscriptions())
    if as_json:
        state.out.message(pb.ListSubscriptionsResponse(subscriptions=found))
        return
    tty = state.out.tty
    state.out.table(["subscription", "url", "events", "job statuses", "definition"], [
        [s.subscription_id[:8] if tty else s.subscription_id, s.url,
         ",".join(_name(EVENTS, e) for e in s.events),
         ",".join(status.label(status.JOB, x) for x in s.job_statuses) or "any",
         s.definition_name or "any"] for s in found])


@webhooks_app.command("create")
def webhooks_create(
        url: Annotated[str, typer.Argument(help="where to POST (http or https)")],
        event: Annotated[list[str] | None, typer.Option(
            "--event", help="job-finished or step-failed (repeat; default: job-finished)")] = None,
        job_status: Annotated[list[str] | None, typer.Option(
            "--status", help="job-finished only for these statuses (repeat), e.g. failed")] = None,
        definition: Annotated[str, typer.Option(help="only jobs of this definition")] = "",
        description: Annotated[str, typer.Option(help="what it is for")] = "",
        as_json: JSON = False) -> None:
    """Subscribe URL; prints the id and the signing secret, which is shown this once."""
    events = []
    for e in event or ["job-finished"]:
        if e not in EVENTS:
            fail(f"--event {e!r}: one of {', '.join(EVENTS)}")
        events.append(EVENTS[e])
    statuses = []
    for name in job_status or []:
        found = status.JOB.values_by_name.get("JOB_STATUS_" + name.upper())
        if found is None:
            fail(f"--status {name!r}: e.g. failed, completed, completed_with_failures, cancelled")
        statuses.append(int(found.number))
    sub, secret = call(lambda c: c.create_subscription(
        url, events, job_statuses=statuses, definition_name=definition, description=description))
    if as_json:
        state.out.message(pb.CreateSubscriptionResponse(subscription=sub, secret=secret))
    elif state.out.tty:
        state.out.line(f"subscription {sub.subscription_id}")
        state.out.line(Text.assemble("secret ", (secret, "bold"),
                                     ("  (shown once: keep it to check X-Stepwatch-Signature)",
                                      "dim")))
    else:
        state.out.records([[sub.subscription_id, secret]])


@webhooks_app.command("delete")
def webhooks_delete(subscription_id: Annotated[str, typer.Argument(help="a subscription id")]) -> None:
    """Delete a subscription (its pending deliveries go; its log stays)."""
    call(lambda c: c.delete_subscription(subscription_id))
    state.out.note(f"deleted subscription {subscription_id}")


@webhooks_app.command("deliveries")
def webhooks_deliveries(
        subscription: Annotated[str, typer.Option(help="only this subscription's")] = "",
        job: Annotated[str, typer.Option(help="only this job's")] = "",
        limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
        as_json: JSON = False) -> None:
    """The delivery log, newest first. Piped: delivery, subscription, event, job, step,
    state, attempts, last HTTP status, last error, next try."""
    found = call(lambda c: c.list_deliveries(subscription, job, limit))
    if as_json:
        state.out.message(pb.ListDeliveriesResponse(deliveries=found))
        return
    tty = state.out.tty
    tone = {pb.DELIVERY_STATE_DELIVERED: "green", pb.DELIVERY_STATE_FAILED: "red",
            pb.DELIVERY_STATE_PENDING: "yellow"}
    rows: list[list[Cell]] = [[
        d.delivery_id[:8] if tty else d.delivery_id,
        d.subscription_id[:8] if tty else d.subscription_id, _name(EVENTS, d.event),
        d.job_id[:8] if tty else d.job_id, d.step,
        Text(pb.DeliveryState.Name(d.state).removeprefix("DELIVERY_STATE_").lower()
             if d.state in pb.DeliveryState.values() else f"unknown ({d.state})",
             style=tone.get(d.state, "")),
        str(d.attempts), str(d.last_status_code or "-"), d.last_error,
        _when(d.next_attempt_time, tty)] for d in found]
    state.out.table(["delivery", "subscription", "event", "job", "step", "state", "attempts",
                     "http", "error", "next try"], rows)
