"""The slide viewer: tiles, levels, cache, scale bar, heatmap, side by side, W/L, stalls."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from PySide6.QtWidgets import QWidget
from pytestqt.qtbot import QtBot

from clinic_app.domain.explanations import TileHeatmap, TileScore
from clinic_app.domain.pathology import SlideSource
from clinic_app.gui.slide_viewer import SlideGraphicsView, SlideViewer
from clinic_app.io.slides import open_slide
from tests.io.test_slides import tissue_like_image, write_pyramid_tiff

pytestmark = pytest.mark.gui

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
TCGA_TILE = PYDICOM_FILES / "SC_jpeg_no_color_transform.dcm"
CT_SMALL = PYDICOM_FILES / "CT_small.dcm"
SIDE = 2048  # generated pyramid: 2048, 1024, 512 px, 256-px tiles, 0.25 µm per pixel
TILE = 256


@pytest.fixture(scope="module")
def pyramid_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("slides") / "pyramid.tiff"
    write_pyramid_tiff(path, tissue_like_image(SIDE, SIDE, seed=3), levels=3, tile=TILE)
    return path


@pytest.fixture
def pyramid(pyramid_path: Path) -> Iterator[SlideSource]:
    source = open_slide(pyramid_path)
    yield source
    source.close()


def make_viewer(qtbot, **kwargs: Any) -> SlideViewer:
    viewer = SlideViewer(**kwargs)
    qtbot.addWidget(viewer)
    viewer.resize(900, 600)
    viewer.show()
    qtbot.waitExposed(viewer)
    return viewer


def wait_loaded(qtbot, viewer: SlideViewer, timeout: int = 10_000) -> None:
    qtbot.waitUntil(
        lambda: viewer.thumbnail_item is not None and not viewer.is_loading(), timeout=timeout
    )


def gaussian_heatmap(
    width: int, height: int, tile: int, centre: tuple[float, float]
) -> TileHeatmap:
    """Relevance peaking at ``centre`` (level-0 px) on a grid of ``tile``-px tiles."""
    tiles = []
    for y in range(0, height, tile):
        for x in range(0, width, tile):
            d2 = (x + tile / 2 - centre[0]) ** 2 + (y + tile / 2 - centre[1]) ** 2
            tiles.append(TileScore(x, y, float(np.exp(-d2 / (2 * (width / 5) ** 2)))))
    peak = max(t.score for t in tiles)
    tiles = [TileScore(t.x, t.y, t.score / peak) for t in tiles]
    top = tuple(sorted(range(len(tiles)), key=lambda i: -tiles[i].score)[:10])
    return TileHeatmap("0" * 64, width, height, tile, tuple(tiles), top)


def grab_array(widget: QWidget) -> np.ndarray:
    """The widget as rendered, (h, w, 3) uint8 RGB."""
    from PySide6.QtGui import QImage

    image = widget.grab().toImage().convertToFormat(QImage.Format.Format_RGB888)
    width, height = image.width(), image.height()
    data = np.frombuffer(image.constBits(), dtype=np.uint8, count=image.sizeInBytes())
    rows = data.reshape(height, image.bytesPerLine())[:, : width * 3]
    return rows.reshape(height, width, 3).copy()


def pixel_at(view: SlideGraphicsView, scene_x: float, scene_y: float) -> np.ndarray:
    from PySide6.QtCore import QPointF

    point = view.mapFromScene(QPointF(scene_x, scene_y))
    pixels = grab_array(view.viewport())
    ratio = pixels.shape[1] / view.viewport().width()
    return pixels[int(point.y() * ratio), int(point.x() * ratio)].astype(int)


# -- pure helpers -------------------------------------------------------------------------------


def test_level_choice_keeps_at_least_one_image_pixel_per_screen_pixel() -> None:
    from clinic_app.gui.slide_viewer import choose_level

    downsamples = [1.0, 4.0, 16.0]
    assert choose_level(downsamples, 2.0) == 0  # zoomed beyond full resolution
    assert choose_level(downsamples, 1.0) == 0
    assert choose_level(downsamples, 0.3) == 0  # level 1 would give 0.83 px per screen px
    assert choose_level(downsamples, 0.25) == 1
    assert choose_level(downsamples, 0.1) == 1
    assert choose_level(downsamples, 1 / 16) == 2
    assert choose_level(downsamples, 0.001) == 2
    assert choose_level([1.0, 2.0, 4.0, 8.108], 0.1) == 3


def test_scale_bar_uses_1_2_5_lengths_in_micrometres_and_millimetres() -> None:
    from clinic_app.gui.slide_viewer import nice_scale_bar

    length, px, label = nice_scale_bar(1.0, target_px=120)
    assert (length, label) == (100.0, "100 µm") and px == 100.0
    assert nice_scale_bar(10.0)[2] == "1 mm"
    assert nice_scale_bar(40.0)[2] == "5 mm"
    assert nice_scale_bar(0.25)[2] == "20 µm"
    for mpp in np.geomspace(0.01, 100, 40):
        _, px, _ = nice_scale_bar(float(mpp))
        assert 50 <= px <= 180


def test_colour_maps_match_matplotlib() -> None:
    import matplotlib

    from clinic_app.gui.slide_viewer import COLORMAP_NAMES, colormap_lut

    t = np.linspace(0, 1, 256)
    for name in COLORMAP_NAMES:
        reference = matplotlib.colormaps[name](t)[:, :3] * 255
        assert np.abs(colormap_lut(name).astype(float) - reference).max() < 5


def test_window_lut_is_identity_for_the_source_window_and_narrows() -> None:
    from clinic_app.domain.pathology import WindowLevel
    from clinic_app.gui.slide_viewer import window_lut

    source = WindowLevel(center=40.0, width=400.0)  # -160..240 stored units as 0..255
    assert np.array_equal(window_lut(source, 40.0, 400.0), np.arange(256))
    narrow = window_lut(source, 40.0, 100.0)  # -10..90
    assert narrow[0] == 0 and narrow[255] == 255
    assert narrow[127] == pytest.approx(127, abs=2)
    assert (narrow[:80] == 0).all() and (narrow[180:] == 255).all()


# -- empty state ---------------------------------------------------------------------------


def test_empty_viewer_shows_the_placeholder(qtbot: QtBot) -> None:
    from clinic_app.gui.slide_viewer import EMPTY_TEXT

    viewer = make_viewer(qtbot)
    assert viewer.placeholder.isVisible()
    assert viewer.placeholder.text() == EMPTY_TEXT
    assert "drop a slide, DICOM or PNG/TIFF file here" in EMPTY_TEXT
    assert not viewer.primary_view.isVisible()
    assert not viewer.fit_action.isEnabled()
    viewer.fit()
    viewer.zoom_to_tile(0)  # no slide: nothing happens, nothing fails


# -- real files ----------------------------------------------------------------------------


def test_tcga_dicom_tile_appears(qtbot: QtBot, tmp_path: Path) -> None:
    source = open_slide(TCGA_TILE)
    viewer = make_viewer(qtbot)
    viewer.set_slide(source, "TCGA H&E tile")
    assert viewer.title_label.text() == "TCGA H&E tile"
    wait_loaded(qtbot, viewer)
    assert len(viewer.cache) == 1 and viewer.current_level == 0
    assert viewer.tile_items()[0].scene() is viewer.scene
    # the stain reached the screen: the centre of the view is not background or white
    view = viewer.primary_view
    pixel = pixel_at(view, 128, 128)
    expected = source.read_region(0, 128, 128, 1, 1)[0, 0].astype(int)
    assert np.abs(pixel - expected).max() < 40
    assert view.scale_bar_text() is None  # this file has no pixel spacing
    viewer.grab().save(str(tmp_path / "tcga.png"))


def test_tiles_load_and_the_level_follows_the_zoom(qtbot: QtBot, pyramid: SlideSource) -> None:
    viewer = make_viewer(qtbot)
    viewer.set_slide(pyramid, "Generated pyramid")
    wait_loaded(qtbot, viewer)
    view = viewer.primary_view
    # fitted: about 0.27 screen px per level-0 px, so level 1 (1/2) is the coarsest with >= 1
    assert view.scale_factor < 0.5
    assert viewer.current_level == (2 if view.scale_factor <= 0.25 else 1)
    fitted_level = viewer.current_level
    assert {t.key.level for t in viewer.cache.values()} == {fitted_level}
    viewer.actual_size()
    qtbot.waitUntil(lambda: viewer.current_level == 0 and not viewer.is_loading())
    level0 = [t for t in viewer.cache.values() if t.key.level == 0]
    visible = view.visible_scene_rect()
    assert len(level0) >= (visible.width() // TILE) * (visible.height() // TILE)
    # finer tiles are drawn above coarser ones; tiles of a finer level hide when zooming out
    assert all(t.item.isVisible() for t in level0)
    viewer.fit()
    qtbot.waitUntil(lambda: viewer.current_level == fitted_level and not viewer.is_loading())
    assert not any(t.item.isVisible() for t in viewer.cache.values() if t.key.level == 0)
    # the thumbnail is the background and covers the whole slide
    thumb = viewer.thumbnail_item.sceneBoundingRect()
    assert thumb.width() == pytest.approx(SIDE) and thumb.height() == pytest.approx(SIDE)


def test_cache_stays_within_its_byte_limit(qtbot: QtBot, pyramid: SlideSource) -> None:
    limit = 2 * 1024 * 1024  # eight 256x256 RGB tiles with their pixmaps
    viewer = make_viewer(qtbot, cache_bytes=limit)
    viewer.set_slide(pyramid)
    wait_loaded(qtbot, viewer)
    viewer.actual_size()
    view = viewer.primary_view
    for x, y in [(300, 300), (1700, 300), (1700, 1700), (300, 1700), (1024, 1024)]:
        view.centerOn(x, y)
        qtbot.waitUntil(lambda: not viewer.is_loading())
        assert viewer.cache.total_bytes <= limit
    assert len(viewer.read_seconds) > limit // (TILE * TILE * 7)  # more was read than kept
    assert len(viewer.tile_items()) == len(viewer.cache)
    tile_items_in_scene = [
        item for item in viewer.scene.items() if item.zValue() >= 10 and item.zValue() < 100
    ]
    assert len(tile_items_in_scene) == len(viewer.cache)  # evicted tiles left the scene


def test_scale_bar_follows_the_zoom(qtbot: QtBot, pyramid: SlideSource) -> None:
    viewer = make_viewer(qtbot)
    viewer.set_slide(pyramid)
    view = viewer.primary_view
    fitted = view.scale_bar_text()
    assert fitted is not None and fitted.endswith("µm")
    viewer.actual_size()
    zoomed = view.scale_bar_text()
    assert zoomed == "20 µm"  # 0.25 µm per screen pixel, bar near 120 px
    assert zoomed != fitted
    assert "µm per screen pixel" in viewer.status_text()


def test_keys_wheel_and_pinch_zoom(qtbot: QtBot, pyramid: SlideSource) -> None:
    from PySide6.QtCore import QPoint, QPointF, Qt
    from PySide6.QtGui import QNativeGestureEvent, QPointingDevice, QWheelEvent
    from PySide6.QtWidgets import QApplication

    viewer = make_viewer(qtbot)
    viewer.set_slide(pyramid)
    view = viewer.primary_view
    with qtbot.waitActive(viewer):
        viewer.activateWindow()
    view.setFocus()
    fitted = view.scale_factor
    qtbot.keyClick(view, Qt.Key.Key_Plus)
    assert view.scale_factor == pytest.approx(fitted * 2**0.5)
    qtbot.keyClick(view, Qt.Key.Key_Minus)
    qtbot.keyClick(view, Qt.Key.Key_Minus)
    assert view.scale_factor == pytest.approx(fitted / 2**0.5)
    qtbot.keyClick(view, Qt.Key.Key_0)
    assert view.scale_factor == pytest.approx(fitted)

    centre = QPointF(view.viewport().rect().center())
    wheel = QWheelEvent(
        centre,
        QPointF(view.viewport().mapToGlobal(centre.toPoint())),
        QPoint(0, 0),
        QPoint(0, 240),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(view.viewport(), wheel)
    assert view.scale_factor == pytest.approx(fitted * 2)

    pinch = QNativeGestureEvent(
        Qt.NativeGestureType.ZoomNativeGesture,
        QPointingDevice.primaryPointingDevice(),
        2,
        centre,
        centre,
        QPointF(view.viewport().mapToGlobal(centre.toPoint())),
        0.5,
        QPointF(0, 0),
    )
    QApplication.sendEvent(view.viewport(), pinch)
    assert view.scale_factor == pytest.approx(fitted * 3)
    # fitting again after the user zoomed; zooming stops at 400 %
    viewer.fit()
    for _ in range(30):
        view.zoom_by(2.0)
    assert view.scale_factor == pytest.approx(4.0)


# -- heatmap -------------------------------------------------------------------------------


def test_heatmap_overlay_opacity_threshold_and_legend(
    qtbot, pyramid: SlideSource, tmp_path: Path
) -> None:
    from clinic_app.gui.slide_viewer import LEGEND_CAPTION, colormap_lut

    viewer = make_viewer(qtbot)
    viewer.set_slide(pyramid)
    heatmap = gaussian_heatmap(SIDE, SIDE, TILE, centre=(1400, 700))
    viewer.set_heatmap(heatmap)
    wait_loaded(qtbot, viewer)
    item = viewer.heatmap_item
    assert item is not None and item.scene() is viewer.scene and item.isVisible()
    assert viewer.heatmap_panel.isVisible()
    assert viewer.legend.caption() == LEGEND_CAPTION == "low → high relevance (attention)"

    viewer.opacity_slider.setValue(70)
    assert item.opacity() == pytest.approx(0.70)
    assert viewer.opacity_label.text() == "70 %"

    viewer.threshold_slider.setValue(50)
    shown = set(item.shown_indices().tolist())
    scores = [t.score for t in heatmap.tiles]
    assert shown == {i for i, s in enumerate(scores) if s >= 0.5}
    assert 0 < len(shown) < len(scores)

    # on screen: a hidden low tile shows the slide, the peak tile the colour map's top
    viewer.opacity_slider.setValue(100)
    view = viewer.primary_view
    low = min(range(len(scores)), key=lambda i: scores[i])
    peak = heatmap.top[0]
    low_tile, peak_tile = heatmap.tiles[low], heatmap.tiles[peak]
    centre_of = lambda t: (t.x + TILE / 2, t.y + TILE / 2)  # noqa: E731
    slide_pixel = pyramid.read_region(
        0, int(centre_of(low_tile)[0]), int(centre_of(low_tile)[1]), 1, 1
    )
    assert np.abs(pixel_at(view, *centre_of(low_tile)) - slide_pixel[0, 0]).max() < 60
    top_colour = colormap_lut("viridis")[255].astype(int)
    assert np.abs(pixel_at(view, *centre_of(peak_tile)) - top_colour).max() < 12
    # hiding the overlay (H) shows the slide again
    viewer.heatmap_action.setChecked(False)
    assert np.abs(pixel_at(view, *centre_of(peak_tile)) - top_colour).max() > 30
    viewer.heatmap_action.setChecked(True)
    viewer.colormap_combo.setCurrentText("inferno")
    inferno_top = colormap_lut("inferno")[255].astype(int)
    assert np.abs(pixel_at(view, *centre_of(peak_tile)) - inferno_top).max() < 12
    assert viewer.legend.colormap == "inferno" and viewer.legend.threshold == 0.5
    viewer.grab().save(str(tmp_path / "heatmap.png"))

    viewer.set_heatmap(None)
    assert viewer.heatmap_item is None and not viewer.heatmap_panel.isVisible()
    assert item.scene() is None


def test_clicking_a_top_tile_centres_zooms_and_outlines_it(
    qtbot: QtBot, pyramid: SlideSource
) -> None:
    viewer = make_viewer(qtbot)
    viewer.set_slide(pyramid)
    heatmap = gaussian_heatmap(SIDE, SIDE, TILE, centre=(1500, 500))
    viewer.set_heatmap(heatmap)
    tree = viewer.top_tiles
    assert tree.topLevelItemCount() == 10
    ranks = [tree.topLevelItem(r).text(0) for r in range(3)]
    assert ranks == ["1", "2", "3"]
    scores = [float(tree.topLevelItem(r).text(1)) for r in range(10)]
    assert scores == sorted(scores, reverse=True) and scores[0] == 1.0

    entry = tree.topLevelItem(2)
    index = heatmap.top[2]
    tile = heatmap.tiles[index]
    rect = tree.visualItemRect(entry)
    from PySide6.QtCore import Qt

    qtbot.mouseClick(tree.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    view = viewer.primary_view
    centre = view.visible_center()
    assert centre.x() == pytest.approx(tile.x + TILE / 2, abs=3 / view.scale_factor)
    assert centre.y() == pytest.approx(tile.y + TILE / 2, abs=3 / view.scale_factor)
    visible = view.visible_scene_rect()
    assert min(visible.width(), visible.height()) == pytest.approx(3 * TILE, rel=0.02)
    assert viewer.outline.isVisible()
    assert viewer.outline.rect.x() == tile.x and viewer.outline.rect.width() == TILE
    assert tree.currentItem() is entry
    qtbot.waitUntil(lambda: viewer.current_level == 0 and not viewer.is_loading())
    # N goes to the next one
    viewer.next_tile_action.trigger()
    assert viewer.outline.rect.x() == heatmap.tiles[heatmap.top[3]].x


def test_side_by_side_views_stay_in_sync(
    qtbot: QtBot, pyramid: SlideSource, tmp_path: Path
) -> None:
    from clinic_app.gui.slide_viewer import colormap_lut

    viewer = make_viewer(qtbot)
    viewer.resize(1200, 600)
    viewer.set_slide(pyramid)
    heatmap = gaussian_heatmap(SIDE, SIDE, TILE, centre=(1024, 1024))
    viewer.set_heatmap(heatmap)
    viewer.opacity_slider.setValue(100)
    viewer.set_side_by_side(True)
    left, right = viewer.primary_view, viewer.secondary_view
    qtbot.waitUntil(lambda: right.isVisible() and right.viewport().width() > 100)
    qtbot.waitUntil(lambda: abs(left.viewport().width() - right.viewport().width()) <= 2)
    wait_loaded(qtbot, viewer)

    left.zoom_by(2.5)
    left.horizontalScrollBar().setValue(left.horizontalScrollBar().value() + 120)
    assert right.scale_factor == pytest.approx(left.scale_factor)
    tolerance = 2 / left.scale_factor
    assert right.visible_center().x() == pytest.approx(left.visible_center().x(), abs=tolerance)
    assert right.visible_center().y() == pytest.approx(left.visible_center().y(), abs=tolerance)
    right.zoom_by(0.8)  # either side drives the other
    assert left.scale_factor == pytest.approx(right.scale_factor)
    assert left.visible_center().x() == pytest.approx(right.visible_center().x(), abs=tolerance)
    qtbot.waitUntil(lambda: not viewer.is_loading())

    # the heatmap only on the right
    peak = heatmap.tiles[heatmap.top[0]]
    cx, cy = peak.x + TILE / 2, peak.y + TILE / 2
    top_colour = colormap_lut("viridis")[255].astype(int)
    assert np.abs(pixel_at(right, cx, cy) - top_colour).max() < 12
    assert np.abs(pixel_at(left, cx, cy) - top_colour).max() > 30
    viewer.grab().save(str(tmp_path / "side_by_side.png"))

    viewer.set_side_by_side(False)
    assert not right.isVisible()
    assert np.abs(pixel_at(left, cx, cy) - top_colour).max() < 12


# -- grayscale window / level --------------------------------------------------------------


def test_window_level_changes_the_displayed_pixels_of_a_ct(qtbot: QtBot) -> None:
    source = open_slide(CT_SMALL)
    assert source.info.grayscale and source.info.window is not None
    viewer = make_viewer(qtbot)
    viewer.set_slide(source, "CT small")
    wait_loaded(qtbot, viewer)
    assert viewer.window_controls.isVisible()
    center, width = source.info.window.center, source.info.window.width
    assert viewer.window_level() == pytest.approx((center, width), abs=0.1)
    view = viewer.primary_view
    before = grab_array(view.viewport())
    viewer.set_window(center, width / 4)
    qtbot.waitUntil(lambda: not viewer.is_loading())
    narrowed = grab_array(view.viewport())
    assert np.abs(narrowed.astype(int) - before.astype(int)).max() > 50
    # the displayed image is still gray
    assert np.array_equal(narrowed[..., 0], narrowed[..., 1])
    viewer.reset_window()
    assert viewer.window_level() == pytest.approx((center, width), abs=0.1)
    after = grab_array(view.viewport())
    assert np.abs(after.astype(int) - before.astype(int)).max() <= 1
    # a colour slide has no window controls
    viewer.set_slide(open_slide(TCGA_TILE))
    assert viewer.window_level() is None
    qtbot.waitUntil(lambda: not viewer.window_controls.isVisible())


# -- responsiveness ------------------------------------------------------------------------


def test_event_loop_never_stalls_while_tiles_load(qtbot: QtBot, pyramid: SlideSource) -> None:
    from PySide6.QtCore import QTimer

    viewer = make_viewer(qtbot, cache_bytes=8 * 1024 * 1024)
    gaps: list[float] = []
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    probe = QTimer()
    probe.setInterval(10)
    probe.timeout.connect(tick)
    probe.start()
    qtbot.wait(50)
    gaps.clear()
    last[0] = time.perf_counter()
    viewer.set_slide(pyramid)
    viewer.set_heatmap(gaussian_heatmap(SIDE, SIDE, 128, centre=(700, 900)))
    wait_loaded(qtbot, viewer)
    view = viewer.primary_view
    viewer.actual_size()
    for x, y in [(400, 400), (1600, 400), (1600, 1600), (400, 1600)]:
        view.centerOn(x, y)
        qtbot.waitUntil(lambda: not viewer.is_loading())
    viewer.zoom_to_tile(viewer.top_tile_indices()[0])
    qtbot.waitUntil(lambda: not viewer.is_loading())
    probe.stop()
    assert len(viewer.read_seconds) >= 20
    worst = max(gaps)
    print(f"event-loop gaps: n={len(gaps)} max={worst * 1000:.1f} ms")
    assert worst < 0.050


# -- shortcuts, accessibility ------------------------------------------------------------


def test_controls_have_names_tooltips_and_shortcuts(qtbot: QtBot, pyramid: SlideSource) -> None:
    from PySide6.QtWidgets import (
        QAbstractButton,
        QAbstractSlider,
        QComboBox,
        QDoubleSpinBox,
        QScrollBar,
    )

    viewer = make_viewer(qtbot)
    viewer.set_slide(pyramid)
    viewer.set_heatmap(gaussian_heatmap(SIDE, SIDE, TILE, centre=(1024, 1024)))
    controls = [
        w
        for kind in (QAbstractButton, QAbstractSlider, QComboBox, QDoubleSpinBox)
        for w in viewer.findChildren(kind)
        if not isinstance(w, QScrollBar) and not w.objectName().startswith("qt_")
    ]
    assert len(controls) >= 12
    for control in controls:
        assert control.accessibleName(), control
        assert control.toolTip(), control.accessibleName()
    keys = dict(viewer.shortcuts())
    assert {"+ / =", "-", "0", "H", "S", "N"} <= set(keys)
    assert keys["0"].startswith("Fit")


# -- real whole slide ------------------------------------------------------------------------


@pytest.mark.data
def test_real_svs_slide(qtbot: QtBot, shared_data: Path, tmp_path: Path) -> None:
    path = shared_data / "pathology" / "slides" / "cmu-1-small-region.svs"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    source = open_slide(path)
    viewer = make_viewer(qtbot)
    viewer.set_slide(source, "CMU-1 small region (Aperio SVS)")
    wait_loaded(qtbot, viewer)
    assert len(viewer.cache) > 0
    assert viewer.primary_view.scale_bar_text() is not None  # 0.499 µm per pixel
    width, height = source.info.dimensions
    heatmap = gaussian_heatmap(width, height, 224, centre=(width * 0.6, height * 0.4))
    viewer.set_heatmap(heatmap)
    viewer.zoom_to_tile(heatmap.top[0])
    qtbot.waitUntil(lambda: not viewer.is_loading())
    assert viewer.primary_view.scale_bar_text() is not None
    viewer.grab().save(str(tmp_path / "svs.png"))
    source.close()


# -- heatmap layouts, slide changes, broken tiles ----------------------------------------------


def test_heatmap_off_a_regular_grid_is_drawn_tile_by_tile(
    qtbot: QtBot, pyramid: SlideSource
) -> None:
    from clinic_app.gui.slide_viewer import colormap_lut

    viewer = make_viewer(qtbot)
    viewer.set_slide(pyramid)
    tiles = (TileScore(100, 130, 1.0), TileScore(611, 437, 0.3), TileScore(1290, 1500, 0.05))
    viewer.set_heatmap(TileHeatmap("0" * 64, SIDE, SIDE, 300, tiles))
    item = viewer.heatmap_item
    assert item is not None and not item.uses_grid_image
    assert viewer.top_tile_indices() == [0, 1, 2]  # no stored order: by score
    assert item.shown_indices().tolist() == [0, 1]  # default threshold 0.20
    viewer.opacity_slider.setValue(100)
    wait_loaded(qtbot, viewer)
    top = colormap_lut("viridis")[255].astype(int)
    assert np.abs(pixel_at(viewer.primary_view, 250, 280) - top).max() < 12


def test_a_new_slide_drops_the_previous_heatmap(qtbot: QtBot, pyramid: SlideSource) -> None:
    viewer = make_viewer(qtbot)
    heatmap = gaussian_heatmap(SIDE, SIDE, TILE, centre=(1000, 1000))
    viewer.set_heatmap(heatmap)  # before any slide: kept for the first one
    viewer.set_slide(pyramid)
    assert viewer.heatmap_item is not None and viewer.heatmap_panel.isVisible()
    viewer.set_slide(open_slide(TCGA_TILE))
    assert viewer.heatmap_item is None and not viewer.heatmap_panel.isVisible()
    assert viewer.top_tiles.topLevelItemCount() == 0
    assert not viewer.side_by_side_action.isVisible()
    viewer.clear()
    assert viewer.placeholder.isVisible() and viewer.source is None


def test_a_corrupt_tile_is_reported_once_and_not_retried(
    qtbot, pyramid_path: Path, tmp_path: Path
) -> None:
    import tifffile

    broken = tmp_path / "broken.tiff"
    data = bytearray(pyramid_path.read_bytes())
    with tifffile.TiffFile(pyramid_path) as tif:
        page = tif.pages[0]
        offset, count = page.dataoffsets[9], page.databytecounts[9]  # level 0, column 1, row 1
    data[offset : offset + count] = b"\x00" * count
    broken.write_bytes(bytes(data))
    source = open_slide(broken)
    viewer = make_viewer(qtbot)
    messages: list[str] = []
    viewer.statusMessage.connect(messages.append)
    viewer.set_slide(source)
    wait_loaded(qtbot, viewer)
    viewer.actual_size()
    viewer.primary_view.centerOn(TILE * 1.5, TILE * 1.5)
    qtbot.waitUntil(lambda: not viewer.is_loading())
    failures = [m for m in messages if "could not be read" in m]
    assert len(failures) == 1 and "broken.tiff" in failures[0]
    viewer.primary_view.centerOn(TILE * 1.6, TILE * 1.4)
    qtbot.waitUntil(lambda: not viewer.is_loading())
    assert len([m for m in messages if "could not be read" in m]) == 1
    assert len(viewer.cache) > 0  # the other tiles are shown
    source.close()
