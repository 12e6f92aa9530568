"""Training manifests: the CSV / JSONL list of cases a data team trains and evaluates on.

:func:`load_manifest` validates the whole file before anything else runs and raises one
:class:`ManifestError` that lists every bad row (line, case, column, what to do), so a long
training run never starts on a broken manifest and nobody fixes problems one at a time.
:func:`assign_splits` gives unsplit rows a split without ever cutting a group (patient) and
stratified by label; :func:`write_manifest` writes rows back in either format.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import os
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from model.config import DEFAULT_TABULAR
from model.errors import ModelPackageError

SNOMED = "http://snomed.info/sct"
#: Short code-system names accepted as ``alias:CODE`` (or ``alias|CODE``) in a label.
SYSTEM_ALIASES: dict[str, str] = {
    "snomed": SNOMED,
    "sct": SNOMED,
    "snomedct": SNOMED,
    "snomed-ct": SNOMED,
    "icd10": "http://hl7.org/fhir/sid/icd-10",
    "icd-10": "http://hl7.org/fhir/sid/icd-10",
    "icd10cm": "http://hl7.org/fhir/sid/icd-10-cm",
    "icd-10-cm": "http://hl7.org/fhir/sid/icd-10-cm",
    "loinc": "http://loinc.org",
}
SPLITS = ("train", "val", "test")
VITAL_NAMES: tuple[str, ...] = tuple(name for name, _mean, _std in DEFAULT_TABULAR)
#: Columns (CSV) / keys (JSONL) besides ``vital:<name>`` and ``head:<name>``.
COLUMNS = (
    "case_id",
    "group_id",
    "split",
    "images",
    "ecg",
    "ecg_start_s",
    "ecg_duration_s",
    "note",
    "note_text",
    "labels",
    "unknown_labels",
    "vitals",
    "heads",
    "composite",
    "synthetic",
    "sources",
)
MAX_LISTED_PROBLEMS = 50
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f", ""}


@dataclass(frozen=True)
class ManifestRow:
    """One case of a manifest, validated; paths are absolute, labels are ``system|code``."""

    line: int
    case_id: str
    group_id: str
    split: str | None
    images: tuple[Path, ...] = ()
    ecg: Path | None = None
    ecg_start_s: float | None = None
    ecg_duration_s: float | None = None
    note_path: Path | None = None
    note_text: str | None = None
    vitals: dict[str, float] = field(default_factory=dict)
    labels: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()
    heads: dict[str, str] = field(default_factory=dict)
    composite: bool = False
    synthetic: bool = False
    sources: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    """A validated manifest: where it came from and its rows in file order."""

    path: Path
    rows: tuple[ManifestRow, ...]

    def label_names(self) -> tuple[str, ...]:
        """Every ``system|code`` the rows mention (positive or unknown), sorted."""
        return tuple(sorted({name for row in self.rows for name in (*row.labels, *row.unknown)}))

    def head_classes(self) -> dict[str, tuple[str, ...]]:
        """Extra head name -> the sorted class names the rows give it."""
        seen: dict[str, set[str]] = defaultdict(set)
        for row in self.rows:
            for head, value in row.heads.items():
                seen[head].add(value)
        return {head: tuple(sorted(values)) for head, values in sorted(seen.items())}


@dataclass(frozen=True)
class RowProblem:
    """One thing wrong with a manifest: where (line 0 = the file itself) and what to do."""

    line: int
    case_id: str | None
    column: str
    message: str

    def __str__(self) -> str:
        if self.line <= 0:
            return f"file: {self.message}"
        where = f"line {self.line}"
        if self.case_id:
            where += f" (case {self.case_id})"
        if self.column:
            where += f", column {self.column}"
        return f"{where}: {self.message}"


class ManifestError(ModelPackageError, ValueError):
    """A manifest has problems; ``problems`` lists every one and the message shows them."""

    def __init__(self, path: Path | str, problems: Sequence[RowProblem]) -> None:
        self.path = Path(path)
        self.problems = tuple(problems)
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        lines = [f"The manifest {self.path} has {count} {noun}; nothing was trained:"]
        lines += [f"  {problem}" for problem in self.problems[:MAX_LISTED_PROBLEMS]]
        if count > MAX_LISTED_PROBLEMS:
            lines.append(f"  ... and {count - MAX_LISTED_PROBLEMS} more")
        super().__init__("\n".join(lines))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.path, self.problems))


# --------------------------------------------------------------------------------------------
# Reading the file into raw records


@dataclass
class _Raw:
    """One record before validation: its line and column -> value (str for CSV, JSON for JSONL)."""

    line: int
    values: dict[str, Any]


def _is_gzip(path: Path) -> bool:
    return path.suffix.lower() == ".gz"


def _format_of(path: Path) -> str | None:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    if not suffixes:
        return None
    if suffixes[-1] == ".csv":
        return "csv"
    if suffixes[-1] in (".jsonl", ".ndjson"):
        return "jsonl"
    return None


def _read_text(path: Path) -> str:
    """The whole file as text; raises ManifestError (line 0) when it cannot be read."""

    def fail(message: str) -> ManifestError:
        return ManifestError(path, [RowProblem(0, None, "", message)])

    if not path.exists():
        raise fail("the file does not exist; check the path.")
    if path.is_dir():
        raise fail("this is a folder, not a manifest file; give the .csv or .jsonl file.")
    try:
        data = gzip.decompress(path.read_bytes()) if _is_gzip(path) else path.read_bytes()
    except (OSError, EOFError) as exc:
        raise fail(f"the file could not be read ({exc}); check it is a complete file.") from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise fail(
            f"the file is not UTF-8 text (byte {exc.start} cannot be decoded); "
            "save it as UTF-8 (e.g. 'CSV UTF-8' in a spreadsheet)."
        ) from exc


def _read_csv(text: str, problems: list[RowProblem]) -> tuple[list[_Raw], set[str]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return [], set()
    except csv.Error as exc:
        problems.append(RowProblem(1, None, "header", f"the header cannot be parsed ({exc})."))
        return [], set()
    header = [name.strip() for name in header]
    duplicates = sorted(name for name, n in Counter(header).items() if n > 1 and name)
    if duplicates:
        problems.append(
            RowProblem(
                1,
                None,
                "header",
                f"columns appear twice: {', '.join(duplicates)}; keep one of each.",
            )
        )
    unknown = [
        name
        for name in header
        if name
        and name not in COLUMNS
        and not _prefixed(name, "vital:")
        and not _prefixed(name, "head:")
    ]
    bad_vitals = [
        name
        for name in header
        if _prefixed(name, "vital:") and name[len("vital:") :].strip() not in VITAL_NAMES
    ]
    if bad_vitals:
        problems.append(
            RowProblem(
                1,
                None,
                "header",
                f"unknown vital columns {', '.join(repr(n) for n in bad_vitals)}; the known "
                f"vitals are {', '.join(VITAL_NAMES)} (as vital:<name>).",
            )
        )
    if unknown:
        problems.append(
            RowProblem(
                1,
                None,
                "header",
                f"unknown columns {', '.join(repr(n) for n in unknown)}; the known columns are "
                f"{', '.join(COLUMNS)}, plus vital:<name> and head:<name>. Rename or remove them.",
            )
        )
    records: list[_Raw] = []
    while True:
        start = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            problems.append(
                RowProblem(start, None, "", f"the row cannot be parsed as CSV ({exc}).")
            )
            break
        if not cells or all(not cell.strip() for cell in cells):
            continue
        if len(cells) > len(header):
            problems.append(
                RowProblem(
                    start,
                    cells[0].strip() or None,
                    "",
                    f"the row has {len(cells)} values but the header has {len(header)} columns; "
                    "quote values that contain commas.",
                )
            )
            continue
        values = {
            name: cell
            for name, cell in zip(header, cells, strict=False)
            if cell.strip() and name not in bad_vitals
        }
        nameless = values.pop("", None)
        if nameless is not None:
            problems.append(
                RowProblem(
                    start,
                    values.get("case_id", "").strip() or None,
                    "",
                    f"the value {nameless.strip()!r} is in a column without a header name; "
                    "name the column or remove the value.",
                )
            )
        records.append(_Raw(start, values))
    return records, set(header)


def _prefixed(name: str, prefix: str) -> bool:
    return name.startswith(prefix) and len(name) > len(prefix)


def _read_jsonl(text: str, problems: list[RowProblem]) -> list[_Raw]:
    records: list[_Raw] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(
                RowProblem(
                    number, None, "", f"invalid JSON ({exc.msg} at character {exc.pos + 1})."
                )
            )
            continue
        if not isinstance(value, dict):
            problems.append(
                RowProblem(
                    number,
                    None,
                    "",
                    f"each line must be a JSON object {{...}}, not {_json_type(value)}.",
                )
            )
            continue
        case_id = value.get("case_id")
        unknown = [
            key
            for key in value
            if key not in COLUMNS and not _prefixed(key, "vital:") and not _prefixed(key, "head:")
        ]
        if unknown:
            problems.append(
                RowProblem(
                    number,
                    case_id if isinstance(case_id, str) and case_id.strip() else None,
                    ", ".join(unknown),
                    f"unknown keys {', '.join(repr(k) for k in unknown)}; the known keys are "
                    f"{', '.join(COLUMNS)}, plus vital:<name> and head:<name>.",
                )
            )
        records.append(_Raw(number, {k: v for k, v in value.items() if v is not None}))
    return records


def _plain_text(value: Any) -> str | None:
    """A stripped string (an integer read as its digits); None when absent, blank or not text."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    return "null"


