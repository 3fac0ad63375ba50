"""The step-type contract shared by built-ins and plug-ins.

A step type validates its own options, then for each attempt:
``init(ctx)`` returns the step's children (raising fails the step with
INIT_FAILED and the exception's text as the message), and ``run_child(ctx,
child)`` does one child's work (raising fails that child; the text is kept; raising StepFailed fails the whole
step with EXECUTION_FAILED). A stopped child (timeout, cancel) is a cancelled
asyncio task: clean up in ``finally`` or ``except CancelledError``, then re-raise.
A child may return documents to write; the engine persists them together with
the child's status, in one transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from ..beneath import Workspace
from ..sandbox import NONE as NO_SANDBOX
from ..sandbox import Sandbox
from ..statuses import LogStream


class OptionError(Exception):
    """One bad option of a step; ``key`` names it."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


class StepFailed(Exception):
    """Raised by a child when the whole step cannot go on (not just this child).

    The step fails at once with EXECUTION_FAILED and this message, whatever its
    max_child_failures; a retry follows if attempts remain.
    """


@dataclass(frozen=True)
class Child:
    """One unit of a step's work. ``key`` is shown to people (a path, a command)."""

    key: str
    payload: Any = None


@dataclass(frozen=True)
class Document:
    path: str
    tags: tuple[str, ...]
    attrs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DocumentPut:
    """Create or update the job's document at ``path``: tags are added, attrs merged."""

    path: str
    tags: tuple[str, ...] = ()
    attrs: Mapping[str, Any] = field(default_factory=dict)


class DocumentReader(Protocol):
    async def documents(self, tags: Sequence[str] | None = None) -> list[Document]: ...

    async def paths(self) -> list[str]: ...


class OutputSink(Protocol):
    """Where an attempt's output goes (the engine's; bounded, numbered, stored)."""

    def write(self, child: int | None, stream: LogStream, data: str, nbytes: int) -> None: ...

    def result(self, child: int, text: str) -> None: ...


#: The child a run_child call works on (set by the engine for each call).
CURRENT_CHILD: ContextVar[int | None] = ContextVar("stepwatch_current_child", default=None)


#: The variables a shell child sees from the server's environment (plus the markers).
DEFAULT_ENV_ALLOW = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "USER",
                     "LOGNAME", "SHELL", "TERM")


@dataclass(frozen=True)
class StepContext:
    job_id: str
    step_name: str
    options: Mapping[str, Any]
    workspace: Path
    docs: DocumentReader
    #: Variables for any process a child starts: the markers that find it again
    #: (STEPWATCH_OWNER, STEPWATCH_JOB, STEPWATCH_STEP, STEPWATCH_ATTEMPT).
    env: Mapping[str, str] = field(default_factory=dict)
    sink: OutputSink | None = None
    #: Names passed through from the server's environment to commands; nothing else is.
    env_allow: tuple[str, ...] = DEFAULT_ENV_ALLOW
    #: Run commands as this user (name or uid), when the server may switch users.
    run_as: str | None = None
    #: Where commands run: the bubblewrap sandbox (the server's default) or unconfined.
    sandbox: Sandbox = NO_SANDBOX
    #: Whether a file with several hard links may be read.
    allow_hardlinks: bool = False
    #: False while this replica's hold on the job is in doubt (no recent lease renewal):
    #: executors start no command then.
    may_start: Callable[[], bool] = field(default=lambda: True, compare=False)
    #: The job's typed inputs by name (commands also see them as STEPWATCH_INPUT_<NAME>).
    inputs: Mapping[str, Any] = field(default_factory=dict)
    #: The workspace's folder, opened once by the thread running synchronous children,
    #: so a child opens its file beneath it without opening the workspace again.
    workspace_fd: int | None = None

    @property
    def beneath(self) -> Workspace:
        """The workspace as ``beneath.open_beneath`` takes it: the open folder if there is one."""
        return self.workspace if self.workspace_fd is None else self.workspace_fd

    def log(self, text: str, stream: LogStream = LogStream.SYSTEM) -> None:
        """A line (or lines) of the step's log: the current child's in run_child, the step's in init."""
        if self.sink is not None:
            data = text if text.endswith("\n") else text + "\n"
            self.sink.write(CURRENT_CHILD.get(), stream, data, len(data.encode()))

    def result(self, text: str) -> None:
        """Declare the current child's result (shown next to it), e.g. a number it computed."""
        child = CURRENT_CHILD.get()
        if self.sink is not None and child is not None:
            self.sink.result(child, text)

    async def documents(self, tags: Sequence[str] | None = None) -> list[Document]:
        """The job's documents, all or those carrying any of ``tags``."""
        return await self.docs.documents(tags)

    async def document_paths(self) -> list[str]:
        """The paths of all the job's documents, in order (without reading their tags and
        attributes: a step that only needs the files)."""
        return await self.docs.paths()


class StepType:
    """Base class for step types. Subclasses set ``name`` and override the hooks: ``init``,
    and either ``run_child`` (a coroutine: commands, network) or, for synchronous work
    (a file read, a stat), ``run_child_sync`` with ``sync_children = True``. Synchronous
    children run in batches on worker threads, without a task and a thread hand-off each."""

    name: ClassVar[str]
    sync_children: ClassVar[bool] = False

    def validate(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Return normalised options or raise OptionError. Default: no options."""
        for key in options:
            raise OptionError(key, f"unknown key for step type {self.name!r}")
        return {}

    def check_paths(self, options: Mapping[str, Any], workspace: Path) -> None:
        """At submit, with the workspace at hand: raise OptionError for a path option that
        leads out of it (symlinks resolved). Default: nothing to check."""

    async def init(self, ctx: StepContext) -> Sequence[Child]:
        raise NotImplementedError

    async def run_child(self, ctx: StepContext, child: Child) -> Sequence[DocumentPut] | None:
        if self.sync_children:  # one child alone (e.g. in a Dask batch): on a thread
            return await asyncio.to_thread(self.run_child_sync, ctx, child)
        raise NotImplementedError

    def run_child_sync(self, ctx: StepContext, child: Child) -> Sequence[DocumentPut] | None:
        """One child's synchronous work, on a worker thread (``sync_children = True``)."""
        raise NotImplementedError


def check_known(options: Mapping[str, Any], known: set[str], type_name: str) -> None:
    for key in options:
        if key not in known:
            raise OptionError(key, f"unknown key for step type {type_name!r}")


def string_list(options: Mapping[str, Any], key: str, *, required: bool) -> tuple[str, ...]:
    if key not in options:
        if required:
            raise OptionError(key, "is required")
        return ()
    value = options[key]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise OptionError(key, "must be a list of non-empty strings")
    if required and not value:
        raise OptionError(key, "must not be empty")
    return tuple(value)
