"""Import files into a case: read them safely, de-identify them, store them content-addressed.

The order matters and never changes:

1. the file is read in a capped child process (``io.readers.read_input_isolated``), so a
   damaged or hostile file ends in one ``InputError`` and never in a crash or a hang;
2. a de-identified copy is written in a private temporary folder (DICOM: PS3.15 Annex E with
   keyed pseudonyms; slides: label and macro images and identifying vendor metadata removed;
   WFDB: header comments and dates scrubbed; plain images: pixels only, no metadata; notes:
   names, dates, numbers scrubbed);
3. the copy is read back in the child process (what is stored must open);
4. only then is it copied into the case store under its sha256 and recorded, in one audited
   transaction. When any step fails nothing is stored and the case is unchanged.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from clinic_app.config.secrets import load_or_create_secret
from clinic_app.config.settings import Settings
from clinic_app.domain.cases import InputInfo, NoteInfo
from clinic_app.domain.errors import InputError, ReadOnlyCase
from clinic_app.domain.notes import ClinicalNote
from clinic_app.domain.records import Modality
from clinic_app.domain.signals import EcgRecording
from clinic_app.io.limits import DEFAULT_LIMITS, ReadLimits
from clinic_app.io.readers import (
    FileFormat,
    InputKind,
    LoadedImage,
    LoadedInput,
    kind_of,
    read_input,
    read_input_isolated,
    sniff,
    wfdb_header_for,
)
from clinic_app.services.cases import CaseService
from clinic_app.services.context import Actor

log = logging.getLogger(__name__)

DEID_KEY_FILENAME = "deidentification.key"
DEID_KEY_BYTES = 32
WFDB_ARCHIVE_SUFFIX = ".wfdb.zip"
_WFDB_RECORD = "record"


@dataclass(frozen=True, slots=True)
class ImportResult:
    """One imported file: what it became in the case (an input or a note version)."""

    source: Path
    kind: InputKind
    summary: dict[str, Any]
    input: InputInfo | None = None
    note: NoteInfo | None = None


class IngestService:
    """Reads, de-identifies and stores the files a clinician adds to a case."""

    def __init__(
        self, cases: CaseService, deid_secret: bytes, *, limits: ReadLimits = DEFAULT_LIMITS
    ) -> None:
        if len(deid_secret) < 16:
            raise ValueError("the de-identification secret must have at least 16 bytes")
        self.cases = cases
        self.limits = limits
        self._secret = deid_secret

    @classmethod
    def from_settings(cls, cases: CaseService, settings: Settings) -> IngestService:
        secret = load_or_create_secret(
            settings.keys_dir / DEID_KEY_FILENAME,
            DEID_KEY_BYTES,
            "de-identification key",
            "new imports of known patients get new pseudonyms and date shifts",
        )
        return cls(cases, secret)

    # -- keys derived per patient ----------------------------------------------------------
    def _derived(self, purpose: str) -> bytes:
        return hmac.new(self._secret, purpose.encode(), hashlib.sha256).digest()

    def date_shift_days(self, patient_pseudonym: str) -> int:
        """Days every date of this patient moves by (the same for all their files and notes)."""
        from clinic_app.io.deid.text import date_shift_for

        return date_shift_for(patient_pseudonym.encode(), self._derived("date-shift"))

    # -- import -----------------------------------------------------------------------------
    def import_file(
        self,
        actor: Actor,
        case_uid: str,
        path: Path,
        *,
        allow_burned_in_annotation: bool = False,
    ) -> ImportResult:
        """Read, de-identify and attach ``path`` to the case; InputError and no change if bad."""
        path = Path(path)
        detail = self.cases.get_case(actor, case_uid)
        if detail.summary.status.read_only:
            # Fail before the expensive parse; add_input checks again inside its transaction.
            raise ReadOnlyCase(
                f"Case {case_uid} is signed and cannot be changed.",
                hint="Amend it to create a new version.",
            )
        pseudonym = detail.summary.patient_pseudonym
        loaded = read_input_isolated(path, self.limits)
        kind = kind_of(loaded)
        if isinstance(loaded, ClinicalNote):
            return self._import_note(actor, case_uid, path, loaded, pseudonym)
        with _private_folder() as work:
            copy, media_type = self._deidentified_copy(
                path, loaded, work, pseudonym, allow_burned_in_annotation
            )
            check = read_input_isolated(copy, self.limits)
            if kind_of(check) is not kind:
                raise InputError(
                    f"{path.name}: the de-identified copy did not read back as the same kind of "
                    "input, so nothing was stored."
                )
            summary = describe(check)
            info = self.cases.add_input(
                actor,
                case_uid,
                copy,
                modality=Modality.ECG if kind is InputKind.ECG else Modality.PATHOLOGY,
                media_type=media_type,
                metadata=summary,
                original_name=self._safe_name(path, pseudonym),
            )
        return ImportResult(path, kind, summary, input=info)

    def _import_note(
        self, actor: Actor, case_uid: str, path: Path, note: ClinicalNote, pseudonym: str
    ) -> ImportResult:
        from clinic_app.io.deid.text import scrub_text

        text, replaced = scrub_text(note.text, date_shift_days=self.date_shift_days(pseudonym))
        scrubbed = [
            {"start": r.start, "end": r.end, "category": r.category, "replacement": r.replacement}
            for r in replaced
        ]
        saved = self.cases.save_note(actor, case_uid, text, scrubbed=scrubbed)
        summary = describe(note) | {"scrubbed": len(scrubbed)}
        return ImportResult(path, InputKind.NOTE, summary, note=saved)

    def _safe_name(self, path: Path, pseudonym: str) -> str:
        """The file name as shown in the case, with anything that looks identifying scrubbed."""
        from clinic_app.io.deid.text import scrub_text

        name, _ = scrub_text(path.name, date_shift_days=self.date_shift_days(pseudonym))
        return name

    def _deidentified_copy(
        self,
        path: Path,
        loaded: LoadedInput,
        work: Path,
        pseudonym: str,
        allow_burned_in: bool,
    ) -> tuple[Path, str]:
        file_format = sniff(path)
        shift = self.date_shift_days(pseudonym)
        if file_format is FileFormat.WFDB:
            assert isinstance(loaded, EcgRecording)
            header = wfdb_header_for(path)
            assert header is not None
            return self._wfdb_archive(header, work, shift), "application/x-wfdb+zip"
        if file_format is FileFormat.DICOM:
            from clinic_app.io.deid.dicom import DicomDeidentifier, deidentify_file

            target = work / "deidentified.dcm"
            deidentify_file(
                path,
                target,
                DicomDeidentifier(self._derived("dicom")),
                patient_key=pseudonym,
                shift_days=shift,
                refuse_burned_in=not allow_burned_in,
            )
            return target, "application/dicom"
        assert isinstance(loaded, LoadedImage)
        if loaded.kind is InputKind.SLIDE or file_format is FileFormat.TIFF:
            from clinic_app.io.deid.wsi import deidentified_slide_copy

            copy = deidentified_slide_copy(path, work)
            return copy, "image/tiff"
        return _pixels_only_png(path, work, self.limits), "image/png"

    def _wfdb_archive(self, header: Path, work: Path, shift_days: int) -> Path:
        """The record's files in one uncompressed zip, renamed ``record``, header scrubbed."""
        from clinic_app.io.deid.text import scrub_text

        lines = header.read_text(encoding="latin-1").splitlines()
        files = _wfdb_record_files(header, lines)
        archive = work / f"{_WFDB_RECORD}{WFDB_ARCHIVE_SUFFIX}"
        renames = {
            name: _WFDB_RECORD + Path(name).suffix
            for name in files
            if Path(name).stem == header.stem
        }
        new_lines: list[str] = []
        for index, line in enumerate(lines):
            if line.startswith("#"):
                text, _ = scrub_text(line[1:], date_shift_days=shift_days)
                new_lines.append("#" + text)
            elif index == _record_line_index(lines):
                new_lines.append(_deidentified_record_line(line, shift_days))
            elif line.split() and line.split()[0] in renames:
                first, _, rest = line.partition(line.split()[0])
                new_lines.append(first + renames[line.split()[0]] + rest)
            else:
                new_lines.append(line)
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as out:
            out.writestr(f"{_WFDB_RECORD}.hea", "\n".join(new_lines) + "\n")
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


