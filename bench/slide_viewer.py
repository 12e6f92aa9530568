"""Slide viewer benchmark: tile delivery through the viewer against a bare read loop.

Figures (medians of several runs after a warm-up, Qt offscreen), each beside its baseline
measured in the same run, and their ratio (baseline time / viewer time):

- fill one 1280x800 view at full resolution (level 0): the viewer (pool threads, queued
  signals, pixmaps, cache) vs reading the same tiles with ``read_region`` in a plain loop
- the longest event-loop gap while the view fills and pans (a 10 ms QTimer probe); goal < 50 ms
- ``set_heatmap`` with a whole slide's grid of tiles (one image) vs the same tiles off the grid
  (drawn as rectangles)

Run: ``python -m bench.slide_viewer [--slide PATH]``. Without --slide a 8192x8192 pyramidal
TIFF is generated in a temporary folder. Reports other processes' CPU use (from /proc/stat).
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np

from bench._common import cpu_busy_fraction
from clinic_app.domain.explanations import TileHeatmap, TileScore
from clinic_app.domain.pathology import SlideSource
from clinic_app.io.slides import open_slide


def generated_slide(folder: Path, side: int = 8192) -> Path:
    import tifffile

    rng = np.random.default_rng(0)
    base = rng.integers(150, 255, size=(side // 8, side // 8, 3), dtype=np.uint8)
    image = np.repeat(np.repeat(base, 8, axis=0), 8, axis=1)
    path = folder / "bench.tiff"
    with tifffile.TiffWriter(path, bigtiff=True) as writer:
        level = image
        for index in range(4):
            writer.write(
                level,
                tile=(256, 256),
                compression="jpeg",
                photometric="rgb",
                subfiletype=0 if index == 0 else 1,
                resolution=(1e4 / 0.25 / 2**index, 1e4 / 0.25 / 2**index),
                resolutionunit="CENTIMETER",
            )
            level = level[::2, ::2]
    return path


def median_s(fn: Callable[[], object], repeats: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slide", type=Path)
    args = parser.parse_args()

    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from clinic_app.gui.slide_viewer import SlideViewer

    app = QApplication.instance() or QApplication([])
    tmp = tempfile.TemporaryDirectory()
    path = args.slide or generated_slide(Path(tmp.name))
    source: SlideSource = open_slide(path)
    width, height = source.info.dimensions

    viewer = SlideViewer()
    viewer.resize(1280, 800)
    viewer.show()
    viewer.set_slide(source)

    def spin_until(condition: Callable[[], bool], limit_s: float = 60.0) -> None:
        deadline = time.perf_counter() + limit_s
        while not condition() and time.perf_counter() < deadline:
            loop = QEventLoop()
            QTimer.singleShot(2, loop.quit)
            loop.exec()

    spin_until(lambda: viewer.thumbnail_item is not None and not viewer.is_loading())
    viewer.actual_size()
    spin_until(lambda: not viewer.is_loading())
    view = viewer.primary_view
    spots = [(width * fx, height * fy) for fx in (0.2, 0.5, 0.8) for fy in (0.25, 0.75)]
    keys: list[tuple[int, int, int, int]] = []

    gaps: list[float] = []
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    probe = QTimer()
    probe.setInterval(10)
    probe.timeout.connect(tick)

    def fill(spot: tuple[float, float]) -> None:
        for tile in viewer.cache.clear():  # a cold view each time
            viewer.scene.removeItem(tile.item)
        view.centerOn(*spot)
        spin_until(lambda: not viewer.is_loading())

    viewer_times = []
    last[0] = time.perf_counter()
    probe.start()
    for spot in spots:
        start = time.perf_counter()
        fill(spot)
        viewer_times.append(time.perf_counter() - start)
        tile_px = viewer.tile_px
        for tile in viewer.cache.values():  # the same tiles, read again in a plain loop
            x, y = tile.key.column * tile_px, tile.key.row * tile_px
            keys.append((x, y, min(tile_px, width - x), min(tile_px, height - y)))
    probe.stop()
    per_view = len(keys) / len(spots)

    def bare_loop() -> None:
        for x, y, w, h in keys:
            source.read_region(0, x, y, w, h)

    bare = median_s(bare_loop, repeats=3) / len(spots)
    ours = statistics.median(viewer_times[1:] or viewer_times)

    side = max(1, round(math.sqrt(width * height / 100_000)))  # ~100,000 tiles, a whole slide
    grid = tuple(
        TileScore(x, y, float((x * 7 + y * 13) % 1000) / 1000)
        for y in range(0, height - side + 1, side)
        for x in range(0, width - side + 1, side)
    )
    off_grid = tuple(TileScore(t.x + (i % 3), t.y, t.score) for i, t in enumerate(grid))

    def set_map(tiles: tuple[TileScore, ...]) -> Callable[[], None]:
        heatmap = TileHeatmap("0" * 64, width, height, side, tiles)
        return lambda: (viewer.set_heatmap(heatmap), app.processEvents())[0]

    grid_s = median_s(set_map(grid), repeats=3)
    rect_s = median_s(set_map(off_grid), repeats=3)

    busy = cpu_busy_fraction()
    print(f"slide: {path.name} {width}x{height}, {len(source.info.levels)} levels")
    print(f"threads in the viewer's pool: {viewer._pool.maxThreadCount()}")
    print(f"{'figure':58} {'ours':>10} {'baseline':>10} {'ratio':>7}")
    print(
        f"{f'fill a 1280x800 view at level 0 (~{per_view:.0f} tiles), ms':58} "
        f"{ours * 1e3:10.1f} {bare * 1e3:10.1f} {bare / ours:7.2f}"
    )
    print(f"{'longest event-loop gap while filling, ms (goal < 50)':58} {max(gaps) * 1e3:10.1f}")
    print(
        f"{f'set_heatmap, {len(grid)} grid tiles vs off-grid rectangles, ms':58} "
        f"{grid_s * 1e3:10.1f} {rect_s * 1e3:10.1f} {rect_s / grid_s:7.2f}"
    )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak_mb:.0f} MB; cache {viewer.cache.total_bytes / 2**20:.1f} MB")
    print(f"CPU used by anything during a 0.5 s sample after the run: {busy:.0%}")
    viewer.close()
    source.close()
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