# --------------------------------------------------------------------------------------------
# Validating one record


class _RowChecker:
    """Turns one raw record into a ManifestRow, collecting every problem instead of stopping."""

    def __init__(
        self,
        raw: _Raw,
        base: Path,
        *,
        check_files: bool,
        known_labels: frozenset[str] | None,
        known_heads: Mapping[str, frozenset[str]] | None,
    ) -> None:
        self.raw = raw
        self.base = base
        self.check_files = check_files
        self.known_labels = known_labels
        self.known_heads = known_heads
        self.problems: list[RowProblem] = []
        self.case_id = _plain_text(raw.values.get("case_id"))

    def problem(self, column: str, message: str) -> None:
        self.problems.append(RowProblem(self.raw.line, self.case_id, column, message))

    # -- field readers -----------------------------------------------------------------------

    def text(self, column: str) -> str | None:
        """A string value (numbers accepted as text); None when absent or blank."""
        value = self.raw.values.get(column)
        if value is None:
            return None
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            self.problem(column, f"must be text, not {_json_type(value)}.")
            return None
        return value.strip() or None

    def string_list(self, column: str) -> list[str]:
        """A ';'-separated string or a JSON list of strings; blanks dropped."""
        value = self.raw.values.get(column)
        if value is None:
            return []
        if isinstance(value, str):
            return [part.strip() for part in value.split(";") if part.strip()]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return [v.strip() for v in value if v.strip()]
        self.problem(column, "must be a list of texts (CSV: separated by ';').")
        return []

    def number(self, column: str) -> float | None:
        value = self.raw.values.get(column)
        if value is None:
            return None
        return self.to_number(column, value)

    def to_number(self, column: str, value: Any) -> float | None:
        if isinstance(value, bool):
            self.problem(column, f"must be a number, not {str(value).lower()}.")
            return None
        if isinstance(value, str):
            if not value.strip():
                return None
            try:
                number = float(value.strip())
            except ValueError:
                self.problem(column, f"{value.strip()!r} is not a number; write e.g. 72 or 36.8.")
                return None
        elif isinstance(value, int | float):
            number = float(value)
        else:
            self.problem(column, f"must be a number, not {_json_type(value)}.")
            return None
        if not math.isfinite(number):
            self.problem(column, f"must be a finite number, not {value!r}.")
            return None
        return number

    def boolean(self, column: str) -> bool:
        value = self.raw.values.get(column)
        if value is None or isinstance(value, bool):
            return bool(value)
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str):
            word = value.strip().lower()
            if word in _TRUE:
                return True
            if word in _FALSE:
                return False
        self.problem(column, f"{value!r} is not true or false; write true/false, yes/no or 1/0.")
        return False

    def json_object(self, column: str) -> dict[str, Any]:
        """A JSON object given as an object (JSONL) or as JSON text (CSV)."""
        value = self.raw.values.get(column)
        if value is None:
            return {}
        if isinstance(value, str):
            if not value.strip():
                return {}
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                self.problem(
                    column,
                    f"is not valid JSON ({exc.msg} at character {exc.pos + 1}); write an object "
                    'such as {"heart_rate_bpm": 72} with double quotes.',
                )
                return {}
        if not isinstance(value, dict):
            self.problem(column, f"must be a JSON object {{...}}, not {_json_type(value)}.")
            return {}
        return value

    def path(self, column: str, value: str, *, wfdb: bool = False) -> Path:
        """Resolve against the manifest's folder and, when asked, check the file is there."""
        resolved = (self.base / Path(value).expanduser()).resolve()
        if not self.check_files:
            return resolved
        if resolved.is_dir():
            self.problem(column, f"{value} is a folder, not a file; name the file itself.")
        elif not resolved.is_file():
            header = resolved.with_name(resolved.name + ".hea")
            if wfdb and resolved.suffix.lower() != ".hea" and header.is_file():
                return resolved  # a WFDB record named without its .hea extension
            self.problem(
                column,
                f"file {value} not found (looked for {resolved}); relative paths are relative "
                "to the manifest's folder.",
            )
        return resolved

    def label(self, column: str, value: str) -> str | None:
        """``system|code`` or ``alias:CODE`` -> ``system|code``; None (and a problem) if bad."""
        if "|" in value:
            system, _, code = value.partition("|")
            system = SYSTEM_ALIASES.get(system.strip().lower(), system.strip())
        elif ":" in value and value.split(":", 1)[0].strip().lower() in SYSTEM_ALIASES:
            alias, _, code = value.partition(":")
            system = SYSTEM_ALIASES[alias.strip().lower()]
        else:
            self.problem(
                column,
                f"label {value!r} has no code system; write it as system|code "
                f"(e.g. {SNOMED}|426783006) or alias:code (e.g. snomed:426783006; aliases: "
                f"{', '.join(sorted(SYSTEM_ALIASES))}).",
            )
            return None
        code = code.strip()
        if not system:
            self.problem(column, f"label {value!r} has an empty code system before '|'.")
            return None
        if not code:
            self.problem(column, f"label {value!r} has no code after the code system.")
            return None
        if any(ch.isspace() for ch in code) or "|" in code:
            self.problem(
                column,
                f"label {value!r}: the code {code!r} contains spaces or '|'; give the bare code "
                "(e.g. 426783006), not its display text.",
            )
            return None
        name = f"{system}|{code}"
        if self.known_labels is not None and name not in self.known_labels:
            self.problem(
                column,
                f"label {name} is not one of the model's labels "
                f"({', '.join(sorted(self.known_labels)) or 'none'}); remove it or train a model "
                "that has it.",
            )
            return None
        return name

    # -- the row ---------------------------------------------------------------------------

    def check(self, has_column: Mapping[str, bool]) -> ManifestRow | None:
        raw_case = self.raw.values.get("case_id")
        if self.case_id is None and isinstance(raw_case, bool | list | dict):
            self.problem("case_id", f"must be text, not {_json_type(raw_case)}.")
        elif self.case_id is None and has_column.get("case_id", True):
            self.problem("case_id", "every row needs a case_id; fill it in.")
        group_id = self.text("group_id")
        if group_id is None and has_column.get("group_id", True):
            self.problem(
                "group_id",
                "every row needs a group_id (the patient, so that one patient's cases stay in "
                "one split); use the case_id when each case is its own patient.",
            )
        split_text = self.text("split")
        split: str | None = None
        if split_text is not None:
            split = split_text.lower()
            if split not in SPLITS:
                self.problem(
                    "split",
                    f"unknown split {split_text!r}; use train, val or test, or leave it empty "
                    "to let the tool assign one.",
                )
                split = None

        images = tuple(self.path("images", value) for value in self.string_list("images"))
        ecg_text = self.text("ecg")
        ecg = self.path("ecg", ecg_text, wfdb=True) if ecg_text else None
        start = self.number("ecg_start_s")
        duration = self.number("ecg_duration_s")
        if start is not None and start < 0:
            self.problem("ecg_start_s", f"the ECG window cannot start before 0 s (got {start:g}).")
        if duration is not None and duration <= 0:
            self.problem("ecg_duration_s", f"the ECG window must last > 0 s (got {duration:g}).")
        if ecg_text is None and (start is not None or duration is not None):
            column = "ecg_start_s" if start is not None else "ecg_duration_s"
            self.problem(column, "an ECG window is given but the row has no ecg file; add it.")
        note_value = self.text("note")
        note_path = self.path("note", note_value) if note_value else None
        note_raw = self.raw.values.get("note_text")
        note_text: str | None = None
        if isinstance(note_raw, str):
            note_text = note_raw if note_raw.strip() else None
        elif note_raw is not None:
            self.problem("note_text", f"must be text, not {_json_type(note_raw)}.")
        if note_path is not None and note_text is not None:
            self.problem("note", "give the note either as a file (note) or as note_text, not both.")

        vitals = self.vitals()
        no_file = not images and ecg_text is None and note_value is None
        if no_file and note_text is None and not vitals:
            self.problem(
                "images",
                "the row has no input: give at least one of images, ecg, note, note_text or "
                "vitals.",
            )

        labels = self.labels("labels")
        unknown = self.labels("unknown_labels")
        both = sorted(set(labels) & set(unknown))
        if both:
            self.problem(
                "unknown_labels",
                f"{', '.join(both)} is listed both as a label and as unknown; keep it in one.",
            )
        heads = self.heads()
        composite = self.boolean("composite")
        synthetic = self.boolean("synthetic")
        if synthetic and split == "test":
            self.problem(
                "split",
                "a synthetic case cannot be in the test split (the test split measures real "
                "data); use train or val.",
            )
        sources = {}
        for key, value in self.json_object("sources").items():
            if isinstance(value, dict | list):
                self.problem("sources", f"source {key!r} must be text, not {_json_type(value)}.")
            elif value is not None:
                sources[str(key)] = str(value)

        if self.problems or self.case_id is None or group_id is None:
            return None
        return ManifestRow(
            line=self.raw.line,
            case_id=self.case_id,
            group_id=group_id,
            split=split,
            images=images,
            ecg=ecg,
            ecg_start_s=start,
            ecg_duration_s=duration,
            note_path=note_path,
            note_text=note_text,
            vitals=vitals,
            labels=labels,
            unknown=unknown,
            heads=heads,
            composite=composite,
            synthetic=synthetic,
            sources=sources,
        )

    def labels(self, column: str) -> tuple[str, ...]:
        names: list[str] = []
        for value in self.string_list(column):
            name = self.label(column, value)
            if name is not None and name not in names:
                names.append(name)
        return tuple(names)

    def vitals(self) -> dict[str, float]:
        given: dict[str, tuple[str, Any]] = {}
        for name, value in self.json_object("vitals").items():
            given[str(name)] = ("vitals", value)
        for key, value in self.raw.values.items():
            if _prefixed(key, "vital:"):
                name = key[len("vital:") :].strip()
                if name in given:
                    self.problem(key, f"vital {name} is given twice (also in vitals); keep one.")
                given[name] = (key, value)
        vitals: dict[str, float] = {}
        for name, (column, value) in given.items():
            if name not in VITAL_NAMES:
                self.problem(
                    column,
                    f"unknown vital {name!r}; the known vitals are {', '.join(VITAL_NAMES)}.",
                )
                continue
            if value is None:
                continue
            number = self.to_number(column if column != "vitals" else f"vitals.{name}", value)
            if number is not None:
                vitals[name] = number
        return vitals

    def heads(self) -> dict[str, str]:
        given: dict[str, tuple[str, Any]] = {}
        for name, value in self.json_object("heads").items():
            given[str(name)] = ("heads", value)
        for key, value in self.raw.values.items():
            if _prefixed(key, "head:"):
                name = key[len("head:") :].strip()
                if name in given:
                    self.problem(key, f"head {name} is given twice (also in heads); keep one.")
                given[name] = (key, value)
        heads: dict[str, str] = {}
        for name, (column, value) in given.items():
            if value is None or (isinstance(value, str) and not value.strip()):
                continue
            if not isinstance(value, str | int) or isinstance(value, bool):
                self.problem(
                    column, f"head {name}: the class must be text, not {_json_type(value)}."
                )
                continue
            text = str(value).strip()
            if self.known_heads is not None:
                if name not in self.known_heads:
                    self.problem(
                        column,
                        f"the model has no head {name!r} (its heads: "
                        f"{', '.join(sorted(self.known_heads)) or 'none'}).",
                    )
                    continue
                if text not in self.known_heads[name]:
                    self.problem(
                        column,
                        f"{text!r} is not a class of head {name} (classes: "
                        f"{', '.join(sorted(self.known_heads[name]))}).",
                    )
                    continue
            heads[name] = text
        return heads


