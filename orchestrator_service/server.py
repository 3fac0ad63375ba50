"""Process entry: configuration, health, reflection, graceful shutdown."""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection
from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from stepwatch.net import is_loopback
from stepwatch.v1 import orchestrator_pb2 as pb

from . import reaper, tracing
from .auth import Authenticator, AuthInterceptor, TokenFile
from .broker import Broker
from .catalog import Catalog
from .definitions import Limits
from .engine import Engine
from .executors import make_executor
from .leases import LeaseBook, default_replica_name
from .metrics import Metrics
from .model import Event
from .ownership import LOCK_SUFFIX, AlreadyOwned, Ownership, acquire, sqlite_file
from .probe import HealthProbe
from .progress import DEFAULT_LOG_CAP
from .replicas import Replicas
from .sandbox import NONE as NO_SANDBOX
from .sandbox import Sandbox, bwrap_path
from .service import OrchestratorServicer, add_to_server
from .step_types import load_step_types
from .step_types.base import DEFAULT_ENV_ALLOW
from .store import Store, StoreUnavailable, storage_reason
from .streams import StreamBook

log = logging.getLogger("orchestrator_service")
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["OrchestratorService"].full_name
DEFAULT_DB_URL = "sqlite:///stepwatch.db"
# No SO_REUSEPORT: a second server on a taken port must fail, not split the clients.
SERVER_OPTIONS = [("grpc.so_reuseport", 0)]
MAX_STREAMS_PER_CONNECTION = 1024  # HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS
PR_SET_DUMPABLE = 4
JOB_BATCH = 100  # jobs deleted per retention transaction


class StartupError(Exception):
    """The server cannot start; the message says why (exit code 2)."""


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 50051
    db_url: str = DEFAULT_DB_URL
    jobs_dir: Path | None = Path("jobs")
    workspace: Path = Path(".")
    heartbeat_s: float = 5.0
    shutdown_grace_s: float = 5.0
    max_running_steps: int = 64
    limits: Limits = Limits()
    log_cap_bytes: int = DEFAULT_LOG_CAP
    keep_logs_days: float = 30.0
    retention_interval_s: float = 3600.0
    keep_jobs_days: float | None = None  # None: keep every job forever
    shell_env: tuple[str, ...] = DEFAULT_ENV_ALLOW
    shell_user: str | None = None
    metrics_port: int | None = None  # None: no metrics endpoint
    executor: str = "inprocess"
    dask_scheduler: str | None = None
    dask_batch_size: int = 50
    auth_token_file: Path | None = None
    insecure_no_auth: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    lease_s: float = 10.0
    replica_name: str | None = None  # None: host:port (host:pidNNN with --port 0)
    migrate_only: bool = False
    max_streams_per_caller: int = 256  # 0: no cap
    sandbox: str = "bwrap"  # or "none": commands unconfined (warned at every start)
    sandbox_ro_binds: tuple[str, ...] = ()
    allow_hardlinks: bool = False


