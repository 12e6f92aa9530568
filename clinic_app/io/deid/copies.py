"""De-identified copies of input files, ready to be stored (run in the capped child process).

One entry point, ``deidentified_copy``, picks the method by the file's format:

- DICOM (images, ECG waveforms, one-file whole slides): PS3.15 Annex E with keyed pseudonyms
  and per-patient date shifts (``deid.dicom``);
- a DICOM whole slide as a folder: label and overview instances dropped, each remaining
  instance de-identified, all kept in one plain zip (``io.archives``);
- SVS and TIFF: label and macro images and identifying vendor metadata removed, tiles copied
  bit for bit (``deid.wsi``);
- WFDB: the record's files in one plain zip, renamed ``record``, free-text header comments
  scrubbed, structured ones (age, sex, Dx codes) kept, the base date shifted;
- PNG and JPEG: the decoded pixels as a PNG, so EXIF, comments and other metadata are gone.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from clinic_app.domain.errors import InputError
from clinic_app.io.archives import (
    DICOM_WSI_ARCHIVE_SUFFIX,
    WFDB_ARCHIVE_SUFFIX,
    WFDB_RECORD_NAME,
)
from clinic_app.io.limits import DEFAULT_LIMITS, ReadLimits
from clinic_app.io.readers import FileFormat, sniff, wfdb_header_for


@dataclass(frozen=True, slots=True)
class DeidOptions:
    """What de-identification needs to know about the patient, as plain values."""

    dicom_secret: bytes  # keys the DICOM pseudonyms and UID mapping
    patient_key: str  # the case's patient pseudonym: same patient, same DICOM pseudonym
    shift_days: int  # this patient's date shift
    allow_burned_in_annotation: bool = False


@dataclass(frozen=True, slots=True)
class DeidCopy:
    path: Path
    media_type: str


def deidentified_copy(
    path: Path, work: Path, options: DeidOptions, limits: ReadLimits = DEFAULT_LIMITS
) -> DeidCopy:
    """Write the de-identified copy of ``path`` into the folder ``work``."""
    file_format = sniff(path)
    if file_format is FileFormat.WFDB:
        header = wfdb_header_for(path)
        assert header is not None
        return DeidCopy(_wfdb_archive(header, work, options.shift_days), "application/zip")
    if file_format is FileFormat.DICOM:
        target = work / "deidentified.dcm"
        _deidentify_dicom(path, target, options, options.allow_burned_in_annotation)
        return DeidCopy(target, "application/dicom")
    if file_format is FileFormat.FOLDER:
        return DeidCopy(_dicom_wsi_archive(path, work, options), "application/zip")
    if file_format is FileFormat.TIFF:
        from clinic_app.io.deid.wsi import deidentified_slide_copy

        return DeidCopy(deidentified_slide_copy(path, work), "image/tiff")
    if file_format in (FileFormat.PNG, FileFormat.JPEG):
        return DeidCopy(_pixels_only_png(path, work, limits), "image/png")
    raise InputError(f"{path.name}: a {file_format.value} file is not stored as a case input.")


def _deidentify_dicom(
    source: Path, target: Path, options: DeidOptions, allow_burned_in: bool
) -> None:
    from clinic_app.io.deid.dicom import DicomDeidentifier, deidentify_file

    deidentify_file(
        source,
        target,
        DicomDeidentifier(options.dicom_secret),
        patient_key=options.patient_key,
        shift_days=options.shift_days,
        refuse_burned_in=not allow_burned_in,
    )


def _dicom_wsi_archive(folder: Path, work: Path, options: DeidOptions) -> Path:
    """Label and overview instances dropped, the rest de-identified, in one plain zip."""
    from clinic_app.io.deid.wsi import copy_dicom_wsi_without_labels

    copies = copy_dicom_wsi_without_labels(folder, work / "copied")
    archive = work / f"slide{DICOM_WSI_ARCHIVE_SUFFIX}"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as out:
        for instance in sorted(copies.folder.iterdir()):
            target = work / instance.name
            # Tiles of a slide level carry no burned-in text; the label images were dropped.
            _deidentify_dicom(instance, target, options, allow_burned_in=True)
            out.write(target, instance.name)
            target.unlink()
    return archive


# -- WFDB ------------------------------------------------------------------------------------
#: Header comments that are structured clinical fields (PhysioNet/CinC style), kept as they
#: are apart from ages over 89; every other comment is free text and is scrubbed.
_STRUCTURED_COMMENT = re.compile(r"^\s*(Dx|Sex|Rx|Hx|Sx)\s*:\s*[\w ,.;/+-]*$", re.IGNORECASE)
_AGE_COMMENT = re.compile(r"^(\s*Age\s*:\s*)(\d+|NaN|unknown)?\s*$", re.IGNORECASE)
_WFDB_DATE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$")


def scrub_wfdb_comment(comment: str, shift_days: int) -> str:
    """One header comment (without its '#') de-identified."""
    return scrub_wfdb_comments([comment], shift_days)[0]


def scrub_wfdb_comments(comments: list[str], shift_days: int) -> list[str]:
    """Header comments or metadata values de-identified: structured ones (Dx, Sex) kept, ages
    over 89 as "90+", free text scrubbed with one run of the tagger for all of them."""
    from clinic_app.io.deid.text import scrub_texts

    out: list[str | None] = []
    free: list[int] = []
    for comment in comments:
        age = _AGE_COMMENT.match(comment)
        if _STRUCTURED_COMMENT.match(comment):
            out.append(comment)
        elif age:
            value = age.group(2) or ""
            out.append(age.group(1) + ("90+" if value.isdigit() and int(value) > 89 else value))
        else:
            out.append(None)
            free.append(len(out) - 1)
    scrubbed = scrub_texts([comments[i] for i in free], date_shift_days=shift_days)
    for index, (text, _) in zip(free, scrubbed, strict=True):
        out[index] = text
    return [text if text is not None else "" for text in out]


def _wfdb_archive(header: Path, work: Path, shift_days: int) -> Path:
    """The record's files in one plain zip, renamed ``record``, its header de-identified."""
    lines = header.read_text(encoding="latin-1").splitlines()
    files = _wfdb_record_files(header, lines)
    archive = work / f"{WFDB_RECORD_NAME}{WFDB_ARCHIVE_SUFFIX}"
    renames = {
        name: WFDB_RECORD_NAME + Path(name).suffix
        for name in files
        if Path(name).stem == header.stem
    }
    record_index = _record_line_index(lines)
    new_lines: list[str] = []
    for index, line in enumerate(lines):
        fields = line.split()
        if line.startswith("#"):
            new_lines.append("#" + scrub_wfdb_comment(line[1:], shift_days))
        elif index == record_index:
            new_lines.append(_deidentified_record_line(line, shift_days))
        elif fields and fields[0] in renames:
            new_lines.append(line.replace(fields[0], renames[fields[0]], 1))
        else:
            new_lines.append(line)
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as out:
        out.writestr(f"{WFDB_RECORD_NAME}.hea", "\n".join(new_lines) + "\n")
        for name in files:
            source = header.parent / name
            if source.suffix.lower() == ".hea" and source.stem == header.stem:
                continue
            out.write(source, renames.get(name, name))
    return archive


