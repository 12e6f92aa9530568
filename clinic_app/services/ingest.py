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
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from clinic_app.config.secrets import load_or_create_secret
from clinic_app.config.settings import Settings
from clinic_app.domain.cases import InputInfo, NoteInfo
from clinic_app.domain.errors import InputError, ReadOnlyCase
from clinic_app.domain.notes import ClinicalNote
from clinic_app.domain.records import Modality
from clinic_app.domain.signals import EcgRecording
from clinic_app.io.archives import (
    private_folder,
)
from clinic_app.io.deid.copies import DeidOptions, deidentified_copy
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
)
from clinic_app.io.sandbox import run_isolated
from clinic_app.services.cases import CaseService
from clinic_app.services.context import Actor

log = logging.getLogger(__name__)

DEID_KEY_FILENAME = "deidentification.key"
DEID_KEY_BYTES = 32


def read_limits(settings: Settings) -> ReadLimits:
    """The reading limits with this installation's timeout and memory for the child process."""
    return replace(
        DEFAULT_LIMITS,
        child_timeout_s=settings.read_timeout_s,
        child_memory_bytes=settings.read_memory_mb * 1024**2,
    )


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
        return cls(cases, secret, limits=read_limits(settings))

    # -- keys derived per patient ----------------------------------------------------------
    def _derived(self, purpose: str) -> bytes:
        return hmac.new(self._secret, purpose.encode(), hashlib.sha256).digest()

    def date_shift_days(self, patient_pseudonym: str) -> int:
        """Days every date of this patient moves by (the same for all their files and notes)."""
        from clinic_app.io.deid.text import date_shift_for

        return date_shift_for(patient_pseudonym.encode(), self._derived("date-shift"))

    def source_digest(self, files: Sequence[Path]) -> str:
        """Keyed HMAC-SHA256 of a source's original bytes (a file, or a WFDB record's or a
        series folder's files in a fixed order, each framed by its length), for batch import
        de-duplication. Keyed, never a plain sha256: see ``storage.orm.ImportedSource``."""
        mac = hmac.new(self._derived("source-digest"), b"files\0", hashlib.sha256)
        for file in files:
            mac.update(Path(file).stat().st_size.to_bytes(8, "big"))
            with Path(file).open("rb") as handle:
                while chunk := handle.read(1024 * 1024):
                    mac.update(chunk)
        return mac.hexdigest()

    def text_digest(self, kind: str, text: str) -> str:
        """Keyed HMAC-SHA256 of a short text such as an external case id, so the id is
        recognised on the next import without being stored."""
        message = kind.encode() + b"\0" + text.encode("utf-8")
        return hmac.new(self._derived("source-digest"), message, hashlib.sha256).hexdigest()

    # -- import -----------------------------------------------------------------------------
    def import_file(
        self,
        actor: Actor,
        case_uid: str,
        path: Path,
        *,
        allow_burned_in_annotation: bool = False,
        source_digest: str | None = None,
    ) -> ImportResult:
        """Read, de-identify and attach ``path`` to the case; InputError and no change if bad.

        ``source_digest`` (from :meth:`source_digest`) is recorded with the input, in its
        transaction, so a later batch import recognises the file."""
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
            return self._import_note(actor, case_uid, path, loaded, pseudonym, source_digest)
        options = DeidOptions(
            dicom_secret=self._derived("dicom"),
            patient_key=pseudonym,
            shift_days=self.date_shift_days(pseudonym),
            allow_burned_in_annotation=allow_burned_in_annotation,
        )
        with private_folder() as work:
            # De-identification parses the file again, so it too runs in the capped child.
            written = run_isolated(
                deidentified_copy, path, work, options, self.limits, path=path, limits=self.limits
            )
            copy, media_type = written.path, written.media_type
            check = read_input_isolated(copy, self.limits)
            if kind_of(check) is not kind:
                raise InputError(
                    f"{path.name}: the de-identified copy did not read back as the same kind of "
                    "input, so nothing was stored."
                )
            summary = describe(check)
            if "metadata" in summary:  # belt and braces: free text the formats let through
                summary["metadata"] = scrub_metadata(summary["metadata"], options.shift_days)
            info = self.cases.add_input(
                actor,
                case_uid,
                copy,
                modality=Modality.ECG if kind is InputKind.ECG else Modality.PATHOLOGY,
                media_type=media_type,
                metadata=summary,
                original_name=self._safe_name(path, kind, sniff(path)),
                source_digest=source_digest,
            )
        return ImportResult(path, kind, summary, input=info)

    def _import_note(
        self,
        actor: Actor,
        case_uid: str,
        path: Path,
        note: ClinicalNote,
        pseudonym: str,
        source_digest: str | None = None,
    ) -> ImportResult:
        from clinic_app.io.deid.text import scrub_text

        text, replaced = scrub_text(note.text, date_shift_days=self.date_shift_days(pseudonym))
        scrubbed = [
            {"start": r.start, "end": r.end, "category": r.category, "replacement": r.replacement}
            for r in replaced
        ]
        saved = self.cases.save_note(
            actor, case_uid, text, scrubbed=scrubbed, source_digest=source_digest
        )
        summary = describe(note) | {"scrubbed": len(scrubbed)}
        return ImportResult(path, InputKind.NOTE, summary, note=saved)

    def save_typed_note(self, actor: Actor, case_uid: str, text: str) -> ImportResult:
        """A note typed in the app: the same checks and scrubbing as a note file."""
        from clinic_app.io.notes import note_from_text

        note = note_from_text(text, source="typed")
        pseudonym = self.cases.get_case(actor, case_uid).summary.patient_pseudonym
        return self._import_note(actor, case_uid, Path("typed note"), note, pseudonym)

    @staticmethod
    def _safe_name(path: Path, kind: InputKind, file_format: FileFormat) -> str:
        """A neutral name for the case ("ecg-wfdb", "slide.svs"): file names often carry the
        patient's name or record number, and no scrubber finds those without context."""
        suffix = path.suffix.lower() if file_format is not FileFormat.FOLDER else ""
        if file_format is FileFormat.WFDB:
            return f"{kind.value}-wfdb"
        if file_format is FileFormat.FOLDER:
            return f"{kind.value}-dicom"
        return f"{kind.value}{suffix if len(suffix) <= 6 else ''}"


