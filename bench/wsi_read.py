"""Whole-slide read benchmark: ClinicFusion's SlideSource against the raw library it replaces.

Figures (medians of several runs after a warm-up), each beside the baseline measured in the
same run on the same file, and their ratio (baseline time / our time: > 1 means faster):

- 256x256 regions at level 0, random seeded positions, one thread and four threads:
  ``open_slide(...).read_region`` vs ``tiffslide.TiffSlide.read_region(as_array=True)``
  (and openslide's ``read_region`` when openslide-python is installed); goal >= 1.0x
- first thumbnail (1024 px): a fresh open in a warm process, and cold in a new process
  (imports + open + thumbnail) vs ``tiffslide.get_thumbnail``; goal <= 300 ms

Run: ``python -m bench.wsi_read [--slide PATH] [--regions 200]``. Reports other processes'
CPU use (from /proc/stat) so a noisy run can be recognised and repeated.
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench._common import cpu_busy_fraction
from clinic_app.io.slides import open_slide

DEFAULT_SLIDE = (
    Path(__file__).resolve().parents[2] / "shared/data/pathology/slides/cmu-1-small-region.svs"
)
SIZE = 256


def median_s(fn: Callable[[], object], repeats: int = 5) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_regions(read: Callable[[int, int], object], spots: list[tuple[int, int]], threads: int):
    def batch() -> None:
        if threads == 1:
            for x, y in spots:
                read(x, y)
        else:
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(lambda p: read(*p), spots))

    return batch


_COLD_OURS = """
import sys, time
start = time.perf_counter()
from pathlib import Path
from clinic_app.io.slides import open_slide
slide = open_slide(Path(sys.argv[1]))
slide.thumbnail(1024)
print(time.perf_counter() - start)
"""
_COLD_TIFFSLIDE = """
import sys, time
start = time.perf_counter()
import tiffslide
slide = tiffslide.TiffSlide(sys.argv[1])
slide.get_thumbnail((1024, 1024))
print(time.perf_counter() - start)
"""


def cold_seconds(code: str, slide: Path, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, "-c", code, str(slide)], capture_output=True, text=True, check=True
        )
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slide", type=Path, default=DEFAULT_SLIDE)
    parser.add_argument("--regions", type=int, default=200)
    args = parser.parse_args(argv)
    import tiffslide

    busy_before = cpu_busy_fraction()
    slide = open_slide(args.slide)
    width, height = slide.info.dimensions
    rng = random.Random(42)
    spots = [
        (rng.randrange(0, max(1, width - SIZE)), rng.randrange(0, max(1, height - SIZE)))
        for _ in range(args.regions)
    ]
    reference = tiffslide.TiffSlide(args.slide)

    def ours(x: int, y: int) -> object:
        return slide.read_region(0, x, y, SIZE, SIZE)

    def raw(x: int, y: int) -> object:
        return reference.read_region((x, y), 0, (SIZE, SIZE), as_array=True)

    baselines: list[tuple[str, Callable[[int, int], object]]] = [("tiffslide", raw)]
    try:
        import openslide

        handle = openslide.OpenSlide(str(args.slide))
        baselines.append(("openslide", lambda x, y: handle.read_region((x, y), 0, (SIZE, SIZE))))
    except ImportError:
        pass

    rows = []
    for threads in (1, 4):
        our_time = median_s(run_regions(ours, spots, threads))
        for name, read in baselines:
            base_time = median_s(run_regions(read, spots, threads))
            rows.append(
                (
                    f"256x256 regions/s, {threads} thread{'s' if threads > 1 else ''}",
                    f"{len(spots) / our_time:,.0f}",
                    f"{name} {len(spots) / base_time:,.0f}",
                    f"{base_time / our_time:.2f}x",
                )
            )

    def fresh_thumbnail() -> None:
        fresh = open_slide(args.slide)
        fresh.thumbnail(1024)
        fresh.close()

    def fresh_reference() -> None:
        with tiffslide.TiffSlide(args.slide) as fresh:
            fresh.get_thumbnail((1024, 1024))

    ours_warm, raw_warm = median_s(fresh_thumbnail), median_s(fresh_reference)
    rows.append(
        (
            "first thumbnail, fresh open (ms)",
            f"{ours_warm * 1000:.0f}",
            f"tiffslide {raw_warm * 1000:.0f}",
            f"{raw_warm / ours_warm:.2f}x",
        )
    )
    ours_cold, raw_cold = (
        cold_seconds(_COLD_OURS, args.slide),
        cold_seconds(_COLD_TIFFSLIDE, args.slide),
    )
    rows.append(
        (
            "first thumbnail, new process (ms)",
            f"{ours_cold * 1000:.0f}",
            f"tiffslide {raw_cold * 1000:.0f}",
            f"{raw_cold / ours_cold:.2f}x",
        )
    )
    busy_after = cpu_busy_fraction()

    print(f"slide: {args.slide.name} {width}x{height}, {len(spots)} regions, seed 42")
    print(f"{'figure':38} {'ours':>10} {'baseline':>18} {'ratio':>8}")
    for figure, value, baseline, ratio in rows:
        print(f"{figure:38} {value:>10} {baseline:>18} {ratio:>8}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory (this process): {peak:.0f} MiB")
    print(f"CPU busy (all processes) before/after: {busy_before:.0%} / {busy_after:.0%}")
    print("goals: region ratio >= 1.0x; first thumbnail <= 300 ms")
    slide.close()
    reference.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
