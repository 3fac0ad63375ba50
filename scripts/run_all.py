"""`make run`: the orchestrator and the UI together; Ctrl-C stops both and exits 0.

Each runs as its own process, exactly as `python -m orchestrator_service` and
`python -m ui_service` would; this script only starts, watches and stops them. The
banner comes once both answer on their ports: a service that cannot start (a port in
use, a database another instance holds) is the last thing printed, and the exit is 1.
The children run in a session of their own and this script takes the terminal's
foreground, so Ctrl-C reaches only this script, which stops them (SIGTERM: their graceful
shutdown) and exits 0 — and so does make.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable

READY_S = 60.0
PR_SET_PDEATHSIG = 1


def _own_session() -> None:
    """In the child: a session of its own (no terminal signals), and SIGTERM should this
    script die without stopping it."""
    os.setsid()
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _take_terminal() -> Callable[[], None]:
    """Make this script the terminal's foreground process group, so that Ctrl-C reaches it
    alone and not make (which would die of the signal and exit non-zero whatever we do):
    what a shell does for a job. Returns how to give the terminal back. Nothing happens
    without a terminal, or when we are not in the foreground (``make run &``)."""
    try:
        fd = os.open("/dev/tty", os.O_RDWR)
    except OSError:
        return lambda: None
    try:
        before = os.tcgetpgrp(fd)
        if before != os.getpgrp():
            os.close(fd)
            return lambda: None
        os.setpgid(0, 0)
        signal.signal(signal.SIGTTOU, signal.SIG_IGN)  # tcsetpgrp from a background group
        os.tcsetpgrp(fd, os.getpgrp())
    except OSError:
        os.close(fd)
        return lambda: None

    def give_back() -> None:
        try:
            os.tcsetpgrp(fd, before)
        except OSError:
            pass
        os.close(fd)
    return give_back


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--orchestrator-port", type=int, default=50051)
    p.add_argument("--ui-port", type=int, default=8080)
    p.add_argument("--metrics-port", type=int, default=9464)
    p.add_argument("--db-url", default=os.environ.get("STEPWATCH_DB_URL", "sqlite:///stepwatch.db"))
    a = p.parse_args()
    target = f"127.0.0.1:{a.orchestrator_port}"
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    give_back = _take_terminal()
    procs = [
        subprocess.Popen([sys.executable, "-m", "orchestrator_service", "--port",
                          str(a.orchestrator_port), "--db-url", a.db_url,
                          "--metrics-port", str(a.metrics_port)], preexec_fn=_own_session),
        subprocess.Popen([sys.executable, "-m", "ui_service", "--port", str(a.ui_port),
                          "--target", target], preexec_fn=_own_session),
    ]
    deadline = time.monotonic() + READY_S
    ports = (a.orchestrator_port, a.ui_port)
    while not stopping and not all(_answers(port) for port in ports):
        if any(proc.poll() is not None for proc in procs) or time.monotonic() > deadline:
            break
        time.sleep(0.1)  # polling two other processes' ports, with a deadline
    started = not stopping and all(proc.poll() is None for proc in procs) and all(
        _answers(port) for port in ports)
    if started:
        print(f"\n  Stepwatch UI:           http://127.0.0.1:{a.ui_port}/\n"
              f"  Orchestrator (gRPC):    {target}   (stepwatch --target {target} ...)\n"
              f"  Metrics (Prometheus):   http://127.0.0.1:{a.metrics_port}/metrics "
              f"(the UI's: http://127.0.0.1:{a.ui_port}/metrics)\n"
              f"  The CLI:                .venv/bin/stepwatch (or `source .venv/bin/activate`)\n"
              f"  Ctrl-C stops both.\n", flush=True)
        while not stopping and all(proc.poll() is None for proc in procs):
            time.sleep(0.2)  # supervising two children; nothing to wait on but their exit
    elif not stopping:
        print("stepwatch: could not start both services (see above)", file=sys.stderr)
    failed = not stopping  # a child that ended on its own ended the run: not a clean stop
    stop()
    end = time.monotonic() + 15
    for proc in procs:
        try:
            proc.wait(max(0.1, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            failed = True
    give_back()
    clean = (0, -signal.SIGTERM)
    return 1 if failed or any(proc.returncode not in clean for proc in procs) else 0


if __name__ == "__main__":
    sys.exit(main())