# --------------------------------------------------------------------------------------------
# Public API


def load_manifest(
    path: Path | str,
    *,
    check_files: bool = True,
    known_labels: Sequence[str] | None = None,
    known_heads: Mapping[str, Sequence[str]] | None = None,
) -> Manifest:
    """Read and validate a manifest (.csv / .jsonl / .ndjson, optionally .gz).

    Everything is checked first; any problem raises one :class:`ManifestError` naming every
    bad row, so no partial manifest is ever returned. ``known_labels`` (``system|code`` or
    ``alias:code``) and ``known_heads`` restrict labels and head classes to a model's."""
    path = Path(path)
    fmt = _format_of(path)
    if fmt is None:
        raise ManifestError(
            path,
            [
                RowProblem(
                    0,
                    None,
                    "",
                    "the file name must end in .csv, .jsonl or .ndjson "
                    "(optionally followed by .gz).",
                )
            ],
        )
    text = _read_text(path)
    problems: list[RowProblem] = []
    has_column: dict[str, bool] = {}
    if fmt == "csv":
        records, header = _read_csv(text, problems)
        for required in ("case_id", "group_id"):
            has_column[required] = required in header
            if header and required not in header:
                problems.append(
                    RowProblem(1, None, "header", f"the manifest has no {required} column; add it.")
                )
    else:
        records = _read_jsonl(text, problems)

    labels_allowed = _known_label_set(path, known_labels)
    heads_allowed = (
        None
        if known_heads is None
        else {name: frozenset(classes) for name, classes in known_heads.items()}
    )
    base = path.parent.resolve()
    rows: list[ManifestRow] = []
    first_line: dict[str, int] = {}
    for raw in records:
        checker = _RowChecker(
            raw,
            base,
            check_files=check_files,
            known_labels=labels_allowed,
            known_heads=heads_allowed,
        )
        row = checker.check(has_column)
        if checker.case_id is not None:
            if checker.case_id in first_line:
                checker.problem(
                    "case_id",
                    f"case_id {checker.case_id} is already used on line "
                    f"{first_line[checker.case_id]}; case ids must be unique.",
                )
                row = None
            else:
                first_line[checker.case_id] = raw.line
        problems.extend(checker.problems)
        if row is not None:
            rows.append(row)
    problems.extend(_group_split_problems(records))
    if not records and not problems:
        problems.append(RowProblem(0, None, "", "the manifest has no cases; add at least one row."))
    if problems:
        problems.sort(key=lambda p: p.line)
        raise ManifestError(path, problems)
    return Manifest(path=path, rows=tuple(rows))