def _record_line_index(lines: list[str]) -> int:
    for index, line in enumerate(lines):
        if line.strip() and not line.startswith("#"):
            return index
    raise InputError("The WFDB header has no record line.")


def _deidentified_record_line(line: str, shift_days: int) -> str:
    """The record line with the record name replaced and the base date shifted."""
    parts = line.split()
    _, _, segments = parts[0].partition("/")
    parts[0] = WFDB_RECORD_NAME + (f"/{segments}" if segments else "")
    for position, value in enumerate(parts):
        match = _WFDB_DATE.match(value)
        if match and position >= 4:
            day, month, year = (int(g) for g in match.groups())
            try:
                shifted = date(year, month, day) + timedelta(days=shift_days)
            except (ValueError, OverflowError):
                parts[position] = ""
                continue
            parts[position] = f"{shifted.day:02d}/{shifted.month:02d}/{shifted.year:04d}"
    return " ".join(part for part in parts if part)


def _wfdb_record_files(header: Path, lines: list[str], depth: int = 0) -> list[str]:
    """Signal, segment and annotation files of the record, each checked to exist beside it."""
    folder = header.parent
    names: list[str] = []
    record_index = _record_line_index(lines)
    multi_segment = "/" in lines[record_index].split()[0]
    for line in lines[record_index + 1 :]:
        if not line.strip() or line.startswith("#"):
            continue
        first = line.split()[0]
        if first == "~" or first in names:
            continue
        if not multi_segment:
            names.append(first)
            continue
        if depth > 2 or "/" in first or "\\" in first:
            raise InputError(f"{header.name}: the segment name {first[:40]} is not valid.")
        names.append(f"{first}.hea")
        segment_header = folder / f"{first}.hea"
        if segment_header.is_file():
            segment_lines = segment_header.read_text(encoding="latin-1").splitlines()
            names.extend(_wfdb_record_files(segment_header, segment_lines, depth + 1))
    for candidate in sorted(folder.glob(f"{header.stem}.*")):
        if candidate.suffix.lower() in (".atr", ".qrs", ".ecg", ".ari", ".ann", ".xyz"):
            names.append(candidate.name)
    for name in names:
        if "/" in name or "\\" in name or not (folder / name).is_file():
            raise InputError(f"{header.name}: the record's file {name[:60]} is missing.")
    return list(dict.fromkeys(names))


def _pixels_only_png(path: Path, work: Path, limits: ReadLimits) -> Path:
    """A lossless PNG of the decoded pixels: EXIF, comments and other metadata are dropped."""
    from PIL import Image

    from clinic_app.io.slides import open_slide

    slide = open_slide(path, limits)
    try:
        level = slide.info.levels[0]
        pixels = slide.read_region(0, 0, 0, level.width, level.height)
    finally:
        slide.close()
    target = work / "image.png"
    Image.fromarray(pixels).save(target, format="PNG")
    return target
