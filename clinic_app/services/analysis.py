"""Analyse files with the model: readers' domain objects -> model inputs -> Predictor -> dict.

Files from outside are first read in the sandboxed child (``read_input_isolated``); a slide's
pixels are then read in-process from the validated file. The model package's own errors become
the app's: a bundle problem is a ModelError, an unusable input an InputError.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from clinic_app.config.settings import Settings
from clinic_app.domain.errors import ClinicError, InputError, ModelError

if TYPE_CHECKING:
    from model.predictor import CaseInput, Prediction, Predictor

T = TypeVar("T")
BATCH_COLUMNS = ("id", "image", "ecg", "note", "note_text", "vitals")
#: Largest batch file read (the inputs it names are read one by one, each capped).
MAX_BATCH_FILE_BYTES = 64 * 1024 * 1024

_cache_lock = threading.Lock()
_predictors: dict[tuple[str, str, bool], Predictor] = {}


def resolve_bundle(settings: Settings, bundle: Path | None) -> Path:
    """The bundle to use: ``--bundle``, else the settings' or the first installed one."""
    if bundle is not None:
        return bundle
    from clinic_app.services.model_bundles import choose_bundle

    choice = choose_bundle(settings)
    if choice.path is None:
        raise ModelError(
            "No model bundle is installed.",
            hint="Pass one with --bundle DIR, or set model_bundle in settings.toml "
            "(CLINICFUSION_MODEL_BUNDLE).",
        )
    return choice.path


@contextmanager
def model_errors() -> Iterator[None]:
    """Translate the model package's errors into the app's error family."""
    from model.errors import BundleError, DeviceUnavailableError, ModelPackageError
    from model.preprocess import ModelInputError

    try:
        yield
    except ModelInputError as exc:
        raise InputError(str(exc)) from exc
    except (BundleError, DeviceUnavailableError) as exc:
        raise ModelError(str(exc)) from exc
    except ModelPackageError as exc:
        raise ModelError(str(exc)) from exc


def get_predictor(bundle_dir: Path, device: str = "auto", *, explain: bool = False) -> Predictor:
    """One Predictor per (bundle, device, explain) in this process, loaded on first use."""
    from model.predictor import Predictor

    key = (str(Path(bundle_dir).resolve()), device, explain)
    with _cache_lock:
        predictor = _predictors.get(key)
        if predictor is None:
            with model_errors():
                predictor = Predictor(bundle_dir, device, explain=explain)
            _predictors[key] = predictor
        return predictor


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class _CaseFiles:
    """A case read from files, with the slides to close after the analysis."""

    case: CaseInput
    inputs: dict[str, dict[str, str]]
    stack: ExitStack


