"""Batch import: many cases at once from a folder (one sub-folder per case) or a manifest.

Two steps, so the GUI can show what will happen before anything is stored:

* :func:`plan_import` reads the folder or the manifest (CSV, JSON array or JSON Lines) and
  nothing else: no database, no file contents. Every row or folder that cannot be planned
  becomes an :class:`ImportProblem` naming the file, line and column; a case with any problem
  is left out whole, so a fixed manifest imports it complete on the next run.
* :func:`run_import` imports the plan case by case through ``IngestService.import_file`` (each
  file read in the capped child process, de-identified, stored, audited). A bad file is
  reported and the others go on; ``cancel`` is honoured between files (what is done stays).

De-duplication: each source's keyed digest (HMAC-SHA256 of its original bytes; a WFDB record's
header and signal files, a series folder's files) is stored in ``imported_sources`` in the same
transaction as the input it became, so a source already imported, or listed twice, is reported
as a duplicate and never stored twice. Re-running an import changes nothing.

External case ids (often accession numbers) are never stored in clear: the case keeps a keyed
digest of the id (``imported_sources`` kind ``"case"``), so the next import of the same id
adds to the same case, and the title defaults to "Imported <date>". The id appears in clear only
in the import report the operator asked for.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import select

from clinic_app.domain.errors import ClinicError, InputError
from clinic_app.domain.permissions import Permission
from clinic_app.domain.records import AuditAction
from clinic_app.domain.signals import VITAL_RANGES, Vitals
from clinic_app.io.readers import WFDB_SIGNAL_SUFFIXES, read_input_isolated
from clinic_app.services.authorization import authorize
from clinic_app.services.cases import CaseService
from clinic_app.services.context import Actor, record_audit
from clinic_app.services.identifiers import normalise_identifier
from clinic_app.services.ingest import IngestService
from clinic_app.services.vitals import (
    FIELDS_BY_NAME,
    VitalsInputError,
    parse_demographics,
    parse_vitals,
)
from clinic_app.storage.orm import Case, ImportedSource, VitalSigns

log = logging.getLogger(__name__)

#: Manifest columns of the case itself; ``case_id`` is required.
CASE_COLUMNS = ("case_id", "title", "patient_id", "birth_year", "age_years", "sex")
#: Manifest columns naming files (relative to the manifest's folder).
FILE_COLUMNS = ("image", "ecg", "note")
#: Vital-sign columns (the case form's field names), or one ``vitals`` column of JSON.
VITAL_COLUMNS = (*FIELDS_BY_NAME, "blood_pressure", "temperature_unit", "measured_at")
MANIFEST_COLUMNS = frozenset((*CASE_COLUMNS, *FILE_COLUMNS, *VITAL_COLUMNS, "vitals"))
MANIFEST_SUFFIXES = (".csv", ".json", ".jsonl", ".ndjson")
#: Files in a case folder with a meaning of their own (matched case-insensitively).
VITALS_FILES = ("vitals.json", "vitals.csv")
CASE_FILE = "case.json"
MAX_MANIFEST_BYTES = 64 * 1024**2
MAX_CASE_ID_CHARS = 128
_ANNOTATION_SUFFIXES = (".atr", ".qrs", ".ecg", ".ari", ".ann")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# -- the plan ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ImportProblem:
    """Something that cannot be planned: the file, line (or entry) and column, and why."""

    source: Path
    message: str
    line: int | None = None
    column: str | None = None
    case_id: str | None = None

    @property
    def where(self) -> str:
        parts = [str(self.source)]
        if self.line is not None:
            parts.append(f"line {self.line}")
        if self.column:
            parts.append(f"column {self.column}")
        return ", ".join(parts)

    def describe(self) -> str:
        return f"{self.where}: {self.message}"

    def __str__(self) -> str:
        return self.describe()

    def to_json(self) -> dict[str, Any]:
        return {
            "source": str(self.source),
            "line": self.line,
            "column": self.column,
            "case_id": self.case_id,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class PlannedInput:
    """One source to import: ``path`` is what the reader opens (a file, a WFDB header, a series
    folder); ``files`` are the original files whose bytes make its digest."""

    path: Path
    files: tuple[Path, ...]
    origin: str  # "case folder A" or "manifest.csv line 4, column ecg"


@dataclass(frozen=True, slots=True)
class PlannedVitals:
    """One set of vital signs, already parsed into stored units."""

    vitals: Vitals
    origin: str


@dataclass(frozen=True, slots=True)
class PlannedCase:
    """A case to create (or add to, when its external id was imported before)."""

    external_id: str
    inputs: tuple[PlannedInput, ...]
    vitals: tuple[PlannedVitals, ...] = ()
    title: str | None = None
    patient_id: str | None = None
    birth_year: int | None = None
    sex: str | None = None
    origin: str = ""

    @property
    def item_count(self) -> int:
        return len(self.inputs) + len(self.vitals)

    @property
    def case_id(self) -> str:
        """The external case id (the same as ``external_id``)."""
        return self.external_id

    @property
    def files(self) -> tuple[Path, ...]:
        """What will be read, one path per input (a WFDB record by its header)."""
        return tuple(source.path for source in self.inputs)


@dataclass(slots=True)
class ImportPlan:
    """What :func:`run_import` will do: the cases, and what could not be planned at all."""

    source: Path
    cases: list[PlannedCase] = field(default_factory=list)
    problems: list[ImportProblem] = field(default_factory=list)

    @property
    def item_count(self) -> int:
        return sum(case.item_count for case in self.cases)


def plan_import(path: Path) -> ImportPlan:
    """Parse a case folder or a manifest (no database, no file contents read)."""
    path = Path(path).expanduser()
    if path.is_dir():
        return _plan_folder(path.resolve())
    if not path.exists():
        raise InputError(f"{path} does not exist.", hint="Give a folder or a manifest file.")
    if path.suffix.lower() not in MANIFEST_SUFFIXES:
        raise InputError(
            f"{path.name} is neither a folder nor a manifest.",
            hint="Give a folder with one sub-folder per case, or a .csv, .json or .jsonl manifest.",
        )
    return _plan_manifest(path.resolve())


# -- folders -----------------------------------------------------------------------------------
def _visible(path: Path) -> bool:
    return not path.name.startswith(".") and path.name not in ("Thumbs.db", "desktop.ini")


def _plan_folder(root: Path) -> ImportPlan:
    plan = ImportPlan(root)
    for entry in sorted(root.iterdir()):
        if not _visible(entry):
            continue
        if not entry.is_dir():
            plan.problems.append(
                ImportProblem(
                    entry,
                    "this file is not in a case sub-folder, so it was not imported; put it in "
                    "a sub-folder named after its case, or list it in a manifest.",
                )
            )
            continue
        case, problems = _plan_case_folder(entry)
        plan.problems.extend(problems)
        if case is not None and not problems:
            plan.cases.append(case)
    return plan


def _plan_case_folder(folder: Path) -> tuple[PlannedCase | None, list[ImportProblem]]:
    external_id = folder.name
    problems: list[ImportProblem] = []
    entries = sorted(p for p in folder.iterdir() if _visible(p))
    claimed: set[Path] = set()
    records: dict[Path, tuple[Path, ...]] = {}
    for entry in entries:
        if entry.is_file() and entry.suffix.lower() == ".hea":
            records[entry] = wfdb_record_files(entry)
            claimed.update(f for f in records[entry] if f != entry)
    inputs: list[PlannedInput] = []
    vitals: list[PlannedVitals] = []
    metadata: dict[str, Any] = {}
    origin = f"case folder {external_id}"
    for entry in entries:
        lower = entry.name.lower()
        if entry in claimed:
            continue
        if entry.is_file() and lower in VITALS_FILES:
            parsed, errors = _vitals_file(entry, external_id)
            vitals.extend(parsed)
            problems.extend(errors)
        elif entry.is_file() and lower == CASE_FILE:
            metadata, errors = _case_file(entry, external_id)
            problems.extend(errors)
        elif entry in records:
            inputs.append(PlannedInput(entry, records[entry], origin))
        elif entry.is_dir():
            files = tuple(sorted(p for p in entry.rglob("*") if p.is_file() and _visible(p)))
            if not files:
                problems.append(ImportProblem(entry, "the folder is empty.", case_id=external_id))
                continue
            inputs.append(PlannedInput(entry, files, origin))
        elif entry.is_file():
            inputs.append(PlannedInput(entry, (entry,), origin))
        else:
            problems.append(
                ImportProblem(entry, "this is not a regular file.", case_id=external_id)
            )
    problems.extend(_check_case_id(external_id, folder, None, None))
    if not inputs and not vitals and not problems:
        problems.append(
            ImportProblem(
                folder,
                "the case folder holds no image, ECG, note or vitals file.",
                case_id=external_id,
            )
        )
    if problems:
        return None, [*problems, _left_out(folder, external_id, None)]
    return (
        PlannedCase(
            external_id=external_id,
            inputs=tuple(inputs),
            vitals=tuple(vitals),
            title=metadata.get("title"),
            patient_id=metadata.get("patient_id"),
            birth_year=metadata.get("birth_year"),
            sex=metadata.get("sex"),
            origin=origin,
        ),
        [],
    )


def _left_out(source: Path, case_id: str, line: int | None) -> ImportProblem:
    return ImportProblem(
        source,
        f"case {case_id} was not imported because of the problems above; fix them and run the "
        "import again.",
        line,
        case_id=case_id,
    )


def wfdb_record_files(header: Path) -> tuple[Path, ...]:
    """The header and the files of its WFDB record that exist beside it (signal files it
    names, segment records, annotation files of the same name), in a fixed order."""
    return tuple(sorted(_wfdb_files(header, 0)))


def _wfdb_files(header: Path, depth: int) -> set[Path]:
    folder = header.parent
    found = {header}
    try:
        with header.open("rb") as handle:
            text = handle.read(1024 * 1024).decode("latin-1")
    except OSError:
        return found
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    for line in lines[1:]:
        name = line.split()[0]
        if name == "~" or "/" in name or "\\" in name:
            continue
        if (folder / name).is_file():
            found.add(folder / name)
        elif depth < 2 and (folder / f"{name}.hea").is_file():
            found |= _wfdb_files(folder / f"{name}.hea", depth + 1)
    for candidate in folder.glob(f"{header.stem}.*"):
        suffix = candidate.suffix.lower()
        if candidate.is_file() and suffix in (*WFDB_SIGNAL_SUFFIXES, *_ANNOTATION_SUFFIXES):
            found.add(candidate)
    return found


def _vitals_file(path: Path, case_id: str) -> tuple[list[PlannedVitals], list[ImportProblem]]:
    """``vitals.json`` (an object or a list of them) or ``vitals.csv`` (a header, one row per
    set of measurements), with the manifest's vital-sign column names."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        return [], [ImportProblem(path, f"cannot be read ({exc}).", case_id=case_id)]
    rows: list[tuple[int | None, Any]] = []
    if path.suffix.lower() == ".json":
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            return [], [
                ImportProblem(path, f"is not valid JSON ({exc.msg}).", exc.lineno, None, case_id)
            ]
        rows = [(None, v) for v in (value if isinstance(value, list) else [value])]
    else:
        reader = csv.DictReader(io.StringIO(text))
        rows = [(reader.line_num, row) for row in reader]
    planned: list[PlannedVitals] = []
    problems: list[ImportProblem] = []
    for line, row in rows:
        if not isinstance(row, dict):
            problems.append(ImportProblem(path, "must hold an object of vital signs.", line))
            continue
        values, errors = _vitals_values(row, path, line, case_id, column_prefix="")
        problems.extend(errors)
        if values is not None:
            where = f"{path.parent.name}/{path.name}" + (f" line {line}" if line else "")
            planned.append(PlannedVitals(values, where))
    if not rows:
        problems.append(ImportProblem(path, "holds no vital signs.", case_id=case_id))
    return planned, problems