class Orchestrator:
    """The running service: store, broker, engine and the gRPC server around them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        try:
            backend = make_url(settings.db_url).get_backend_name()
        except ArgumentError as exc:
            raise StartupError(f"--db-url is not a database URL: {exc}") from None
        # PostgreSQL: any number of replicas, each job owned through a lease (leases.py).
        book = (LeaseBook(settings.replica_name or default_replica_name(settings.port),
                          int(settings.lease_s * 1e6)) if backend == "postgresql" else None)
        try:
            self.store = Store(settings.db_url, leases=book)
        except ModuleNotFoundError as exc:
            raise StartupError(f"the database driver is not installed ({exc.name}); for "
                               "PostgreSQL: pip install 'stepwatch[postgres]'") from None
        self.replicas: Replicas | None = None
        self.broker = Broker()
        self.metrics = Metrics()
        self.store.set_listener(self._committed)
        self.store.write_timer = self.metrics.write_took
        self.store.set_log_listener(self.broker.publish_logs)
        self.store.set_delete_listener(self._jobs_deleted)
        step_types = load_step_types()
        try:
            executor = make_executor(settings.executor, settings.dask_scheduler,
                                     settings.dask_batch_size, settings.log_cap_bytes)
        except ValueError as exc:
            raise StartupError(str(exc)) from None
        self.engine = Engine(self.store, step_types, settings.workspace.resolve(),
                             max_running_steps=settings.max_running_steps, limits=settings.limits,
                             log_cap=settings.log_cap_bytes, executor=executor,
                             env_allow=settings.shell_env, run_as=settings.shell_user,
                             sandbox=_sandbox(settings), allow_hardlinks=settings.allow_hardlinks)
        self.catalog = Catalog(settings.jobs_dir, step_types)
        self.health = health_aio.HealthServicer()
        tracing.setup()  # before the server is made: its RPCs get spans
        self.tokens = _token_file(settings)
        self.auth = Authenticator(self.tokens)
        self.streams = StreamBook(settings.max_streams_per_caller)
        self.server = grpc.aio.server(options=[*SERVER_OPTIONS, ("grpc.max_concurrent_streams",
                                                                 MAX_STREAMS_PER_CONNECTION)],
                                      interceptors=[AuthInterceptor(self.auth)])
        self.port = 0
        self.ownership: Ownership | None = None
        self.servicer: OrchestratorServicer | None = None
        self.metrics_port = 0
        self._file_watch: asyncio.Task[None] | None = None
        self._retention: asyncio.Task[None] | None = None
        self._health_update: asyncio.Task[None] | None = None

    async def start(self) -> int:
        try:
            self.ownership = acquire(self.settings.db_url)
        except AlreadyOwned as exc:
            raise StartupError(str(exc)) from None
        try:
            await asyncio.to_thread(self.store.migrate)
        except SQLAlchemyError as exc:  # unreachable, wrong password, no such database...
            raise StartupError(f"cannot open the database {self.store.identity}: "
                               f"{storage_reason(exc)}") from None
        if self.settings.migrate_only:
            return 0
        self.store.watch_file()
        self.store.on_availability = self._storage_changed
        self.servicer = OrchestratorServicer(self.engine, self.catalog, self.broker,
                                             self.settings.heartbeat_s, self.auth, self.metrics,
                                             self.streams)
        add_to_server(self.servicer, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            [SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME], self.server)
        address = f"{self.settings.host}:{self.settings.port}"
        try:
            credentials = _server_credentials(self.settings)
            self.port = (self.server.add_secure_port(address, credentials) if credentials
                         else self.server.add_insecure_port(address))
        except RuntimeError:
            self.port = 0
        if self.port == 0:
            raise StartupError(f"cannot listen on {address}: the address is in use or not "
                               "available (is another server running there? choose --port)")
        await self.engine.recover()
        if self.store.leases is not None:
            self.replicas = Replicas(
                self.store, self.engine, self.broker, self.settings.lease_s, self._jobs_deleted,
                successor=self.settings.replica_name is None and self.settings.port != 0,
                on_takeover=self.metrics.takeovers.inc)
            await self.replicas.start()
        if self.settings.metrics_port is not None:
            try:
                self.metrics_port = self.metrics.serve(self.settings.host,
                                                       self.settings.metrics_port)
            except OSError as exc:
                raise StartupError(f"cannot serve metrics on {self.settings.host}:"
                                   f"{self.settings.metrics_port}: {exc.strerror}") from None
            log.info("metrics on http://%s:%d/metrics", self.settings.host, self.metrics_port)
        await self.server.start()
        await self.health.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
        # The file (deleted, replaced) and the database (gone, back) are watched even when idle.
        self._file_watch = asyncio.create_task(HealthProbe(self.store).run(), name="health-probe")
        self._retention = asyncio.create_task(self._retain(), name="retention")
        return self.port

    async def _retain(self) -> None:
        """Delete log chunks older than --keep-logs-days, now and then (small transactions)."""
        while True:
            cutoff = time.time_ns() // 1000 - int(self.settings.keep_logs_days * 86400e6)
            try:
                deleted = await self.store.delete_old_logs(cutoff)
                if deleted:
                    log.info("retention: deleted %d log chunks", deleted)
                if self.settings.keep_jobs_days is not None:
                    await self._retain_jobs()
            except StoreUnavailable as exc:
                log.warning("retention skipped: %s", exc)
            await asyncio.sleep(self.settings.retention_interval_s)  # a period, not an event

    async def _retain_jobs(self) -> None:
        """Finished jobs older than --keep-jobs-days go, 100 to a transaction."""
        assert self.settings.keep_jobs_days is not None
        cutoff = time.time_ns() // 1000 - int(self.settings.keep_jobs_days * 86400e6)
        while ids := await self.store.delete_finished_before(cutoff, JOB_BATCH):
            log.info("retention: deleted %d finished jobs", len(ids))
            if len(ids) < JOB_BATCH:
                break

    def _storage_changed(self, available: bool, reason: str) -> None:
        status = (health_pb2.HealthCheckResponse.SERVING if available
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        self._health_update = asyncio.create_task(self.health.set(SERVICE_NAME, status))

    async def stop(self) -> None:
        """Not serving, end open streams with UNAVAILABLE, let calls finish, stop jobs."""
        for task in (self._file_watch, self._retention):
            if task is not None:
                task.cancel()
        await self.health.enter_graceful_shutdown()
        if self.replicas is not None:
            await self.replicas.stop()  # no more claims while the jobs stop
        self.broker.close()
        await self.server.stop(self.settings.shutdown_grace_s)
        await self.engine.stop()
        if self.replicas is not None:
            await self.replicas.release()  # the other replicas take the jobs over now
        self.store.close()
        self.metrics.close()
        self.release()

    def _committed(self, events: list[Event]) -> None:
        self.broker.publish(events)
        self.metrics.observe(events)

    def _jobs_deleted(self, job_ids: list[str]) -> None:
        self.broker.publish_deleted(job_ids)
        if self.servicer is not None:
            self.servicer.snapshots.forget(job_ids)

    def reload_tokens(self) -> None:
        """SIGHUP: read the token file again; a file that does not parse keeps the old set."""
        assert self.tokens is not None
        try:
            self.tokens.reload()
        except (OSError, ValueError) as exc:
            log.error("token file not reloaded, the previous tokens stay: %s", exc)
            return
        ended = self.streams.revoke(self.tokens.keys)
        if ended:
            log.info("auth: ended %d open streams of revoked tokens", ended)

    def release(self) -> None:
        if self.ownership is not None:
            self.ownership.release()
            self.ownership = None


def tune_gc() -> None:
    """A long-lived server: what start-up built stays, so the collector need not rescan it
    (gc.freeze), and young collections run less often. Full collections of a big heap
    otherwise pause every RPC for 100+ ms."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 1000)


