"""Predictor: a verified bundle behind a small, thread-safe, batched API.

``Predictor(bundle_dir).predict([CaseInput(...), ...])`` prepares each case (tiles, 12-lead ECG,
note chunks, vitals), drops a modality that fails its quality check (the reason is reported),
runs the network once per batch (leave-one-modality-out rows ride in the same batch), applies
the bundle's calibration and conformal abstention and returns plain dataclasses.

Device ``auto`` is CUDA (bf16 autocast where supported, else fp16), then Apple MPS, then the
CPU, where results are deterministic. The bundle loads on first use, under a lock, so a
Predictor can be created on the GUI thread and used from a worker thread.
"""

from __future__ import annotations

import math
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from model.errors import DeviceUnavailableError, ModelPackageError
from model.preprocess import (
    ModelInputError,
    PreparedCase,
    PreparedTiles,
    map_to_standard_leads,
    prepare_ecg,
    prepare_note,
    prepare_tabular,
    tile_image,
    tile_slide,
)

if TYPE_CHECKING:
    import torch

    from model.bundle import LoadedBundle
    from model.config import FusionConfig
    from model.network import FusionInputs, FusionModel

DEVICES = ("auto", "cpu", "cuda", "mps")
#: ECG measurements are made on at most this much of a long record (the evidence shown).
MEASURE_MAX_SECONDS = 120.0
_PROBABILITY_DECIMALS = 6


# -- inputs ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class EcgInput:
    """An ECG as the readers give it: samples (lead, time) in ``units``, rate, lead names."""

    samples: npt.ArrayLike
    sampling_rate_hz: float
    lead_names: tuple[str, ...]
    units: str = "mV"


@dataclass(frozen=True)
class CaseInput:
    """One case: any non-empty subset of image, ECG, note and vitals/demographics.

    ``image`` is an (H, W, 3) RGB array or a slide reader (``info``, ``read_region``,
    ``thumbnail``, as clinic_app's SlideSource); ``microns_per_pixel`` applies to an array.
    ``ecg`` is an :class:`EcgInput` or a ``(samples, sampling_rate_hz, lead_names)`` tuple."""

    image: Any = None
    microns_per_pixel: float | None = None
    ecg: EcgInput | tuple[Any, float, Sequence[str]] | None = None
    note: str | None = None
    vitals: Mapping[str, Any] | None = None
    case_id: str | None = None


# -- outputs ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Suggestion:
    """One diagnosis label: calibrated probability and whether to show "insufficient confidence"."""

    system: str
    code: str
    display: str
    probability: float
    abstained: bool
    critical: bool = False  # the bundle flags this label critical (triage ranks by it)

    def as_dict(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "code": self.code,
            "display": self.display,
            "probability": self.probability,
            "abstained": self.abstained,
            "critical": self.critical,
        }


@dataclass(frozen=True)
class HeadOutput:
    """An extra head's answer (e.g. suggested specialty); None when it had no input to read."""

    name: str
    classes: tuple[str, ...]
    probabilities: dict[str, float] | None
    top: str | None
    available: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "classes": list(self.classes),
            "probabilities": self.probabilities,
            "top": self.top,
            "available": self.available,
        }


@dataclass(frozen=True)
class ModelIdentity:
    """What every stored analysis records about the model that made it."""

    name: str
    version: str
    sha256: str

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "version": self.version, "sha256": self.sha256}


