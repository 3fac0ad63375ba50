"""A real PostgreSQL for tests: Debian's server binaries, a cluster of our own.

``initdb`` into a temp folder, ``postgres`` on a free port of 127.0.0.1 (no
Unix socket outside the folder), run as the ``postgres`` user when the tests
run as root (the server refuses root). Each test gets a database of its own.
A test that needs PostgreSQL fails, never skips, when the cluster cannot start.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.procs import free_port

__all__ = ["PostgresCluster"]

START_DEADLINE_S = 60.0
PASSWORD_USER = "pw_user"  # the one role that logs in with a password


def _bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for folder in sorted(Path("/").glob("usr/lib/postgresql/*/bin"), reverse=True):
        if (folder / name).exists():
            return str(folder / name)
    raise RuntimeError(f"PostgreSQL's {name} is not installed (make test installs Debian's "
                       "postgresql package; or: apt-get install postgresql)")


class PostgresCluster:
    """One server for the session; ``new_database`` gives each test an empty database."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="stepwatch-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self._as_user: list[str] = []
        self._names = itertools.count(1)
        if os.geteuid() == 0:  # the server will not run as root
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
            self._as_user = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}",
                             "--init-groups", "--"]
        self._run([_bin("initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
                   "-E", "UTF8", "--no-sync"])
        with open(self.data / "postgresql.conf", "a") as conf:
            # Test speed, not durability: the machine is the test's, not production's.
            conf.write(f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                       f"unix_socket_directories = '{self.root}'\nfsync = off\n"
                       "synchronous_commit = off\nfull_page_writes = off\nmax_connections = 300\n")
        # One role must give its password (the URL-encoding test); everyone else is trusted.
        (self.data / "pg_hba.conf").write_text(
            f"local all all trust\nhost all {PASSWORD_USER} 127.0.0.1/32 scram-sha-256\n"
            "host all all 127.0.0.1/32 trust\n")
        self._run([_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"),
                   "-w", "-t", str(int(START_DEADLINE_S)), "start"])

    def _run(self, args: list[str]) -> None:
        done = subprocess.run([*self._as_user, *args], capture_output=True, text=True,
                              cwd=self.root)
        if done.returncode != 0:
            log = (self.root / "server.log")
            raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stderr or done.stdout}"
                               + (log.read_text()[-2000:] if log.exists() else ""))

    def url(self, database: str = "postgres", user: str = "postgres",
            password: str | None = None) -> str:
        auth = user if password is None else f"{user}:{password}"
        return f"postgresql+psycopg://{auth}@127.0.0.1:{self.port}/{database}"

    def sql(self, statement: str, database: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname={database}",
                             autocommit=True) as conn:
            conn.execute(statement)  # type: ignore[arg-type]

    def new_database(self) -> str:
        """An empty database; its SQLAlchemy URL."""
        name = f"t{os.getpid()}_{next(self._names)}"
        self.sql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def pause(self) -> None:
        """The server stopped (fast: sessions ended), its data kept; ``resume`` starts it."""
        self._run([_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"])

    def resume(self) -> None:
        self._run([_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"),
                   "-w", "-t", str(int(START_DEADLINE_S)), "start"])

    def stop(self) -> None:
        subprocess.run([*self._as_user, _bin("pg_ctl"), "-D", str(self.data), "-m", "immediate",
                        "-w", "stop"], capture_output=True, cwd=self.root)
        shutil.rmtree(self.root, ignore_errors=True)
