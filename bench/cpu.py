"""CPU seconds from /proc: of one process, and of the whole machine."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cpu_s", "machine_busy_s"]

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """A live process's user + system CPU seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def machine_busy_s() -> float:
    """CPU seconds every core of the machine spent on anything but idling (all processes,
    the kernel, interrupts; on a VM, steal too: time the host took while we wanted to run),
    since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    # fields[:8]: user nice system idle iowait irq softirq steal (guest is inside user)
    return (sum(fields[:8]) - idle) / _TICK