@dataclass(frozen=True)
class Prediction:
    """Everything the model says about one case, in plain Python and numpy types."""

    suggestions: tuple[Suggestion, ...]  # all labels, most probable first
    extra_heads: dict[str, HeadOutput]
    modalities_used: tuple[str, ...]
    modalities_missing: dict[str, str]  # modality -> why it was not used
    modality_weights: dict[str, float]  # fusion gates over the used modalities (sum 1)
    # Drop of the top label's probability when the modality is left out (None: the only one).
    # With explanations these come from explain_case (uncalibrated sigmoid, cached encodings).
    contributions: dict[str, float | None]
    ecg_measurements: dict[str, Any] | None
    explanation: Any | None  # model.explain.Explanation of the top suggestion
    model: ModelIdentity
    timings_ms: dict[str, float]
    tiles: PreparedTiles | None = None  # the tiles read (coordinates for heatmaps)
    notes: tuple[str, ...] = ()  # things worth knowing (note truncated, vitals ignored)
    case_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The JSON object `clinic-app predict --json` prints (explanation arrays left out)."""
        out: dict[str, Any] = {
            "suggestions": [s.as_dict() for s in self.suggestions],
            "extra_heads": {name: head.as_dict() for name, head in self.extra_heads.items()},
        }
        for name, head in self.extra_heads.items():
            out.setdefault(name, head.top)
        out.update(
            {
                "modalities_used": list(self.modalities_used),
                "modalities_missing": dict(self.modalities_missing),
                "modality_weights": dict(self.modality_weights),
                "contributions": dict(self.contributions),
                "ecg_measurements": self.ecg_measurements,
                "model": self.model.as_dict(),
                "timings_ms": dict(self.timings_ms),
                "notes": list(self.notes),
            }
        )
        if self.explanation is not None:
            out["explanation"] = explanation_summary(self.explanation)
        return out


def explanation_summary(explanation: Any) -> dict[str, Any]:
    """The small, JSON-friendly part of an Explanation (no heatmap arrays)."""
    summary: dict[str, Any] = {"label": getattr(explanation, "label", None)}
    tiles = getattr(explanation, "tiles", None)
    if tiles is not None:
        coords = np.asarray(tiles.coords_level0)
        summary["top_tiles"] = [
            {
                "x": int(coords[i, 0]),
                "y": int(coords[i, 1]),
                "size": int(tiles.tile_size_level0),
                "attention": float(np.asarray(tiles.attention)[i]),
            }
            for i in tiles.top_tiles
        ]
    note = getattr(explanation, "note", None)
    if note is not None:
        spans = sorted(note, key=lambda s: -s.score)[:10]
        summary["note_spans"] = [
            {"start": int(s.start), "end": int(s.end), "score": round(float(s.score), 6)}
            for s in spans
        ]
    ecg = getattr(explanation, "ecg", None)
    if ecg is not None:
        relevance = np.abs(np.asarray(ecg.relevance, dtype=np.float64))
        per_lead = relevance.sum(axis=1)
        total = float(per_lead.sum()) or 1.0
        summary["ecg_lead_relevance"] = {
            name: round(float(v) / total, 6)
            for name, v in zip(ecg.lead_names, per_lead, strict=False)
        }
    for key in ("cross_modal", "gates", "leave_one_out"):
        value = getattr(explanation, key, None)
        if value is not None:
            summary[key] = {k: round(float(v), 6) for k, v in value.items()}
    return summary


@dataclass(frozen=True)
class CaseFailure:
    """A case that could not be analysed, with the reason (batch runs go on without it)."""

    case_id: str | None
    message: str


@dataclass(frozen=True)
class PreparedInput:
    """A case turned into model inputs, with what was left out and why."""

    case: PreparedCase
    missing: dict[str, str]
    ecg_measurements: dict[str, Any] | None
    notes: tuple[str, ...]
    timings_ms: dict[str, float]


# -- device choice ---------------------------------------------------------------------------
@dataclass(frozen=True)
class DevicePlan:
    """Where the model runs and the autocast dtype used there (None: full precision)."""

    device: str
    autocast_dtype: str | None

    def torch_dtype(self) -> torch.dtype | None:
        import torch

        return None if self.autocast_dtype is None else getattr(torch, self.autocast_dtype)


def choose_device(requested: str = "auto") -> DevicePlan:
    """CUDA (bf16 autocast when the GPU supports it, else fp16) > MPS > CPU for ``auto``."""
    import torch

    if requested not in DEVICES:
        raise DeviceUnavailableError(
            f"Unknown device {requested!r}; choose one of {', '.join(DEVICES)}."
        )
    cuda = bool(torch.cuda.is_available())
    mps_backend = getattr(torch.backends, "mps", None)
    mps = bool(mps_backend is not None and mps_backend.is_available())
    if requested == "cuda" and not cuda:
        raise DeviceUnavailableError(
            "CUDA was requested but this torch build sees no NVIDIA GPU; use --device cpu or "
            "auto, and see `clinic-app doctor` for the torch build."
        )
    if requested == "mps" and not mps:
        raise DeviceUnavailableError("Apple MPS was requested but is not available here.")
    if requested == "cuda" or (requested == "auto" and cuda):
        bf16 = bool(torch.cuda.is_bf16_supported())
        return DevicePlan("cuda", "bfloat16" if bf16 else "float16")
    if requested == "mps" or (requested == "auto" and mps):
        return DevicePlan("mps", None)
    return DevicePlan("cpu", None)


# -- model transforms ------------------------------------------------------------------------
def quantize_int8(model: FusionModel) -> FusionModel:
    """A copy with every nn.Linear dynamically quantised to int8 (CPU only)."""
    import torch
    from torch import nn

    with warnings.catch_warnings():
        # Eager-mode dynamic quantisation is deprecated in favour of torchao (not a dependency);
        # it still works in the pinned torch, and the bench measures what it gives.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")
        quantized = torch.ao.quantization.quantize_dynamic(  # type: ignore[no-untyped-call]
            model, {nn.Linear}, dtype=torch.qint8
        )
    return quantized  # type: ignore[no-any-return]


def prune_linear(model: FusionModel, amount: float) -> int:
    """Zero the ``amount`` fraction of smallest-|w| weights of every nn.Linear (made permanent);
    returns how many layers were pruned."""
    from torch import nn
    from torch.nn.utils import prune

    if not 0.0 <= amount < 1.0:
        raise ModelPackageError(f"The pruning amount must be in [0, 1); got {amount}.")
    count = 0
    if amount == 0:
        return count
    for module in model.modules():
        if isinstance(module, nn.Linear) and module.weight.requires_grad is not None:
            prune.l1_unstructured(module, name="weight", amount=amount)  # type: ignore[no-untyped-call]
            prune.remove(module, "weight")  # type: ignore[no-untyped-call]
            count += 1
    return count


# -- preparation -----------------------------------------------------------------------------
def _quality() -> Any | None:
    try:
        from model import quality
    except ImportError:  # pragma: no cover - model.quality ships with the package
        return None
    return quality


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000.0, 3)


def _ecg_parts(ecg: Any) -> tuple[npt.NDArray[np.float64], float, tuple[str, ...], str]:
    if isinstance(ecg, EcgInput):
        samples, rate, names, units = ecg.samples, ecg.sampling_rate_hz, ecg.lead_names, ecg.units
    elif hasattr(ecg, "samples") and hasattr(ecg, "sampling_rate_hz"):
        samples, rate, names = ecg.samples, ecg.sampling_rate_hz, ecg.lead_names
        units = getattr(ecg, "units", "mV")
    elif isinstance(ecg, tuple) and len(ecg) in (3, 4):
        samples, rate, names = ecg[0], ecg[1], ecg[2]
        units = ecg[3] if len(ecg) == 4 else "mV"
    else:
        raise ModelInputError(
            "The ECG must be given as EcgInput or (samples, sampling_rate_hz, lead_names)."
        )
    return np.asarray(samples, dtype=np.float64), float(rate), tuple(names), str(units)


def _rounded(values: dict[str, Any]) -> dict[str, Any]:
    """Measurements at the precision they are meaningful to (bpm and ms to 0.1; ratios 4 d.p.)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, float):
            out[key] = round(value, 4 if key == "rr_cv" else 1)
        else:
            out[key] = value
    return out


