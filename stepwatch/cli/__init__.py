"""The `stepwatch` command: definitions, submit, jobs, show, watch, children, logs, ...

Statuses are printed as the server sent them: colour comes from the value's tone in the
status table (stepwatch.status), and a value this build does not know prints as unknown.
Importing the command modules registers them on ``app``.
"""

from stepwatch.cli import jobs, watching, steps, automation, admin  # noqa: I001  (the order of --help)
from stepwatch.cli.base import EXIT_CODES, app, state
from stepwatch.cli.watching import RENDERS_PER_S
from stepwatch.render import job_view, styled

__all__ = ["EXIT_CODES", "RENDERS_PER_S", "admin", "automation", "app", "job_view", "jobs", "state", "steps",
           "styled", "watching"]
