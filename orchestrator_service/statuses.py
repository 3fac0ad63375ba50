"""Domain status enums. Numbers equal the proto's (a unit test holds them together).

The engine and the rules speak these, so pure logic never imports generated code.
"""

from enum import IntEnum, StrEnum


class StepStatus(IntEnum):
    PENDING = 1
    RUNNING = 2
    COMPLETED = 3
    FAILED = 4
    SKIPPED = 5
    CANCELLED = 6

    @property
    def terminal(self) -> bool:
        return self not in (StepStatus.PENDING, StepStatus.RUNNING)


class JobStatus(IntEnum):
    PENDING = 1
    RUNNING = 2
    COMPLETED = 3
    COMPLETED_WITH_FAILURES = 4
    FAILED = 5
    CANCELLED = 6

    @property
    def terminal(self) -> bool:
        return self not in (JobStatus.PENDING, JobStatus.RUNNING)


class FailureReason(IntEnum):
    INIT_FAILED = 1
    EXECUTION_FAILED = 2
    CHILD_FAILURES_EXCEEDED = 3
    TIMEOUT = 4
    DEPENDENCY_FAILED = 5
    JOB_STOPPED = 6
    CANCELLED_BY_USER = 7
    ORCHESTRATOR_RESTARTED = 8
    INTERNAL_ERROR = 9


class ChildStatus(IntEnum):
    PENDING = 1
    RUNNING = 2
    COMPLETED = 3
    FAILED = 4
    CANCELLED = 5


class Policy(StrEnum):
    STOP = "stop"
    CONTINUE = "continue"


class LogStream(IntEnum):
    STDOUT = 1
    STDERR = 2
    SYSTEM = 3  # the step type's own lines (ctx.log), and the orchestrator's notes