def _case_file(path: Path, case_id: str) -> tuple[dict[str, Any], list[ImportProblem]]:
    """``case.json``: optional title, patient_id, birth_year (or age_years) and sex."""
    try:
        value = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return {}, [ImportProblem(path, f"is not a readable JSON object ({exc}).", case_id=case_id)]
    if not isinstance(value, dict):
        return {}, [ImportProblem(path, "must hold one JSON object.", case_id=case_id)]
    allowed = {"title", "patient_id", "birth_year", "age_years", "sex"}
    unknown = sorted(set(value) - allowed)
    if unknown:
        return {}, [
            ImportProblem(
                path,
                f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}.",
                case_id=case_id,
            )
        ]
    row = {k: _text(v) for k, v in value.items()}
    return _case_fields(row, path, None, case_id)


# -- manifests ---------------------------------------------------------------------------------
@dataclass(slots=True)
class _Row:
    line: int
    values: dict[str, Any]


def _plan_manifest(manifest: Path) -> ImportPlan:
    plan = ImportPlan(manifest)
    size = manifest.stat().st_size
    if size > MAX_MANIFEST_BYTES:
        raise InputError(
            f"{manifest.name} is {size / 1024**2:,.0f} MiB; a manifest may have at most "
            f"{MAX_MANIFEST_BYTES // 1024**2} MiB.",
            hint="Split it into several manifests.",
        )
    try:
        text = manifest.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{manifest.name} is not UTF-8 text (byte {exc.start}).",
            hint="Save the manifest as UTF-8.",
        ) from exc
    suffix = manifest.suffix.lower()
    rows = (
        _csv_rows(manifest, text, plan.problems)
        if suffix == ".csv"
        else _json_rows(manifest, text, plan.problems, lines=suffix != ".json")
    )
    if plan.problems:  # the manifest's shape is wrong: nothing can be trusted
        return plan
    unknown: dict[str, list[int]] = {}
    for row in rows:
        for key in row.values:
            if key not in MANIFEST_COLUMNS:
                unknown.setdefault(key, []).append(row.line)
    if unknown:
        plan.problems.append(_unknown_columns(manifest, unknown))
        return plan
    order: list[str] = []
    grouped: dict[str, list[_Row]] = {}
    for row in rows:
        case_id = _text(row.values.get("case_id"))
        if case_id is None:
            plan.problems.append(
                ImportProblem(manifest, "case_id is empty; every row needs one.", row.line)
            )
            continue
        if case_id not in grouped:
            order.append(case_id)
        grouped.setdefault(case_id, []).append(row)
    for case_id in order:
        case, problems = _plan_manifest_case(manifest, case_id, grouped[case_id])
        plan.problems.extend(problems)
        if case is not None:
            plan.cases.append(case)
    return plan


