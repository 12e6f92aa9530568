"""One entry point for every input file: recognise it by content, read it, or say why not.

``read_input`` runs the right reader (pathology image or slide, ECG, note) and returns a
domain object; ``read_input_isolated`` does the same in a capped child process
(:mod:`clinic_app.io.sandbox`) and is what the app uses for files from outside.
The kind comes from the file's first bytes, not its name, so a renamed file is still read
correctly and a file that is not what it claims gets a clear error.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from clinic_app.domain.errors import InputError
from clinic_app.domain.notes import ClinicalNote
from clinic_app.domain.pathology import RgbArray, SlideInfo
from clinic_app.domain.signals import EcgRecording
from clinic_app.io.archives import extracted_archive, is_archive
from clinic_app.io.dicom_files import open_dataset
from clinic_app.io.limits import DEFAULT_LIMITS, ReadLimits

#: DICOM SOP classes read as ECG (PS3.4 Annex B): 12-lead, general and ambulatory ECG.
ECG_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.9.1.1": "12-lead ECG",
    "1.2.840.10008.5.1.4.1.1.9.1.2": "General ECG",
    "1.2.840.10008.5.1.4.1.1.9.1.3": "Ambulatory ECG",
}
WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"  # VL Whole Slide Microscopy Image Storage
WFDB_SIGNAL_SUFFIXES = (".dat", ".mat", ".flac", ".atr", ".qrs", ".ecg", ".ari", ".hea")
THUMBNAIL_SIZE = 512


class FileFormat(StrEnum):
    DICOM = "dicom"
    TIFF = "tiff"
    PNG = "png"
    JPEG = "jpeg"
    WFDB = "wfdb"
    TEXT = "text"
    FOLDER = "folder"


class InputKind(StrEnum):
    """What the file holds, which decides where it goes in a case."""

    SLIDE = "slide"  # multi-level: SVS, pyramidal TIFF, DICOM whole-slide
    IMAGE = "image"  # one level: PNG, JPEG, plain TIFF, a DICOM image
    ECG = "ecg"
    NOTE = "note"


@dataclass(frozen=True, slots=True)
class LoadedImage:
    """A pathology image or slide that opened and decoded; pixels are read later, in-process."""

    info: SlideInfo
    thumbnail: RgbArray
    file_format: FileFormat

    @property
    def kind(self) -> InputKind:
        whole_slide = self.info.kind in ("svs", "dicom-wsi") or len(self.info.levels) > 1
        return InputKind.SLIDE if whole_slide else InputKind.IMAGE


LoadedInput = LoadedImage | EcgRecording | ClinicalNote

_MAGIC: tuple[tuple[bytes, FileFormat], ...] = (
    (b"II*\x00", FileFormat.TIFF),
    (b"MM\x00*", FileFormat.TIFF),
    (b"II+\x00", FileFormat.TIFF),  # BigTIFF
    (b"MM\x00+", FileFormat.TIFF),
    (b"\x89PNG\r\n\x1a\n", FileFormat.PNG),
    (b"\xff\xd8\xff", FileFormat.JPEG),
)


def kind_of(loaded: LoadedInput) -> InputKind:
    if isinstance(loaded, LoadedImage):
        return loaded.kind
    if isinstance(loaded, EcgRecording):
        return InputKind.ECG
    return InputKind.NOTE


def wfdb_header_for(path: Path) -> Path | None:
    """The ``.hea`` header of a WFDB record, given the header or one of the record's files
    (a signal file the header names, or an annotation file of the record)."""
    if path.suffix.lower() == ".hea":
        return path
    header = path.with_suffix(".hea")
    if not header.is_file() or header == path:
        return None
    if path.suffix.lower() in WFDB_SIGNAL_SUFFIXES:
        return header
    try:
        with header.open("rb") as handle:
            text = handle.read(64 * 1024).decode("latin-1")
    except OSError:
        return None
    named = {line.split()[0] for line in text.splitlines() if line.strip() and line[0] != "#"}
    return header if path.name in named else None


def sniff(path: Path) -> FileFormat:
    """The file's format from its first bytes (and, for WFDB, its header next to it)."""
    if path.is_dir():
        return FileFormat.FOLDER
    if not path.exists():
        raise InputError(f"{path.name} does not exist ({path}).")
    if not path.is_file():
        raise InputError(f"{path.name} is not a regular file.")
    try:
        with path.open("rb") as handle:
            head = handle.read(132)
    except OSError as exc:
        raise InputError(f"{path.name} cannot be opened ({exc.strerror or exc}).") from exc
    if not head:
        raise InputError(f"{path.name} is empty (0 bytes).")
    if head[128:132] == b"DICM":
        return FileFormat.DICOM
    for magic, file_format in _MAGIC:
        if head.startswith(magic):
            return file_format
    if wfdb_header_for(path) is not None:
        return FileFormat.WFDB
    if _looks_like_implicit_dicom(head):
        return FileFormat.DICOM
    return FileFormat.TEXT


def _looks_like_implicit_dicom(head: bytes) -> bool:
    """A DICOM file without the 128-byte preamble starts with a (0008,xxxx) group element."""
    return len(head) >= 8 and head[0:2] == b"\x08\x00" and head[2:4] in (b"\x05\x00", b"\x16\x00")


def read_input(path: Path, limits: ReadLimits = DEFAULT_LIMITS) -> LoadedInput:
    """Read ``path`` in this process (use ``read_input_isolated`` for untrusted files)."""
    if is_archive(path) and path.is_file():
        with extracted_archive(path) as inner:
            return read_input(inner, limits)
    file_format = sniff(path)
    if file_format is FileFormat.WFDB:
        from clinic_app.io.ecg_wfdb import read_wfdb

        header = wfdb_header_for(path)
        assert header is not None
        return read_wfdb(header, limits)
    if file_format is FileFormat.DICOM:
        return _read_dicom(path, limits)
    if file_format is FileFormat.TEXT:
        from clinic_app.io.notes import read_note

        return read_note(path, limits)
    return _read_image(path, file_format, limits)


def _read_dicom(path: Path, limits: ReadLimits) -> LoadedInput:
    sop_class = dicom_sop_class(path)
    if sop_class in ECG_SOP_CLASSES:
        from clinic_app.io.ecg_dicom import read_dicom_ecg

        return read_dicom_ecg(path, limits)
    return _read_image(path, FileFormat.DICOM, limits)


def dicom_sop_class(path: Path) -> str:
    """The SOP Class UID from the file's header (pixel data is not read)."""
    try:
        dataset = open_dataset(
            path, stop_before_pixels=True, specific_tags=["SOPClassUID"], force=True
        )
        return str(dataset.get("SOPClassUID", ""))
    except InputError:
        raise
    except Exception as exc:  # the boundary: pydicom raises many kinds on a damaged header
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise InputError(
            f"{path.name} is not a readable DICOM file: its header is damaged ({reason})."
        ) from exc


def _read_image(path: Path, file_format: FileFormat, limits: ReadLimits) -> LoadedImage:
    from clinic_app.io.slides import open_slide

    slide = open_slide(path, limits)
    try:
        return LoadedImage(slide.info, slide.thumbnail(THUMBNAIL_SIZE), file_format)
    finally:
        slide.close()


def read_input_isolated(
    path: Path, limits: ReadLimits = DEFAULT_LIMITS, **kwargs: Any
) -> LoadedInput:
    """``read_input`` in a child process with a memory cap and a timeout (see sandbox)."""
    from clinic_app.io.sandbox import run_isolated

    return run_isolated(read_input, path, limits, path=path, limits=limits, **kwargs)