def load_stored(path: Path, limits: ReadLimits = DEFAULT_LIMITS) -> LoadedInput:
    """Read a verified stored input (de-identified and validated at import) in-process."""
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


#: Metadata keys whose values are structured and not identifying (codes, units, flags).
_SAFE_METADATA_KEYS = frozenset(
    {"dx_snomed", "sex", "units", "other_signals", "checksum_verified", "start_timezone"}
)


def scrub_metadata(value: Any, shift_days: int, key: str = "") -> Any:
    """Metadata with free text scrubbed (names, numbers, dates) and ages over 89 as "90+";
    structured fields such as SNOMED codes are kept. Every free-text value goes through the
    scrubber in one batch (one run of the learned tagger for the whole header)."""
    from clinic_app.io.deid.copies import scrub_wfdb_comments

    texts: list[str] = []

    def collect(item: Any, item_key: str) -> Any:
        """The structure with each free-text string replaced by its index in ``texts``."""
        if item_key in _SAFE_METADATA_KEYS:
            return _Kept(item)
        if item_key == "age" and isinstance(item, int | float) and item > 89:
            return _Kept("90+")
        if isinstance(item, dict):
            return {k: collect(v, str(k)) for k, v in item.items()}
        if isinstance(item, list | tuple):
            return [collect(v, item_key) for v in item]
        if isinstance(item, str):
            texts.append(item)
            return _Text(len(texts) - 1)
        return _Kept(item)

    shape = collect(value, key)
    scrubbed = scrub_wfdb_comments(texts, shift_days)

    def rebuild(item: Any) -> Any:
        if isinstance(item, _Text):
            return scrubbed[item.index]
        if isinstance(item, _Kept):
            return item.value
        if isinstance(item, dict):
            return {k: rebuild(v) for k, v in item.items()}
        return [rebuild(v) for v in item]

    return rebuild(shape)


@dataclass(frozen=True, slots=True)
class _Text:
    index: int


@dataclass(frozen=True, slots=True)
class _Kept:
    value: Any


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