def _unknown_columns(manifest: Path, unknown: Mapping[str, list[int]]) -> ImportProblem:
    described = []
    for name, lines in sorted(unknown.items()):
        close = difflib.get_close_matches(name, sorted(MANIFEST_COLUMNS), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        where = "" if len(lines) > 3 else f" on line {', '.join(str(n) for n in lines)}"
        described.append(f"'{name}'{hint}{where}")
    return ImportProblem(
        manifest,
        f"unknown column(s) {', '.join(described)}; nothing was imported, so that no value is "
        f"silently dropped. Known columns: {', '.join(sorted(MANIFEST_COLUMNS))}.",
        line=min(n for lines in unknown.values() for n in lines),
    )


def _csv_rows(manifest: Path, text: str, problems: list[ImportProblem]) -> list[_Row]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        problems.append(ImportProblem(manifest, "the manifest is empty."))
        return []
    except csv.Error as exc:
        problems.append(ImportProblem(manifest, f"is not valid CSV ({exc}).", 1))
        return []
    names = [name.strip().lower() for name in header]
    repeated = sorted({n for n in names if names.count(n) > 1 and n})
    if repeated:
        problems.append(
            ImportProblem(manifest, f"the column(s) {', '.join(repeated)} appear twice.", 1)
        )
    if "case_id" not in names:
        problems.append(
            ImportProblem(manifest, "the header has no case_id column (the first line).", 1)
        )
    rows: list[_Row] = []
    start = reader.line_num + 1
    try:
        for values in reader:
            line, start = start, reader.line_num + 1
            if not any(v.strip() for v in values):
                continue
            if len(values) > len(names):
                problems.append(
                    ImportProblem(
                        manifest,
                        f"the row has {len(values)} values but the header has {len(names)} "
                        "columns (a comma inside a value needs quotes).",
                        line,
                    )
                )
                continue
            rows.append(
                _Row(line, {n: v for n, v in zip(names, values, strict=False) if n and v.strip()})
            )
    except csv.Error as exc:
        problems.append(ImportProblem(manifest, f"is not valid CSV ({exc}).", reader.line_num))
    return rows


def _json_rows(
    manifest: Path, text: str, problems: list[ImportProblem], *, lines: bool
) -> list[_Row]:
    """Each object with its line: JSON Lines, or the entries of one JSON array."""
    decoder = json.JSONDecoder()
    entries: list[tuple[int, Any]] = []
    current = 1
    try:
        if lines:
            for number, content in enumerate(text.splitlines(), start=1):
                current = number
                if content.strip():
                    entries.append((number, json.loads(content)))
        else:
            position = _skip_space(text, 0)
            if text[position : position + 1] != "[":
                problems.append(
                    ImportProblem(manifest, "a JSON manifest must be an array of objects.", 1)
                )
                return []
            position = _skip_space(text, position + 1)
            while text[position : position + 1] not in ("]", ""):
                value, end = decoder.raw_decode(text, position)
                entries.append((text.count("\n", 0, position) + 1, value))
                position = _skip_space(text, end)
                if text[position : position + 1] == ",":
                    position = _skip_space(text, position + 1)
                elif text[position : position + 1] != "]":
                    raise json.JSONDecodeError("expected ',' or ']'", text, position)
            if text[position : position + 1] != "]":
                raise json.JSONDecodeError("the array is not closed", text, position)
    except json.JSONDecodeError as exc:
        line = current if lines else exc.lineno
        problems.append(ImportProblem(manifest, f"is not valid JSON ({exc.msg}).", line))
        return []
    rows: list[_Row] = []
    for line, value in entries:
        if not isinstance(value, dict):
            problems.append(ImportProblem(manifest, "each entry must be a JSON object.", line))
            continue
        rows.append(_Row(line, {str(k).strip().lower(): v for k, v in value.items()}))
    if not entries:
        problems.append(ImportProblem(manifest, "the manifest lists no cases."))
    return rows


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position


def _text(value: Any) -> str | None:
    """A manifest value as stripped text; None when empty (numbers become text)."""
    if value is None or isinstance(value, bool):
        return None if value is None else str(value).lower()
    if isinstance(value, int | float):
        return f"{value:g}" if isinstance(value, float) else str(value)
    if isinstance(value, str):
        return value.strip() or None
    raise ValueError("must be a single value, not a list or an object")


def _plan_manifest_case(
    manifest: Path, case_id: str, rows: list[_Row]
) -> tuple[PlannedCase | None, list[ImportProblem]]:
    problems = list(_check_case_id(case_id, manifest, rows[0].line, "case_id"))
    inputs: list[PlannedInput] = []
    vitals: list[PlannedVitals] = []
    fields: dict[str, Any] = {}
    fields_line: dict[str, int] = {}
    for row in rows:
        texts: dict[str, str | None] = {}
        for key, value in row.values.items():
            if key == "vitals":
                continue
            try:
                texts[key] = _text(value)
            except ValueError as exc:
                problems.append(ImportProblem(manifest, f"{exc}.", row.line, key, case_id))
        case_values, errors = _case_fields(texts, manifest, row.line, case_id)
        problems.extend(errors)
        for key, value in case_values.items():
            if key in fields and fields[key] != value:
                problems.append(
                    ImportProblem(
                        manifest,
                        f"case {case_id} has a different {key} on line {fields_line[key]}.",
                        row.line,
                        key,
                        case_id,
                    )
                )
            fields.setdefault(key, value)
            fields_line.setdefault(key, row.line)
        for column in FILE_COLUMNS:
            value = texts.get(column)
            if value is None:
                continue
            planned, problem = _manifest_input(manifest, row.line, column, value, case_id)
            if problem is not None:
                problems.append(problem)
            elif planned is not None:
                inputs.append(planned)
        row_vitals, errors = _manifest_vitals(manifest, row, case_id)
        problems.extend(errors)
        if row_vitals is not None:
            vitals.append(row_vitals)
        if not any(texts.get(c) for c in FILE_COLUMNS) and row_vitals is None and not errors:
            problems.append(
                ImportProblem(
                    manifest,
                    "the row names no image, ECG or note file and no vital signs.",
                    row.line,
                    case_id=case_id,
                )
            )
    lines = ", ".join(str(r.line) for r in rows)
    origin = f"{manifest.name} line{'s' if len(rows) > 1 else ''} {lines}"
    if problems:
        problems.append(_left_out(manifest, case_id, rows[0].line if len(rows) == 1 else None))
        return None, problems
    return (
        PlannedCase(
            external_id=case_id,
            inputs=tuple(inputs),
            vitals=tuple(vitals),
            title=fields.get("title"),
            patient_id=fields.get("patient_id"),
            birth_year=fields.get("birth_year"),
            sex=fields.get("sex"),
            origin=origin,
        ),
        [],
    )


def _check_case_id(
    case_id: str, source: Path, line: int | None, column: str | None
) -> list[ImportProblem]:
    if len(case_id) > MAX_CASE_ID_CHARS:
        message = f"the case id has {len(case_id)} characters; at most {MAX_CASE_ID_CHARS}."
    elif _CONTROL.search(case_id):
        message = "the case id contains control characters."
    else:
        return []
    return [ImportProblem(source, message, line, column, case_id[:MAX_CASE_ID_CHARS])]


def _case_fields(
    row: Mapping[str, str | None], source: Path, line: int | None, case_id: str
) -> tuple[dict[str, Any], list[ImportProblem]]:
    """Title, patient id, birth year (or age) and sex of one row, checked."""
    values: dict[str, Any] = {}
    problems: list[ImportProblem] = []
    if row.get("title"):
        values["title"] = str(row["title"])[:200]
    if row.get("patient_id"):
        try:
            values["patient_id"] = normalise_identifier(str(row["patient_id"]))
        except InputError as exc:
            problems.append(ImportProblem(source, str(exc), line, "patient_id", case_id))
    demographic = {k: str(row[k]) for k in ("birth_year", "age_years", "sex") if row.get(k)}
    if demographic:
        try:
            parsed = parse_demographics(demographic)
        except VitalsInputError as exc:
            for key, error in exc.field_errors.items():
                problems.append(ImportProblem(source, str(error), line, key or None, case_id))
        else:
            if parsed.birth_year is not None:
                values["birth_year"] = parsed.birth_year
            if parsed.sex is not None:
                values["sex"] = parsed.sex
    return values, problems


def _manifest_input(
    manifest: Path, line: int, column: str, value: str, case_id: str
) -> tuple[PlannedInput | None, ImportProblem | None]:
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = manifest.parent / path
    if not path.exists():
        return None, ImportProblem(
            manifest,
            f"the file '{value}' does not exist (looked for {path}).",
            line,
            column,
            case_id,
        )
    origin = f"{manifest.name} line {line}, column {column}"
    if path.is_dir():
        files = tuple(sorted(p for p in path.rglob("*") if p.is_file() and _visible(p)))
        if not files:
            return None, ImportProblem(
                manifest, f"the folder '{value}' is empty.", line, column, case_id
            )
        return PlannedInput(path, files, origin), None
    if path.suffix.lower() in WFDB_SIGNAL_SUFFIXES:
        header = path.with_suffix(".hea")
        if header.is_file():
            return PlannedInput(header, wfdb_record_files(header), origin), None
    return PlannedInput(path, (path,), origin), None


def _manifest_vitals(
    manifest: Path, row: _Row, case_id: str
) -> tuple[PlannedVitals | None, list[ImportProblem]]:
    columns = {k: v for k, v in row.values.items() if k in VITAL_COLUMNS}
    blob = row.values.get("vitals")
    if blob is not None and columns:
        return None, [
            ImportProblem(
                manifest,
                "give vital signs either in the vitals column or in their own columns, not both.",
                row.line,
                "vitals",
                case_id,
            )
        ]
    if isinstance(blob, str):
        try:
            blob = json.loads(blob)
        except json.JSONDecodeError as exc:
            return None, [
                ImportProblem(
                    manifest,
                    f"the vitals value is not a JSON object ({exc.msg}), e.g. "
                    '{"heart_rate_bpm": 72, "blood_pressure": "120/80"}.',
                    row.line,
                    "vitals",
                    case_id,
                )
            ]
    if blob is not None:
        if not isinstance(blob, dict):
            return None, [
                ImportProblem(
                    manifest, "the vitals value must be a JSON object.", row.line, "vitals", case_id
                )
            ]
        columns = blob
        prefix = "vitals."
    else:
        prefix = ""
    if not columns:
        return None, []
    values, problems = _vitals_values(columns, manifest, row.line, case_id, column_prefix=prefix)
    if values is None:
        return None, problems
    return PlannedVitals(values, f"{manifest.name} line {row.line}"), problems


def _vitals_values(
    values: Mapping[str, Any], source: Path, line: int | None, case_id: str, *, column_prefix: str
) -> tuple[Vitals | None, list[ImportProblem]]:
    form: dict[str, str] = {}
    problems: list[ImportProblem] = []
    for key, value in values.items():
        try:
            text = _text(value)
        except ValueError as exc:
            problems.append(
                ImportProblem(source, f"{exc}.", line, f"{column_prefix}{key}", case_id)
            )
            continue
        if text is not None:
            form[str(key).strip().lower()] = text
    if problems:
        return None, problems
    if not form:
        return None, []
    try:
        return parse_vitals(form), []
    except VitalsInputError as exc:
        return None, [
            ImportProblem(
                source, str(error), line, f"{column_prefix}{key}" if key else None, case_id
            )
            for key, error in exc.field_errors.items()
        ]


# -- the report --------------------------------------------------------------------------------
class Outcome(StrEnum):
    IMPORTED = "imported"
    DUPLICATE = "duplicate"
    FAILED = "failed"
    NOT_DONE = "not done"  # the import was cancelled first


class CaseState(StrEnum):
    CREATED = "created"
    ADDED_TO = "added to"  # imported before (same external id): new inputs were added to it
    UNCHANGED = "unchanged"  # imported before, and everything it lists is there already
    NOT_CREATED = "not created"  # nothing of it could be stored, or all of it was there
    NOT_DONE = "not done"


@dataclass(frozen=True, slots=True)
class ItemOutcome:
    """What became of one source file (or set of vital signs)."""

    case_id: str
    source: str  # the path, or "vitals (<where>)"
    origin: str
    outcome: Outcome
    message: str = ""
    case_uid: str | None = None
    kind: str | None = None  # slide, image, ecg, note, vitals
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "case_id": self.case_id,
            "source": self.source,
            "origin": self.origin,
            "outcome": self.outcome.value,
            "message": self.message,
            "case_uid": self.case_uid,
            "kind": self.kind,
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True, slots=True)
class CaseOutcome:
    case_id: str
    state: CaseState
    case_uid: str | None = None
    message: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "case_id": self.case_id,
            "state": self.state.value,
            "case_uid": self.case_uid,
            "message": self.message,
        }