def _known_label_set(path: Path, known: Sequence[str] | None) -> frozenset[str] | None:
    if known is None:
        return None
    checker = _RowChecker(
        _Raw(0, {}), path.parent, check_files=False, known_labels=None, known_heads=None
    )
    names = {checker.label("known_labels", value) for value in known}
    if checker.problems:
        raise ValueError("; ".join(p.message for p in checker.problems))
    return frozenset(name for name in names if name is not None)


def _group_split_problems(records: Sequence[_Raw]) -> list[RowProblem]:
    """A group (patient) whose rows name different splits: report each row that disagrees."""
    first: dict[str, tuple[str, int]] = {}
    problems: list[RowProblem] = []
    for raw in records:
        group = _plain_text(raw.values.get("group_id"))
        split_text = _plain_text(raw.values.get("split"))
        split = split_text.lower() if split_text else None
        if group is None or split not in SPLITS:
            continue
        if group not in first:
            first[group] = (split, raw.line)
        elif first[group][0] != split:
            problems.append(
                RowProblem(
                    raw.line,
                    _plain_text(raw.values.get("case_id")),
                    "split",
                    f"group {group} is in split {split} here but in {first[group][0]} on line "
                    f"{first[group][1]}; one patient's cases must all be in the same split.",
                )
            )
    return problems


