"""Where the tissue is: a mask on a slide's thumbnail and the tissue tiles for a model.

The mask is Otsu's threshold on HSV saturation (stained tissue is coloured, glass is white or
grey), computed without the ink pixels (saturated ink would otherwise pull the threshold above
the tissue) and clipped to 20-40 of 255 (a floor so an empty slide does not get half its noise
called tissue, a ceiling so pale stroma counts on a tile that is all tissue), minus:

- near-white and near-black pixels (glass, dust, slide edges, folds of mounting medium),
- pen ink, by a hue rule: H&E tissue is pink to purple (hue about 260°-360° and 0°-20°), so
  saturated green (60°-180°) and blue (180°-250°) pixels are ink; red ink is told from eosin
  by being strongly saturated and pure red (hue 345°-15°, saturation > 0.55, with green and
  blue both low), where eosin is pinker and paler. Ink that is dark purple, like
  haematoxylin, cannot be told apart by colour and stays in the mask (a known limit),
- specks smaller than 1/2000 of the image (debris, ink spots).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from clinic_app.domain.errors import InputError
from clinic_app.domain.pathology import RgbArray, SlideSource

BoolArray = npt.NDArray[np.bool_]
#: Lowest saturation (0-255) ever called tissue, whatever Otsu says on an empty image.
MIN_SATURATION = 20
#: Highest threshold: on a tile that is all tissue Otsu splits dense from pale tissue instead
#: of tissue from glass; pale eosin-stained stroma is above 40 and clean glass below 20.
MAX_SATURATION = 40
THUMBNAIL_SIZE = 1024


def _otsu(values: npt.NDArray[np.uint8]) -> int:
    """Otsu's threshold of uint8 values (the level that best separates two classes)."""
    hist = np.bincount(values.ravel(), minlength=256).astype(np.float64)
    total = hist.sum()
    if total == 0:
        return 255
    levels = np.arange(256, dtype=np.float64)
    weight0 = np.cumsum(hist)
    weight1 = total - weight0
    mean_sum = np.cumsum(hist * levels)
    mean0 = mean_sum / np.maximum(weight0, 1)
    mean1 = (mean_sum[-1] - mean_sum) / np.maximum(weight1, 1)
    between = weight0 * weight1 * (mean0 - mean1) ** 2
    return int(np.argmax(between))


def pen_ink_mask(rgb: RgbArray) -> BoolArray:
    """Pixels of green, blue or red marker ink (see the module docstring for the rule)."""
    from PIL import Image

    hsv = np.asarray(Image.fromarray(rgb).convert("HSV"))
    hue = hsv[:, :, 0].astype(np.float32) * (360.0 / 256.0)
    sat = hsv[:, :, 1].astype(np.float32) / 255.0
    red = rgb[:, :, 0].astype(np.int16)
    green = rgb[:, :, 1].astype(np.int16)
    blue = rgb[:, :, 2].astype(np.int16)
    green_ink = (hue >= 60) & (hue < 180) & (sat > 0.15)
    blue_ink = (hue >= 180) & (hue < 250) & (sat > 0.2)
    red_ink = (
        ((hue >= 345) | (hue < 15))
        & (sat > 0.55)
        & (red - green > 90)
        & (red - blue > 70)
        & (np.abs(green - blue) < 60)
    )
    return green_ink | blue_ink | red_ink  # type: ignore[no-any-return]


def _remove_small(mask: BoolArray, min_pixels: int) -> BoolArray:
    from scipy import ndimage

    labels, count = ndimage.label(mask)
    if count == 0:
        return mask
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_pixels
    keep[0] = False
    return keep[labels]  # type: ignore[no-any-return]


def tissue_mask(thumbnail_rgb: RgbArray) -> BoolArray:
    """True where the (h, w, 3) uint8 thumbnail shows tissue."""
    rgb = np.asarray(thumbnail_rgb)
    if rgb.ndim != 3 or rgb.shape[2] < 3 or rgb.dtype != np.uint8:
        raise InputError(f"A tissue mask needs an RGB uint8 image, not {rgb.shape} {rgb.dtype}.")
    rgb = np.ascontiguousarray(rgb[:, :, :3])
    from PIL import Image

    hsv = np.asarray(Image.fromarray(rgb).convert("HSV"))
    sat, val = hsv[:, :, 1], hsv[:, :, 2]
    black = val < 30
    white = (val > 230) & (sat < 25)
    candidates = ~(black | white | pen_ink_mask(rgb))
    if candidates.any():
        threshold = min(MAX_SATURATION, max(MIN_SATURATION, _otsu(sat[candidates])))
    else:
        threshold = 255
    mask = candidates & (sat > threshold)
    min_pixels = max(4, mask.size // 2000)
    return _remove_small(mask, min_pixels)


def tissue_tiles(
    slide: SlideSource,
    tile_size: int,
    level: int,
    *,
    min_tissue_fraction: float = 0.5,
    max_tiles: int | None = None,
    seed: int = 0,
) -> list[tuple[int, int]]:
    """Top-left (x, y) in ``level`` coordinates of the tiles whose mask fraction is enough.

    Tiles cover the level on a regular grid (partial edge tiles included). When more than
    ``max_tiles`` qualify, a seeded random sample is returned, sorted row by row, so the same
    slide, arguments and seed give the same tiles.
    """
    levels = slide.info.levels
    if not 0 <= level < len(levels):
        raise InputError(f"Level {level} does not exist (the slide has {len(levels)}).")
    if tile_size < 1:
        raise InputError("The tile size must be at least 1 pixel.")
    thumb = slide.thumbnail(THUMBNAIL_SIZE)
    mask = tissue_mask(thumb)
    width, height = levels[level].width, levels[level].height
    scale_x, scale_y = mask.shape[1] / width, mask.shape[0] / height
    # summed-area table: the tissue fraction of any rectangle in O(1)
    table = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), dtype=np.int64)
    table[1:, 1:] = np.cumsum(np.cumsum(mask, axis=0), axis=1)
    chosen: list[tuple[int, int]] = []
    for y in range(0, height, tile_size):
        r0 = min(int(y * scale_y), mask.shape[0] - 1)
        r1 = max(r0 + 1, min(round((y + tile_size) * scale_y), mask.shape[0]))
        for x in range(0, width, tile_size):
            c0 = min(int(x * scale_x), mask.shape[1] - 1)
            c1 = max(c0 + 1, min(round((x + tile_size) * scale_x), mask.shape[1]))
            inside = table[r1, c1] - table[r0, c1] - table[r1, c0] + table[r0, c0]
            if inside >= min_tissue_fraction * (r1 - r0) * (c1 - c0):
                chosen.append((x, y))
    if max_tiles is not None and len(chosen) > max_tiles:
        rng = np.random.default_rng(seed)
        picked = np.sort(rng.choice(len(chosen), size=max(0, max_tiles), replace=False))
        chosen = [chosen[int(i)] for i in picked]
    return chosen