@dataclass(slots=True)
class ImportReport:
    """Everything an import did, for the operator (text) and for tools (JSON)."""

    source: Path
    started_at: datetime
    finished_at: datetime | None = None
    cases: list[CaseOutcome] = field(default_factory=list)
    items: list[ItemOutcome] = field(default_factory=list)
    problems: list[ImportProblem] = field(default_factory=list)
    cancelled: bool = False

    @property
    def created_case_uids(self) -> list[str]:
        return [c.case_uid for c in self.cases if c.state is CaseState.CREATED and c.case_uid]

    @property
    def case_uids(self) -> list[str]:
        """Every case this import changed: created, or added to."""
        changed = (CaseState.CREATED, CaseState.ADDED_TO)
        return [c.case_uid for c in self.cases if c.state in changed and c.case_uid]

    @property
    def counts(self) -> dict[str, int]:
        tally = {o.value: 0 for o in Outcome}
        for item in self.items:
            tally[item.outcome.value] += 1
        return {
            "cases_created": len(self.created_case_uids),
            "cases_added_to": sum(1 for c in self.cases if c.state is CaseState.ADDED_TO),
            "cases_unchanged": sum(1 for c in self.cases if c.state is CaseState.UNCHANGED),
            "cases_not_created": sum(1 for c in self.cases if c.state is CaseState.NOT_CREATED),
            "imported": tally[Outcome.IMPORTED],
            "duplicate": tally[Outcome.DUPLICATE],
            "failed": tally[Outcome.FAILED],
            "not_done": tally[Outcome.NOT_DONE],
            "problems": len(self.problems),
        }

    @property
    def ok(self) -> bool:
        """Everything listed is now stored (imported, or there already)."""
        counts = self.counts
        return not (counts["failed"] or counts["problems"] or counts["not_done"] or self.cancelled)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": str(self.source),
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "cancelled": self.cancelled,
            "ok": self.ok,
            "counts": self.counts,
            "created_case_uids": self.created_case_uids,
            "cases": [c.to_json() for c in self.cases],
            "items": [i.to_json() for i in self.items],
            "problems": [p.to_json() for p in self.problems],
        }

    def to_text(self, *, all_items: bool = False) -> str:
        """A summary listing every error; ``all_items`` also lists every imported and
        duplicate source (the report file does)."""
        c = self.counts
        lines = [
            f"Import from {self.source}"
            + (" (CANCELLED: what was done is kept)" if self.cancelled else ""),
            f"  Cases: {c['cases_created']} created, {c['cases_added_to']} added to, "
            f"{c['cases_unchanged']} unchanged, {c['cases_not_created']} not created.",
            f"  Inputs: {c['imported']} imported, {c['duplicate']} duplicate(s) skipped, "
            f"{c['failed']} failed, {c['not_done']} not done; "
            f"{c['problems']} problem(s) in the listing.",
        ]
        created = [case for case in self.cases if case.state is CaseState.CREATED]
        if created:
            lines.append("Created cases (external id -> case):")
            lines += [f"  {case.case_id} -> {case.case_uid}" for case in created]
        errors = [i for i in self.items if i.outcome is Outcome.FAILED]
        if self.problems or errors:
            lines.append("Errors (fix these and run the same import again; nothing is doubled):")
            lines += [f"  {p.describe()}" for p in self.problems]
            lines += [f"  {i.source} (case {i.case_id}): {i.message}" for i in errors]
        skipped = [c for c in self.cases if c.state is CaseState.NOT_CREATED and c.message]
        if skipped:
            lines.append("Cases not created:")
            lines += [f"  {case.case_id}: {case.message}" for case in skipped]
        not_done = [i for i in self.items if i.outcome is Outcome.NOT_DONE]
        if not_done:
            lines.append("Not done (the import was cancelled before them):")
            lines += [f"  {i.source} (case {i.case_id})" for i in not_done]
        if all_items:
            done = [i for i in self.items if i.outcome in (Outcome.IMPORTED, Outcome.DUPLICATE)]
            if done:
                lines.append("Inputs:")
                for item in done:
                    note = f": {item.message}" if item.message else ""
                    lines.append(
                        f"  {item.outcome.value:<9} {item.kind or '':<6} {item.source} -> "
                        f"{item.case_uid}{note}"
                    )
        return "\n".join(lines)