def _strata(row: ManifestRow) -> list[str]:
    """What a split is stratified on: the positive labels and each extra head's class."""
    return [*row.labels, *(f"head:{name}={value}" for name, value in sorted(row.heads.items()))]


def assign_splits(
    manifest: Manifest, fractions: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 0
) -> Manifest:
    """Give every row without a split one, keeping groups whole and labels balanced.

    Rows that have a split keep it, and the rest of their group joins them. Other groups go
    through grouped iterative stratification (Sechidis et al., 2011): the rarest label first,
    each group to the split that still wants that label most, so the split sizes follow
    ``fractions`` (train, val, test). Before that, a label's first groups fill the splits that
    have none of it yet, so a rare label reaches every split once it has at least as many
    groups as there are splits. Extra-head classes count as labels; synthetic groups never
    go to test. The same manifest and seed always give the same splits."""
    if (
        len(fractions) != len(SPLITS)
        or any(not math.isfinite(f) or f < 0 for f in fractions)
        or sum(fractions) <= 0
    ):
        raise ValueError(
            f"fractions must be {len(SPLITS)} non-negative numbers (train, val, test) with a "
            f"positive sum, not {tuple(fractions)!r}."
        )
    total_fraction = float(sum(fractions))
    share = [float(f) / total_fraction for f in fractions]
    rng = random.Random(seed)

    groups: dict[str, list[ManifestRow]] = defaultdict(list)
    for row in manifest.rows:
        groups[row.group_id].append(row)
    fixed: dict[str, str] = {}
    for group_id, rows in groups.items():
        named = {row.split for row in rows if row.split is not None}
        if len(named) > 1:
            raise ManifestError(
                manifest.path,
                [
                    RowProblem(
                        row.line,
                        row.case_id,
                        "split",
                        f"group {group_id} has rows in {', '.join(sorted(named))}; one "
                        "patient's cases must all be in the same split.",
                    )
                    for row in rows
                    if row.split is not None
                ],
            )
        if named:
            fixed[group_id] = named.pop()

    label_counts = {
        g: Counter(s for row in rows for s in _strata(row)) for g, rows in groups.items()
    }
    totals: Counter[str] = Counter()
    for counts in label_counts.values():
        totals.update(counts)
    n_rows = len(manifest.rows)
    # Remaining desire per split: overall rows and per label; counts of what each split holds.
    want_rows = [share[s] * n_rows for s in range(len(SPLITS))]
    want_label = [{label: share[s] * n for label, n in totals.items()} for s in range(len(SPLITS))]
    held = [Counter[str]() for _ in SPLITS]
    assignment: dict[str, str] = {}

    def place(group_id: str, split_index: int) -> None:
        assignment[group_id] = SPLITS[split_index]
        want_rows[split_index] -= len(groups[group_id])
        for label, n in label_counts[group_id].items():
            want_label[split_index][label] -= n
            held[split_index][label] += n

    for group_id in sorted(fixed):
        place(group_id, SPLITS.index(fixed[group_id]))

    open_groups = sorted(g for g in groups if g not in fixed)
    rng.shuffle(open_groups)
    open_groups.sort(key=lambda g: -len(groups[g]))  # big groups first: easier to pack

    def allowed(group_id: str) -> list[int]:
        synthetic = any(row.synthetic for row in groups[group_id])
        splits = [s for s in range(len(SPLITS)) if share[s] > 0]
        if synthetic:
            splits = [s for s in splits if SPLITS[s] != "test"] or splits
        return splits

    def best(candidates: Sequence[int], label: str | None) -> int:
        keys = {
            s: (want_label[s][label] if label is not None else 0.0, want_rows[s], rng.random())
            for s in candidates
        }
        return max(candidates, key=lambda s: keys[s])

    remaining = list(open_groups)
    while True:
        pending: Counter[str] = Counter()
        for group_id in remaining:
            pending.update(label_counts[group_id].keys())
        if not pending:
            break
        label = min(pending, key=lambda name: (pending[name], name))
        carrying = [g for g in remaining if label in label_counts[g]]
        for group_id in carrying:
            candidates = allowed(group_id)
            lacking = [s for s in candidates if held[s][label] == 0]
            place(group_id, best(lacking or candidates, label))
        placed = set(carrying)
        remaining = [g for g in remaining if g not in placed]
    for group_id in remaining:
        place(group_id, best(allowed(group_id), None))

    assigned = tuple(
        replace(row, split=assignment[row.group_id]) if row.split is None else row
        for row in manifest.rows
    )
    return Manifest(path=manifest.path, rows=assigned)


