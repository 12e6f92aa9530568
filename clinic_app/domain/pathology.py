"""Pathology images and whole slides: one ``SlideSource`` interface for every kind.

A plain PNG or a DICOM photograph is a one-level slide; an SVS, pyramidal TIFF or DICOM
whole-slide image has several levels. Coordinates are (x, y) in pixels of the named level;
level 0 is the full resolution. Regions are RGB uint8 arrays shaped (height, width, 3).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

RgbArray = npt.NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class SlideLevel:
    width: int
    height: int
    downsample: float  # level-0 pixels per pixel of this level


@dataclass(frozen=True, slots=True)
class WindowLevel:
    """Display window for grayscale images (DICOM VOI LUT): centre and width in stored units."""

    center: float
    width: float


@dataclass(frozen=True, slots=True)
class SlideInfo:
    """What was read from the file, safe to store and show (de-identified)."""

    kind: str  # "svs", "tiff", "dicom-wsi", "dicom", "png", "jpeg"
    levels: tuple[SlideLevel, ...]
    microns_per_pixel: tuple[float, float] | None = None  # (x, y) at level 0, when known
    objective_power: float | None = None
    associated_images: tuple[str, ...] = ()  # "label", "macro", "thumbnail" present in the file
    grayscale: bool = False
    window: WindowLevel | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def dimensions(self) -> tuple[int, int]:
        return self.levels[0].width, self.levels[0].height


@runtime_checkable
class SlideSource(Protocol):
    """Random access to a slide's pixels. Implementations are cheap to read from many times."""

    @property
    def info(self) -> SlideInfo: ...

    def read_region(self, level: int, x: int, y: int, width: int, height: int) -> RgbArray:
        """Pixels of ``level`` starting at (x, y) in that level's coordinates; outside is white."""
        ...

    def thumbnail(self, max_size: int = 1024) -> RgbArray:
        """The whole slide scaled to fit ``max_size`` on its longer side."""
        ...

    def associated_image(self, name: str) -> RgbArray:
        """The label, macro or thumbnail image the file carries (raises InputError if absent).

        Only for showing de-identification what to drop: never stored or exported."""
        ...

    def close(self) -> None: ...
