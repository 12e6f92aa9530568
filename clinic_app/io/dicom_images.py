"""DICOM images -> display-ready pixel arrays, for every common transfer syntax.

``read_dicom_image`` reads one DICOM object with pydicom 3, checks what the header declares
against the file and ``ReadLimits`` before anything is decoded, decodes through pydicom's
pixel-data plugins (GDCM, pylibjpeg-openjpeg/-rle, pyjpegls, Pillow, and an imagecodecs plugin
registered here for 12-bit JPEG Extended, which no other permissively licensed plugin decodes)
and converts the photometric interpretation: colour becomes RGB uint8, grayscale becomes the
Modality-LUT output as float32 with a window (VOI) to show it. Every failure is one
``InputError`` naming the file; the library exception is kept as ``__cause__``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import warnings
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom import uid as dicom_uid
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_file_meta_info
from pydicom.pixels.decoders.base import (
    JPEGExtended12BitDecoder,
    JPEGLosslessDecoder,
    JPEGLosslessSV1Decoder,
    get_decoder,
)
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut, convert_color_space

from clinic_app.domain.errors import InputError
from clinic_app.domain.pathology import RgbArray, WindowLevel
from clinic_app.io.limits import DEFAULT_LIMITS, ReadLimits

if TYPE_CHECKING:
    from pydicom.pixels.decoders.base import DecodeRunner

__all__ = [
    "DicomImage",
    "apply_window",
    "read_dicom_image",
    "to_display_rgb",
    "window_from_range",
]

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_UNDEFINED_LENGTH = 0xFFFFFFFF
#: The pydicom decoder plugin this module registers (see ``_decode_jpeg_frame``).
_PLUGIN_LABEL = "clinicfusion-imagecodecs"
#: Elements larger than this stay on disk until decoded, so the size checks run first.
_DEFER_SIZE = 4 * 1024 * 1024
_GRAYSCALE = ("MONOCHROME1", "MONOCHROME2")
_INFERABLE = {
    (True, True): dicom_uid.ImplicitVRLittleEndian,
    (False, True): dicom_uid.ExplicitVRLittleEndian,
    (False, False): dicom_uid.ExplicitVRBigEndian,
}
#: The plugin that decodes each compressed syntax in this install (for the error message).
_PLUGIN_HINT = {
    dicom_uid.JPEGBaseline8Bit: "python-gdcm or pillow",
    dicom_uid.JPEGExtended12Bit: "imagecodecs (12-bit) and python-gdcm or pillow (8-bit)",
    dicom_uid.JPEGLossless: "imagecodecs or python-gdcm",
    dicom_uid.JPEGLosslessSV1: "imagecodecs or python-gdcm",
    dicom_uid.JPEGLSLossless: "pyjpegls or python-gdcm",
    dicom_uid.JPEGLSNearLossless: "pyjpegls or python-gdcm",
    dicom_uid.JPEG2000Lossless: "pylibjpeg with pylibjpeg-openjpeg, or python-gdcm",
    dicom_uid.JPEG2000: "pylibjpeg with pylibjpeg-openjpeg, or python-gdcm",
    dicom_uid.HTJ2KLossless: "pylibjpeg with pylibjpeg-openjpeg",
    dicom_uid.HTJ2KLosslessRPCL: "pylibjpeg with pylibjpeg-openjpeg",
    dicom_uid.HTJ2K: "pylibjpeg with pylibjpeg-openjpeg",
    dicom_uid.RLELossless: "pydicom's own RLE decoder (pylibjpeg-rle is faster)",
}
#: Plugins tried in this order: the sturdier decoders before GDCM, whose C++ exceptions on
#: some corrupt JPEG streams abort the process instead of raising. GDCM is skipped once an
#: earlier plugin has rejected the stream itself (it still decodes what only it supports).
_PLUGIN_ORDER: dict[str, tuple[str, ...]] = {
    dicom_uid.JPEGBaseline8Bit: ("pillow", "pylibjpeg", "gdcm"),
    dicom_uid.JPEGExtended12Bit: (
        "pillow",
        _PLUGIN_LABEL,
        "gdcm",
    ),
    dicom_uid.JPEGLossless: (_PLUGIN_LABEL, "pylibjpeg", "gdcm"),
    dicom_uid.JPEGLosslessSV1: (_PLUGIN_LABEL, "pylibjpeg", "gdcm"),
    dicom_uid.JPEGLSLossless: ("pyjpegls", "pylibjpeg", "gdcm"),
    dicom_uid.JPEGLSNearLossless: ("pyjpegls", "pylibjpeg", "gdcm"),
    dicom_uid.JPEG2000Lossless: ("pylibjpeg", "pillow", "gdcm"),
    dicom_uid.JPEG2000: ("pylibjpeg", "pillow", "gdcm"),
    dicom_uid.RLELossless: ("pylibjpeg", "pydicom"),
}
_PYDICOM_WRAPPER = "Unable to decode as exceptions were raised by all available plugins: "
_REQUIRED = (
    ("Rows", "(0028,0010)"),
    ("Columns", "(0028,0011)"),
    ("SamplesPerPixel", "(0028,0002)"),
    ("PhotometricInterpretation", "(0028,0004)"),
    ("BitsAllocated", "(0028,0100)"),
)
_REQUIRED_INTEGER = (("BitsStored", "(0028,0101)"), ("PixelRepresentation", "(0028,0103)"))


@dataclass(frozen=True, slots=True, eq=False)
class DicomImage:
    """Decoded pixels of one DICOM object plus what is needed to show them (picklable).

    ``pixels`` is RGB uint8 shaped (frames, H, W, 3) for colour and float32 Modality-LUT output
    (rescaled values, e.g. Hounsfield units) shaped (frames, H, W) for grayscale; the frame
    axis is present only when more than one frame was decoded. ``frames`` is the number of
    frames the file holds. MONOCHROME1 values are kept as stored (rescaled, not inverted):
    ``invert`` is true for them and ``to_display_rgb`` maps the window's low end to white.
    """

    pixels: npt.NDArray[Any]
    frames: int
    rows: int
    columns: int
    photometric: str
    grayscale: bool
    window: WindowLevel | None
    microns_per_pixel: tuple[float, float] | None
    transfer_syntax: str
    modality: str | None
    sop_class: str | None
    burned_in_annotation: str | None
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def invert(self) -> bool:
        """True for MONOCHROME1, where the lowest value is shown white."""
        return self.photometric == "MONOCHROME1"

    @property
    def has_frame_axis(self) -> bool:
        return self.pixels.ndim == (3 if self.grayscale else 4)


# --------------------------------------------------------------------------------------------
# Window / level


def apply_window(
    values: npt.ArrayLike, window: WindowLevel, *, invert: bool = False
) -> npt.NDArray[np.uint8]:
    """Map values to 0..255 with the DICOM linear VOI function (PS3.3 C.11.2.1.2.1).

    x <= c - 0.5 - (w-1)/2 -> 0; x > c - 0.5 + (w-1)/2 -> 255; otherwise
    ((x - (c - 0.5)) / (w-1) + 0.5) * 255, rounded. Widths below 1 are treated as 1 (the
    standard requires w >= 1). ``invert`` gives 255 - y (MONOCHROME1). NaN maps to 0.
    """
    x = np.asarray(values)
    if not np.issubdtype(x.dtype, np.floating) or x.dtype.itemsize < 4:
        x = x.astype(np.float64 if x.dtype.itemsize > 2 else np.float32)
    center = float(window.center)
    width = max(float(window.width), 1.0)
    low = center - 0.5 - (width - 1.0) / 2.0
    high = center - 0.5 + (width - 1.0) / 2.0
    if width > 1.0:
        y = ((x - (center - 0.5)) / (width - 1.0) + 0.5) * 255.0
    else:
        y = np.where(x > high, 255.0, 0.0)
    y = np.where(x <= low, 0.0, np.where(x > high, 255.0, y))
    y = np.nan_to_num(np.clip(np.rint(y), 0.0, 255.0), nan=0.0)
    out: npt.NDArray[np.uint8] = y.astype(np.uint8)
    if invert:
        np.subtract(255, out, out=out)
    return out


def window_from_range(values: npt.ArrayLike) -> WindowLevel:
    """The window that maps the finite data range exactly onto 0..255 (min -> 0, max -> 255)."""
    x = np.asarray(values)
    finite = x[np.isfinite(x)] if np.issubdtype(x.dtype, np.floating) else x
    if finite.size == 0:
        return WindowLevel(center=0.5, width=1.0)
    low, high = float(finite.min()), float(finite.max())
    if high - low < 1.0 and np.issubdtype(x.dtype, np.floating) and high > low:
        # Fractional data: the linear function clips below width 1, so stretch around it.
        return WindowLevel(center=(low + high) / 2.0 + 0.5, width=1.0)
    width = high - low + 1.0
    return WindowLevel(center=low + 0.5 + (width - 1.0) / 2.0, width=width)


def to_display_rgb(
    image: DicomImage, frame: int = 0, window: WindowLevel | None = None
) -> RgbArray:
    """One frame as (H, W, 3) uint8 for the viewer and the model (grayscale is windowed)."""
    pixels = image.pixels
    if image.has_frame_axis:
        if not 0 <= frame < pixels.shape[0]:
            raise InputError(
                f"The image has {pixels.shape[0]} frames; frame {frame + 1} does not exist."
            )
        pixels = pixels[frame]
    elif frame != 0:
        raise InputError(f"The image holds one frame; frame {frame + 1} does not exist.")
    if not image.grayscale:
        return np.ascontiguousarray(pixels, dtype=np.uint8)
    chosen = window or image.window or window_from_range(pixels)
    gray = apply_window(pixels, chosen, invert=image.invert)
    return np.ascontiguousarray(np.repeat(gray[..., np.newaxis], 3, axis=-1))


# --------------------------------------------------------------------------------------------
# pydicom decoder plugin: 12-bit JPEG Extended through imagecodecs (libjpeg-turbo, BSD-3).
# GDCM and Pillow decode only 8-bit JPEG Extended; the sole other plugin (pylibjpeg-libjpeg)
# is GPL-3. pydicom's plugin protocol needs these two module-level names.

DECODER_DEPENDENCIES = {
    dicom_uid.JPEGExtended12Bit: ("numpy", "imagecodecs"),
    dicom_uid.JPEGLossless: ("numpy", "imagecodecs"),
    dicom_uid.JPEGLosslessSV1: ("numpy", "imagecodecs"),
}
_plugins_registered = False


def is_available(uid: str) -> bool:
    """pydicom plugin protocol: whether the imagecodecs JPEG plugin can decode ``uid``."""
    return uid in DECODER_DEPENDENCIES and importlib.util.find_spec("imagecodecs") is not None


def _decode_jpeg_frame(src: bytes, runner: DecodeRunner) -> bytes:
    """pydicom plugin: decode one grayscale JPEG Extended (<= 12-bit) or lossless frame.

    libjpeg-turbo returns lossless samples as unsigned bit patterns of the JPEG precision;
    signed images (Pixel Representation 1) are sign-extended here so pydicom's signed view
    of the bytes is right.
    """
    if runner.samples_per_pixel != 1:
        raise NotImplementedError("the imagecodecs plugin does not support colour JPEG")
    import imagecodecs  # optional codec, loaded on first use

    decoded = np.asarray(imagecodecs.jpeg8_decode(src))
    if decoded.ndim != 2 or decoded.shape != (runner.rows, runner.columns):
        raise ValueError(
            f"the JPEG frame is {decoded.shape}, not ({runner.rows}, {runner.columns})"
        )
    values = decoded.astype(np.int64)
    if runner.pixel_representation == 1:
        precision = min(int(runner.bits_stored), decoded.dtype.itemsize * 8)
        values = np.where(values >= 1 << (precision - 1), values - (1 << precision), values)
    dtype = f"<{'i' if runner.pixel_representation == 1 else 'u'}{runner.pixel_dtype.itemsize}"
    return bytes(values.astype(dtype).tobytes())


def _register_plugins() -> None:
    global _plugins_registered
    if _plugins_registered:
        return
    for decoder in (JPEGExtended12BitDecoder, JPEGLosslessDecoder, JPEGLosslessSV1Decoder):
        with contextlib.suppress(ValueError):  # already registered (module reloaded)
            decoder.add_plugin(_PLUGIN_LABEL, (__name__, "_decode_jpeg_frame"))
    _plugins_registered = True


# --------------------------------------------------------------------------------------------
# Reading


def read_dicom_image(
    path: Path, limits: ReadLimits = DEFAULT_LIMITS, *, frame: int | None = None
) -> DicomImage:
    """Read and decode a DICOM image (all frames, or only ``frame``, counted from 0).

    Raises ``InputError`` naming the file for anything wrong with it: not DICOM, no pixel
    data, truncated pixel data, sizes over ``limits``, a missing decoder, a corrupt stream.
    """
    path = Path(path)
    name = path.name
    _register_plugins()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _read(path, name, limits, frame)
    except InputError:
        raise
    except RecursionError as exc:
        raise InputError(f"{name}: the file nests data too deeply to read.") from exc
    except MemoryError as exc:
        raise InputError(f"{name}: the image is too large to decode in memory.") from exc
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as exc:  # any pydicom/numpy/plugin failure on a bad file; Rust
        # plugins (pylibjpeg-rle) raise pyo3's PanicException, a BaseException, on bad input.
        raise InputError(f"{name}: the image could not be decoded ({_reason(exc)}).") from exc


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _read(path: Path, name: str, limits: ReadLimits, frame: int | None) -> DicomImage:
    ds = _open(path, name, limits)
    _check_sequence_depth(ds, name, limits.max_sequence_depth)
    keyword = next((k for k in _PIXEL_KEYWORDS if k in ds), None)
    if keyword is None:
        raise InputError(f"{name} has no image (no Pixel Data element).")
    tsyntax = _transfer_syntax(ds, name, keyword)

    required = _REQUIRED + (_REQUIRED_INTEGER if keyword == "PixelData" else ())
    missing = [f"{_spaced(kw)} {tag}" for kw, tag in required if kw not in ds]
    if missing:
        raise InputError(f"{name}: the image is missing {', '.join(missing)}.")
    rows = _int_value(ds, "Rows", name)
    columns = _int_value(ds, "Columns", name)
    samples = _int_value(ds, "SamplesPerPixel", name)
    bits_allocated = _int_value(ds, "BitsAllocated", name)
    photometric = str(ds.PhotometricInterpretation).strip().upper()
    frames = _number_of_frames(ds, name)
    if rows < 1 or columns < 1:
        raise InputError(f"{name}: the image declares {rows} x {columns} pixels.")
    if samples not in (1, 3):
        raise InputError(f"{name}: {samples} samples per pixel are not supported (only 1 or 3).")
    if bits_allocated not in (1, 8, 16, 32, 64):
        raise InputError(f"{name}: Bits Allocated {bits_allocated} is not supported.")
    if samples == 1 and photometric not in (*_GRAYSCALE, "PALETTE COLOR"):
        raise InputError(f"{name}: photometric interpretation {photometric!r} is not supported.")
    if samples == 3 and not (photometric == "RGB" or photometric.startswith("YBR_")):
        raise InputError(f"{name}: photometric interpretation {photometric!r} is not supported.")
    if frames > limits.max_frames:
        raise InputError(
            f"{name} declares {frames:,} frames, more than the limit of {limits.max_frames:,}."
        )
    if frame is not None and not 0 <= frame < frames:
        raise InputError(f"{name} has {frames} frame(s); frame {frame + 1} does not exist.")
    decoded_frames = frames if frame is None else 1
    declared = rows * columns * samples * decoded_frames
    if declared > limits.max_decoded_pixels:
        raise InputError(
            f"{name} declares {declared:,} pixel samples (rows x columns x samples x frames), "
            f"more than the limit of {limits.max_decoded_pixels:,}."
        )
    if not tsyntax.is_compressed:
        sample_factor = 2 if photometric == "YBR_FULL_422" else samples
        expected = math.ceil(rows * columns * sample_factor * frames * bits_allocated / 8)
        actual = _available_bytes(ds, keyword, path)
        if actual < expected:
            raise InputError(f"{name}: truncated pixel data: {actual:,} of {expected:,} bytes.")

    arr, properties = _decode(ds, name, tsyntax, frame)
    decoded_photometric = str(properties.get("photometric_interpretation", photometric)).upper()
    if samples == 1 and photometric in _GRAYSCALE:
        values = _modality_values(ds, arr, frame, frames)
        frame_for_window = 0 if frame is None else frame
        window = _file_window(ds, frame_for_window) or window_from_range(values)
        pixels: npt.NDArray[Any] = values
        grayscale = True
    elif samples == 1:
        pixels = _palette_to_rgb(ds, arr)
        window, grayscale = None, False
    else:
        bits = int(properties.get("bits_stored", ds.get("BitsStored", bits_allocated)))
        pixels = _colour_to_rgb(arr, decoded_photometric, bits, name)
        window, grayscale = None, False

    return DicomImage(
        pixels=pixels,
        frames=frames,
        rows=rows,
        columns=columns,
        photometric=photometric,
        grayscale=grayscale,
        window=window,
        microns_per_pixel=_microns_per_pixel(ds),
        transfer_syntax=str(tsyntax.name),
        modality=_text(ds, "Modality"),
        sop_class=_sop_class_name(ds),
        burned_in_annotation=_text(ds, "BurnedInAnnotation"),
        metadata=_metadata(ds, tsyntax),
    )


def _open(path: Path, name: str, limits: ReadLimits) -> Dataset:
    """Parse the file; a file without the DICOM preamble is tried once more with force."""
    if not path.is_file():
        raise InputError(f"{name}: the file does not exist or is not a regular file.")
    try:
        meta: Dataset | None = read_file_meta_info(path)
    except InvalidDicomError:
        meta = None
    if (
        meta is not None
        and meta.get("TransferSyntaxUID") == dicom_uid.DeflatedExplicitVRLittleEndian
    ):
        _check_inflated_size(path, name, meta, limits)
    try:
        return pydicom.dcmread(path, force=False, defer_size=_DEFER_SIZE)
    except InvalidDicomError:
        pass
    try:
        ds = pydicom.dcmread(path, force=True, defer_size=_DEFER_SIZE)
        usable = any(k in ds for k in _PIXEL_KEYWORDS) and "Rows" in ds and "Columns" in ds
    except Exception as exc:
        raise InputError(f"{name} is not a DICOM file.") from exc
    if not usable:
        raise InputError(f"{name} is not a DICOM file.")
    return ds


def _check_inflated_size(path: Path, name: str, meta: Dataset, limits: ReadLimits) -> None:
    """Refuse a deflate bomb before pydicom inflates the whole dataset into memory."""
    group_length = meta.get("FileMetaInformationGroupLength")
    if group_length is None:
        return
    cap = limits.max_decoded_pixels * 8 + 64 * 1024 * 1024
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0
    with path.open("rb") as fp:
        fp.seek(128 + 4 + 12 + int(group_length))
        while chunk := fp.read(1 << 20):
            data = chunk
            while data:
                total += len(inflater.decompress(data, 1 << 22))
                if total > cap:
                    raise InputError(
                        f"{name}: the deflated dataset expands to more than {cap:,} bytes."
                    )
                data = inflater.unconsumed_tail
            if inflater.eof:
                break


def _check_sequence_depth(ds: Dataset, name: str, max_depth: int) -> None:
    """Walk nested sequences without recursion; deeper than ``max_depth`` is refused."""
    stack: list[tuple[Dataset, int]] = [(ds, 0)]
    while stack:
        current, depth = stack.pop()
        for tag in list(current.keys()):
            raw = current.get_item(tag)
            if isinstance(raw, RawDataElement) and raw.value is None and raw.length:
                continue  # deferred large value: never a sequence
            if tag.group == 0x7FE0:
                continue
            elem = current[tag]
            if elem.VR != "SQ" or not elem.value:
                continue
            if depth + 1 > max_depth:
                raise InputError(f"{name}: sequences are nested more than {max_depth} levels deep.")
            stack.extend((item, depth + 1) for item in elem.value)


def _transfer_syntax(ds: Dataset, name: str, keyword: str) -> dicom_uid.UID:
    meta = getattr(ds, "file_meta", None)
    value = meta.get("TransferSyntaxUID") if meta is not None else None
    if value:
        return dicom_uid.UID(str(value))
    raw = ds.get_item(keyword)
    if _is_undefined_length(raw):
        raise InputError(
            f"{name}: the pixel data is compressed but the file does not say how "
            "(no Transfer Syntax UID)."
        )
    inferred = _INFERABLE.get(ds.original_encoding)  # type: ignore[arg-type]
    if inferred is None:
        raise InputError(f"{name}: the transfer syntax is missing and cannot be inferred.")
    if meta is None:
        ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = inferred
    return inferred


def _is_undefined_length(elem: DataElement | RawDataElement | None) -> bool:
    if isinstance(elem, RawDataElement):
        return bool(elem.length == _UNDEFINED_LENGTH)
    return bool(getattr(elem, "is_undefined_length", False))


def _available_bytes(ds: Dataset, keyword: str, path: Path) -> int:
    """Bytes of native pixel data actually present (a deferred value is measured on disk)."""
    raw = ds.get_item(keyword)
    if isinstance(raw, RawDataElement) and raw.value is None:
        if raw.value_tell is None:
            return 0
        on_disk = max(path.stat().st_size - int(raw.value_tell), 0)
        return min(int(raw.length), on_disk)
    value = raw.value if raw is not None else None
    return len(value) if isinstance(value, bytes | bytearray) else 0


def _spaced(keyword: str) -> str:
    """'BitsAllocated' -> 'Bits Allocated', as the standard names the attribute."""
    return "".join(f" {c}" if c.isupper() and i else c for i, c in enumerate(keyword))


def _int_value(ds: Dataset, keyword: str, name: str) -> int:
    value = ds.get(keyword)
    try:
        if isinstance(value, Iterable) and not isinstance(value, str | bytes):
            value = next(iter(value))
        return int(value)
    except (TypeError, ValueError, StopIteration) as exc:
        raise InputError(f"{name}: {keyword} is not a whole number ({value!r}).") from exc


def _number_of_frames(ds: Dataset, name: str) -> int:
    elem = ds.get_item("NumberOfFrames")
    if elem is None:
        return 1
    raw_value = elem.value
    if raw_value in (None, b"", ""):
        return 1
    try:
        frames = int(ds.NumberOfFrames)
    except (TypeError, ValueError) as exc:
        shown = raw_value.decode("ascii", "replace") if isinstance(raw_value, bytes) else raw_value
        raise InputError(
            f"{name}: Number of Frames (0028,0008) is not a whole number ({str(shown).strip()!r})."
        ) from exc
    if frames < 1:
        raise InputError(f"{name}: Number of Frames (0028,0008) is {frames}.")
    return frames


def _decode(
    ds: Dataset, name: str, tsyntax: dicom_uid.UID, frame: int | None
) -> tuple[npt.NDArray[Any], dict[str, Any]]:
    try:
        decoder = get_decoder(tsyntax)
    except NotImplementedError as exc:
        raise InputError(
            f"{name} uses transfer syntax {tsyntax.name or str(tsyntax)!r}, "
            "which ClinicFusion cannot decode."
        ) from exc
    if not decoder.is_available:
        hint = _PLUGIN_HINT.get(tsyntax, ", ".join(decoder.missing_dependencies))
        raise InputError(
            f"{name} uses {tsyntax.name}, and no decoder for it is installed (needs {hint})."
        )
    available = decoder.available_plugins
    ordered = [p for p in _PLUGIN_ORDER.get(tsyntax, ()) if p in available]
    ordered += [p for p in available if p not in ordered]
    if not ordered:  # native syntaxes: pydicom decodes them itself
        arr, properties = decoder.as_array(ds, index=frame)
        return arr, dict(properties)
    failures: list[str] = []
    stream_rejected = False
    for plugin in ordered:
        if plugin == "gdcm" and stream_rejected:
            continue  # a sturdier decoder found the stream corrupt; GDCM may abort on it
        try:
            arr, properties = decoder.as_array(ds, index=frame, decoding_plugin=plugin)
        except (KeyboardInterrupt, SystemExit, GeneratorExit):
            raise
        except BaseException as exc:  # next plugin; Rust plugins raise PanicException
            reason = _reason(exc).removeprefix(_PYDICOM_WRAPPER).removeprefix(f"{plugin}: ")
            failures.append(f"{plugin}: {reason}")
            stream_rejected |= not _only_unsupported(exc)
            continue
        return arr, dict(properties)
    raise InputError(
        f"{name}: the {tsyntax.name} pixel data could not be decoded ({'; '.join(failures)})."
    )


def _only_unsupported(exc: BaseException) -> bool:
    """True when a plugin declined the image (NotImplementedError), not the stream."""
    while exc.__cause__ is not None and not isinstance(exc, NotImplementedError):
        exc = exc.__cause__
    return isinstance(exc, NotImplementedError) or "does not support" in str(exc)


def _modality_values(
    ds: Dataset, arr: npt.NDArray[Any], frame: int | None, frames: int
) -> npt.NDArray[np.float32]:
    """Modality LUT output (rescale slope/intercept, per frame for enhanced objects)."""
    if "ModalityLUTSequence" in ds:
        return np.asarray(apply_modality_lut(arr, ds), dtype=np.float32)
    values = arr.astype(np.float32, copy=True)
    pairs = _rescale_pairs(ds, frames)
    if pairs is None:
        return values
    if frame is not None or frames == 1:
        slope, intercept = pairs[0 if frame is None else min(frame, len(pairs) - 1)]
        if (slope, intercept) != (1.0, 0.0):
            values *= np.float32(slope)
            values += np.float32(intercept)
        return values
    for index in range(values.shape[0]):
        slope, intercept = pairs[min(index, len(pairs) - 1)]
        if (slope, intercept) != (1.0, 0.0):
            values[index] *= np.float32(slope)
            values[index] += np.float32(intercept)
    return values


def _rescale_pairs(ds: Dataset, frames: int) -> list[tuple[float, float]] | None:
    """(slope, intercept) per frame: top level, shared functional groups, or per-frame."""

    def pair(item: Dataset) -> tuple[float, float] | None:
        if "RescaleSlope" not in item and "RescaleIntercept" not in item:
            return None
        slope = _float_or(item.get("RescaleSlope"), 1.0)
        return (slope if slope != 0 else 1.0, _float_or(item.get("RescaleIntercept"), 0.0))

    top = pair(ds)
    if top is not None:
        return [top]
    shared = _functional_item(
        ds, "SharedFunctionalGroupsSequence", 0, "PixelValueTransformationSequence"
    )
    if shared is not None and (found := pair(shared)) is not None:
        return [found]
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if not per_frame:
        return None
    pairs = []
    for index in range(min(frames, len(per_frame))):
        item = _functional_item(
            ds, "PerFrameFunctionalGroupsSequence", index, "PixelValueTransformationSequence"
        )
        pairs.append((item and pair(item)) or (1.0, 0.0))
    return pairs or None


def _functional_item(ds: Dataset, group: str, index: int, macro: str) -> Dataset | None:
    groups = ds.get(group)
    if not groups or index >= len(groups):
        return None
    items = groups[index].get(macro)
    return items[0] if items else None


def _float_or(value: Any, default: float) -> float:
    try:
        if isinstance(value, Iterable) and not isinstance(value, str | bytes):
            value = next(iter(value))
        result = float(value)
    except (TypeError, ValueError, StopIteration):
        return default
    return result if math.isfinite(result) else default


def _file_window(ds: Dataset, frame: int) -> WindowLevel | None:
    """The file's first VOI window (top level, shared or per-frame groups, or a VOI LUT)."""
    sources: list[Dataset | None] = [
        ds,
        _functional_item(ds, "SharedFunctionalGroupsSequence", 0, "FrameVOILUTSequence"),
        _functional_item(ds, "PerFrameFunctionalGroupsSequence", frame, "FrameVOILUTSequence"),
    ]
    for item in sources:
        if item is None or "WindowCenter" not in item or "WindowWidth" not in item:
            continue
        center = _float_or(item.get("WindowCenter"), math.nan)
        width = _float_or(item.get("WindowWidth"), math.nan)
        if math.isfinite(center) and math.isfinite(width) and width >= 1.0:
            return WindowLevel(center=center, width=width)
    voi = ds.get("VOILUTSequence")
    if voi:
        descriptor = voi[0].get("LUTDescriptor")
        if descriptor and len(descriptor) == 3:
            entries = int(descriptor[0]) or 65536
            first = float(descriptor[1])
            return WindowLevel(center=first + entries / 2.0, width=float(entries))
    return None


