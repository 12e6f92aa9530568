"""Whole-slide and plain pathology images behind one ``SlideSource`` interface.

``open_slide`` picks the reader by the file's content, never by its extension:

- Aperio SVS and generic pyramidal or tiled TIFF: tifffile (BSD-3, already pinned) parses
  the pyramid, the Aperio description and the associated images; tiles are read with
  ``os.pread`` from a descriptor opened once and decoded by tifffile's codec for the page
  (imagecodecs). Other vendors' TIFFs (NDPI, SCN, Philips, BIF) get their pixel size and
  objective from ``tiffslide`` (BSD-3). tiffslide, not openslide-python + openslide-bin, because
  it is permissively licensed (openslide is LGPL) and needs no native library beyond the
  imagecodecs wheel (simple frozen builds). Its own ``read_region`` is not on the hot path:
  it goes through zarr (about 3x slower per 256x256 region here, and ~0.2 s just to import),
  so it is imported only for those vendors (bench/wsi_read.py compares both).
- DICOM whole-slide images (VL Whole Slide Microscopy, a folder of instances or a single
  multi-frame file): ``wsidicom`` (Apache-2.0).
- PNG/JPEG (Pillow), non-tiled TIFF (tifffile) and single DICOM images
  (``clinic_app.io.dicom_images``): one-level ``ArraySlide``.

Thread safety: the GUI reads tiles from a thread pool. TIFF tiles are read with ``os.pread``,
which does not move a shared file position, so concurrent reads need no lock (where pread is
missing, Windows, one lock per file handle serialises seek+read only, not the decoding).
wsidicom guards its file readers with a lock per file; ``ArraySlide`` is read-only.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clinic_app.domain.errors import InputError
from clinic_app.domain.pathology import RgbArray, SlideInfo, SlideLevel, SlideSource, WindowLevel
from clinic_app.io.dicom_files import open_dataset
from clinic_app.io.limits import DEFAULT_LIMITS, ReadLimits

WSI_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.77.1.6"
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
#: Plausible microscope pixel sizes in µm; a TIFF's 72 dpi default (352 µm) is not a real one.
_MPP_RANGE = (0.01, 100.0)
#: Pixels of one band when a thumbnail is built from a large level (bounded memory).
_THUMBNAIL_BAND_PIXELS = 32 * 1024 * 1024


def open_slide(path: Path, limits: ReadLimits = DEFAULT_LIMITS) -> SlideSource:
    """Open a slide or image file (or a DICOM WSI folder) after validating it.

    Raises ``InputError`` naming the file and the reason for every file that cannot be used.
    """
    path = Path(path)
    if path.is_dir():
        return _guarded(path, "DICOM whole-slide folder", lambda: _open_dicom_wsi(path, limits))
    try:
        with path.open("rb") as handle:
            head = handle.read(132)
    except OSError as exc:
        raise InputError(f"{path.name} cannot be opened: {exc.strerror or exc}.") from exc
    if head[128:132] == b"DICM" or head[:2] in (b"\x02\x00", b"\x08\x00"):
        return _guarded(path, "DICOM file", lambda: _open_dicom(path, limits))
    if head[:4] in _TIFF_MAGIC:
        return _guarded(path, "TIFF file", lambda: _open_tiff(path, limits))
    if head.startswith(_PNG_MAGIC) or head.startswith(_JPEG_MAGIC):
        kind = "png" if head.startswith(_PNG_MAGIC) else "jpeg"
        return _guarded(path, f"{kind.upper()} image", lambda: _open_pillow(path, kind, limits))
    raise InputError(f"{path.name}: not a DICOM, TIFF, PNG or JPEG file.")


def _guarded(path: Path, what: str, opener: Callable[[], SlideSource]) -> SlideSource:
    """Run ``opener``; every library error becomes one InputError naming the file."""
    try:
        return opener()
    except InputError:
        raise
    except MemoryError as exc:
        raise InputError(f"{path.name}: the {what} needs more memory than allowed.") from exc
    except Exception as exc:
        reason = str(exc).strip().rstrip(".") or type(exc).__name__
        raise InputError(f"{path.name}: cannot be read as a {what}: {reason}.") from exc


# -- shared behaviour ---------------------------------------------------------------------------


def _plausible_mpp(x: float | None, y: float | None) -> tuple[float, float] | None:
    if x is None or y is None or not (math.isfinite(x) and math.isfinite(y)):
        return None
    low, high = _MPP_RANGE
    if low <= x <= high and low <= y <= high:
        return float(x), float(y)
    return None


def _to_rgb(array: npt.NDArray[Any]) -> RgbArray:
    """(h, w), (h, w, 1), (h, w, 3) or (h, w, 4) pixels -> (h, w, 3) uint8."""
    if array.dtype != np.uint8:
        array = _scale_to_uint8(array)
    if array.ndim == 2:
        array = array[:, :, np.newaxis]
    if array.shape[2] == 1:
        return np.ascontiguousarray(np.repeat(array, 3, axis=2))
    if array.shape[2] == 2:  # grey + alpha
        return np.ascontiguousarray(np.repeat(array[:, :, :1], 3, axis=2))
    return np.ascontiguousarray(array[:, :, :3])


def _scale_to_uint8(array: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
    """Linear min-max scaling for 16-bit and float images (display only)."""
    values = array.astype(np.float64, copy=False)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.zeros(array.shape, dtype=np.uint8)
    low, high = float(finite.min()), float(finite.max())
    scale = 255.0 / (high - low) if high > low else 0.0
    scaled = np.nan_to_num((values - low) * scale, nan=0.0)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _resize(pixels: RgbArray, width: int, height: int) -> RgbArray:
    from PIL import Image

    if (pixels.shape[1], pixels.shape[0]) == (width, height):
        return pixels
    image = Image.fromarray(pixels)
    resized = image.resize((width, height), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(resized, dtype=np.uint8)


class _SlideBase:
    """Bounds, limits, white padding and thumbnails; subclasses read in-bounds regions."""

    def __init__(self, name: str, info: SlideInfo, limits: ReadLimits) -> None:
        self._name = name
        self._info = info
        self._limits = limits

    @property
    def info(self) -> SlideInfo:
        return self._info

    def _read_inside(self, level: int, x: int, y: int, width: int, height: int) -> RgbArray:
        raise NotImplementedError

    def read_region(self, level: int, x: int, y: int, width: int, height: int) -> RgbArray:
        levels = self._info.levels
        if not 0 <= level < len(levels):
            raise InputError(
                f"{self._name}: level {level} does not exist (the slide has {len(levels)})."
            )
        if width <= 0 or height <= 0:
            raise InputError(f"{self._name}: a region must be at least 1x1 pixel.")
        if width * height > self._limits.max_decoded_pixels:
            raise InputError(
                f"{self._name}: a {width:,}x{height:,} region exceeds the limit of "
                f"{self._limits.max_decoded_pixels:,} pixels per read; read smaller regions."
            )
        size = levels[level]
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + width, size.width), min(y + height, size.height)
        if x0 == x and y0 == y and x1 == x + width and y1 == y + height:
            return self._read_inside(level, x, y, width, height)
        out = np.full((height, width, 3), 255, dtype=np.uint8)
        if x1 > x0 and y1 > y0:
            out[y0 - y : y1 - y, x0 - x : x1 - x] = self._read_inside(
                level, x0, y0, x1 - x0, y1 - y0
            )
        return out

    def thumbnail(self, max_size: int = 1024) -> RgbArray:
        """The smallest level at least ``max_size`` on its longer side, scaled to fit."""
        if max_size < 1:
            raise InputError(f"{self._name}: a thumbnail must be at least 1 pixel.")
        levels = self._info.levels
        base = levels[0]
        scale = min(1.0, max_size / max(base.width, base.height))
        out_w, out_h = max(1, round(base.width * scale)), max(1, round(base.height * scale))
        chosen = 0
        for index, level in enumerate(levels):
            if level.width >= out_w and level.height >= out_h:
                chosen = index
        level = levels[chosen]
        band = max(1, min(level.height, _THUMBNAIL_BAND_PIXELS // max(1, level.width)))
        if band >= level.height:
            pixels = self.read_region(chosen, 0, 0, level.width, level.height)
            return _resize(pixels, out_w, out_h)
        out = np.empty((out_h, out_w, 3), dtype=np.uint8)
        for top in range(0, level.height, band):
            bottom = min(top + band, level.height)
            row0, row1 = round(top * out_h / level.height), round(bottom * out_h / level.height)
            if row1 > row0:
                strip = self.read_region(chosen, 0, top, level.width, bottom - top)
                out[row0:row1] = _resize(strip, out_w, row1 - row0)
        return out

    def associated_image(self, name: str) -> RgbArray:
        raise InputError(f"{self._name} has no {name} image.")

    def close(self) -> None:
        return None

    def __enter__(self) -> _SlideBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ArraySlide(_SlideBase):
    """A decoded image held in memory as a one-level slide (PNG, JPEG, plain TIFF, DICOM)."""

    def __init__(
        self,
        name: str,
        pixels: RgbArray,
        *,
        kind: str,
        limits: ReadLimits = DEFAULT_LIMITS,
        microns_per_pixel: tuple[float, float] | None = None,
        grayscale: bool = False,
        window: WindowLevel | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        pixels = _to_rgb(pixels)
        pixels.setflags(write=False)
        info = SlideInfo(
            kind=kind,
            levels=(SlideLevel(int(pixels.shape[1]), int(pixels.shape[0]), 1.0),),
            microns_per_pixel=microns_per_pixel,
            grayscale=grayscale,
            window=window,
            metadata=dict(metadata or {}),
        )
        super().__init__(name, info, limits)
        self._pixels = pixels

    def _read_inside(self, level: int, x: int, y: int, width: int, height: int) -> RgbArray:
        return self._pixels[y : y + height, x : x + width].copy()


def _check_pixels(name: str, width: int, height: int, limit: int, what: str = "image") -> None:
    if width <= 0 or height <= 0:
        raise InputError(f"{name}: the {what} declares an empty size ({width}x{height}).")
    if width * height > limit:
        raise InputError(
            f"{name}: the {what} declares {width:,}x{height:,} pixels, more than the limit "
            f"of {limit:,}."
        )


# -- PNG / JPEG -----------------------------------------------------------------------------------


def _open_pillow(path: Path, kind: str, limits: ReadLimits) -> SlideSource:
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        _check_pixels(path.name, image.width, image.height, limits.max_decoded_pixels)
        mode = image.mode
        dpi = image.info.get("dpi")
        image.load()
        oriented = ImageOps.exif_transpose(image) or image
        grayscale = mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
        if mode in ("I", "I;16", "I;16B", "I;16L", "F"):
            pixels: npt.NDArray[Any] = np.asarray(oriented)
        elif grayscale:
            pixels = np.asarray(oriented.convert("L"))
        else:
            pixels = np.asarray(oriented.convert("RGB"))
    mpp = None
    if isinstance(dpi, tuple) and len(dpi) == 2 and all(float(v) > 0 for v in dpi):
        mpp = _plausible_mpp(25_400.0 / float(dpi[0]), 25_400.0 / float(dpi[1]))
    return ArraySlide(
        path.name, pixels, kind=kind, limits=limits, microns_per_pixel=mpp, grayscale=grayscale
    )


# -- TIFF / SVS -----------------------------------------------------------------------------------


def _tiff_mpp(page: Any) -> tuple[float, float] | None:
    """µm per pixel from the resolution tags (centimetre or inch units only)."""
    import tifffile

    unit = page.resolutionunit
    per_um = {tifffile.RESUNIT.CENTIMETER: 1e4, tifffile.RESUNIT.INCH: 25_400.0}.get(unit)
    if per_um is None:
        return None
    try:
        xres, yres = page.get_resolution()
    except Exception:
        return None
    if not xres or not yres:
        return None
    return _plausible_mpp(per_um / float(xres), per_um / float(yres))


def _open_tiff(path: Path, limits: ReadLimits) -> SlideSource:
    import tifffile

    tif = tifffile.TiffFile(path)
    try:
        if not tif.series or not tif.pages:
            raise InputError(f"{path.name}: the TIFF file contains no image.")
        series = tif.series[0]
        page = series.levels[0].keyframe
        tiled_pyramid = tif.is_svs or len(series.levels) > 1 or page.is_tiled
        if tiled_pyramid:
            tif.close()
            return TiffSlideSource(path, limits)
        height, width = int(page.imagelength), int(page.imagewidth)
        _check_pixels(path.name, width, height, limits.max_decoded_pixels)
        pixels = page.asarray()
        axes = page.axes
        if axes.startswith("S") and pixels.ndim == 3:  # planar: samples first
            pixels = np.moveaxis(pixels, 0, -1)
        grayscale = page.samplesperpixel == 1 or page.photometric in (0, 1)
        return ArraySlide(
            path.name,
            pixels,
            kind="tiff",
            limits=limits,
            microns_per_pixel=_tiff_mpp(page),
            grayscale=grayscale,
        )
    finally:
        tif.close()


#: Regions spanning at least this many tiles are decoded on a small shared thread pool
#: (imagecodecs releases the GIL); tile-sized GUI reads stay on the caller's thread.
_PARALLEL_TILES = 16
_POOL_LOCK = threading.Lock()
_POOL: ThreadPoolExecutor | None = None


def _decode_pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            workers = max(1, min(4, os.cpu_count() or 1))
            _POOL = ThreadPoolExecutor(workers, thread_name_prefix="slide-decode")
        return _POOL


class _TiffLevel:
    """Where one pyramid level's tiles (or strips) lie in the file and how to decode them."""

    def __init__(
        self, page: Any, file_size: int, name: str, index: int, limits: ReadLimits
    ) -> None:
        self.width = int(page.imagewidth)
        self.height = int(page.imagelength)
        if page.is_tiled:
            self.seg_w, self.seg_h = int(page.tilewidth), int(page.tilelength)
        else:
            self.seg_w, self.seg_h = self.width, int(min(page.rowsperstrip, self.height))
        if self.seg_w * self.seg_h > limits.max_decoded_pixels:
            raise InputError(
                f"{name}: level {index} is stored as {self.seg_w:,}x{self.seg_h:,}-pixel blocks, "
                f"more than the limit of {limits.max_decoded_pixels:,} pixels per read."
            )
        self.across = -(-self.width // self.seg_w)
        down = -(-self.height // self.seg_h)
        self.offsets = np.asarray(page.dataoffsets, dtype=np.int64)
        self.counts = np.asarray(page.databytecounts, dtype=np.int64)
        if page.dtype != np.uint8 or page.samplesperpixel not in (1, 3, 4):
            raise InputError(
                f"{name}: level {index} stores {page.samplesperpixel} samples of {page.dtype} "
                "per pixel; only 8-bit grey, RGB and RGBA slides are supported."
            )
        if page.samplesperpixel > 1 and page.planarconfig != 1:
            raise InputError(
                f"{name}: level {index} stores colour planes separately (unsupported)."
            )
        if self.offsets.size != self.across * down or self.counts.size != self.offsets.size:
            raise InputError(
                f"{name}: level {index} lists {self.offsets.size} tiles where its size needs "
                f"{self.across * down}."
            )
        ends = self.offsets + self.counts
        beyond = np.flatnonzero((self.counts > 0) & ((ends > file_size) | (self.offsets < 0)))
        if beyond.size:
            raise InputError(
                f"{name}: tile {int(beyond[0])} of level {index} lies beyond the end of the file "
                f"({file_size:,} bytes); the file is truncated."
            )
        self.decode = page.decode
        self.jpegtables = page.jpegtables
        self.index = index


class TiffSlideSource(_SlideBase):
    """Aperio SVS, generic pyramidal TIFF and large tiled TIFF (see the module docstring)."""

    def __init__(self, path: Path, limits: ReadLimits = DEFAULT_LIMITS) -> None:
        import tifffile

        name = path.name
        self._tif = tifffile.TiffFile(path)
        self._fd = -1
        try:
            tif = self._tif
            vendor, series_index, mpp, power = _vendor_properties(path, tif)
            series = tif.series[series_index]
            file_size = path.stat().st_size
            level_pages = [level.keyframe for level in series.levels]
            base = level_pages[0]
            _check_pixels(
                name, int(base.imagewidth), int(base.imagelength), limits.max_slide_pixels, "slide"
            )
            self._levels = [
                _TiffLevel(page, file_size, name, i, limits) for i, page in enumerate(level_pages)
            ]
            self._associated = {
                s.name.lower(): s
                for i, s in enumerate(tif.series)
                if i != series_index and s.name.lower() in ("label", "macro", "thumbnail")
            }
            levels = tuple(
                SlideLevel(lv.width, lv.height, float(base.imagewidth) / lv.width)
                for lv in self._levels
            )
            info = SlideInfo(
                kind="svs" if tif.is_svs else "tiff",
                levels=levels,
                microns_per_pixel=mpp if mpp is not None else _tiff_mpp(base),
                objective_power=power,
                associated_images=tuple(sorted(self._associated)),
                grayscale=base.samplesperpixel == 1,
                metadata=_tiff_metadata(tif, base, vendor),
            )
            super().__init__(name, info, limits)
            self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            # tile reads take it only where os.pread is missing; associated images always
            # (tifffile's own file handle moves a shared position)
            self._lock = threading.Lock()
            self._validate()
        except BaseException:
            self.close()
            raise

    def _validate(self) -> None:
        """Decode one tile of the lowest-resolution level: a broken codec fails here, not later."""
        level = self._levels[-1]
        nonempty = np.flatnonzero(level.counts > 0)
        if nonempty.size:
            self._tile(level, int(nonempty[0]))

    def _read_bytes(self, offset: int, count: int) -> bytes:
        if hasattr(os, "pread"):
            return os.pread(self._fd, count, offset)
        with self._lock:
            os.lseek(self._fd, offset, os.SEEK_SET)
            return os.read(self._fd, count)

    def _tile(self, level: _TiffLevel, index: int) -> npt.NDArray[np.uint8] | None:
        """One decoded tile (seg_h, seg_w, samples), or None when the file stores none."""
        count = int(level.counts[index])
        if count == 0:
            return None
        try:
            data = self._read_bytes(int(level.offsets[index]), count)
            if len(data) != count:
                raise InputError(
                    f"{self._name}: tile {index} of level {level.index} is truncated "
                    f"({len(data):,} of {count:,} bytes)."
                )
            array, _, _ = level.decode(data, index, jpegtables=level.jpegtables, _fullsize=True)
        except InputError:
            raise
        except Exception as exc:
            reason = str(exc).strip().rstrip(".") or type(exc).__name__
            raise InputError(
                f"{self._name}: tile {index} of level {level.index} cannot be decoded "
                f"(truncated or corrupt: {reason})."
            ) from exc
        if array is None:
            return None
        tile = np.asarray(array).reshape(array.shape[-3:])
        return tile

    def _read_inside(self, level: int, x: int, y: int, width: int, height: int) -> RgbArray:
        lv = self._levels[level]
        grid = [
            (tx, ty)
            for ty in range(y // lv.seg_h, (y + height - 1) // lv.seg_h + 1)
            for tx in range(x // lv.seg_w, (x + width - 1) // lv.seg_w + 1)
        ]
        indices = [ty * lv.across + tx for tx, ty in grid]
        if len(indices) >= _PARALLEL_TILES:  # thumbnails and large regions: decode in parallel
            tiles = list(_decode_pool().map(lambda i: self._tile(lv, i), indices))
        else:
            tiles = [self._tile(lv, i) for i in indices]
        samples = next((t.shape[2] for t in tiles if t is not None), 3)
        out = np.full((height, width, samples), 255, dtype=np.uint8)
        for (tx, ty), tile in zip(grid, tiles, strict=True):
            if tile is None:
                continue
            left, top = tx * lv.seg_w, ty * lv.seg_h
            sx0, sy0 = max(x, left), max(y, top)
            sx1 = min(x + width, left + lv.seg_w, left + tile.shape[1])
            sy1 = min(y + height, top + lv.seg_h, top + tile.shape[0])
            if sx1 > sx0 and sy1 > sy0:
                out[sy0 - y : sy1 - y, sx0 - x : sx1 - x] = tile[
                    sy0 - top : sy1 - top, sx0 - left : sx1 - left, : out.shape[2]
                ]
        return out if samples == 3 else _to_rgb(out)

    def associated_image(self, name: str) -> RgbArray:
        if name not in self._info.associated_images:
            raise InputError(f"{self._name} has no {name} image.")
        try:
            series = self._associated[name]
            height, width = series.shape[0], series.shape[1]
            _check_pixels(self._name, width, height, self._limits.max_decoded_pixels, name)
            with self._lock:
                pixels = series.asarray()
            if pixels.ndim == 3 and series.axes.startswith("S"):
                pixels = np.moveaxis(pixels, 0, -1)
            return _to_rgb(pixels)
        except Exception as exc:
            raise InputError(f"{self._name}: the {name} image cannot be decoded.") from exc

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._tif.close()


_OTHER_VENDORS = ("ndpi", "scn", "philips", "bif")


def _vendor_properties(
    path: Path, tif: Any
) -> tuple[str, int, tuple[float, float] | None, float | None]:
    """(vendor, series index, µm per pixel, objective power) from the vendor metadata.

    Aperio and generic TIFF are parsed here (tifffile); the other vendors' formats through
    tiffslide's parsers, imported only for them (tiffslide pulls in zarr: ~0.2 s to import).
    """
    from clinic_app.io.deid.wsi import svs_safe_fields

    if tif.is_svs:
        fields = svs_safe_fields(tif.pages.first.description)
        mpp = float(fields["MPP"]) if "MPP" in fields else None
        power = float(fields["AppMag"]) if "AppMag" in fields else None
        return "aperio", 0, _plausible_mpp(mpp, mpp), power
    if any(getattr(tif, f"is_{name}", False) for name in _OTHER_VENDORS):
        import tiffslide

        with tiffslide.TiffSlide(path) as other:
            props = dict(other.properties)
        power = props.get("tiffslide.objective-power")
        return (
            str(props.get("tiffslide.vendor") or "generic"),
            int(props.get("tiffslide.series-index") or 0),
            _plausible_mpp(props.get("tiffslide.mpp-x"), props.get("tiffslide.mpp-y")),
            float(power) if power else None,
        )
    return "generic", 0, None, None


def _tiff_metadata(tif: Any, page: Any, vendor: str) -> dict[str, Any]:
    """Non-identifying facts only (vendor, compression, tile size, allow-listed SVS fields)."""
    from clinic_app.io.deid.wsi import svs_safe_fields

    meta: dict[str, Any] = {
        "vendor": vendor,
        "compression": str(getattr(page.compression, "name", page.compression)).lower(),
    }
    if page.is_tiled:
        meta["tile_size"] = [int(page.tilewidth), int(page.tilelength)]
    if tif.is_svs:
        meta.update({f"aperio.{k}": v for k, v in svs_safe_fields(page.description).items()})
    return meta


# -- DICOM ----------------------------------------------------------------------------------------


def _dicom_header(path: Path) -> Any:

    return open_dataset(
        path,
        stop_before_pixels=True,
        force=True,
        specific_tags=["SOPClassUID", "NumberOfFrames", "ImageType", "TotalPixelMatrixColumns"],
    )


def _open_dicom(path: Path, limits: ReadLimits) -> SlideSource:
    header = _dicom_header(path)
    if "SOPClassUID" not in header and "TotalPixelMatrixColumns" not in header:
        raise InputError(f"{path.name}: not a DICOM file (no SOP Class UID).")
    if str(header.get("SOPClassUID", "")) == WSI_SOP_CLASS_UID:
        return _open_dicom_wsi(path, limits)
    from clinic_app.io.dicom_images import read_dicom_image, to_display_rgb

    image = read_dicom_image(path, limits)
    pixels = to_display_rgb(image, 0)
    meta: dict[str, Any] = dict(image.metadata)
    if image.frames > 1:
        meta["frames"] = image.frames
    return ArraySlide(
        path.name,
        pixels,
        kind="dicom",
        limits=limits,
        microns_per_pixel=image.microns_per_pixel,
        grayscale=image.grayscale,
        window=image.window,
        metadata=meta,
    )


def _wsi_files(path: Path, limits: ReadLimits) -> list[Path]:
    """The DICOM instances to open, each with a frame count within the limits."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    else:
        files = [path]
    chosen: list[tuple[Path, str]] = []
    for file in files:
        try:
            header = _dicom_header(file)
        except Exception:
            continue  # not DICOM: a folder may hold other files (DICOMDIR readers do the same)
        if str(header.get("SOPClassUID", "")) != WSI_SOP_CLASS_UID:
            continue
        frames = int(header.get("NumberOfFrames", 1) or 1)
        if frames > limits.max_frames:
            raise InputError(
                f"{file.name}: declares {frames:,} frames, more than the limit of "
                f"{limits.max_frames:,}."
            )
        chosen.append((file, _image_flavour(header)))
    if not chosen:
        raise InputError(f"{path.name}: contains no DICOM whole-slide (VL WSMI) instance.")
    if all(flavour in ("LABEL", "OVERVIEW") for _, flavour in chosen):
        raise InputError(
            f"{path.name}: holds only label or overview images, no slide levels; "
            "open the folder with all instances of the slide."
        )
    return [file for file, _ in chosen]


def _image_flavour(header: Any) -> str:
    """The third value of Image Type: VOLUME, THUMBNAIL, LABEL or OVERVIEW."""
    values = [str(v).upper() for v in header.get("ImageType", None) or []]
    return values[2] if len(values) > 2 else ""


class DicomWsiSlide(_SlideBase):
    """A DICOM whole-slide image (VL Whole Slide Microscopy) read through wsidicom."""

    def __init__(self, path: Path, files: Sequence[Path], limits: ReadLimits) -> None:
        from wsidicom import WsiDicom

        self._wsi = WsiDicom.open(list(files))
        try:
            levels = list(self._wsi.levels)
            if not levels:
                raise InputError(
                    f"{path.name}: holds only label or overview images, no slide levels; "
                    "open the folder with all instances of the slide."
                )
            base = levels[0]
            width, height = int(base.size.width), int(base.size.height)
            _check_pixels(path.name, width, height, limits.max_slide_pixels, "slide")
            self._numbers = [int(level.level) for level in levels]
            mpp = None
            try:
                mpp = _plausible_mpp(float(base.mpp.width), float(base.mpp.height))
            except Exception:
                mpp = None
            associated = []
            if self._wsi.labels:
                associated.append("label")
            if self._wsi.overviews:
                associated.append("macro")
            info = SlideInfo(
                kind="dicom-wsi",
                levels=tuple(
                    SlideLevel(int(lv.size.width), int(lv.size.height), width / int(lv.size.width))
                    for lv in levels
                ),
                microns_per_pixel=mpp,
                associated_images=tuple(associated),
                grayscale=str(base.default_instance.dataset.photometric_interpretation).startswith(
                    "MONOCHROME"
                ),
                metadata={
                    "instances": len(files),
                    "tile_size": [int(base.tile_size.width), int(base.tile_size.height)],
                },
            )
            super().__init__(path.name, info, limits)
            top = info.levels[-1]
            self._read_inside(
                len(levels) - 1,
                0,
                0,
                min(top.width, int(levels[-1].tile_size.width)),
                min(top.height, int(levels[-1].tile_size.height)),
            )
        except BaseException:
            self._wsi.close()
            raise

    def _read_inside(self, level: int, x: int, y: int, width: int, height: int) -> RgbArray:
        try:
            region = self._wsi.read_region(
                (x, y), self._numbers[level], (width, height), as_array=True
            )
        except Exception as exc:
            reason = str(exc).strip().rstrip(".") or type(exc).__name__
            raise InputError(
                f"{self._name}: a region of level {level} cannot be decoded ({reason})."
            ) from exc
        return _to_rgb(np.asarray(region))

    def associated_image(self, name: str) -> RgbArray:
        if name not in self._info.associated_images:
            raise InputError(f"{self._name} has no {name} image.")
        try:
            image = self._wsi.read_label() if name == "label" else self._wsi.read_overview()
            return _to_rgb(np.asarray(image.convert("RGB")))
        except Exception as exc:
            raise InputError(f"{self._name}: the {name} image cannot be decoded.") from exc

    def close(self) -> None:
        self._wsi.close()


def _open_dicom_wsi(path: Path, limits: ReadLimits) -> SlideSource:
    return DicomWsiSlide(path, _wsi_files(path, limits), limits)