def _read_case(
    image: Path | None,
    ecg: Path | None,
    note_path: Path | None,
    note_text: str | None,
    vitals: Mapping[str, Any] | None,
    case_id: str | None = None,
) -> _CaseFiles:
    """Read each given file safely into what the model takes; InputError names a bad one."""
    from clinic_app.domain.notes import ClinicalNote
    from clinic_app.domain.signals import EcgRecording
    from clinic_app.io.readers import LoadedImage, read_input_isolated
    from model.predictor import CaseInput, EcgInput

    if note_path is not None and note_text is not None:
        raise InputError("Give the note either as a file or as text, not both.")
    inputs: dict[str, dict[str, str]] = {}
    stack = ExitStack()
    try:
        slide = None
        if image is not None:
            loaded = read_input_isolated(image)
            if not isinstance(loaded, LoadedImage):
                raise InputError(f"{image.name} is not a pathology image or slide.")
            from clinic_app.io.slides import open_slide

            slide = open_slide(image)
            stack.callback(slide.close)
            inputs["image"] = {"file": image.name, "sha256": _file_sha256(image)}
        ecg_input = None
        if ecg is not None:
            recording = read_input_isolated(ecg)
            if not isinstance(recording, EcgRecording):
                raise InputError(f"{ecg.name} is not an ECG recording.")
            ecg_input = EcgInput(
                recording.samples,
                recording.sampling_rate_hz,
                tuple(recording.lead_names),
                recording.units,
            )
            inputs["ecg"] = {"file": ecg.name, "sha256": _file_sha256(ecg)}
        text = note_text
        if note_path is not None:
            note = read_input_isolated(note_path)
            if not isinstance(note, ClinicalNote):
                raise InputError(f"{note_path.name} is not a text note.")
            text = note.text
            inputs["note"] = {"file": note_path.name, "sha256": _file_sha256(note_path)}
        elif text is not None:
            inputs["note"] = {"sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}
        if vitals is not None and not isinstance(vitals, Mapping):
            raise InputError('The vitals must be a JSON object such as {"age": 61}.')
        if image is None and ecg is None and text is None and not vitals:
            raise InputError(
                "Give at least one input: --image, --ecg, --note, --note-text or --vitals."
            )
        case = CaseInput(
            image=slide, ecg=ecg_input, note=text, vitals=dict(vitals or {}) or None,
            case_id=case_id,
        )  # fmt: skip
        return _CaseFiles(case, inputs, stack)
    except BaseException:
        stack.close()
        raise


def _result(prediction: Prediction, inputs: dict[str, dict[str, str]]) -> dict[str, Any]:
    return {**prediction.as_dict(), "inputs": inputs}


def predict_files(
    bundle_dir: Path,
    image: Path | None,
    ecg: Path | None,
    note_path: Path | None,
    note_text: str | None,
    vitals: Mapping[str, Any] | None,
    device: str = "auto",
    *,
    explain: bool = False,
) -> dict[str, Any]:
    """Analyse one case given as files and/or text; the JSON-ready result."""
    predictor = get_predictor(bundle_dir, device, explain=explain)
    with model_errors():
        predictor.load()
    files = _read_case(image, ecg, note_path, note_text, vitals)
    with files.stack, model_errors():
        prediction = predictor.predict([files.case])[0]
    return _result(prediction, files.inputs)


# -- batches ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class BatchRow:
    """One line of a batch file (paths resolved against the batch file's folder)."""

    line: int
    id: str
    image: Path | None
    ecg: Path | None
    note: Path | None
    note_text: str | None
    vitals: Mapping[str, Any] | None
    error: str | None = None


def read_batch_file(path: Path) -> list[BatchRow]:
    """Rows of a CSV (header row) or JSONL batch file; a malformed row carries its error."""
    try:
        size = path.stat().st_size
        if size > MAX_BATCH_FILE_BYTES:
            raise InputError(f"{path.name} is larger than {MAX_BATCH_FILE_BYTES // 2**20} MiB.")
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise InputError(f"The batch file {path} does not exist.") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(
            f"The batch file {path.name} cannot be read as UTF-8 text ({exc})."
        ) from exc
    base = path.parent
    stripped = text.lstrip()
    rows: list[BatchRow] = []
    if stripped.startswith("{") or path.suffix.lower() in (".jsonl", ".ndjson"):
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError("a line must be a JSON object")
            except ValueError as exc:
                rows.append(_bad_row(number, f"line {number} is not a JSON object ({exc})"))
                continue
            rows.append(_row(number, record, base))
    else:
        reader = csv.DictReader(io.StringIO(text))
        fields = [f.strip() for f in (reader.fieldnames or [])]
        unknown = sorted(set(fields) - set(BATCH_COLUMNS))
        if not fields or unknown:
            raise InputError(
                f"The batch file {path.name} needs a header row with the columns "
                f"{', '.join(BATCH_COLUMNS)}"
                + (f"; unknown: {', '.join(unknown)}." if unknown else ".")
            )
        for record in reader:
            number = reader.line_num
            clean = {k.strip(): v for k, v in record.items() if k is not None}
            if None in record:
                rows.append(_bad_row(number, f"line {number} has more values than columns"))
                continue
            rows.append(_row(number, clean, base))
    if not rows:
        raise InputError(f"The batch file {path.name} holds no rows.")
    return rows


def _bad_row(number: int, message: str, row_id: str | None = None) -> BatchRow:
    return BatchRow(number, row_id or f"line-{number}", None, None, None, None, None, message)


def _row(number: int, record: Mapping[str, Any], base: Path) -> BatchRow:
    row_id = record.get("id")
    row_id = str(row_id) if row_id not in (None, "") else f"line-{number}"

    def path_of(key: str) -> Path | None:
        value = record.get(key)
        if value in (None, ""):
            return None
        candidate = Path(str(value)).expanduser()
        return candidate if candidate.is_absolute() else base / candidate

    vitals = record.get("vitals")
    if isinstance(vitals, str):
        if vitals.strip():
            try:
                vitals = json.loads(vitals)
            except ValueError:
                return _bad_row(number, f"the vitals of row {row_id} are not valid JSON", row_id)
        else:
            vitals = None
    if vitals is not None and not isinstance(vitals, dict):
        return _bad_row(number, f"the vitals of row {row_id} must be a JSON object", row_id)
    note_text = record.get("note_text")
    note_text = str(note_text) if note_text not in (None, "") else None
    return BatchRow(
        number, row_id, path_of("image"), path_of("ecg"), path_of("note"), note_text, vitals
    )


def predict_batch(
    bundle_dir: Path,
    rows: Sequence[BatchRow],
    device: str = "auto",
    *,
    explain: bool = False,
    emit: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Analyse every row in one process, ``max_batch`` cases per forward pass, in order.

    A row that cannot be read or analysed gives ``{"id": ..., "error": ...}``; the others go on.
    ``emit`` receives each result as soon as its batch is done (for streaming output)."""
    predictor = get_predictor(bundle_dir, device, explain=explain)
    with model_errors():
        predictor.load()
    results: list[dict[str, Any]] = []

    def out(result: dict[str, Any]) -> None:
        results.append(result)
        if emit is not None:
            emit(result)

    for start in range(0, len(rows), predictor.max_batch):
        chunk = rows[start : start + predictor.max_batch]
        with ExitStack() as stack:
            pending: list[tuple[BatchRow, _CaseFiles | None, str | None]] = []
            for row in chunk:
                if row.error is not None:
                    pending.append((row, None, row.error))
                    continue
                try:
                    files = _read_case(
                        row.image, row.ecg, row.note, row.note_text, row.vitals, row.id
                    )
                except ClinicError as exc:
                    pending.append((row, None, str(exc)))
                    continue
                stack.enter_context(files.stack)
                pending.append((row, files, None))
            cases = [item.case for _, item, _ in pending if item is not None]
            with model_errors():
                predicted = iter(predictor.predict_or_fail(cases)) if cases else iter(())
            from model.predictor import CaseFailure

            for row, read, error in pending:
                if read is None:
                    out({"id": row.id, "error": error})
                    continue
                result = next(predicted)
                if isinstance(result, CaseFailure):
                    out({"id": row.id, "error": result.message})
                else:
                    out({"id": row.id, **_result(result, read.inputs)})
    return results