def prepare_input(case: CaseInput, config: FusionConfig, tokenizer: Any) -> PreparedInput:
    """Turn one CaseInput into model inputs; a modality that is absent, unreadable or fails its
    quality check is left out with the reason. Raises ModelInputError when nothing is left."""
    from model.ecg_features import measure_ecg

    quality = _quality()
    enabled = set(config.modalities)
    missing: dict[str, str] = {}
    notes: list[str] = []
    timings: dict[str, float] = {}
    pathology = ecg = note = tabular = None
    ecg_features = None
    measurements: dict[str, Any] | None = None

    def unread(modality: str, given: bool) -> bool:
        if not given:
            missing[modality] = "not provided"
            return True
        if modality not in enabled:
            missing[modality] = f"this model does not read {modality} inputs"
            return True
        return False

    if not unread("pathology", case.image is not None):
        start = time.perf_counter()
        try:
            if hasattr(case.image, "read_region"):
                tiles = tile_slide(case.image, config.image)
            else:
                tiles = tile_image(case.image, config.image, case.microns_per_pixel)
            reason = quality.check_tiles(tiles) if quality is not None else None
            if reason is None:
                pathology = tiles
            else:
                missing["pathology"] = reason
        except ModelInputError as exc:
            missing["pathology"] = str(exc)
        timings["prepare_pathology"] = _ms(start)

    if not unread("ecg", case.ecg is not None):
        start = time.perf_counter()
        try:
            samples, rate, names, units = _ecg_parts(case.ecg)
            prepared = prepare_ecg(samples, rate, names, config.ecg, units=units)
            scale = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3}[units.lower()]
            limit = max(2, round(MEASURE_MAX_SECONDS * rate))
            # One scaled copy (none in mV) serves the quality check and the measurements.
            scaled = samples[:, :limit] if scale == 1.0 else samples[:, :limit] * scale
            finite = scaled if np.isfinite(scaled).all() else np.nan_to_num(scaled)
            raw = finite.astype(np.float32)
            mapped, mask, _ = map_to_standard_leads(raw, names)
            reason = (
                quality.check_ecg(scaled, np.ones(len(names), bool), rate, lead_names=names)
                if quality is not None
                else None
            )
            if reason is None:
                ecg = prepared
                measured = measure_ecg(mapped, rate, mask)
                ecg_features = measured.feature_vector()
                measurements = {
                    **_rounded(measured.as_dict()),
                    "measured_seconds": round(raw.shape[1] / rate, 3),
                }
                if prepared.derived_leads:
                    notes.append(
                        "ECG leads derived from the recorded limb leads: "
                        + ", ".join(prepared.derived_leads)
                    )
            else:
                missing["ecg"] = reason
        except (ModelInputError, KeyError) as exc:
            missing["ecg"] = str(exc) if isinstance(exc, ModelInputError) else "unknown ECG unit"
        except ModelPackageError as exc:
            missing["ecg"] = str(exc)
        timings["prepare_ecg"] = _ms(start)

    if not unread("note", case.note is not None):
        start = time.perf_counter()
        text = str(case.note)
        reason = quality.check_note(text) if quality is not None else None
        if reason is None and not text.strip():
            reason = "the note is empty"
        if reason is None:
            try:
                note = prepare_note(text, tokenizer, config.text)
                if note.truncated:
                    notes.append(
                        f"The note is long; the model read its first {config.text.max_chunks} "
                        f"chunks of {config.text.max_tokens_per_chunk} tokens."
                    )
            except ModelInputError as exc:
                missing["note"] = str(exc)
        else:
            missing["note"] = reason
        timings["prepare_note"] = _ms(start)

    if not unread("tabular", bool(case.vitals)):
        start = time.perf_counter()
        try:
            values = prepare_tabular(dict(case.vitals or {}), config.tabular)
            if values.ignored:
                notes.append("Values the model does not use: " + ", ".join(values.ignored))
            if values.present.any():
                tabular = values
            else:
                missing["tabular"] = "none of the vitals or demographics given are ones it reads"
        except ModelInputError as exc:
            missing["tabular"] = str(exc)
        timings["prepare_tabular"] = _ms(start)

    prepared_case = PreparedCase(
        pathology=pathology, ecg=ecg, ecg_features=ecg_features, note=note, tabular=tabular
    )
    if not prepared_case.modalities():
        reasons = "; ".join(f"{m}: {why}" for m, why in missing.items() if why != "not provided")
        raise ModelInputError(
            "The case has no input the model can use"
            + (f" ({reasons})." if reasons else "; give an image, an ECG, a note or vitals.")
        )
    return PreparedInput(prepared_case, missing, measurements, tuple(notes), timings)


