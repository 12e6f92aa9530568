"""Train and evaluate model bundles: manifests or signed cases -> model.training -> a bundle.

The model package trains on plain arrays and knows nothing of the app; this service gives it
what only the app has: a case loader that reads a manifest row's files with the app's hardened
readers (:mod:`clinic_app.io`, each outside file parsed in the capped child process), the cases
clinicians signed since a bundle was made with their decisions as labels (an audited read that
needs ``model.train``), and the privacy ledger that DP-SGD training is charged to.

Every problem a person can fix is a ClinicError: a broken manifest lists every bad row, an
unreadable file names the manifest line, the case and the file.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from clinic_app.config.settings import Settings
from clinic_app.domain.errors import ClinicError, InputError, ModelError, StorageError

if TYPE_CHECKING:
    from clinic_app.domain.pathology import SlideInfo, SlideSource
    from clinic_app.domain.signals import EcgRecording
    from clinic_app.io.limits import ReadLimits
    from clinic_app.io.readers import LoadedInput
    from clinic_app.services.context import Actor
    from clinic_app.storage.engine import Database
    from model.config import FusionConfig, ImageConfig, LabelSpec
    from model.predictor import CaseInput
    from model.training.cases import TrainingCase
    from model.training.manifest import Manifest, ManifestRow
    from model.training.trainer import TrainOptions, TrainResult

log = logging.getLogger(__name__)

CaseLoader = Callable[["ManifestRow"], "CaseInput"]
#: What ``--cases`` accepts: fine-tuning on the cases clinicians signed since the bundle.
CASE_SOURCES = ("signed",)
DEFAULT_VARIANT = "fusion-small"
DEFAULT_VERSION = "1.0.0"
#: Audit event of every read of case data for training.
TRAINING_READ_EVENT = "model.training_data_read"
#: Privacy-ledger dataset that DP training on signed cases is charged to.
SIGNED_CASES_DATASET = "clinical"
#: Bytes of decoded ECG recordings kept between rows (windows of one long record reuse it).
ECG_CACHE_BYTES = 512 * 1024 * 1024


class CaseLoadError(InputError, ValueError):
    """A manifest row's file cannot be read; the message names the line, the case and the file.

    Also a ValueError so that ``model.training.data.build_cases`` collects every failing row
    and reports them together instead of stopping at the first."""


# -- loading a manifest row's files --------------------------------------------------------------
class _OwnedSlide:
    """A slide reader that closes itself (and removes an unpacked archive) once unreferenced.

    Training prepares thousands of cases; the predictor's preparation only reads from the
    reader, so the loader cannot close it at the right time: the finalizer does."""

    def __init__(self, slide: SlideSource, stack: ExitStack) -> None:
        self._slide = slide
        self._finalizer = weakref.finalize(self, stack.close)

    @property
    def info(self) -> SlideInfo:
        return self._slide.info

    def read_region(self, level: int, x: int, y: int, width: int, height: int) -> Any:
        return self._slide.read_region(level, x, y, width, height)

    def thumbnail(self, max_size: int = 1024) -> Any:
        return self._slide.thumbnail(max_size)

    def close(self) -> None:
        self._finalizer()


def mosaic(
    images: Sequence[tuple[npt.NDArray[np.uint8], float | None]],
    tile_size: int,
    target_mpp: float,
    *,
    max_pixels: int | None = None,
) -> npt.NDArray[np.uint8]:
    """Several RGB images of one case as one grid image at ``target_mpp`` µm per pixel.

    Each image is scaled to ``target_mpp`` (an unknown resolution is taken as already there,
    as ``model.preprocess.tile_image`` does), then placed top-left in a cell whose sides are
    whole multiples of ``tile_size``; cells are padded white. Tiling the mosaic at
    ``target_mpp`` therefore cuts each image back into its own tiles: no tile spans two."""
    from PIL import Image

    if not images:
        raise ValueError("mosaic needs at least one image")
    scaled: list[npt.NDArray[np.uint8]] = []
    for pixels, mpp in images:
        rgb = np.asarray(pixels)
        if rgb.ndim == 2:
            rgb = np.repeat(rgb[:, :, None], 3, axis=2)
        rgb = np.ascontiguousarray(rgb[:, :, :3]).astype(np.uint8, copy=False)
        if mpp and not math.isclose(mpp, target_mpp, rel_tol=1e-3):
            factor = mpp / target_mpp
            width = max(1, round(rgb.shape[1] * factor))
            height = max(1, round(rgb.shape[0] * factor))
            resized = Image.fromarray(rgb).resize((width, height), Image.Resampling.BILINEAR)
            rgb = np.asarray(resized, dtype=np.uint8)
        scaled.append(rgb)
    cell_h = math.ceil(max(p.shape[0] for p in scaled) / tile_size) * tile_size
    cell_w = math.ceil(max(p.shape[1] for p in scaled) / tile_size) * tile_size
    columns = math.ceil(math.sqrt(len(scaled)))
    rows = math.ceil(len(scaled) / columns)
    if max_pixels is not None and rows * cell_h * columns * cell_w > max_pixels:
        raise InputError(
            f"The {len(scaled)} images of this case make a {columns * cell_w:,}x"
            f"{rows * cell_h:,} mosaic, more than the limit of {max_pixels:,} pixels.",
            hint="Give fewer or smaller images per case.",
        )
    canvas = np.full((rows * cell_h, columns * cell_w, 3), 255, dtype=np.uint8)
    for index, pixels in enumerate(scaled):
        top, left = (index // columns) * cell_h, (index % columns) * cell_w
        canvas[top : top + pixels.shape[0], left : left + pixels.shape[1]] = pixels
    return canvas


def ecg_window(
    samples: npt.NDArray[np.float32],
    sampling_rate_hz: float,
    start_s: float | None,
    duration_s: float | None,
    name: str,
) -> npt.NDArray[np.float32]:
    """Samples (lead, time) from ``start_s`` for ``duration_s`` (default: to the end).

    A window that starts or ends past the end of the record is an InputError naming it."""
    total = int(samples.shape[1])
    length_s = total / sampling_rate_hz
    start = 0.0 if start_s is None else float(start_s)
    if not math.isfinite(start) or start < 0:
        raise InputError(f"{name}: the ECG window start {start_s} s must be 0 or more.")
    if duration_s is not None and (not math.isfinite(duration_s) or duration_s <= 0):
        raise InputError(f"{name}: the ECG window duration {duration_s} s must be above 0.")
    first = round(start * sampling_rate_hz)
    if first >= total:
        raise InputError(
            f"{name}: the ECG window starts at {start:g} s, past the end of the record "
            f"({length_s:.3f} s long)."
        )
    if duration_s is None:
        return samples[:, first:]
    last = first + max(1, round(float(duration_s) * sampling_rate_hz))
    if last > total:
        raise InputError(
            f"{name}: the ECG window {start:g}-{start + float(duration_s):g} s runs past the end "
            f"of the record ({length_s:.3f} s long)."
        )
    return samples[:, first:last]


class ManifestCaseLoader:
    """Reads a manifest row's files into a ``model.predictor.CaseInput`` (see make_case_loader).

    Thread-safe: ``build_cases`` calls it from a pool. Decoded ECG recordings and plain images
    of multi-image cases are cached (by path, size and modification time) so that many windows
    of one long record, or one tile reused by many composite cases, are read once."""

    def __init__(
        self,
        limits: ReadLimits,
        image_config: ImageConfig,
        *,
        isolated: bool = True,
        ecg_cache_bytes: int = ECG_CACHE_BYTES,
    ) -> None:
        self.limits = limits
        self.image_config = image_config
        self.isolated = isolated
        self._ecg_cache: OrderedDict[tuple[str, int, int], EcgRecording] = OrderedDict()
        self._ecg_cache_bytes = ecg_cache_bytes
        self._image_cache: OrderedDict[
            tuple[str, int, int], tuple[npt.NDArray[np.uint8], float | None]
        ] = OrderedDict()
        self._image_cache_bytes = ecg_cache_bytes
        self._lock = threading.Lock()

    def __call__(self, row: ManifestRow) -> CaseInput:
        from model.predictor import CaseInput

        image: Any = None
        mpp: float | None = None
        if row.images:
            image, mpp = self._images(row)
        ecg = self._ecg(row, row.ecg) if row.ecg is not None else None
        note = row.note_text
        if row.note_path is not None:
            note = self._note(row, row.note_path)
        vitals = dict(row.vitals) or None
        return CaseInput(
            image=image,
            microns_per_pixel=mpp,
            ecg=ecg,
            note=note,
            vitals=vitals,
            case_id=row.case_id,
        )

    # -- reading ------------------------------------------------------------------------------
    @contextmanager
    def _reading(self, row: ManifestRow, path: Path) -> Iterator[None]:
        """Any failure inside becomes one CaseLoadError naming the line, case and file."""
        try:
            yield
        except CaseLoadError:
            raise
        except ClinicError as exc:
            raise _row_error(row, path, str(exc)) from exc
        except (OSError, ValueError, MemoryError) as exc:
            raise _row_error(row, path, f"{type(exc).__name__}: {exc}") from exc

    def _read(self, path: Path) -> LoadedInput:
        from clinic_app.io.readers import read_input, read_input_isolated

        if self.isolated:
            return read_input_isolated(path, self.limits)
        return read_input(path, self.limits)

    def _note(self, row: ManifestRow, path: Path) -> str:
        from clinic_app.domain.notes import ClinicalNote

        with self._reading(row, path):
            note = self._read(path)
            if not isinstance(note, ClinicalNote):
                raise InputError(f"{path.name} is not a text note.")
            return note.text

    def _ecg(self, row: ManifestRow, given: Path) -> Any:
        from model.predictor import EcgInput

        path = _wfdb_record_path(given)
        with self._reading(row, given):
            recording = self._recording(path)
            samples = ecg_window(
                recording.samples,
                recording.sampling_rate_hz,
                row.ecg_start_s,
                row.ecg_duration_s,
                path.name,
            )
            return EcgInput(
                samples, recording.sampling_rate_hz, tuple(recording.lead_names), recording.units
            )

    def _recording(self, path: Path) -> EcgRecording:
        from clinic_app.domain.signals import EcgRecording

        try:
            stat = path.stat()
        except OSError as exc:
            raise InputError(f"{path.name} cannot be opened ({exc.strerror or exc}).") from exc
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            cached = self._ecg_cache.get(key)
            if cached is not None:
                self._ecg_cache.move_to_end(key)
                return cached
        loaded = self._read(path)
        if not isinstance(loaded, EcgRecording):
            raise InputError(f"{path.name} is not an ECG recording (WFDB or DICOM waveform).")
        with self._lock:
            self._ecg_cache[key] = loaded
            while len(self._ecg_cache) > 1 and (
                sum(r.samples.nbytes for r in self._ecg_cache.values()) > self._ecg_cache_bytes
            ):
                self._ecg_cache.popitem(last=False)
        return loaded

    def _images(self, row: ManifestRow) -> tuple[Any, float | None]:
        """One image: its reader (tiled like a slide); several: one mosaic array."""
        if len(row.images) == 1:
            path = row.images[0]
            with self._reading(row, path):
                slide, stack = self._open_image(path)
                return _OwnedSlide(slide, stack), None
        parts: list[tuple[npt.NDArray[np.uint8], float | None]] = []
        for path in row.images:
            with self._reading(row, path):
                cached = self._cached_pixels(path)
                if cached is not None:
                    parts.append(cached)
                    continue
                slide, stack = self._open_image(path)
                with stack:
                    info = slide.info
                    if len(info.levels) > 1:
                        raise InputError(
                            f"{path.name} is a whole slide; a case takes one whole slide or "
                            "several plain images, not both.",
                            hint="Give the slide as the case's only image.",
                        )
                    width, height = info.dimensions
                    pixels = np.asarray(slide.read_region(0, 0, 0, width, height), np.uint8)
                    mpp = info.microns_per_pixel
                    parts.append((pixels, float(np.mean(mpp)) if mpp else None))
                    self._remember_pixels(path, parts[-1])
        config = self.image_config
        with self._reading(row, row.images[0]):
            canvas = mosaic(
                parts,
                config.tile_size,
                config.target_mpp,
                max_pixels=self.limits.max_decoded_pixels,
            )
        return canvas, config.target_mpp

    @staticmethod
    def _file_key(path: Path) -> tuple[str, int, int]:
        try:
            stat = path.stat()
        except OSError as exc:
            raise InputError(f"{path.name} cannot be opened ({exc.strerror or exc}).") from exc
        return (str(path.resolve()), stat.st_size, stat.st_mtime_ns)

    def _cached_pixels(self, path: Path) -> tuple[npt.NDArray[np.uint8], float | None] | None:
        """A plain image this loader already read (composite cohorts reuse tiles often)."""
        key = self._file_key(path)
        with self._lock:
            cached = self._image_cache.get(key)
            if cached is not None:
                self._image_cache.move_to_end(key)
            return cached

    def _remember_pixels(
        self, path: Path, part: tuple[npt.NDArray[np.uint8], float | None]
    ) -> None:
        key = self._file_key(path)
        with self._lock:
            self._image_cache[key] = part
            while len(self._image_cache) > 1 and (
                sum(p.nbytes for p, _ in self._image_cache.values()) > self._image_cache_bytes
            ):
                self._image_cache.popitem(last=False)

    def _open_image(self, path: Path) -> tuple[SlideSource, ExitStack]:
        """Validate the file (in the child when isolated), then open it in this process."""
        from clinic_app.io.archives import extracted_archive, is_archive
        from clinic_app.io.readers import LoadedImage
        from clinic_app.io.slides import open_slide

        loaded = self._read(path)
        if not isinstance(loaded, LoadedImage):
            raise InputError(f"{path.name} is not a pathology image or slide.")
        stack = ExitStack()
        try:
            target = path
            if is_archive(path) and path.is_file():
                target = stack.enter_context(extracted_archive(path))
            slide = open_slide(target, self.limits)
            stack.callback(slide.close)
        except BaseException:
            stack.close()
            raise
        return slide, stack


def _wfdb_record_path(path: Path) -> Path:
    """A WFDB record named without its extension (``records/100``) means its header."""
    if not path.exists():
        header = path.with_name(path.name + ".hea")
        if header.is_file():
            return header
    return path


def _row_error(row: ManifestRow, path: Path, message: str) -> CaseLoadError:
    return CaseLoadError(f"Manifest line {row.line} (case {row.case_id}), file {path}: {message}")


def make_case_loader(
    settings: Settings,
    *,
    image_config: ImageConfig | None = None,
    isolated: bool = True,
) -> ManifestCaseLoader:
    """A ``ManifestRow -> CaseInput`` loader on the app's readers, with this installation's
    read limits (child-process timeout and memory). ``image_config`` (the model's) sets the
    tile size and resolution that several images of one case are mosaicked at."""
    from clinic_app.services.ingest import read_limits
    from model.config import ImageConfig

    return ManifestCaseLoader(
        read_limits(settings), image_config or ImageConfig(), isolated=isolated
    )


# -- signed cases as training data -----------------------------------------------------------------
@dataclass(frozen=True)
class SignedCases:
    """The signed cases read for training and what was left out."""

    rows: tuple[ManifestRow, ...]
    since: datetime
    signed: int  # cases signed since ``since``
    without_labels: tuple[str, ...]  # case ids signed but with no decision on the bundle's labels


def bundle_created(bundle_metadata: Mapping[str, Any]) -> datetime:
    """The bundle's ``created`` time (aware UTC) from its metadata.json."""
    text = bundle_metadata.get("created")
    try:
        moment = datetime.fromisoformat(str(text))
    except ValueError as exc:
        raise ModelError(
            f"The model bundle's metadata has no valid 'created' time ({text!r}), so the cases "
            "signed since it cannot be found."
        ) from exc
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def bundle_label_names(bundle_metadata: Mapping[str, Any]) -> tuple[str, ...]:
    """``system|code`` of every diagnosis label of a bundle, in its order."""
    labels = bundle_metadata.get("labels") or []
    return tuple(f"{item['system']}|{item['code']}" for item in labels)


def decision_labels(
    decisions: Sequence[tuple[str, str, str | None]], label_names: Sequence[str]
) -> dict[str, float]:
    """Label -> 1.0 / 0.0 from a case's decisions, oldest first (a later one wins).

    Each decision is (action, suggested ``system|code``, override ``system|code`` or None):
    accepted -> the suggestion is positive; rejected -> negative; overridden -> the suggestion
    is negative and the clinician's code, when it is one of ``label_names``, positive."""
    known = set(label_names)
    values: dict[str, float] = {}
    for action, suggested, override in decisions:
        if action == "accept":
            updates = {suggested: 1.0}
        elif action == "reject":
            updates = {suggested: 0.0}
        elif action == "override":
            updates = {suggested: 0.0}
            if override is not None:
                updates[override] = 1.0
        else:
            continue
        for name, value in updates.items():
            if name in known:
                values[name] = value
    return values


def signed_training_data(
    database: Database,
    actor: Actor,
    bundle_metadata: Mapping[str, Any],
    *,
    since: datetime | None = None,
) -> SignedCases:
    """Cases clinicians signed after the bundle was made (or after ``since``), as manifest rows.

    Each latest case version that is signed counts once (an amended case counts only when its
    new version is signed). Labels come from the decisions on the bundle's labels; a label
    nobody decided on is unknown, not negative; a case with no such decision is left out.
    Inputs are the stored (de-identified) files, checked against their recorded sha256, the
    latest note version and the latest vital signs with age and sex. Needs ``model.train``;
    every case read is audited as ``model.training_data_read``."""
    from sqlalchemy import select
    from sqlalchemy.orm import selectinload

    from clinic_app.domain.permissions import Permission
    from clinic_app.domain.records import AuditAction, CaseStatus, Modality
    from clinic_app.services.authorization import authorize
    from clinic_app.services.context import record_audit
    from clinic_app.storage.orm import Case, Decision, SignOff, Suggestion, VitalSigns
    from model.training.manifest import ManifestRow

    authorize(database, actor, Permission.MODEL_TRAIN, TRAINING_READ_EVENT, AuditAction.READ)
    cutoff = since if since is not None else bundle_created(bundle_metadata)
    if cutoff.tzinfo is None:
        cutoff = cutoff.replace(tzinfo=UTC)
    label_names = bundle_label_names(bundle_metadata)
    if not label_names:
        raise ModelError("The model bundle's metadata lists no diagnosis labels.")
    bundle_ref = {
        "bundle": f"{bundle_metadata.get('name')} {bundle_metadata.get('version')}",
        "since": cutoff.isoformat(),
    }
    rows: list[ManifestRow] = []
    without: list[str] = []
    checks: list[tuple[str, str, Path]] = []  # case, sha256, stored file
    signed = 0
    with database.write() as session:
        cases = session.scalars(
            select(Case)
            .join(SignOff, SignOff.case_id == Case.id)
            .where(Case.status == CaseStatus.SIGNED, SignOff.signed_at > cutoff)
            .options(
                selectinload(Case.patient),
                selectinload(Case.inputs),
                selectinload(Case.notes),
                selectinload(Case.sign_off),
            )
            .order_by(SignOff.signed_at, Case.id)
        ).all()
        for case in cases:
            signed += 1
            decided = session.execute(
                select(Decision, Suggestion)
                .join(Suggestion, Suggestion.id == Decision.suggestion_id)
                .where(Decision.case_id == case.id)
                .order_by(Decision.decided_at, Decision.id)
            ).all()
            triples = [
                (
                    decision.action.value,
                    f"{suggestion.code_system}|{suggestion.code}",
                    f"{decision.override_code_system}|{decision.override_code}"
                    if decision.override_code_system and decision.override_code
                    else None,
                )
                for decision, suggestion in decided
            ]
            values = decision_labels(triples, label_names)
            if not values:
                without.append(case.case_uid)
                continue
            inputs = sorted(case.inputs, key=lambda item: item.id)
            images = [item for item in inputs if item.modality is Modality.PATHOLOGY]
            ecgs = [item for item in inputs if item.modality is Modality.ECG]
            note = max(case.notes, key=lambda n: n.version) if case.notes else None
            vital_row = session.scalars(
                select(VitalSigns)
                .where(VitalSigns.case_id == case.id)
                .order_by(VitalSigns.created_at.desc(), VitalSigns.id.desc())
                .limit(1)
            ).one_or_none()
            vitals = _case_vitals(vital_row, case.patient.birth_year, case.patient.sex, case)
            used = images + ecgs[-1:]
            for item in used:
                checks.append((case.case_uid, item.sha256, Path(item.stored_path)))
            sources = {"origin": "signed case"}
            if images:
                sources["pathology"] = ", ".join(f"stored {i.sha256[:12]}" for i in images)
            if ecgs:
                sources["ecg"] = f"stored {ecgs[-1].sha256[:12]}"
            if note is not None:
                sources["note"] = f"note version {note.version} ({note.sha256[:12]})"
            rows.append(
                ManifestRow(
                    line=len(rows) + 1,
                    case_id=case.case_uid,
                    group_id=case.patient.pseudonym,
                    split=None,
                    images=tuple(Path(i.stored_path) for i in images),
                    ecg=Path(ecgs[-1].stored_path) if ecgs else None,
                    note_text=note.text if note is not None else None,
                    vitals=vitals,
                    labels=tuple(n for n in label_names if values.get(n) == 1.0),
                    unknown=tuple(n for n in label_names if n not in values),
                    composite=case.is_composite_demo,
                    sources=sources,
                )
            )
            record_audit(
                session,
                actor,
                TRAINING_READ_EVENT,
                AuditAction.READ,
                patient_pseudonym=case.patient.pseudonym,
                case_uid=case.case_uid,
                details={
                    **bundle_ref,
                    "version": case.version,
                    "input_sha256s": [item.sha256 for item in used],
                    "note_sha256": note.sha256 if note is not None else None,
                    "labels_decided": len(values),
                },
            )
        record_audit(
            session,
            actor,
            TRAINING_READ_EVENT,
            AuditAction.READ,
            details={
                **bundle_ref,
                "cases_signed": signed,
                "cases_read": len(rows),
                "cases_without_labels": len(without),
            },
        )
    for case_uid, sha256, path in checks:
        _verify_stored(case_uid, sha256, path)
    return SignedCases(tuple(rows), cutoff, signed, tuple(without))


def signed_training_rows(
    database: Database,
    actor: Actor,
    bundle_metadata: Mapping[str, Any],
    *,
    since: datetime | None = None,
) -> list[ManifestRow]:
    """The rows of :func:`signed_training_data` (cases signed since the bundle, labelled)."""
    return list(signed_training_data(database, actor, bundle_metadata, since=since).rows)


def _case_vitals(row: Any, birth_year: int | None, sex: str | None, case: Any) -> dict[str, float]:
    """The model's tabular inputs from the latest vital signs and the patient's age and sex."""
    names = (
        "heart_rate_bpm",
        "systolic_mmhg",
        "diastolic_mmhg",
        "spo2_percent",
        "temperature_c",
        "respiratory_rate_per_min",
    )
    out: dict[str, float] = {}
    if row is not None:
        for name in names:
            value = getattr(row, name)
            if value is not None:
                out[name] = float(value)
    if birth_year is not None:
        out["age_years"] = float(case.created_at.year - birth_year)
    sex_value = {"m": 1.0, "male": 1.0, "f": 0.0, "female": 0.0}.get((sex or "").strip().lower())
    if sex_value is not None:
        out["sex_male"] = sex_value
    return out


def _verify_stored(case_uid: str, sha256: str, path: Path) -> None:
    """Refuse a stored file whose bytes no longer have the recorded sha256 (as stored_input)."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            while chunk := handle.read(1024 * 1024):
                digest.update(chunk)
    except OSError as exc:
        raise StorageError(
            f"A stored file of case {case_uid} cannot be read ({exc.strerror or exc}), so the "
            "signed cases were not used for training.",
            hint="Restore the data folder's inputs/ from a backup.",
        ) from exc
    if digest.hexdigest() != sha256:
        raise StorageError(
            f"A stored file of case {case_uid} has changed on disk (sha256 "
            f"{digest.hexdigest()[:12]}…, recorded {sha256[:12]}…), so the signed cases were "
            "not used for training.",
            hint="Restore the file from a backup; the case record itself is unchanged.",
        )


# -- training --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainingOutcome:
    """What a training run produced (only rank 0 of a distributed run writes a bundle)."""

    rank: int
    world_size: int
    bundle: Any | None  # model.bundle.BundleInfo on rank 0
    result: TrainResult
    cases: dict[str, int]  # split -> number of cases
    run_dir: Path
    privacy: dict[str, Any] = field(default_factory=dict)
    signed: SignedCases | None = None
    evaluation: dict[str, Any] = field(default_factory=dict)  # the test split's, on rank 0


def next_version(version: str) -> str:
    """The version after ``version``: its last number plus one ("1.0.0" -> "1.0.1")."""
    parts = version.split(".")
    for index in range(len(parts) - 1, -1, -1):
        match = re.fullmatch(r"(\d+)(.*)", parts[index])
        if match is not None:
            parts[index] = str(int(match.group(1)) + 1)
            return ".".join(parts[: index + 1])
    raise InputError(
        f"The bundle's version {version!r} has no number to increase.",
        hint="Give the new version with --version.",
    )


def check_out_dir(out_dir: Path, from_bundle: Path | None = None) -> None:
    """The new bundle goes to a new (or empty) folder, never over or inside the old bundle."""
    target = Path(out_dir).resolve()
    if from_bundle is not None:
        old = Path(from_bundle).resolve()
        if target == old or old in target.parents:
            raise InputError(
                f"{out_dir} is the bundle being fine-tuned; the new version is written to a new "
                "folder and the old bundle is never overwritten.",
                hint="Choose another --out folder.",
            )
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise InputError(
            f"{out_dir} already exists and is not empty; a bundle is written to a new folder.",
            hint="Choose another --out folder or remove that one.",
        )


def _rank() -> int:
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def _world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


@contextmanager
def _training_errors() -> Iterator[None]:
    """Model-package errors as the app's: bad data -> InputError, the rest -> ModelError."""
    from clinic_app.services.analysis import model_errors
    from model.config import FusionConfigError
    from model.training.data import CaseBuildError
    from model.training.manifest import ManifestError

    with model_errors():
        try:
            yield
        except (ManifestError, CaseBuildError, FusionConfigError) as exc:
            raise InputError(str(exc)) from exc


def _known_labels(config: FusionConfig) -> dict[str, LabelSpec]:
    """Labels known by name: the registry's demonstration labels, then the base config's."""
    from model.registry import DEMO_LABELS

    known = {f"{label.system}|{label.code}": label for label in DEMO_LABELS}
    known.update({f"{label.system}|{label.code}": label for label in config.labels})
    return known


def config_for_manifest(base: FusionConfig, manifest: Manifest) -> FusionConfig:
    """``base`` with the manifest's labels and extra heads (display names and critical flags
    from known labels; a data team flags others critical in the config's ``labels``)."""
    from model.config import ExtraHead, LabelSpec

    known = _known_labels(base)
    labels = []
    for name in manifest.label_names():
        system, _, code = name.partition("|")
        spec = known.get(name)
        labels.append(
            LabelSpec(
                system,
                code,
                spec.display if spec else code,
                critical=spec.critical if spec else False,
            )
        )
    if not labels:
        raise InputError(f"The manifest {manifest.path} names no diagnosis labels to train.")
    previous = {head.name: head for head in base.extra_heads}
    default_modalities = ("note",) if "note" in base.modalities else base.modalities[:1]
    heads = []
    for name, classes in manifest.head_classes().items():
        old = previous.get(name)
        heads.append(
            ExtraHead(
                name,
                tuple(classes),
                old.modalities if old is not None else default_modalities,
                old.multi_label if old is not None else False,
            )
        )
    return base.replace(labels=tuple(labels), extra_heads=tuple(heads))


def _manifest_sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def run_training(
    settings: Settings,
    actor: Actor | None,
    *,
    manifest: Path | None,
    out_dir: Path,
    options: TrainOptions,
    from_bundle: Path | None = None,
    cases: str | None = None,
    variant: str | None = None,
    config_path: Path | None = None,
    name: str | None = None,
    version: str | None = None,
    run_dir: Path | None = None,
    resume: bool = False,
    dp_ledger_dataset: str | None = None,
    database: Database | None = None,
    workers: int = 2,
    bootstrap: int = 1000,
    demo_data: Path | None = None,
) -> TrainingOutcome:
    """Validate, prepare, train and write a bundle; see the module docstring.

    ``demo_data`` (the shared public data folder) builds the documented composite demo cohort
    as a manifest in the run folder and trains the shipped demo configuration on it: the one
    command that reproduces the demo bundle.

    Data: a manifest, or (``cases="signed"`` with ``from_bundle``) the cases signed since the
    bundle was made. Model: ``from_bundle`` (its config, labels and weights as the start),
    ``config_path`` (a config.json with its labels), or a ``variant`` whose labels and heads
    come from the manifest. With ``options.dp_epsilon`` the target (epsilon, delta) is charged
    to the privacy ledger BEFORE training (the ledger's rule: pay, then release; DP-SGD's
    accountant never spends more than the target) when the data come from the case database
    or ``dp_ledger_dataset`` is given; the epsilon actually spent goes into the model card."""
    run_dir = Path(run_dir) if run_dir is not None else out_dir.with_name(out_dir.name + "-run")
    demo: tuple[FusionConfig, str] | None = None
    if demo_data is not None:
        if manifest is not None or from_bundle is not None or config_path or variant:
            raise InputError(
                "--demo-data builds its own manifest and model; drop --manifest, "
                "--from-bundle, --config and --variant."
            )
        check_out_dir(out_dir, None)
        from model.training.demo import DEMO_NAME, DEMO_VERSION

        manifest, demo = _demo_cohort(demo_data, run_dir, options.seed)
        name = name or DEMO_NAME
        version = version or DEMO_VERSION
    if cases is not None and cases not in CASE_SOURCES:
        raise InputError(f"--cases must be one of: {', '.join(CASE_SOURCES)}; got {cases!r}.")
    if cases is not None and from_bundle is None:
        raise InputError("--cases signed needs --from-bundle: the bundle to fine-tune.")
    if (manifest is None) == (cases is None):
        raise InputError("Give either --manifest or --from-bundle with --cases signed.")
    if from_bundle is not None and (variant is not None or config_path is not None):
        raise InputError("--from-bundle keeps the bundle's model; drop --variant and --config.")
    if variant is not None and config_path is not None:
        raise InputError("Give either --variant or --config, not both.")
    check_out_dir(out_dir, from_bundle)
    dp_dataset = dp_ledger_dataset or (SIGNED_CASES_DATASET if cases == "signed" else None)
    if options.dp_epsilon is not None and _world_size() > 1:
        raise InputError(
            "DP-SGD training runs in one process; start it without torchrun.",
            hint="Drop --dp-epsilon for distributed training, or run on one device.",
        )
    needs_db = cases == "signed" or (options.dp_epsilon is not None and dp_dataset is not None)
    if needs_db and actor is None:
        raise InputError("Training on signed cases or charging the privacy ledger needs a user.")

    owned_db = None
    if needs_db and database is None:
        from clinic_app.services.database import open_database

        database = owned_db = open_database(settings)
    try:
        with _training_errors():
            return _train(
                settings,
                actor,
                manifest_path=manifest,
                out_dir=out_dir,
                options=options,
                from_bundle=from_bundle,
                cases=cases,
                variant=variant,
                config_path=config_path,
                name=name,
                version=version,
                run_dir=run_dir,
                resume=resume,
                dp_dataset=dp_dataset,
                database=database,
                workers=workers,
                bootstrap=bootstrap,
                demo=demo,
            )
    finally:
        if owned_db is not None:
            owned_db.dispose()


def _train(
    settings: Settings,
    actor: Actor | None,
    *,
    manifest_path: Path | None,
    out_dir: Path,
    options: TrainOptions,
    from_bundle: Path | None,
    cases: str | None,
    variant: str | None,
    config_path: Path | None,
    name: str | None,
    version: str | None,
    run_dir: Path,
    resume: bool,
    dp_dataset: str | None,
    database: Database | None,
    workers: int,
    bootstrap: int,
    demo: tuple[FusionConfig, str] | None = None,
) -> TrainingOutcome:
    from model.config import FusionConfig
    from model.registry import variant_config
    from model.training.data import BuildReport, build_cases
    from model.training.finalize import finalize_bundle
    from model.training.manifest import Manifest, assign_splits, load_manifest
    from model.training.trainer import train_model

    provenance: dict[str, Any] = {}
    card_lines: list[str] = []
    init_state = None
    signed: SignedCases | None = None
    fixed_config: FusionConfig | None = None
    old_info: Any = None
    if from_bundle is not None:
        from model.bundle import load_bundle

        loaded = load_bundle(from_bundle)
        old_info = loaded.info
        fixed_config = loaded.config
        init_state = {k: v.detach().clone() for k, v in loaded.model.state_dict().items()}
        provenance["fine_tuned_from"] = {
            "name": old_info.name,
            "version": old_info.version,
            "sha256": old_info.sha256,
            "created": old_info.metadata.get("created"),
        }
        name = name or old_info.name
        version = version or next_version(old_info.version)
        card_lines.append(
            f"Fine-tuned from bundle {old_info.name} {old_info.version} "
            f"(sha256 {old_info.sha256[:12]}…)."
        )
    elif config_path is not None:
        fixed_config = FusionConfig.load(config_path)
    elif demo is not None:
        fixed_config, demo_card = demo
        card_lines.append(demo_card)

    if cases == "signed":
        assert database is not None and actor is not None and old_info is not None
        signed = signed_training_data(database, actor, old_info.metadata)
        if not signed.rows:
            extra = (
                f" ({len(signed.without_labels)} were signed without a decision on its labels)"
                if signed.without_labels
                else ""
            )
            raise InputError(
                f"No cases with decisions have been signed since the bundle was made "
                f"({signed.since.isoformat(timespec='seconds')}){extra}; nothing to train on.",
                hint="Train again once clinicians have signed new cases.",
            )
        manifest = Manifest(path=Path("signed-cases"), rows=signed.rows)
        provenance["data"] = {
            "source": "cases signed in ClinicFusion",
            "signed_since": signed.since.isoformat(),
            "cases_signed": signed.signed,
            "cases_used": len(signed.rows),
            "cases_without_decisions": len(signed.without_labels),
        }
        card_lines.append(
            f"Training data: {len(signed.rows)} cases signed by clinicians since "
            f"{signed.since.isoformat(timespec='seconds')}; labels are their decisions "
            "(accepted = present, rejected or overridden = absent, the override's code = "
            "present, undecided labels unknown). "
            f"{len(signed.without_labels)} signed cases had no decision on the model's labels "
            "and were left out."
        )
    else:
        assert manifest_path is not None
        known_labels = fixed_config.label_names if fixed_config is not None else None
        known_heads = (
            {head.name: head.classes for head in fixed_config.extra_heads}
            if fixed_config is not None
            else None
        )
        manifest = load_manifest(manifest_path, known_labels=known_labels, known_heads=known_heads)
        provenance["data"] = {
            "source": "manifest",
            "manifest": manifest_path.name,
            "manifest_sha256": _manifest_sha256(manifest_path),
            "rows": len(manifest.rows),
        }
    if fixed_config is not None:
        config = fixed_config
    else:
        config = config_for_manifest(variant_config(variant or DEFAULT_VARIANT), manifest)
    if any(row.split is None for row in manifest.rows):
        manifest = assign_splits(manifest, seed=options.seed)
        provenance.setdefault("data", {})["splits"] = f"assigned (grouped, seed {options.seed})"

    loader = make_case_loader(settings, image_config=config.image)
    report = BuildReport()
    prepared = build_cases(
        manifest, config, loader, workers=workers, progress=options.progress, report=report
    )
    counts = {split: sum(1 for c in prepared if c.split == split) for split in ("train", "val")}
    counts["test"] = sum(1 for c in prepared if c.split == "test")
    if counts["train"] == 0:
        raise InputError("No case is in the train split; nothing to train on.")

    privacy: dict[str, Any] = {}
    rank = _rank()
    if options.dp_epsilon is not None and dp_dataset is not None and rank == 0:
        privacy = _charge_privacy(database, actor, dp_dataset, options, name or config.name)
    result = train_model(config, prepared, options, run_dir, resume=resume, init_state=init_state)
    if "dataset" in privacy and result.dp_epsilon_spent is not None:
        _charge_overspend(database, actor, privacy, result, name or config.name)
    if result.dp_epsilon_spent is not None:
        privacy.update(
            {
                "epsilon_spent": result.dp_epsilon_spent,
                "delta": result.dp_delta,
                "max_grad_norm": options.dp_max_grad_norm,
            }
        )
        card_lines.append(
            f"Trained with DP-SGD (Opacus): epsilon spent {result.dp_epsilon_spent:.4g}, delta "
            f"{result.dp_delta:g}, per-sample gradient norm clipped at "
            f"{options.dp_max_grad_norm:g}."
            + (
                f" Charged to the privacy ledger of dataset '{privacy['dataset']}' "
                f"(epsilon {privacy['epsilon_charged']}, delta {privacy['delta_charged']})."
                if "dataset" in privacy
                else " No privacy ledger was charged (the data are not from the case database)."
            )
        )
    if privacy:
        provenance["differential_privacy"] = privacy
    if result.rank != 0:
        return TrainingOutcome(
            result.rank, result.world_size, None, result, counts, run_dir, privacy, signed
        )
    bundle, evaluation = finalize_bundle(
        result,
        prepared,
        out_dir,
        name=name or config.name,
        version=version or DEFAULT_VERSION,
        data_card_extra="\n\n".join(card_lines),
        provenance=provenance,
        build_report=report.as_dict(),
        bootstrap=bootstrap,
        evaluation_dir=run_dir / "evaluation",
        model_card_extra=_demo_goals if demo is not None else None,
    )
    return TrainingOutcome(
        result.rank,
        result.world_size,
        bundle,
        result,
        counts,
        run_dir,
        privacy,
        signed,
        dict(evaluation),
    )


def _demo_goals(evaluation: Mapping[str, Any]) -> str:
    from model.training.demo import goal_report

    return goal_report(evaluation)


def _demo_cohort(shared: Path, run_dir: Path, seed: int) -> tuple[Path, tuple[FusionConfig, str]]:
    """Build the composite demo cohort's manifest in the run folder; the demo model config."""
    from model.config import LabelSpec
    from model.training.demo import demo_config
    from model.training.demo_data import (
        ATRIAL_FIBRILLATION,
        DEMO_LABELS,
        MALIGNANT_NEOPLASM,
        build_demo_manifest,
        demo_data_card,
    )
    from model.training.manifest import load_manifest

    if not (shared / "ecg").is_dir() or not (shared / "text").is_dir():
        raise InputError(
            f"{shared} is not the shared public data folder (it needs ecg/, pathology/ and "
            "text/ as described in its README)."
        )
    cohort = build_demo_manifest(shared, run_dir / "demo-cohort", seed=seed)
    specialties = load_manifest(cohort.manifest).head_classes().get("specialty", ())
    labels = []
    for name, display in DEMO_LABELS:
        system, _, code = name.partition("|")
        critical = name in (ATRIAL_FIBRILLATION, MALIGNANT_NEOPLASM)
        labels.append(LabelSpec(system, code, display, critical=critical))
    return cohort.manifest, (demo_config(labels, specialties), demo_data_card(cohort.summary))


def _charge_privacy(
    database: Database | None,
    actor: Actor | None,
    dataset: str,
    options: TrainOptions,
    model_name: str,
) -> dict[str, Any]:
    """Charge the DP-SGD target to the ledger before training; refused -> nothing trains."""
    from clinic_app.services.privacy.ledger import charge

    assert database is not None and actor is not None and options.dp_epsilon is not None
    epsilon = Fraction(str(options.dp_epsilon))
    delta = Fraction(str(options.dp_delta))
    done = charge(
        database,
        actor,
        dataset=dataset,
        query="model.train",
        mechanism="dp-sgd",
        epsilon=epsilon,
        delta=delta,
        details={"model": model_name},
    )
    return {
        "dataset": dataset,
        "charge_id": done.charge_id,
        "epsilon_charged": str(epsilon),
        "delta_charged": str(delta),
    }


def _charge_overspend(
    database: Database | None,
    actor: Actor | None,
    privacy: dict[str, Any],
    result: TrainResult,
    model_name: str,
) -> None:
    """Charge what training spent beyond the target; refused -> no bundle is written."""
    from clinic_app.services.privacy.ledger import charge

    assert database is not None and actor is not None and result.dp_epsilon_spent is not None
    charged_epsilon = Fraction(privacy["epsilon_charged"])
    charged_delta = Fraction(privacy["delta_charged"])
    # Rounded up to 1e-6: the ledger may hold a little more than was spent, never less.
    spent_epsilon = Fraction(math.ceil(result.dp_epsilon_spent * 1e6), 10**6)
    spent_delta = Fraction(str(result.dp_delta)) if result.dp_delta is not None else charged_delta
    extra_epsilon = max(Fraction(0), spent_epsilon - charged_epsilon)
    extra_delta = max(Fraction(0), spent_delta - charged_delta)
    if extra_epsilon == 0 and extra_delta == 0:
        return
    log.warning(
        "DP-SGD spent epsilon %s, more than the %s charged before training; charging the rest.",
        spent_epsilon,
        charged_epsilon,
    )
    if extra_epsilon == 0:
        extra_epsilon = Fraction(1, 10**6)  # the ledger charges a positive epsilon
    done = charge(
        database,
        actor,
        dataset=privacy["dataset"],
        query="model.train",
        mechanism="dp-sgd (spent beyond target)",
        epsilon=extra_epsilon,
        delta=extra_delta,
        details={"model": model_name, "after_charge_id": privacy["charge_id"]},
    )
    privacy["epsilon_charged"] = str(charged_epsilon + extra_epsilon)
    privacy["delta_charged"] = str(charged_delta + extra_delta)
    privacy["extra_charge_id"] = done.charge_id


def training_actor() -> Actor:
    """Who the command line trains as until it has sign-in: the system user in the
    data-scientist role (least privilege: ``model.train`` and ``stats.release``)."""
    from clinic_app.domain.records import Role
    from clinic_app.services.context import Actor, workstation_name

    return Actor(None, "system", Role.DATA_SCIENTIST, workstation_name())


# -- evaluation ------------------------------------------------------------------------------------
def run_evaluation(
    settings: Settings,
    *,
    bundle: Path,
    manifest: Path,
    split: str | None = "test",
    out_dir: Path | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    progress: bool = True,
    workers: int = 2,
) -> tuple[dict[str, Any], Path]:
    """Evaluate a bundle on one split of a manifest (all rows when ``split`` is None).

    Rows without a split get the one training would have given them (same grouped
    stratification and seed). Returns the evaluation dict and the folder of the report."""
    from model.bundle import verify_bundle
    from model.config import FusionConfig
    from model.training.data import build_cases
    from model.training.evaluate import evaluate_bundle
    from model.training.manifest import SPLITS, assign_splits, load_manifest

    if split is not None and split not in SPLITS:
        raise InputError(f"--split must be one of {', '.join(SPLITS)}; got {split!r}.")
    out = Path(out_dir) if out_dir is not None else _default_report_dir(bundle, split)
    with _training_errors():
        info = verify_bundle(bundle)
        config = FusionConfig.load(Path(bundle) / "config.json")
        loaded = load_manifest(
            manifest,
            known_labels=config.label_names,
            known_heads={head.name: head.classes for head in config.extra_heads},
        )
        if any(row.split is None for row in loaded.rows):
            loaded = assign_splits(loaded, seed=seed)
        if split is not None:
            loaded = replace(loaded, rows=tuple(r for r in loaded.rows if r.split == split))
        if not loaded.rows:
            raise InputError(f"The manifest {manifest} has no cases in the {split} split.")
        loader = make_case_loader(settings, image_config=config.image)
        cases: list[TrainingCase] = build_cases(
            loaded, config, loader, workers=workers, progress=progress
        )
        out.mkdir(parents=True, exist_ok=True)
        report = evaluate_bundle(info.path, cases, out, bootstrap=bootstrap, seed=seed)
    return report, out


def _default_report_dir(bundle: Path, split: str | None) -> Path:
    bundle = Path(bundle).resolve()
    return bundle.with_name(f"{bundle.name}-evaluation-{split or 'all'}")