async def serve(settings: Settings, on_ready: Callable[[int], None] | None = None) -> None:
    _not_dumpable()
    reaper.install()
    orch = Orchestrator(settings)
    try:
        port = await orch.start()
    except BaseException:
        orch.release()
        raise
    if settings.migrate_only:
        log.info("database schema is at head; --migrate-only: not serving")
        orch.store.close()
        orch.release()
        return
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if orch.tokens is not None:
        loop.add_signal_handler(signal.SIGHUP, orch.reload_tokens)
    tune_gc()
    if on_ready is not None:
        on_ready(port)
    await stop.wait()
    log.info("shutting down")
    await orch.stop()


def _sandbox(settings: Settings) -> Sandbox:
    """The commands' sandbox, checked once here: a server that cannot confine its commands
    does not start (unless told --sandbox none, which is warned at every start)."""
    if settings.migrate_only:
        return NO_SANDBOX  # runs no command
    if settings.sandbox == "none":
        log.warning("INSECURE: --sandbox none: commands run unconfined and can read this "
                    "server's environment, files and database, and signal it")
        return NO_SANDBOX
    bwrap = bwrap_path()
    if bwrap is None:
        raise StartupError("commands run in a bubblewrap sandbox and `bwrap` is not installed "
                           "(Debian: apt-get install bubblewrap); or --sandbox none to run them "
                           "unconfined")
    hidden = [*_database_files(settings.db_url), *(str(p.resolve()) for p in (
        settings.auth_token_file, settings.tls_key, settings.tls_cert, settings.tls_client_ca)
        if p is not None)]
    sandbox = Sandbox("bwrap", bwrap, tuple(hidden),
                      tuple(str(Path(p).resolve()) for p in settings.sandbox_ro_binds))
    probe = subprocess.run(sandbox.wrap(["/bin/sh", "-c", "true"], settings.workspace.resolve()),
                           capture_output=True, text=True, timeout=30, env={}, check=False)
    if probe.returncode != 0:
        raise StartupError(f"the command sandbox does not work here ({probe.stderr.strip()}); "
                           "--sandbox none runs commands unconfined")
    return sandbox