_WFDB_DATE = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})$")


def _deidentified_record_line(line: str, shift_days: int) -> str:
    """The record line with its record name replaced and its base date shifted."""
    parts = line.split()
    _, _, segments = parts[0].partition("/")
    parts[0] = _WFDB_RECORD + (f"/{segments}" if segments else "")
    for position, value in enumerate(parts):
        match = _WFDB_DATE.match(value)
        if match and position >= 4:
            day, month, year = (int(g) for g in match.groups())
            try:
                shifted = date(year, month, day) + timedelta(days=shift_days)
            except ValueError:
                parts[position] = ""
                continue
            parts[position] = f"{shifted.day:02d}/{shifted.month:02d}/{shifted.year:04d}"
    return " ".join(part for part in parts if part)


def _wfdb_record_files(header: Path, lines: list[str]) -> list[str]:
    """Signal, segment and annotation files of the record, each checked to exist beside it."""
    folder = header.parent
    names: list[str] = []
    record_index = _record_line_index(lines)
    record_fields = lines[record_index].split()
    multi_segment = "/" in record_fields[0]
    for line in lines[record_index + 1 :]:
        if not line.strip() or line.startswith("#"):
            continue
        first = line.split()[0]
        if multi_segment:
            if first != "~":
                names.append(f"{first}.hea")
                segment_header = folder / f"{first}.hea"
                if segment_header.is_file():
                    segment_lines = segment_header.read_text(encoding="latin-1").splitlines()
                    names.extend(_wfdb_record_files(segment_header, segment_lines))
        elif first != "~" and first not in names:
            names.append(first)
    for candidate in sorted(folder.glob(f"{header.stem}.*")):
        if candidate.suffix.lower() in (".atr", ".qrs", ".ecg", ".ari", ".ann", ".xyz"):
            names.append(candidate.name)
    for name in names:
        if not (folder / name).is_file():
            raise InputError(f"{header.name}: the record's file {name} is missing.")
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
    Image.fromarray(pixels).save(target, format="PNG", optimize=False)
    return target