def _palette_to_rgb(ds: Dataset, arr: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
    rgb: npt.NDArray[Any] = np.asarray(apply_color_lut(arr, ds))
    if rgb.dtype != np.uint8:
        rgb = np.rint(rgb.astype(np.float32) / 257.0)
    out: npt.NDArray[np.uint8] = rgb.astype(np.uint8, copy=False)
    return out


def _colour_to_rgb(
    arr: npt.NDArray[Any], photometric: str, bits_stored: int, name: str
) -> npt.NDArray[np.uint8]:
    """RGB uint8 from decoded colour samples (YBR_FULL/_422 converted when still YCbCr)."""
    if photometric in ("YBR_FULL", "YBR_FULL_422"):
        arr = convert_color_space(arr, photometric, "RGB")
    elif photometric != "RGB":
        raise InputError(f"{name}: colour space {photometric!r} cannot be converted to RGB.")
    if arr.dtype != np.uint8:
        top = float(2 ** min(max(bits_stored, 1), 64) - 1)
        arr = np.rint(np.clip(arr.astype(np.float32) * np.float32(255.0 / top), 0.0, 255.0))
    out: npt.NDArray[np.uint8] = arr.astype(np.uint8, copy=False)
    return out


def _microns_per_pixel(ds: Dataset) -> tuple[float, float] | None:
    """(x, y) microns per pixel from Pixel Spacing (mm, row then column) or the WSI extent."""
    candidates = [
        ds.get("PixelSpacing"),
        getattr(
            _functional_item(ds, "SharedFunctionalGroupsSequence", 0, "PixelMeasuresSequence"),
            "PixelSpacing",
            None,
        ),
        ds.get("NominalScannedPixelSpacing"),
    ]
    for spacing in candidates:
        try:
            row_mm, column_mm = float(spacing[0]), float(spacing[1])
        except (TypeError, ValueError, IndexError):
            continue
        if all(math.isfinite(v) and v > 0 for v in (row_mm, column_mm)):
            return column_mm * 1000.0, row_mm * 1000.0
    width_mm = _float_or(ds.get("ImagedVolumeWidth"), math.nan)
    height_mm = _float_or(ds.get("ImagedVolumeHeight"), math.nan)
    columns = _float_or(ds.get("TotalPixelMatrixColumns"), math.nan)
    rows = _float_or(ds.get("TotalPixelMatrixRows"), math.nan)
    values = (width_mm / columns * 1000.0, height_mm / rows * 1000.0)
    if all(math.isfinite(v) and v > 0 for v in values):
        return values
    return None


def _text(ds: Dataset, keyword: str) -> str | None:
    try:
        value = ds.get(keyword)
    except Exception:
        return None
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _sop_class_name(ds: Dataset) -> str | None:
    value = ds.get("SOPClassUID") or (
        ds.file_meta.get("MediaStorageSOPClassUID") if hasattr(ds, "file_meta") else None
    )
    if not value:
        return None
    sop = dicom_uid.UID(str(value))
    return str(sop.name) if sop.name else str(sop)


#: Non-identifying attributes shown with an image (no patient, study, date, device serial,
#: institution or station: those are PS3.15 Annex E attributes).
_METADATA_KEYWORDS = (
    "Modality",
    "Manufacturer",
    "ManufacturerModelName",
    "BodyPartExamined",
    "ImageType",
    "PhotometricInterpretation",
    "BitsAllocated",
    "BitsStored",
    "PixelRepresentation",
    "SamplesPerPixel",
    "PlanarConfiguration",
    "NumberOfFrames",
    "Rows",
    "Columns",
    "LossyImageCompression",
    "BurnedInAnnotation",
)


def _metadata(ds: Dataset, tsyntax: dicom_uid.UID) -> dict[str, str]:
    out = {"TransferSyntax": str(tsyntax.name or tsyntax)}
    if (sop := _sop_class_name(ds)) is not None:
        out["SOPClass"] = sop
    for keyword in _METADATA_KEYWORDS:
        try:
            value = ds.get(keyword)
        except Exception:
            continue
        if value is None or value == "":
            continue
        text = "\\".join(str(v) for v in value) if isinstance(value, list | tuple) else str(value)
        if isinstance(value, pydicom.multival.MultiValue):
            text = "\\".join(str(v) for v in value)
        if text.strip():
            out[keyword] = text.strip()[:200]
    return out
