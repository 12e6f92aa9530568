"""Whole-slide copies that are safe to store: no label or macro image, no identifying metadata.

SVS and TIFF: a new TIFF holds only the pyramid levels (and the SVS thumbnail, a downscaled
view of the tissue). Their compressed tiles are copied byte for byte, never re-encoded, so the
copy decodes to exactly the original pixels. Only the tags needed to decode and place the
pixels are written; vendor text is reduced to an allow-list (SVS: ``AppMag``, ``MPP`` and
image geometry), so ScanScope ID, Filename, Date, Time, User, barcodes, DateTime, Artist,
HostComputer, DocumentName, Software, Make/Model and private tags never reach the copy. The
label and macro pages are not written at all (not merely unlinked).

DICOM whole-slide images: ``copy_dicom_wsi_without_labels`` copies the VOLUME and THUMBNAIL
instances and reports the LABEL and OVERVIEW instances it dropped; the copied instances still
need the Annex E profile (``clinic_app.io.deid.annex_e``), which the import service applies.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clinic_app.domain.errors import InputError

#: SVS ImageDescription keys kept in a copy: optics and geometry, nothing about who or when.
SVS_SAFE_KEYS = frozenset(
    {
        "AppMag",
        "MPP",
        "StripeWidth",
        "OriginalWidth",
        "OriginalHeight",
        "Originalheight",
        "Filtered",
        "Focus Offset",
        "Exposure Time",
        "Exposure Scale",
        "Gamma",
    }
)
#: Lines of the SVS header kept: the library name and the geometry line the library writes.
_SVS_HEADER_LINE = re.compile(
    r"^(Aperio Image Library v[\w.]+"
    r"|\d+x\d+( \[\d+,\d+ \d+x\d+\])?( \(\d+x\d+\))?( -> \d+x\d+)?( -)?( [A-Z0-9/]+)?( Q=\d+)?"
    r"|label \d+x\d+|macro \d+x\d+)\s*$"
)
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_DICM_OFFSET = 128
WSI_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.77.1.6"
#: Private tags kept in TIFF copies: the ICC profile only (colour, not identity).
_ICC_PROFILE_TAG = 34675


def svs_safe_fields(description: str) -> dict[str, str]:
    """The allow-listed ``key = value`` fields of an Aperio ImageDescription."""
    fields: dict[str, str] = {}
    for part in description.split("|")[1:]:
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if sep and key in SVS_SAFE_KEYS and re.fullmatch(r"[-+0-9.eE]+", value):
            fields[key] = value
    return fields


def svs_safe_description(description: str) -> str:
    """An Aperio ImageDescription with only the library header lines and allow-listed fields."""
    header = description.split("|", 1)[0]
    kept = []
    for segment in header.split(";"):
        lines = [ln.strip() for ln in re.split(r"\r?\n", segment) if ln.strip()]
        lines = [ln for ln in lines if _SVS_HEADER_LINE.match(ln)]
        if lines:
            kept.append("\r\n".join(lines))
    text = ";".join(kept)
    if not text.startswith("Aperio"):
        text = "Aperio Image Library (de-identified)"
    fields = svs_safe_fields(description)
    return "|".join([text, *(f"{key} = {value}" for key, value in fields.items())])


def deidentified_slide_copy(path: Path, out_dir: Path) -> Path:
    """Write a de-identified copy of an SVS or TIFF slide into ``out_dir``; returns its path.

    The copy is named ``slide.svs`` or ``slide.tiff`` (the original name may identify the
    patient). Raises ``InputError`` for files that are not TIFF-based slides.
    """
    path = Path(path)
    try:
        with path.open("rb") as handle:
            head = handle.read(_DICM_OFFSET + 4)
    except OSError as exc:
        raise InputError(f"{path.name} cannot be opened: {exc.strerror or exc}.") from exc
    if path.is_dir() or head[_DICM_OFFSET : _DICM_OFFSET + 4] == b"DICM":
        raise InputError(
            f"{path.name} is a DICOM slide: its label and overview instances are removed by "
            "copy_dicom_wsi_without_labels and the rest by the DICOM de-identification."
        )
    if head[:4] not in _TIFF_MAGIC:
        raise InputError(f"{path.name}: not a TIFF or SVS slide, so it cannot be copied as one.")
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        return _copy_tiff(path, out_dir)
    except InputError:
        raise
    except Exception as exc:
        reason = str(exc).strip().rstrip(".") or type(exc).__name__
        raise InputError(f"{path.name}: cannot make a de-identified copy: {reason}.") from exc


def _copy_tiff(path: Path, out_dir: Path) -> Path:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        if not tif.series:
            raise InputError(f"{path.name}: the TIFF file contains no image.")
        is_svs = bool(tif.is_svs)
        pages: list[Any] = [level.keyframe for level in tif.series[0].levels]
        if is_svs:
            thumbnail = [s for s in tif.series if s.name.lower() == "thumbnail"]
            if thumbnail:  # keep the SVS layout: baseline, thumbnail, further levels
                pages.insert(1, thumbnail[0].keyframe)
        target = out_dir / ("slide.svs" if is_svs else "slide.tiff")
        partial = target.with_name(target.name + ".partial")
        size = path.stat().st_size
        with (
            path.open("rb") as source,
            tifffile.TiffWriter(partial, bigtiff=tif.is_bigtiff or size > 3_500_000_000) as writer,
        ):
            for number, page in enumerate(pages):
                _write_page(writer, source, page, number, is_svs)
    partial.replace(target)
    return target


def _segments(source: Any, page: Any) -> Iterator[bytes]:
    for offset, count in zip(page.dataoffsets, page.databytecounts, strict=True):
        if count == 0:
            yield b""
            continue
        source.seek(offset)
        data = source.read(count)
        if len(data) != count:
            raise InputError(f"tile data at byte {offset:,} is truncated; the file is damaged")
        yield data


def _write_page(writer: Any, source: Any, page: Any, number: int, is_svs: bool) -> None:
    """Write ``page`` with its compressed segments as they are and only the decoding tags."""
    layout: dict[str, Any]
    if page.is_tiled:
        layout = {"tile": (page.tilelength, page.tilewidth)}
    else:
        layout = {"rowsperstrip": page.rowsperstrip}
    codec: dict[str, Any] = {}
    if page.compression == 7:  # JPEG: keep the stored colour space and sampling tags
        codec = {
            "jpegtables": page.jpegtables,
            "subsampling": tuple(page.subsampling) if page.subsampling else (1, 1),
            "compressionargs": {"outcolorspace": page.photometric},
        }
    extratags = []
    icc = page.tags.get(_ICC_PROFILE_TAG)
    if icc is not None:
        extratags.append((_ICC_PROFILE_TAG, 7, len(icc.value), icc.value, True))
    resolution = None
    if "XResolution" in page.tags and "YResolution" in page.tags:
        resolution = (page.tags["XResolution"].value, page.tags["YResolution"].value)
    description = svs_safe_description(page.description) if is_svs else None
    writer.write(
        _segments(source, page),
        shape=page.shape,
        dtype=page.dtype,
        photometric=page.photometric,
        planarconfig=page.planarconfig,
        compression=page.compression,
        predictor=page.predictor if page.predictor != 1 else None,
        extrasamples=page.extrasamples or None,
        description=description,
        resolution=resolution,
        resolutionunit=page.resolutionunit if resolution else None,
        subfiletype=0 if (number == 0 or is_svs) else 1,
        software=False,
        datetime=False,
        metadata=None,
        extratags=extratags,
        **layout,
        **codec,
    )


@dataclass(frozen=True, slots=True)
class DicomWsiCopy:
    """What ``copy_dicom_wsi_without_labels`` wrote and what it left out (source paths)."""

    folder: Path
    copied: tuple[Path, ...]
    dropped: tuple[Path, ...]  # LABEL and OVERVIEW instances
    ignored: tuple[Path, ...]  # files that are not whole-slide DICOM instances


def copy_dicom_wsi_without_labels(source: Path, out_dir: Path) -> DicomWsiCopy:
    """Copy a DICOM WSI (folder or one file) to ``out_dir/slide`` without LABEL/OVERVIEW.

    Copies are named ``instance-0001.dcm`` and so on (source names may identify the patient).
    The copied instances are unchanged: apply the Annex E de-identification to each.
    """
    import pydicom

    source = Path(source)
    files = sorted(p for p in source.iterdir() if p.is_file()) if source.is_dir() else [source]
    folder = out_dir / "slide"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    copied: list[Path] = []
    dropped: list[Path] = []
    ignored: list[Path] = []
    for file in files:
        try:
            header = pydicom.dcmread(
                file, stop_before_pixels=True, specific_tags=["SOPClassUID", "ImageType"]
            )
        except Exception:
            ignored.append(file)
            continue
        if str(header.get("SOPClassUID", "")) != WSI_SOP_CLASS_UID:
            ignored.append(file)
            continue
        image_type = [str(v).upper() for v in header.get("ImageType", [])]
        flavour = image_type[2] if len(image_type) > 2 else ""
        if flavour in ("LABEL", "OVERVIEW"):
            dropped.append(file)
            continue
        target = folder / f"instance-{len(copied) + 1:04d}.dcm"
        shutil.copyfile(file, target)
        copied.append(file)
    if not copied:
        raise InputError(f"{source.name}: contains no whole-slide image levels to copy.")
    return DicomWsiCopy(folder, tuple(copied), tuple(dropped), tuple(ignored))