@contextmanager
def _private_folder() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="clinicfusion-import-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def extracted_wfdb(archive: Path) -> Iterator[Path]:
    """The header path of a stored WFDB archive, unpacked in a private temporary folder."""
    with _private_folder() as folder, zipfile.ZipFile(archive) as bundle:
        for member in bundle.namelist():
            if "/" in member or "\\" in member or member.startswith("."):
                raise InputError(f"The stored ECG archive {archive.name} is not valid.")
        bundle.extractall(folder)
        yield folder / f"{_WFDB_RECORD}.hea"


def load_stored(info: InputInfo, path: Path, limits: ReadLimits = DEFAULT_LIMITS) -> LoadedInput:
    """Read a verified stored input (already de-identified and validated at import)."""
    if path.name.endswith(WFDB_ARCHIVE_SUFFIX):
        with extracted_wfdb(path) as header:
            return read_input(header, limits)
    return read_input(path, limits)


def describe(loaded: LoadedInput) -> dict[str, Any]:
    """A JSON-ready summary of what was read (for the case record, `inspect` and the GUI)."""
    if isinstance(loaded, LoadedImage):
        info = loaded.info
        return {
            "kind": loaded.kind.value,
            "format": info.kind,
            "width": info.dimensions[0],
            "height": info.dimensions[1],
            "levels": len(info.levels),
            "level_dimensions": [[lv.width, lv.height] for lv in info.levels],
            "microns_per_pixel": list(info.microns_per_pixel) if info.microns_per_pixel else None,
            "objective_power": info.objective_power,
            "associated_images": list(info.associated_images),
            "grayscale": info.grayscale,
            "metadata": _jsonable(info.metadata),
        }
    if isinstance(loaded, EcgRecording):
        return {
            "kind": InputKind.ECG.value,
            "leads": list(loaded.lead_names),
            "sampling_rate_hz": loaded.sampling_rate_hz,
            "duration_s": round(loaded.duration_s, 3),
            "samples": int(loaded.samples.shape[1]),
            "units": loaded.units,
            "annotations": len(loaded.annotations),
            "metadata": _jsonable(loaded.metadata),
        }
    return {
        "kind": InputKind.NOTE.value,
        "characters": len(loaded.text),
        "encoding": loaded.encoding,
        "replaced_bytes": loaded.replaced_bytes,
    }


def _jsonable(value: Any) -> Any:
    """Metadata as JSON types (numpy scalars, tuples, dates become numbers, lists, strings)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if hasattr(value, "item"):
        return _jsonable(value.item())
    return str(value)


def scrub_metadata(value: Any, shift_days: int) -> Any:
    """Free text anywhere in metadata with names, numbers and dates scrubbed (for display)."""
    from clinic_app.io.deid.text import scrub_text

    if isinstance(value, dict):
        return {k: scrub_metadata(v, shift_days) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_metadata(v, shift_days) for v in value]
    if isinstance(value, str):
        return scrub_text(value, date_shift_days=shift_days)[0]
    return value


@dataclass(frozen=True, slots=True)
class Inspection:
    """What ``clinic-app inspect`` says about one file: a summary, or the clear error."""

    path: Path
    summary: dict[str, Any] | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None


def inspect_files(paths: list[Path], limits: ReadLimits = DEFAULT_LIMITS) -> list[Inspection]:
    """Read each file in the capped child process and summarise it, de-identified.

    Free text in the metadata is scrubbed; dates move by one random number of days for this
    run (a file is never attributed to a patient here, so no stable shift is needed).
    """
    import secrets

    shift = secrets.choice([d for d in range(-365, 366) if d != 0])
    results: list[Inspection] = []
    for path in paths:
        try:
            loaded = read_input_isolated(Path(path), limits)
        except InputError as exc:
            results.append(Inspection(Path(path), None, str(exc)))
            continue
        summary = describe(loaded)
        if "metadata" in summary:
            summary["metadata"] = scrub_metadata(summary["metadata"], shift)
        results.append(Inspection(Path(path), summary, None))
    return results