def write_import_report(report: ImportReport, path: Path) -> Path:
    """Write the report (JSON for a ``.json`` path, else text), readable by this user only:
    it holds the external case ids and file paths, which may identify patients."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".json":
        content = json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n"
    else:
        content = report.to_text(all_items=True) + "\n"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(content)
    return path


def default_report_path(exports_dir: Path, now: datetime | None = None) -> Path:
    """``<exports>/imports/import-YYYYMMDD-HHMMSS.txt`` (UTC)."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return exports_dir / "imports" / f"import-{moment:%Y%m%d-%H%M%S}.txt"


# -- running -----------------------------------------------------------------------------------
Progress = Callable[[float, str], None]
Cancel = Callable[[], bool]


@dataclass(slots=True)
class _Run:
    cases: CaseService
    ingest: IngestService
    actor: Actor
    report: ImportReport
    total: int
    progress: Progress | None
    cancel: Cancel | None
    done: int = 0
    #: digest -> (case uid or None if it failed, external id) of sources seen in this run
    seen: dict[str, tuple[str | None, str]] = field(default_factory=dict)
    #: (external id, vitals key) of the vital-sign sets seen in this run
    seen_vitals: set[tuple[str, str]] = field(default_factory=set)

    def cancelled(self) -> bool:
        if not self.report.cancelled and self.cancel is not None and self.cancel():
            self.report.cancelled = True
        return self.report.cancelled

    def step(self, message: str) -> None:
        if self.progress is not None:
            self.progress(min(self.done / self.total, 1.0) if self.total else 1.0, message)


