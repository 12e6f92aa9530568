"""1,000 cases analysed by the batch worker and exported: time, cases/s and peak memory.

The cases are made through the services, quickly: one real ECG (pydicom's 12-lead DICOM) is
imported once (read, de-identified and checked in the capped child), and every other case gets
the same stored file (the store is content-addressed, so it is kept once) and a note of its own.
Then ``BatchService`` queues every new case and works through them in this process, and
``services.reports.export_reports`` writes their PDF reports into one zip with a manifest.

Explanations are off by default (``--explain`` turns them on): with them, each case costs
seconds of integrated gradients on a 2-core CPU, and 1,000 cases would take hours. Each phase
reports wall time, cases/s and the CPU other processes used (from /proc/stat); peak resident
memory is that of this process (``resource.getrusage``).

    python -m bench.batch_1000 [--cases 1000] [--batch-size 16] [--export-cases N] [--explain]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

from bench._common import cpu_busy_fraction
from bench.batch_throughput import BUNDLE, CpuMeter, build


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--export-cases", type=int, default=0, help="export only this many (0: all)"
    )
    parser.add_argument("--explain", action="store_true", help="compute explanations too")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    busy = cpu_busy_fraction()
    root = Path(tempfile.mkdtemp(prefix="bench-batch-1000-"))
    rows: list[tuple[str, int, float, float]] = []
    try:
        with CpuMeter() as meter:
            start = time.perf_counter()
            setup = build(root, args.cases)
            made = time.perf_counter() - start
        rows.append(("create cases (services)", args.cases, made, meter.other))

        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        from clinic_app.services.batch import BatchService

        service = BatchService(setup.cases, setup.settings)
        with CpuMeter() as meter:
            start = time.perf_counter()
            queued = service.enqueue(
                setup.actor,
                explain=args.explain,
                batch_size=args.batch_size,
                device="cpu",
                bundle=BUNDLE,
            )
            status = service.run(setup.actor, queued.run_id)
            analysed = time.perf_counter() - start
        assert status.done == args.cases, status
        rows.append(
            ("analyse (batch worker, incl. model load)", status.done, analysed, meter.other)
        )
        rss_after_analysis = _peak_mib()

        from clinic_app.domain.records import ReportKind
        from clinic_app.services.reports import export_reports

        chosen = setup.uids[: args.export_cases or None]
        with CpuMeter() as meter:
            start = time.perf_counter()
            summary = export_reports(
                setup.cases,
                setup.settings,
                setup.actor,
                chosen,
                root / "reports.zip",
                kinds=(ReportKind.PDF,),
            )
            exported = time.perf_counter() - start
        rows.append(("export PDF reports (zip + manifest)", len(chosen), exported, meter.other))
        failures = summary.failures
        setup.database.dispose()

        print(f"CPU busy before the run: {busy:.0%} (rerun if high)")
        print(
            f"torch threads: {torch.get_num_threads()}; CPUs: {os.cpu_count()}; batch size "
            f"{args.batch_size}; explanations {'on' if args.explain else 'off'}"
        )
        print(f"{'phase':<44}{'cases':>7}{'seconds':>10}{'cases/s':>9}{'others CPU':>12}")
        for name, count, seconds, other in rows:
            print(f"{name:<44}{count:>7}{seconds:>10.1f}{count / seconds:>9.2f}{other:>12.0%}")
        total = analysed + exported * args.cases / len(chosen)
        label = "analysed and exported" + (
            "" if len(chosen) == args.cases else " (export extrapolated)"
        )
        print(f"{label:<44}{args.cases:>7}{total:>10.1f}{args.cases / total:>9.2f}")
        print(
            f"peak resident memory: {rss_after_analysis:.0f} MiB after the analysis, "
            f"{_peak_mib():.0f} MiB at the end; export failures: {len(failures)}; "
            f"zip: {(root / 'reports.zip').stat().st_size / 2**20:.1f} MiB"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
