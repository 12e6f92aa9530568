"""Helpers the benchmarks share: how busy the machine is while they measure."""

from __future__ import annotations

import time
from pathlib import Path


def cpu_busy_fraction(seconds: float = 0.5) -> float:
    """Share of all CPU time used by anything during a short window (from /proc/stat)."""

    def sample() -> tuple[int, int]:
        with Path("/proc/stat").open() as handle:
            values = [int(v) for v in handle.readline().split()[1:]]
        return sum(values), values[3] + values[4]

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except OSError:
        return float("nan")
    return 1.0 - (idle1 - idle0) / max(1, total1 - total0)