def run_import(
    cases: CaseService,
    ingest: IngestService,
    actor: Actor,
    plan: ImportPlan,
    *,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
) -> ImportReport:
    """Import every planned case; a bad file is reported and the rest go on.

    ``progress(fraction, message)`` is called before each file; ``cancel()`` is asked between
    files, and when it says yes the rest is reported as not done (what is done stays)."""
    authorize(cases.database, actor, Permission.CASE_CREATE, "case.import", AuditAction.EXECUTE)
    report = ImportReport(plan.source, datetime.now(UTC), problems=list(plan.problems))
    run = _Run(cases, ingest, actor, report, plan.item_count, progress, cancel)
    for number, planned in enumerate(plan.cases, start=1):
        importer = _CaseImport(run, planned, f"case {number} of {len(plan.cases)}")
        if run.cancelled():
            importer.not_done(planned.inputs, planned.vitals)
            report.cases.append(CaseOutcome(planned.external_id, CaseState.NOT_DONE))
        else:
            report.cases.append(importer.execute())
    report.finished_at = datetime.now(UTC)
    counts = report.counts
    with cases.database.write() as session:
        record_audit(
            session,
            actor,
            "case.import",
            AuditAction.EXECUTE,
            details={"cancelled": report.cancelled, **counts},
        )
    run.step("Import cancelled" if report.cancelled else "Import finished")
    log.info("Batch import finished: %s%s", counts, " (cancelled)" if report.cancelled else "")
    return report