def write_manifest(rows: Manifest | Iterable[ManifestRow], path: Path | str) -> None:
    """Write rows as CSV or JSONL (by suffix, optionally .gz) so that load_manifest reads them
    back unchanged. Paths under the manifest's folder are written relative to it."""
    path = Path(path)
    fmt = _format_of(path)
    if fmt is None:
        raise ValueError(
            f"{path}: the file name must end in .csv, .jsonl or .ndjson (optionally .gz)."
        )
    items = list(rows.rows if isinstance(rows, Manifest) else rows)
    base = path.parent.resolve()
    text = _csv_text(items, base) if fmt == "csv" else _jsonl_text(items, base)
    data = text.encode("utf-8")
    if _is_gzip(path):
        data = gzip.compress(data, mtime=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_bytes(data)
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)


def _relative(file: Path, base: Path) -> str:
    return file.relative_to(base).as_posix() if file.is_relative_to(base) else str(file)


def _record(row: ManifestRow, base: Path) -> dict[str, Any]:
    """A row as JSON-ready values, omitting what is empty."""
    record: dict[str, Any] = {"case_id": row.case_id, "group_id": row.group_id}
    if row.split is not None:
        record["split"] = row.split
    if row.images:
        record["images"] = [_relative(p, base) for p in row.images]
    if row.ecg is not None:
        record["ecg"] = _relative(row.ecg, base)
    if row.ecg_start_s is not None:
        record["ecg_start_s"] = row.ecg_start_s
    if row.ecg_duration_s is not None:
        record["ecg_duration_s"] = row.ecg_duration_s
    if row.note_path is not None:
        record["note"] = _relative(row.note_path, base)
    if row.note_text is not None:
        record["note_text"] = row.note_text
    if row.labels:
        record["labels"] = list(row.labels)
    if row.unknown:
        record["unknown_labels"] = list(row.unknown)
    if row.vitals:
        record["vitals"] = dict(row.vitals)
    if row.heads:
        record["heads"] = dict(row.heads)
    if row.composite:
        record["composite"] = True
    if row.synthetic:
        record["synthetic"] = True
    if row.sources:
        record["sources"] = dict(row.sources)
    return record