_POOL_LOCK = threading.Lock()
_POOL: Any = None


def _preparation_pool() -> Any:
    """One shared thread pool for case preparation, sized to the machine (at most 8)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            import os
            from concurrent.futures import ThreadPoolExecutor

            workers = max(2, min(8, os.cpu_count() or 2))
            _POOL = ThreadPoolExecutor(workers, thread_name_prefix="clinicfusion-prepare")
        return _POOL


# -- the predictor ---------------------------------------------------------------------------
class Predictor:
    """A model bundle ready to analyse cases; safe to share between threads."""

    def __init__(
        self,
        bundle_dir: str | Path,
        device: str = "auto",
        *,
        quantize_int8: bool = False,
        prune_amount: float = 0.0,
        explain: bool = True,
        max_batch: int = 32,
        expected_sha256: str | None = None,
    ) -> None:
        if max_batch < 1:
            raise ModelPackageError("max_batch must be at least 1.")
        if device not in DEVICES:
            raise DeviceUnavailableError(
                f"Unknown device {device!r}; choose one of {', '.join(DEVICES)}."
            )
        self.bundle_dir = Path(bundle_dir)
        self.requested_device = device
        self.quantize = quantize_int8
        self.prune_amount = prune_amount
        self.explain = explain
        self.max_batch = max_batch
        self.expected_sha256 = expected_sha256
        self._lock = threading.RLock()
        self._plan: DevicePlan | None = None
        self._bundle: LoadedBundle | None = None
        self._runner: FusionModel | None = None
        self._tokenizer: Any = None

    # -- loading -----------------------------------------------------------------------------
    @property
    def plan(self) -> DevicePlan:
        """The device and autocast dtype (decided on first access, without loading)."""
        with self._lock:
            if self._plan is None:
                plan = choose_device(self.requested_device)
                if self.quantize and plan.device != "cpu":
                    if self.requested_device != "auto":
                        raise DeviceUnavailableError(
                            "int8 dynamic quantisation runs on the CPU only; use --device cpu."
                        )
                    plan = DevicePlan("cpu", None)
                self._plan = plan
            return self._plan

    def load(self) -> LoadedBundle:
        """Verify and load the bundle now (otherwise the first prediction does it)."""
        with self._lock:
            if self._bundle is None:
                self._load()
            assert self._bundle is not None
            return self._bundle

    def _load(self) -> None:
        import torch

        from model.bundle import load_bundle

        plan = self.plan
        if plan.device == "cpu":
            torch.use_deterministic_algorithms(True, warn_only=True)
        torch.manual_seed(0)
        bundle = load_bundle(self.bundle_dir, plan.device, expected_sha256=self.expected_sha256)
        model = bundle.model
        if self.prune_amount:
            prune_linear(model, self.prune_amount)
        runner = quantize_int8(model) if self.quantize else model
        runner.eval()
        tokenizer = None
        if "note" in bundle.config.modalities:
            from model.encoders.text import load_tokenizer

            tokenizer = load_tokenizer(bundle.config.text)
        self._bundle, self._runner, self._tokenizer = bundle, runner, tokenizer

    @property
    def identity(self) -> ModelIdentity:
        info = self.load().info
        return ModelIdentity(info.name, info.version, info.sha256)

    @property
    def config(self) -> FusionConfig:
        return self.load().config

    # -- prediction --------------------------------------------------------------------------
    def prepare(self, case: CaseInput) -> PreparedInput:
        bundle = self.load()
        return prepare_input(case, bundle.config, self._tokenizer)

    def predict(self, cases: Sequence[CaseInput]) -> list[Prediction]:
        """Analyse cases in batches of ``max_batch``; raises on the first unusable case."""
        results = self.predict_or_fail(cases)
        for result in results:
            if isinstance(result, CaseFailure):
                raise ModelInputError(result.message)
        return [r for r in results if isinstance(r, Prediction)]

    def predict_or_fail(self, cases: Sequence[CaseInput]) -> list[Prediction | CaseFailure]:
        """Like predict, but an unusable case becomes a CaseFailure and the others go on."""
        with self._lock:
            self.load()
            out: list[Prediction | CaseFailure] = []
            for start in range(0, len(cases), self.max_batch):
                out.extend(self._predict_chunk(cases[start : start + self.max_batch]))
            return out

    def _prepare_or_fail(self, case: CaseInput) -> PreparedInput | CaseFailure:
        # Runs on pool threads while the caller holds the lock: it must not take it (no load()).
        bundle = self._bundle
        assert bundle is not None
        try:
            return prepare_input(case, bundle.config, self._tokenizer)
        except ModelPackageError as exc:
            return CaseFailure(case.case_id, str(exc))

    def _predict_chunk(self, cases: Sequence[CaseInput]) -> list[Prediction | CaseFailure]:
        # Preparation (resampling, measurements, quality checks, tiling, tokenising) costs more
        # than the batched forward of a small model, so a batch prepares its cases in parallel
        # threads (numpy, scipy and the Rust tokenizer release the GIL for the heavy parts).
        if len(cases) > 1:
            prepared = list(_preparation_pool().map(self._prepare_or_fail, cases))
        else:
            prepared = [self._prepare_or_fail(case) for case in cases]
        good = [(i, p) for i, p in enumerate(prepared) if isinstance(p, PreparedInput)]
        results: list[Prediction | CaseFailure] = [
            p if isinstance(p, CaseFailure) else _PENDING for p in prepared
        ]
        if good:
            for (index, _), prediction in zip(
                good, self._run([p for _, p in good], [cases[i] for i, _ in good]), strict=True
            ):
                results[index] = prediction
        return results

    def _run(
        self, prepared: Sequence[PreparedInput], cases: Sequence[CaseInput]
    ) -> list[Prediction]:
        from model.network import collate

        bundle = self._bundle
        runner = self._runner
        assert bundle is not None and runner is not None
        config = bundle.config
        batch = len(prepared)
        used = [p.case.modalities() for p in prepared]
        # With explanations on, explain_case measures leave-one-out from its cached encodings;
        # otherwise the batch is encoded once and re-fused with each modality masked.
        explaining = self.explain and _explain_available()
        start = time.perf_counter()
        inputs = collate([p.case for p in prepared], config)
        collate_ms = _ms(start)
        start = time.perf_counter()
        logits, gates, extra, available, without = self._forward(
            runner, inputs, leave_one_out=not explaining
        )
        forward_ms = _ms(start)
        probabilities = self._calibrate(logits)
        dropped = {m: self._calibrate(v) for m, v in without.items()}
        abstained = (
            bundle.abstainer.abstain(probabilities)
            if bundle.abstainer is not None
            else np.zeros((batch, logits.shape[1]), dtype=bool)
        )
        identity = ModelIdentity(bundle.info.name, bundle.info.version, bundle.info.sha256)
        predictions: list[Prediction] = []
        for index, item in enumerate(prepared):
            probs = probabilities[index]
            top = int(np.argmax(probs))
            contributions: dict[str, float | None] = {m: None for m in used[index]}
            if len(used[index]) > 1 and not explaining:
                for modality in used[index]:
                    drop = float(probs[top] - dropped[modality][index, top])
                    contributions[modality] = round(drop, _PROBABILITY_DECIMALS)
            order = np.argsort(-probs, kind="stable")
            suggestions = tuple(
                Suggestion(
                    system=config.labels[j].system,
                    code=config.labels[j].code,
                    display=config.labels[j].display,
                    probability=round(float(probs[j]), _PROBABILITY_DECIMALS),
                    abstained=bool(abstained[index, j]),
                    critical=config.labels[j].critical,
                )
                for j in order
            )
            heads = {
                head.name: self._head_output(
                    head, extra[head.name][index], available[head.name][index]
                )
                for head in config.extra_heads
            }
            weights = {
                m: round(float(gates[index, config.modalities.index(m)]), _PROBABILITY_DECIMALS)
                for m in used[index]
            }
            timings = dict(item.timings_ms)
            timings["collate"] = round(collate_ms / batch, 3)
            timings["forward"] = round(forward_ms / batch, 3)
            explanation = None
            notes = item.notes
            if self.explain:
                start = time.perf_counter()
                explanation, note = self._explain(bundle, item.case, top, cases[index].note)
                timings["explain"] = _ms(start)
                notes = notes + ((note,) if note else ())
                if explanation is not None and len(used[index]) > 1:
                    contributions = {
                        m: round(float(explanation.leave_one_out[m]), _PROBABILITY_DECIMALS)
                        for m in used[index]
                    }
            timings["total"] = round(sum(timings.values()), 3)
            missing = {m: why for m, why in item.missing.items() if m not in used[index]}
            predictions.append(
                Prediction(
                    suggestions=suggestions,
                    extra_heads=heads,
                    modalities_used=used[index],
                    modalities_missing=missing,
                    modality_weights=weights,
                    contributions=contributions,
                    ecg_measurements=item.ecg_measurements,
                    explanation=explanation,
                    model=identity,
                    timings_ms=timings,
                    tiles=item.case.pathology,
                    notes=notes,
                    case_id=cases[index].case_id,
                )
            )
        return predictions

    def _forward(
        self, runner: FusionModel, inputs: FusionInputs, *, leave_one_out: bool = False
    ) -> tuple[
        npt.NDArray[np.float64],
        npt.NDArray[np.float64],
        dict[str, npt.NDArray[np.float64]],
        dict[str, npt.NDArray[np.bool_]],
        dict[str, npt.NDArray[np.float64]],
    ]:
        """Logits, gates, extra heads and their availability; with ``leave_one_out``, also the
        logits of every row with each present modality masked (NaN where nothing would be left),
        from one encoding of the batch."""
        import torch

        def numpy(tensor: torch.Tensor) -> npt.NDArray[np.float64]:
            return tensor.float().cpu().numpy().astype(np.float64)

        plan = self.plan
        without: dict[str, npt.NDArray[np.float64]] = {}
        with torch.inference_mode(), self._autocast():
            encoded, present = runner.encode(inputs.to(plan.device))
            output = runner.fuse(encoded, present)
            if leave_one_out:
                for index, modality in enumerate(runner.config.modalities):
                    masked = present.clone()
                    masked[:, index] = False
                    rows = present[:, index] & masked.any(dim=1)
                    if not bool(rows.any()):
                        continue
                    masked[~masked.any(dim=1), index] = True  # rows left empty: unused, kept finite
                    values = numpy(runner.fuse(encoded, masked).logits)
                    values[~rows.cpu().numpy()] = np.nan
                    without[modality] = values
        extra = {k: numpy(v) for k, v in output.extra_logits.items()}
        available = {k: v.cpu().numpy().astype(bool) for k, v in output.extra_available.items()}
        return numpy(output.logits), numpy(output.gates), extra, available, without

    @contextmanager
    def _autocast(self) -> Iterator[None]:
        import torch

        plan = self.plan
        dtype = plan.torch_dtype()
        if dtype is None:
            yield
            return
        with torch.autocast(device_type=plan.device, dtype=dtype):
            yield

    def _calibrate(self, logits: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        bundle = self._bundle
        assert bundle is not None
        if bundle.calibration is not None:
            return np.asarray(bundle.calibration.apply(logits), dtype=np.float64)
        return 1.0 / (1.0 + np.exp(-np.clip(logits, -60, 60)))

    @staticmethod
    def _head_output(head: Any, logits: npt.NDArray[np.float64], available: bool) -> HeadOutput:
        if not available:
            return HeadOutput(head.name, tuple(head.classes), None, None, False)
        if head.multi_label:
            probs = 1.0 / (1.0 + np.exp(-np.clip(logits, -60, 60)))
        else:
            shifted = np.exp(logits - logits.max())
            probs = shifted / shifted.sum()
        values = {
            c: round(float(p), _PROBABILITY_DECIMALS)
            for c, p in zip(head.classes, probs, strict=True)
        }
        return HeadOutput(
            head.name, tuple(head.classes), values, head.classes[int(np.argmax(probs))], True
        )

    def _explain(
        self, bundle: LoadedBundle, case: PreparedCase, label_index: int, note_text: str | None
    ) -> tuple[Any | None, str | None]:
        """Explanation of one label for one case (fp32 model: int8 layers have no gradients)."""
        try:
            from model.explain import explain_case
        except ImportError:
            return None, "Explanations are not available in this installation."
        import torch

        from model.network import collate

        inputs = collate([case], bundle.config).to(self.plan.device)
        with torch.enable_grad():
            explanation = explain_case(bundle.model, inputs, case, label_index, note_text=note_text)
        return explanation, None

    # -- conveniences ------------------------------------------------------------------------
    def predict_one(self, case: CaseInput) -> Prediction:
        return self.predict([case])[0]


_PENDING: Any = CaseFailure(None, "internal: not computed")


def _explain_available() -> bool:
    try:
        import model.explain  # noqa: F401
    except ImportError:
        return False
    return True


def measure(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn`` in milliseconds after ``warmup`` calls (for bench/ scripts)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return float(sorted(times)[len(times) // 2]) if times else math.nan


__all__ = [
    "CaseFailure",
    "CaseInput",
    "DevicePlan",
    "EcgInput",
    "HeadOutput",
    "ModelIdentity",
    "Prediction",
    "Predictor",
    "PreparedInput",
    "Suggestion",
    "choose_device",
    "explanation_summary",
    "prepare_input",
    "prune_linear",
    "quantize_int8",
]
