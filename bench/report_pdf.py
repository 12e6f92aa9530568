"""Time to make one case's PDF explanation report (clinic_app.reporting.pdf.render_pdf).

The case is the typical full report of tests/reporting/sample.py: real 12-lead ECG (pydicom's
waveform_ecg.dcm, 10 s at 1 kHz) on a calibrated grid with relevance shading, the IHC
micrograph with its tile heatmap and six top tiles, a highlighted note, four suggestions,
decisions, signature and model card. Variants without an analysis and without ECG/slide show
where the time goes.

Baseline, measured in the same run: a minimal one-page reportlab PDF with the same embedded
DejaVu fonts (what any report with these fonts costs). Goal (issue 8): <= 300 ms per case.
Medians of several runs after a warm-up; peak Python memory of one render (tracemalloc) and
the process's peak RSS; the CPU share other processes used during the timed runs (/proc/stat).

    python -m bench.report_pdf [--runs 15]
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import statistics
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from bench._common import cpu_busy_fraction


def _cpu_sample() -> tuple[int, int]:
    with Path("/proc/stat").open() as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    return sum(values), values[3] + values[4]


def baseline_pdf() -> bytes:
    """One A4 page, a title and a few lines in the same embedded fonts."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen.canvas import Canvas

    from clinic_app.reporting.fonts import register_fonts

    fonts = register_fonts()
    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=A4, invariant=1, initialFontName=fonts.regular)
    canvas.setFont(fonts.bold, 14)
    canvas.drawString(72, 770, "ClinicFusion explanation report")
    canvas.setFont(fonts.regular, 9)
    for index, line in enumerate(("Case c-1 · version 1", "QTc 402 ms ± 8", "β-blocker, 5 µg")):
        canvas.drawString(72, 740 - 14 * index, line)
    canvas.setFont(fonts.mono, 8)
    canvas.drawString(72, 690, "sha256 " + "0" * 64)
    canvas.showPage()
    canvas.save()
    return buffer.getvalue()


def timed(fn: Callable[[], bytes], runs: int) -> tuple[float, bytes]:
    out = fn()  # warm-up (font subsets, imports, caches)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000.0, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()

    from clinic_app.reporting.pdf import render_pdf
    from tests.reporting.sample import report_data

    busy_before = cpu_busy_fraction()
    typical = report_data()
    variants = {
        "typical case (slide, 12-lead ECG, note)": typical,
        "no ECG": report_data(ecg=False),
        "no slide, no ECG": report_data(slide=False, ecg=False),
        "no analysis (model None)": report_data(analysed=False),
    }
    total0, idle0 = _cpu_sample()
    own0 = sum(os.times()[:2])
    wall0 = time.perf_counter()
    base_ms, base_pdf = timed(baseline_pdf, args.runs)
    results = []
    for name, data in variants.items():
        ms, pdf = timed(lambda data=data: render_pdf(data), args.runs)  # type: ignore[misc]
        results.append((name, ms, pdf))
    wall = time.perf_counter() - wall0
    own = sum(os.times()[:2]) - own0
    total1, idle1 = _cpu_sample()
    ticks = os.sysconf("SC_CLK_TCK")
    busy_all = (total1 - total0) - (idle1 - idle0)
    cores = os.cpu_count() or 1
    others = max(0.0, busy_all / ticks - own) / (wall * cores)

    tracemalloc.start()
    render_pdf(typical)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(f"CPU busy before the runs: {busy_before:.0%}; other processes during the runs: "
          f"{others:.0%} of {cores} cores (rerun if high)")  # fmt: skip
    print(f"{'figure':<44}{'median ms':>10}{'ratio':>8}{'pages':>7}{'KiB':>8}")
    print(f"{'minimal 1-page PDF, same fonts (baseline)':<44}{base_ms:>10.1f}{1.0:>8.2f}"
          f"{1:>7}{len(base_pdf) / 1024:>8.0f}")  # fmt: skip
    for name, ms, pdf in results:
        pages = pdf.count(b"/Type /Page\n") or pdf.count(b"/Type /Page ")
        print(f"{name:<44}{ms:>10.1f}{ms / base_ms:>8.2f}{pages:>7}{len(pdf) / 1024:>8.0f}")
    print(f"runs: {args.runs} after one warm-up; peak Python memory of one typical render "
          f"{peak / 2**20:.1f} MiB (tracemalloc); process peak RSS {rss_mib:.0f} MiB")  # fmt: skip
    typical_ms = results[0][1]
    print("goal: <= 300 ms per case:", "met" if typical_ms <= 300 else "NOT met")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
