"""30-minute WFDB record load: ``read_wfdb`` (checksums verified, mV float32) vs ``wfdb.rdrecord``.

MIT-BIH record 100 (360 Hz x 2 leads x 30 min, format 212, 650,000 frames) from
``../shared/data/ecg/wfdb-samples``. Figures are medians of several runs after a warm-up, in
the same process, alternating the two so drift hits both alike:

- ``read_wfdb`` with everything it does: header and file-size checks, one digital read,
  per-signal checksum and initial-value verification, conversion to mV (float32), lead names,
  header comments, and the 2,274 annotations in ``100.atr``
- the same without the annotation file (signals only, the like-for-like figure)
- baseline: ``wfdb.rdrecord(record, physical=True)`` alone (no verification, float64)

Goal: signals-only ratio <= 1.2x. Run: ``python -m bench.wfdb_load [--repeats 15]``. Reports
other processes' CPU use (from /proc/stat) so a noisy run can be recognised and repeated.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import wfdb

from bench._common import cpu_busy_fraction
from clinic_app.io.ecg_wfdb import read_wfdb

RECORD = Path(__file__).resolve().parents[2] / "shared" / "data" / "ecg" / "wfdb-samples" / "100"


def paired_medians(
    first: Callable[[], object], second: Callable[[], object], repeats: int
) -> tuple[float, float]:
    """Median ms of each function, runs interleaved after one warm-up of each."""
    first()
    second()
    times_a: list[float] = []
    times_b: list[float] = []
    for _ in range(repeats):
        for fn, times in ((first, times_a), (second, times_b)):
            start = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times_a), statistics.median(times_b)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args(argv)
    if not RECORD.with_suffix(".hea").is_file():
        print(f"record {RECORD} is absent (../shared/data); nothing to measure")
        return 1
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as folder:
        signals_only = Path(folder) / "100"
        for suffix in (".hea", ".dat"):
            shutil.copy(RECORD.with_suffix(suffix), signals_only.with_suffix(suffix))

        def ours_full() -> object:
            return read_wfdb(RECORD.with_suffix(".hea"))

        def ours_signals() -> object:
            return read_wfdb(signals_only.with_suffix(".hea"))

        def baseline() -> object:
            return wfdb.rdrecord(str(signals_only), physical=True)

        busy_before = cpu_busy_fraction()
        signals_ms, base_ms = paired_medians(ours_signals, baseline, args.repeats)
        full_ms, base2_ms = paired_medians(ours_full, baseline, args.repeats)
        busy_after = cpu_busy_fraction()
    recording = read_wfdb(RECORD.with_suffix(".hea"))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"WFDB load, record 100: {recording.lead_count} leads x {recording.samples.shape[1]:,} "
        f"samples at {recording.sampling_rate_hz:g} Hz ({recording.duration_s / 60:.1f} min), "
        f"{len(recording.annotations):,} annotations; {args.repeats} runs each, medians"
    )
    print()
    print("| figure | ClinicFusion (ms) | wfdb.rdrecord (ms) | ratio | goal |")
    print("|---|---|---|---|---|")
    print(
        f"| signals, checksums verified, mV float32 | {signals_ms:.1f} | {base_ms:.1f} "
        f"| {signals_ms / base_ms:.2f} | <= 1.2 |"
    )
    print(
        f"| + header comments and 100.atr annotations | {full_ms:.1f} | {base2_ms:.1f} "
        f"| {full_ms / base2_ms:.2f} | (information) |"
    )
    print()
    print(
        f"Peak RSS {peak_mb:.0f} MB. CPU busy (all processes) before {busy_before:.0%}, "
        f"after {busy_after:.0%}; rerun when high."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