def _database_files(db_url: str) -> list[str]:
    db = sqlite_file(db_url)
    return [] if db is None else [db + s for s in ("", "-wal", "-shm", "-journal", LOCK_SUFFIX)]


def _not_dumpable() -> None:
    """No process of the same user may read this one's memory or /proc/PID/environ."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_DUMPABLE, 0) failed: errno %d", ctypes.get_errno())


def _token_file(settings: Settings) -> TokenFile | None:
    """The token file, or None (everyone is admin) where that is allowed: on loopback, or
    when the operator said --insecure-no-auth (warned at every start)."""
    if settings.auth_token_file is not None:
        try:
            return TokenFile(settings.auth_token_file)
        except (OSError, ValueError) as exc:
            raise StartupError(f"cannot read --auth-token-file: {exc}") from None
    if not is_loopback(settings.host):
        if not settings.insecure_no_auth:
            raise StartupError(
                f"--host {settings.host} is reachable from other machines and there is no "
                "--auth-token-file: anyone could run commands here. Give --auth-token-file "
                "(see `stepwatch token create`), or --insecure-no-auth to accept the risk")
        log.warning("INSECURE: listening on %s with no authentication (--insecure-no-auth): "
                    "anyone who reaches this port can run commands as %s", settings.host,
                    os.environ.get("USER", "this user"))
    return None


def _server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    if settings.tls_cert is None and settings.tls_key is None:
        if settings.tls_client_ca is not None:
            raise StartupError("--tls-client-ca needs --tls-cert and --tls-key")
        return None
    if settings.tls_cert is None or settings.tls_key is None:
        raise StartupError("TLS needs both --tls-cert and --tls-key")
    try:
        pair = (settings.tls_key.read_bytes(), settings.tls_cert.read_bytes())
        ca = settings.tls_client_ca.read_bytes() if settings.tls_client_ca else None
    except OSError as exc:
        raise StartupError(f"cannot read a TLS file: {exc}") from None
    # With a client CA, a client certificate it signed is required (mTLS).
    return grpc.ssl_server_credentials([pair], root_certificates=ca,
                                       require_client_auth=ca is not None)


def parse_args(argv: list[str] | None = None) -> Settings:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="python -m orchestrator_service",
                                description="Stepwatch orchestrator (gRPC).")
    p.add_argument("--host", default=env("STEPWATCH_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(env("STEPWATCH_PORT", "50051")),
                   help="0 picks a free port (printed at start)")
    p.add_argument("--db-url", default=env("STEPWATCH_DB_URL", DEFAULT_DB_URL),
                   help="any SQLAlchemy URL (default: %(default)s)")
    p.add_argument("--jobs-dir", default=env("STEPWATCH_JOBS_DIR", "jobs"),
                   help="folder of *.toml job definitions")
    p.add_argument("--workspace", default=env("STEPWATCH_WORKSPACE", "."),
                   help="folder that step paths and shell commands are relative to")
    p.add_argument("--heartbeat-interval", type=float,
                   default=float(env("STEPWATCH_HEARTBEAT_INTERVAL", "5")),
                   help="seconds of silence before a watch stream gets a heartbeat")
    p.add_argument("--max-running-steps", type=int,
                   default=int(env("STEPWATCH_MAX_RUNNING_STEPS", "64")),
                   help="step attempts running at once, across all jobs; a ready step waits "
                        "PENDING for a slot (default: %(default)s)")
    p.add_argument("--max-definition-bytes", type=int,
                   default=int(env("STEPWATCH_MAX_DEFINITION_BYTES", str(Limits.definition_bytes))))
    p.add_argument("--max-steps", type=int,
                   default=int(env("STEPWATCH_MAX_STEPS", str(Limits.steps))),
                   help="steps per job (default: %(default)s)")
    p.add_argument("--max-children-per-step", type=int,
                   default=int(env("STEPWATCH_MAX_CHILDREN_PER_STEP", str(Limits.children))))
    p.add_argument("--log-cap-bytes", type=int,
                   default=int(env("STEPWATCH_LOG_CAP_BYTES", str(DEFAULT_LOG_CAP))),
                   help="output kept per child; past it, a note says how much was dropped")
    p.add_argument("--keep-logs-days", type=float,
                   default=float(env("STEPWATCH_KEEP_LOGS_DAYS", "30")),
                   help="log chunks older than this are deleted (default: %(default)s)")
    p.add_argument("--keep-jobs-days", type=float,
                   default=float(env("STEPWATCH_KEEP_JOBS_DAYS", "0")) or None,
                   help="delete finished jobs (and all they made) older than this; "
                        "default: keep them forever")
    p.add_argument("--retention-interval", type=float,
                   default=float(env("STEPWATCH_RETENTION_INTERVAL", "3600")),
                   help=argparse.SUPPRESS)
    p.add_argument("--executor", choices=["inprocess", "dask"],
                   default=env("STEPWATCH_EXECUTOR", "inprocess"),
                   help="where step children run: this process (default) or a Dask cluster")
    p.add_argument("--dask-scheduler", default=env("STEPWATCH_DASK_SCHEDULER"),
                   help="the Dask scheduler for --executor dask, e.g. tcp://10.0.0.5:8786")
    p.add_argument("--dask-batch-size", type=int,
                   default=int(env("STEPWATCH_DASK_BATCH_SIZE", "50")),
                   help="children per Dask task (default: %(default)s)")
    p.add_argument("--auth-token-file", default=env("STEPWATCH_AUTH_TOKEN_FILE"),
                   help="'ROLE TOKEN-SHA256 NAME' lines (stepwatch token create); read again "
                        "on SIGHUP. Without it everyone is admin (loopback only)")
    p.add_argument("--insecure-no-auth", action="store_true",
                   default=env("STEPWATCH_INSECURE_NO_AUTH", "") == "1",
                   help="listen beyond loopback without authentication (warned at start)")
    p.add_argument("--tls-cert", default=env("STEPWATCH_TLS_CERT"), help="server certificate (PEM)")
    p.add_argument("--tls-key", default=env("STEPWATCH_TLS_KEY"), help="its private key (PEM)")
    p.add_argument("--tls-client-ca", default=env("STEPWATCH_TLS_CLIENT_CA"),
                   help="require client certificates signed by this CA (mTLS)")
    p.add_argument("--shell-env", default=env("STEPWATCH_SHELL_ENV", ",".join(DEFAULT_ENV_ALLOW)),
                   help="comma-separated names passed from this environment to `shell` "
                        "commands; nothing else is (default: %(default)s)")
    p.add_argument("--shell-user", default=env("STEPWATCH_SHELL_USER"),
                   help="run `shell` commands as this user (the server must be able to switch)")
    p.add_argument("--metrics-port", type=int, default=_int_or_none(env("STEPWATCH_METRICS_PORT")),
                   help="serve Prometheus metrics at http://HOST:PORT/metrics (default: off)")
    p.add_argument("--lease-seconds", type=float,
                   default=float(env("STEPWATCH_LEASE_SECONDS", "10")),
                   help="PostgreSQL replicas: how long a job's lease lasts without renewal; a dead "
                        "replica's jobs resume elsewhere within about 1.1 leases (default: %(default)s)")
    p.add_argument("--replica-name", default=env("STEPWATCH_REPLICA_NAME"),
                   help="this replica's name in leases (default: HOST:PORT)")
    p.add_argument("--max-streams-per-caller", type=int,
                   default=int(env("STEPWATCH_MAX_STREAMS_PER_CALLER", "256")),
                   help="open Watch streams per token (0: no cap; without a token file there "
                        "is no cap) (default: %(default)s)")
    p.add_argument("--sandbox", choices=["bwrap", "none"],
                   default=env("STEPWATCH_SANDBOX", "bwrap"),
                   help="where `shell` commands run: a bubblewrap sandbox (default) or none "
                        "(unconfined: they can read this server's secrets; warned at start)")
    p.add_argument("--sandbox-ro-bind", action="append", default=[
        b for b in env("STEPWATCH_SANDBOX_RO_BINDS", "").split(",") if b],
                   help="a path commands may also read in the sandbox (repeat), e.g. a "
                        "toolchain outside /usr")
    p.add_argument("--allow-hardlinks", action="store_true",
                   help="let scan_files and summarize read files with several hard links "
                        "(such a file may be one from outside the workspace)")
    p.add_argument("--migrate-only", action="store_true",
                   help="upgrade the database schema to this version's, then exit")
    p.add_argument("--log-level", default=env("STEPWATCH_LOG_LEVEL", "INFO"))
    a = p.parse_args(argv)
    logging.basicConfig(level=a.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    if not 0.5 <= a.lease_seconds <= 3600:
        p.error("--lease-seconds must be between 0.5 and 3600")
    if a.max_streams_per_caller < 0:
        p.error("--max-streams-per-caller must be 0 (no cap) or more")
    if a.heartbeat_interval <= 0:
        p.error("--heartbeat-interval must be positive")
    if a.keep_jobs_days is not None and a.keep_jobs_days <= 0:
        p.error("--keep-jobs-days must be positive")
    if a.keep_logs_days <= 0 or a.retention_interval <= 0:
        p.error("--keep-logs-days and --retention-interval must be positive")
    if a.executor == "dask" and not a.dask_scheduler:
        p.error("--executor dask needs --dask-scheduler tcp://HOST:PORT")
    for flag in ("max_running_steps", "max_definition_bytes", "max_steps", "max_children_per_step",
                 "log_cap_bytes", "dask_batch_size"):
        if getattr(a, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be 1 or more")
    return Settings(host=a.host, port=a.port, db_url=a.db_url, jobs_dir=Path(a.jobs_dir),
                    workspace=Path(a.workspace), heartbeat_s=a.heartbeat_interval,
                    max_running_steps=a.max_running_steps,
                    limits=Limits(definition_bytes=a.max_definition_bytes, steps=a.max_steps,
                                  children=a.max_children_per_step),
                    log_cap_bytes=a.log_cap_bytes, keep_logs_days=a.keep_logs_days,
                    retention_interval_s=a.retention_interval, executor=a.executor,
                    dask_scheduler=a.dask_scheduler, dask_batch_size=a.dask_batch_size,
                    auth_token_file=_path(a.auth_token_file), insecure_no_auth=a.insecure_no_auth,
                    tls_cert=_path(a.tls_cert), tls_key=_path(a.tls_key),
                    tls_client_ca=_path(a.tls_client_ca), keep_jobs_days=a.keep_jobs_days,
                    shell_env=tuple(n.strip() for n in a.shell_env.split(",") if n.strip()),
                    shell_user=a.shell_user or None, metrics_port=a.metrics_port,
                    lease_s=a.lease_seconds, replica_name=a.replica_name or None,
                    migrate_only=a.migrate_only,
                    max_streams_per_caller=a.max_streams_per_caller, sandbox=a.sandbox,
                    sandbox_ro_binds=tuple(a.sandbox_ro_bind), allow_hardlinks=a.allow_hardlinks)


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value else None


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def main(argv: list[str] | None = None) -> None:
    settings = parse_args(argv)

    def ready(port: int) -> None:
        if settings.migrate_only:
            return
        # Tests and scripts read this line to learn the port.
        print(f"stepwatch orchestrator listening on {settings.host}:{port}", flush=True)

    try:
        asyncio.run(serve(settings, ready))
    except StartupError as exc:
        print(f"stepwatch orchestrator: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