def _owners(cases: CaseService, digests: Iterable[str]) -> dict[str, str]:
    """digest -> case uid, for the digests already recorded (an unaudited id look-up)."""
    wanted = sorted(set(digests))
    owners: dict[str, str] = {}
    with cases.database.read() as session:
        for start in range(0, len(wanted), 500):
            rows = session.execute(
                select(ImportedSource.digest, Case.case_uid)
                .join(Case, Case.id == ImportedSource.case_id)
                .where(ImportedSource.digest.in_(wanted[start : start + 500]))
            ).all()
            owners.update({digest: uid for digest, uid in rows})
    return owners


def _vitals_key(values: Mapping[str, Any]) -> str:
    """A set of vital signs as canonical text (UTC times, values to 0.01), to compare sets."""
    canonical: dict[str, Any] = {}
    for name in (*VITAL_RANGES, "measured_at"):
        value = values.get(name)
        if isinstance(value, datetime):
            canonical[name] = value.astimezone(UTC).isoformat()
        elif value is not None:
            canonical[name] = round(float(value), 2)
    return json.dumps(canonical, sort_keys=True)


def _stored_vitals(cases: CaseService, case_uid: str) -> set[str]:
    """The vital-sign sets a case already holds (any version), as :func:`_vitals_key` text.

    Vital signs are de-duplicated by value rather than by a digest in ``imported_sources``:
    ``CaseService.add_vitals`` takes the values as keyword arguments and so cannot also take
    a digest, and an identical set in the same case is the same measurement anyway."""
    names = (*VITAL_RANGES, "measured_at")
    with cases.database.read() as session:
        rows = session.scalars(
            select(VitalSigns)
            .join(Case, Case.id == VitalSigns.case_id)
            .where(Case.case_uid == case_uid)
        ).all()
        return {_vitals_key({n: getattr(row, n) for n in names}) for row in rows}


Item = PlannedInput | PlannedVitals


