"""`make run`: the orchestrator and the UI together; Ctrl-C stops both.

Each runs as its own process, exactly as `python -m orchestrator_service` and
`python -m ui_service` would; this script only starts, watches and stops them.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--orchestrator-port", type=int, default=50051)
    p.add_argument("--ui-port", type=int, default=8080)
    p.add_argument("--metrics-port", type=int, default=9464)
    p.add_argument("--db-url", default=os.environ.get("STEPWATCH_DB_URL", "sqlite:///stepwatch.db"))
    a = p.parse_args()
    target = f"127.0.0.1:{a.orchestrator_port}"
    procs = [
        subprocess.Popen([sys.executable, "-m", "orchestrator_service", "--port",
                          str(a.orchestrator_port), "--db-url", a.db_url,
                          "--metrics-port", str(a.metrics_port)]),
        subprocess.Popen([sys.executable, "-m", "ui_service", "--port", str(a.ui_port),
                          "--target", target]),
    ]
    print(f"\n  Stepwatch UI:           http://127.0.0.1:{a.ui_port}/\n"
          f"  Orchestrator (gRPC):    {target}   (stepwatch --target {target} ...)\n"
          f"  Metrics (Prometheus):   http://127.0.0.1:{a.metrics_port}/metrics "
          f"(the UI's: http://127.0.0.1:{a.ui_port}/metrics)\n"
          f"  Ctrl-C stops both.\n", flush=True)

    def stop(*_: object) -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while all(proc.poll() is None for proc in procs):
        time.sleep(0.2)  # supervising two children; nothing to wait on but their exit
    stop()
    deadline = time.monotonic() + 15
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
    return max(abs(proc.returncode or 0) for proc in procs)


if __name__ == "__main__":
    sys.exit(main())
