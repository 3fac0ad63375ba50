"""The server's configuration: one frozen ``Settings``, built once from flags and environment."""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from .definitions import Limits
from .progress import DEFAULT_LOG_CAP
from .step_types.base import DEFAULT_ENV_ALLOW
from .webhooks import WebhookPolicy

__all__ = ["DEFAULT_DB_URL", "Settings", "parse_args"]

DEFAULT_DB_URL = "sqlite:///stepwatch.db"


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
    webhooks: WebhookPolicy = WebhookPolicy()
    scheduler_tick_s: float = 0.5


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
    p.add_argument("--webhook-allow-host", action="append", default=[
        h for h in env("STEPWATCH_WEBHOOK_ALLOW_HOSTS", "").split(",") if h],
                   help="a host webhook URLs may name (repeat; '*.example.com' for a domain); "
                        "default: any host but link-local ones")
    p.add_argument("--webhook-max-attempts", type=int,
                   default=int(env("STEPWATCH_WEBHOOK_MAX_ATTEMPTS", "8")),
                   help="tries of one webhook delivery before it is marked failed "
                        "(default: %(default)s)")
    p.add_argument("--webhook-backoff", type=float,
                   default=float(env("STEPWATCH_WEBHOOK_BACKOFF", "5")),
                   help="seconds before a failed delivery's second try; doubled for each "
                        "further try, up to an hour (default: %(default)s)")
    p.add_argument("--webhook-timeout", type=float,
                   default=float(env("STEPWATCH_WEBHOOK_TIMEOUT", "10")),
                   help="seconds a receiver has to answer (default: %(default)s)")
    p.add_argument("--scheduler-tick", type=float,
                   default=float(env("STEPWATCH_SCHEDULER_TICK", "0.5")), help=argparse.SUPPRESS)
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
    if a.webhook_max_attempts < 1 or a.webhook_backoff <= 0 or not 0 < a.webhook_timeout <= 300:
        p.error("--webhook-max-attempts must be 1 or more, --webhook-backoff positive, "
                "--webhook-timeout between 0 and 300 seconds")
    if not 0.05 <= a.scheduler_tick <= 60:
        p.error("--scheduler-tick must be between 0.05 and 60 seconds")
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
                    sandbox_ro_binds=tuple(a.sandbox_ro_bind), allow_hardlinks=a.allow_hardlinks,
                    webhooks=WebhookPolicy(allow_hosts=tuple(a.webhook_allow_host),
                                           max_attempts=a.webhook_max_attempts,
                                           backoff_s=a.webhook_backoff,
                                           timeout_s=a.webhook_timeout),
                    scheduler_tick_s=a.scheduler_tick)


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value else None


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