def _jsonl_text(rows: Sequence[ManifestRow], base: Path) -> str:
    return "".join(json.dumps(_record(row, base), ensure_ascii=False) + "\n" for row in rows)


def _csv_text(rows: Sequence[ManifestRow], base: Path) -> str:
    vital_names = [n for n in VITAL_NAMES if any(n in row.vitals for row in rows)]
    head_names = sorted({name for row in rows for name in row.heads})
    columns = [c for c in COLUMNS if c not in ("vitals", "heads")]
    columns += [f"vital:{n}" for n in vital_names] + [f"head:{n}" for n in head_names]
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        record = _record(row, base)
        for key in ("images", "labels", "unknown_labels"):
            values = record.get(key, [])
            if any(";" in value for value in values):
                raise ValueError(
                    f"Case {row.case_id}: {key} value contains ';', which CSV uses as a "
                    "separator; write the manifest as JSONL instead."
                )
            record[key] = ";".join(values)
        for key in ("composite", "synthetic"):
            record[key] = "true" if record.get(key) else "false"
        if "sources" in record:
            record["sources"] = json.dumps(record["sources"], ensure_ascii=False)
        for name in vital_names:
            record[f"vital:{name}"] = repr(row.vitals[name]) if name in row.vitals else ""
        for name in head_names:
            record[f"head:{name}"] = row.heads.get(name, "")
        cells = []
        for column in columns:
            value = record.get(column, "")
            cells.append(repr(value) if isinstance(value, float) else str(value))
        writer.writerow(cells)
    return buffer.getvalue()
