"""Process entry: configuration, health, reflection, graceful shutdown."""

from __future__ import annotations

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
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from stepwatch.net import is_loopback
from stepwatch.v1 import orchestrator_pb2 as pb

from . import reaper, tracing
from .auth import Authenticator, AuthInterceptor, TokenFile
from .broker import Broker
from .catalog import Catalog
from .config import Settings, parse_args
from .engine import Engine, RunConfig
from .executors import make_executor
from .leases import LeaseBook, default_replica_name
from .metrics import Metrics
from .model import Event
from .notifier import Notifier
from .ownership import LOCK_SUFFIX, AlreadyOwned, Ownership
from .probe import HealthProbe
from .replicas import Replicas
from .rpc import add_to_server
from .sandbox import NONE as NO_SANDBOX
from .sandbox import Sandbox, bwrap_path
from .scheduler import Scheduler
from .service import OrchestratorServicer
from .statuses import StepStatus
from .step_types import load_step_types
from .store import (
    Listeners,
    Store,
    StoreUnavailable,
    Unsupported,
    database_file,
    dialect_class,
    storage_reason,
)
from .streams import StreamBook

log = logging.getLogger("orchestrator_service")
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["OrchestratorService"].full_name
# No SO_REUSEPORT: a second server on a taken port must fail, not split the clients.
SERVER_OPTIONS = [("grpc.so_reuseport", 0)]
MAX_STREAMS_PER_CONNECTION = 1024  # HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS
PR_SET_DUMPABLE = 4
JOB_BATCH = 100  # jobs deleted per retention transaction


class StartupError(Exception):
    """The server cannot start; the message says why (exit code 2)."""


class Orchestrator:
    """The running service: store, broker, engine and the gRPC server around them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        try:
            self.dialect = dialect_class(settings.db_url)
        except ArgumentError as exc:
            raise StartupError(f"--db-url is not a database URL: {exc}") from None
        except Unsupported as exc:
            raise StartupError(f"--db-url: {exc}") from None
        # A shared database: any number of replicas, each job owned through a lease (leases.py).
        book = (LeaseBook(settings.replica_name or default_replica_name(settings.port),
                          int(settings.lease_s * 1e6)) if self.dialect.shared else None)
        self.replicas: Replicas | None = None
        self.broker = Broker()
        self.metrics = Metrics()
        try:
            self.store = Store(settings.db_url, leases=book, on_availability=self._storage_changed,
                               listeners=Listeners(events=self._committed,
                                                   logs=self.broker.publish_logs,
                                                   deleted=self._jobs_deleted,
                                                   write_timer=self.metrics.write_took))
        except ModuleNotFoundError as exc:
            raise StartupError(f"the database driver is not installed ({exc.name}); for "
                               "PostgreSQL: pip install 'stepwatch[postgres]'") from None
        step_types = load_step_types()
        try:
            executor = make_executor(settings.executor, settings.dask_scheduler,
                                     settings.dask_batch_size, settings.log_cap_bytes)
        except ValueError as exc:
            raise StartupError(str(exc)) from None
        self.engine = Engine(self.store, step_types, RunConfig(
            settings.workspace.resolve(), max_running_steps=settings.max_running_steps,
            limits=settings.limits, log_cap=settings.log_cap_bytes, env_allow=settings.shell_env,
            run_as=settings.shell_user, sandbox=_sandbox(settings),
            allow_hardlinks=settings.allow_hardlinks), executor)
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
        self.scheduler = Scheduler(self.engine, self.catalog, tick_s=settings.scheduler_tick_s,
                                   on_fired=self.metrics.schedule_fired)
        self.notifier = Notifier(self.store, self.store.holding.owner or f"pid{os.getpid()}",
                                 settings.webhooks,
                                 on_attempt=lambda o: self.metrics.webhook_attempts.labels(o).inc())
        self._file_watch: asyncio.Task[None] | None = None
        self._retention: asyncio.Task[None] | None = None
        self._automation: list[asyncio.Task[None]] = []
        self._health_update: asyncio.Task[None] | None = None

    async def start(self) -> int:
        try:
            self.ownership = self.dialect.claim_process(self.settings.db_url)
        except AlreadyOwned as exc:
            raise StartupError(str(exc)) from None
        try:
            await asyncio.to_thread(self.store.migrate)
        except SQLAlchemyError as exc:  # unreachable, wrong password, no such database...
            raise StartupError(f"cannot open the database {self.store.identity}: "
                               f"{storage_reason(exc)}") from None
        if self.settings.migrate_only:
            return 0
        self.store.health.watch_file()
        self.servicer = OrchestratorServicer(self.engine, self.store, self.catalog, self.broker,
                                             self.settings.heartbeat_s, self.auth, self.metrics,
                                             self.streams, self.scheduler, self.settings.webhooks)
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
        if self.store.leased is not None:
            self.replicas = Replicas(
                self.store, self.store.leased, self.engine, self.broker, self.settings.lease_s,
                self._jobs_deleted,
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
        self._file_watch = asyncio.create_task(HealthProbe(self.store.health).run(), name="health-probe")
        self._retention = asyncio.create_task(self._retain(), name="retention")
        self._automation = [asyncio.create_task(self.scheduler.run(), name="scheduler"),
                            asyncio.create_task(self.notifier.run(), name="notifier")]
        return self.port

    async def _retain(self) -> None:
        """Delete log chunks older than --keep-logs-days, now and then (small transactions)."""
        while True:
            cutoff = time.time_ns() // 1000 - int(self.settings.keep_logs_days * 86400e6)
            try:
                deleted = await self.store.writes.delete_old_logs(cutoff)
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
        while ids := await self.store.writes.delete_finished_before(cutoff, JOB_BATCH):
            log.info("retention: deleted %d finished jobs", len(ids))
            if len(ids) < JOB_BATCH:
                break

    def _storage_changed(self, available: bool, reason: str) -> None:
        status = (health_pb2.HealthCheckResponse.SERVING if available
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        self._health_update = asyncio.create_task(self.health.set(SERVICE_NAME, status))

    async def stop(self) -> None:
        """Not serving, end open streams with UNAVAILABLE, let calls finish, stop jobs."""
        for task in (self._file_watch, self._retention, *self._automation):
            if task is not None:
                task.cancel()
        await asyncio.gather(*self._automation, return_exceptions=True)
        await self.scheduler.stop()
        await self.notifier.close()
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
        if any(e.ends_job or (e.step is not None and e.step.status == StepStatus.FAILED)
               for e in events):
            self.notifier.wake()  # it may have queued webhook deliveries

    def _jobs_deleted(self, job_ids: list[str]) -> None:
        self.broker.publish_deleted(job_ids)
        if self.servicer is not None:
            self.servicer.snapshots.forget(job_ids)
            self.servicer.event_cache.forget(job_ids)

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
    db = database_file(db_url)
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