class _CaseImport:
    """One planned case: find what is new, create the case when something of it reads, import."""

    def __init__(self, run: _Run, planned: PlannedCase, position: str) -> None:
        self.run = run
        self.planned = planned
        self.external_id = planned.external_id
        self.position = position
        self.case_uid: str | None = None
        self.stored = 0

    # -- outcomes ---------------------------------------------------------------------------
    def record(
        self,
        item: Item,
        outcome: Outcome,
        message: str = "",
        case_uid: str | None = None,
        *,
        kind: str | None = None,
        seconds: float = 0.0,
    ) -> None:
        if isinstance(item, PlannedVitals):
            source, kind = f"vitals ({item.origin})", "vitals"
        else:
            source = str(item.path)
        self.run.report.items.append(
            ItemOutcome(
                self.external_id, source, item.origin, outcome, message, case_uid, kind, seconds
            )
        )
        self.run.done += 1

    def not_done(self, inputs: Iterable[PlannedInput], vitals: Iterable[PlannedVitals]) -> None:
        """Report what a cancelled import did not get to."""
        items: list[Item] = [*inputs, *vitals]
        for item in items:
            what = "these vital signs" if isinstance(item, PlannedVitals) else "this file"
            self.record(
                item,
                Outcome.NOT_DONE,
                f"the import was cancelled before {what}",
                self.case_uid,
            )

    # -- the steps ---------------------------------------------------------------------------
    def execute(self) -> CaseOutcome:
        run, ingest = self.run, self.run.ingest
        case_digest = ingest.text_digest("case", self.external_id)
        digests: dict[PlannedInput, str] = {}
        for source in self.planned.inputs:
            try:
                digests[source] = ingest.source_digest(source.files)
            except OSError as exc:
                reason = exc.strerror or str(exc)
                self.record(
                    source, Outcome.FAILED, f"{source.path.name} cannot be read ({reason})."
                )
        owners = _owners(run.cases, [case_digest, *digests.values()])
        self.case_uid = owners.get(case_digest)
        pending = self._new_inputs(digests, owners)
        vitals = self._new_vitals()
        if not pending and not vitals:
            if self.case_uid is not None:
                return CaseOutcome(self.external_id, CaseState.UNCHANGED, self.case_uid)
            failed = any(i.outcome is Outcome.FAILED for i in self._outcomes())
            why = "none of its inputs could be read" if failed else "all of it was imported before"
            return CaseOutcome(self.external_id, CaseState.NOT_CREATED, None, why)
        state = CaseState.ADDED_TO
        if self.case_uid is None:
            # No empty cases: the case is created once one of its files has read.
            while pending and not self._reads(pending[0]):
                pending.pop(0)
                if run.cancelled():
                    self.not_done([source for source, _ in pending], vitals)
                    return CaseOutcome(self.external_id, CaseState.NOT_DONE)
            if not pending and not vitals:
                why = "none of its inputs could be read"
                return CaseOutcome(self.external_id, CaseState.NOT_CREATED, None, why)
            failure = self._create(case_digest)
            if failure is not None:
                items: list[Item] = [*(source for source, _ in pending), *vitals]
                for item in items:
                    self.record(item, Outcome.FAILED, failure)
                return CaseOutcome(self.external_id, CaseState.NOT_CREATED, None, failure)
            state = CaseState.CREATED
        stopped = self._import(pending, vitals)
        if state is CaseState.CREATED and self.stored == 0:
            assert self.case_uid is not None
            _discard(run.cases, self.case_uid)
            if stopped:
                return CaseOutcome(self.external_id, CaseState.NOT_DONE)
            why = "none of its inputs could be stored, so the case was removed again"
            return CaseOutcome(self.external_id, CaseState.NOT_CREATED, None, why)
        if state is CaseState.ADDED_TO and self.stored == 0:
            state = CaseState.UNCHANGED
        return CaseOutcome(self.external_id, state, self.case_uid)

    def _new_inputs(
        self, digests: Mapping[PlannedInput, str], owners: Mapping[str, str]
    ) -> list[tuple[PlannedInput, str]]:
        """The sources not stored before and not listed earlier in this import."""
        seen, pending = self.run.seen, []
        for source, digest in digests.items():
            if digest in seen:
                owner, other = seen[digest]
                message = (
                    f"listed twice in this import; imported into case {owner} ({other})"
                    if owner is not None
                    else f"listed twice in this import (also for case {other}, where it failed)"
                )
                self.record(source, Outcome.DUPLICATE, message, owner)
            elif digest in owners:
                message = f"already imported into case {owners[digest]}"
                self.record(source, Outcome.DUPLICATE, message, owners[digest])
            else:
                seen[digest] = (None, self.external_id)
                pending.append((source, digest))
        return pending

    def _new_vitals(self) -> list[PlannedVitals]:
        """The vital-sign sets the case does not hold yet (compared by value)."""
        if not self.planned.vitals:
            return []
        stored = _stored_vitals(self.run.cases, self.case_uid) if self.case_uid else set()
        pending = []
        for vitals in self.planned.vitals:
            key = (self.external_id, _vitals_key(vitals.vitals.as_dict()))
            if key[1] in stored:
                message = f"case {self.case_uid} already holds these vital signs"
                self.record(vitals, Outcome.DUPLICATE, message, self.case_uid)
            elif key in self.run.seen_vitals:
                message = "the same vital signs are listed twice for this case"
                self.record(vitals, Outcome.DUPLICATE, message)
            else:
                self.run.seen_vitals.add(key)
                pending.append(vitals)
        return pending

    def _reads(self, pending: tuple[PlannedInput, str]) -> bool:
        """Read a new case's file before creating the case; a failure is reported."""
        source = pending[0]
        self.run.step(f"{self.position}, {self.external_id}: checking {source.path.name}")
        started = time.perf_counter()
        try:
            read_input_isolated(source.path, self.run.ingest.limits)
        except ClinicError as exc:
            self.record(source, Outcome.FAILED, str(exc), seconds=time.perf_counter() - started)
            return False
        return True

    def _create(self, case_digest: str) -> str | None:
        """Create the case (with the external id's digest); the reason when it cannot be."""
        planned = self.planned
        try:
            summary = self.run.cases.create_case(
                self.run.actor,
                title=planned.title or f"Imported {date.today().isoformat()}",
                birth_year=planned.birth_year,
                sex=planned.sex,
                patient_identifier=planned.patient_id,
                source_digest=case_digest,
            )
        except ClinicError as exc:
            return f"the case could not be created: {exc}"
        self.case_uid = summary.case_uid
        return None

    def _import(self, pending: list[tuple[PlannedInput, str]], vitals: list[PlannedVitals]) -> bool:
        """Import the files, then the vital signs; True when cancelled part-way."""
        run, case_uid = self.run, self.case_uid
        assert case_uid is not None
        for index, (source, digest) in enumerate(pending):
            if index and run.cancelled():
                self.not_done([s for s, _ in pending[index:]], vitals)
                return True
            run.step(f"{self.position}, {self.external_id}: {source.path.name}")
            started = time.perf_counter()
            try:
                result = run.ingest.import_file(
                    run.actor, case_uid, source.path, source_digest=digest
                )
            except ClinicError as exc:
                failure = str(exc)
            except Exception as exc:  # a reader bug must not end a batch of a thousand cases
                log.exception("Unexpected error importing a file of a batch")
                failure = f"unexpected error ({type(exc).__name__}); the details are in the log."
            else:
                self.stored += 1
                run.seen[digest] = (case_uid, self.external_id)
                seconds = time.perf_counter() - started
                self.record(
                    source, Outcome.IMPORTED, "", case_uid, kind=result.kind.value, seconds=seconds
                )
                continue
            self.record(source, Outcome.FAILED, failure, seconds=time.perf_counter() - started)
        for index, item in enumerate(vitals):
            if (self.stored or index) and run.cancelled():
                self.not_done([], vitals[index:])
                return True
            run.step(f"{self.position}, {self.external_id}: vital signs")
            try:
                run.cases.add_vitals(run.actor, case_uid, **item.vitals.as_dict())
            except ClinicError as exc:
                self.record(item, Outcome.FAILED, str(exc))
                continue
            self.stored += 1
            self.record(item, Outcome.IMPORTED, "", case_uid)
        return False

    def _outcomes(self) -> Iterator[ItemOutcome]:
        return (item for item in self.run.report.items if item.case_id == self.external_id)


def _discard(cases: CaseService, case_uid: str) -> None:
    """Remove a case this import created and could put nothing into (an administrator's
    delete, recorded as the system); its external-id digest goes with it."""
    try:
        cases.delete_case(Actor.system(), case_uid)
    except ClinicError:
        log.warning("An empty imported case could not be removed again", exc_info=True)
