"""Per-label probability calibration and conformal abstention, fitted on validation data.

Both are numpy/scipy only and serialise to plain JSON dicts, so a bundle's metadata.json can
carry them and the app can apply them without torch.

- :class:`Calibration` maps each label's logit to a calibrated probability with Platt scaling
  (``sigmoid(a * logit + b)``, Platt 1999, with his smoothed targets) or temperature scaling
  (``sigmoid(logit / T)``, Guo et al. 2017). A label with too few positive or negative
  validation cases keeps the raw sigmoid ("identity") and records why in ``note``.
- :class:`ConformalAbstainer` is split conformal prediction per label (Vovk et al. 2005;
  Angelopoulos & Bates 2021): a label whose binary prediction set is not a single class is
  shown as "insufficient confidence" instead of a number.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from model.errors import ModelPackageError

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

#: A label needs at least this many positive AND negative validation cases to be calibrated.
MIN_CASES_PER_CLASS = 5
#: Temperatures are kept in this range; beyond it the fit is telling us about broken logits.
TEMPERATURE_RANGE = (0.05, 20.0)
#: L2 penalty on the Platt parameters, so that separable validation data still has a finite fit.
PLATT_L2 = 1e-6
METHODS = ("platt", "temperature", "identity")
FORMAT_VERSION = 1


class CalibrationError(ModelPackageError, ValueError):
    """Calibration or abstention data cannot be fitted or read; the message says why."""


def _sigmoid(values: FloatArray) -> FloatArray:
    """Numerically stable logistic function."""
    out = np.empty_like(values, dtype=np.float64)
    positive = values >= 0
    out[positive] = 1.0 / (1.0 + np.exp(-values[positive]))
    exp = np.exp(values[~positive])
    out[~positive] = exp / (1.0 + exp)
    return out


def _log_sigmoid(values: FloatArray) -> FloatArray:
    """log(sigmoid(x)) without overflow."""
    return -np.logaddexp(0.0, -values)


def _binary_nll(logits: FloatArray, targets: FloatArray) -> float:
    """Mean negative log-likelihood of (possibly soft) targets under sigmoid(logits)."""
    return float(-np.mean(targets * _log_sigmoid(logits) + (1.0 - targets) * _log_sigmoid(-logits)))


def _as_matrix(name: str, values: npt.ArrayLike) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise CalibrationError(f"{name} must be shaped (cases, labels); got {array.shape}.")
    return array


def _check_targets(targets: FloatArray, shape: tuple[int, ...]) -> None:
    """Targets are 0/1, or NaN where a case is not labelled for that label."""
    if targets.shape != shape:
        raise CalibrationError(
            f"Targets are shaped {targets.shape} but the scores are {shape}; they must match."
        )
    known = targets[~np.isnan(targets)]
    if not np.isin(known, (0.0, 1.0)).all():
        raise CalibrationError("Targets must be 0, 1, or NaN (not labelled).")


@dataclass(frozen=True)
class LabelCalibration:
    """One label's map from logit to probability: ``p = sigmoid(slope * logit + intercept)``."""

    method: str  # "platt" | "temperature" | "identity"
    slope: float
    intercept: float
    note: str = ""  # why a label fell back to identity, or what to know about the fit

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise CalibrationError(f"Unknown calibration method {self.method!r}; use {METHODS}.")
        if not (math.isfinite(self.slope) and math.isfinite(self.intercept)):
            raise CalibrationError("Calibration slope and intercept must be finite numbers.")

    @property
    def temperature(self) -> float | None:
        """The temperature of a temperature-scaled label (1/slope), else None."""
        return 1.0 / self.slope if self.method == "temperature" else None


IDENTITY = LabelCalibration("identity", 1.0, 0.0)


def fit_platt(logits: FloatArray, targets: FloatArray) -> tuple[float, float]:
    """Platt scaling by Newton's method on the smoothed targets (N+ + 1)/(N+ + 2) and
    1/(N- + 2), with a tiny L2 penalty; returns (slope, intercept)."""
    positives = float(targets.sum())
    negatives = float(targets.size - positives)
    soft = np.where(targets > 0.5, (positives + 1) / (positives + 2), 1 / (negatives + 2))
    design = np.column_stack([logits, np.ones_like(logits)])
    params = np.array([1.0, 0.0])
    count = float(logits.size)

    def objective(p: FloatArray) -> float:
        return _binary_nll(design @ p, soft) + PLATT_L2 * float(p @ p)

    current = objective(params)
    for _ in range(100):
        probs = _sigmoid(design @ params)
        gradient = design.T @ (probs - soft) / count + 2 * PLATT_L2 * params
        weights = probs * (1 - probs)
        hessian = (design * weights[:, None]).T @ design / count + 2 * PLATT_L2 * np.eye(2)
        try:
            step = np.linalg.solve(hessian + 1e-12 * np.eye(2), gradient)
        except np.linalg.LinAlgError:
            step = gradient
        scale = 1.0
        while scale > 1e-10:  # backtracking keeps every step a descent step
            candidate = params - scale * step
            value = objective(candidate)
            if value <= current:
                break
            scale /= 2
        else:
            break
        converged = abs(current - value) < 1e-14 and float(np.abs(scale * step).max()) < 1e-10
        params, current = candidate, value
        if converged:
            break
    return float(params[0]), float(params[1])


def fit_temperature(logits: FloatArray, targets: FloatArray) -> float:
    """The temperature T minimising the NLL of sigmoid(logit / T), within TEMPERATURE_RANGE."""
    from scipy.optimize import minimize_scalar

    low, high = (math.log(t) for t in TEMPERATURE_RANGE)
    result = minimize_scalar(
        lambda log_t: _binary_nll(logits / math.exp(log_t), targets),
        bounds=(low, high),
        method="bounded",
        options={"xatol": 1e-8},
    )
    return float(min(max(math.exp(float(result.x)), TEMPERATURE_RANGE[0]), TEMPERATURE_RANGE[1]))


def fit_label(logits: FloatArray, targets: FloatArray, method: str) -> LabelCalibration:
    """Calibrate one label from its labelled validation cases (NaN targets are skipped)."""
    known = ~np.isnan(targets) & np.isfinite(logits)
    logits, targets = logits[known], targets[known]
    positives = int(targets.sum())
    negatives = int(targets.size - positives)
    if method == "identity":
        return IDENTITY
    if positives < MIN_CASES_PER_CLASS or negatives < MIN_CASES_PER_CLASS:
        return LabelCalibration(
            "identity",
            1.0,
            0.0,
            note=(
                f"not calibrated: the validation data hold {positives} positive and {negatives} "
                f"negative cases; at least {MIN_CASES_PER_CLASS} of each are needed"
            ),
        )
    if method == "platt":
        slope, intercept = fit_platt(logits, targets)
        note = "" if slope > 0 else "slope is not positive: the model ranks this label poorly"
        return LabelCalibration("platt", slope, intercept, note)
    temperature = fit_temperature(logits, targets)
    clamped = any(math.isclose(temperature, bound, rel_tol=1e-4) for bound in TEMPERATURE_RANGE)
    note = f"temperature clamped to {temperature:g}: the logits look broken" if clamped else ""
    return LabelCalibration("temperature", 1.0 / temperature, 0.0, note)


@dataclass(frozen=True)
class Calibration:
    """Per-label calibration of the model's logits, stored in the bundle's metadata."""

    labels: tuple[str, ...]
    per_label: tuple[LabelCalibration, ...]

    def __post_init__(self) -> None:
        if len(self.labels) != len(self.per_label):
            raise CalibrationError(
                f"Calibration has {len(self.labels)} labels but {len(self.per_label)} maps."
            )

    @classmethod
    def fit(
        cls,
        logits: npt.ArrayLike,
        targets: npt.ArrayLike,
        labels: Sequence[str],
        method: str = "platt",
    ) -> Calibration:
        """Fit every label on validation logits (N, L) and 0/1 targets (N, L; NaN = unknown)."""
        if method not in METHODS:
            raise CalibrationError(f"Unknown calibration method {method!r}; use {METHODS}.")
        matrix = _as_matrix("Logits", logits)
        truth = _as_matrix("Targets", targets)
        _check_targets(truth, matrix.shape)
        if matrix.shape[1] != len(labels):
            raise CalibrationError(
                f"Logits have {matrix.shape[1]} labels but {len(labels)} label names were given."
            )
        per_label = tuple(
            fit_label(matrix[:, j], truth[:, j], method) for j in range(matrix.shape[1])
        )
        return cls(tuple(labels), per_label)

    @classmethod
    def identity(cls, labels: Sequence[str]) -> Calibration:
        """No calibration: the raw sigmoid for every label."""
        return cls(tuple(labels), tuple(IDENTITY for _ in labels))

    def apply(self, logits: npt.ArrayLike) -> FloatArray:
        """Logits (N, L) (or one case, (L,)) -> calibrated probabilities of the same shape."""
        array = np.asarray(logits, dtype=np.float64)
        if array.shape[-1:] != (len(self.labels),) or array.ndim not in (1, 2):
            raise CalibrationError(
                f"Expected logits shaped (cases, {len(self.labels)}); got {array.shape}."
            )
        slopes = np.array([c.slope for c in self.per_label])
        intercepts = np.array([c.intercept for c in self.per_label])
        with np.errstate(invalid="ignore", over="ignore"):
            return _sigmoid(array * slopes + intercepts)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (plain floats and strings)."""
        return {
            "format": FORMAT_VERSION,
            "labels": [
                {
                    "label": label,
                    "method": c.method,
                    "slope": float(c.slope),
                    "intercept": float(c.intercept),
                    "note": c.note,
                }
                for label, c in zip(self.labels, self.per_label, strict=True)
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibration:
        """Read what :meth:`to_dict` wrote; a malformed dict raises CalibrationError."""
        if data.get("format") != FORMAT_VERSION:
            raise CalibrationError(
                f"Calibration format {data.get('format')!r} is not supported "
                f"(expected {FORMAT_VERSION})."
            )
        try:
            entries = list(data["labels"])
            labels = tuple(str(e["label"]) for e in entries)
            per_label = tuple(
                LabelCalibration(
                    str(e["method"]),
                    float(e["slope"]),
                    float(e["intercept"]),
                    str(e.get("note", "")),
                )
                for e in entries
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, CalibrationError):
                raise
            raise CalibrationError(f"The calibration data are malformed ({exc}).") from exc
        return cls(labels, per_label)


@dataclass(frozen=True)
class ConformalAbstainer:
    """Split conformal abstention, one binary prediction set per label.

    Fit on held-out calibration cases (not used for training, ideally not for fitting
    :class:`Calibration` either) with the same probabilities the app will see at inference.
    The nonconformity score of a case is ``1 - p(true class)``; ``qhat`` is the
    ``ceil((n + 1) * coverage) / n`` empirical quantile of the n calibration scores ("higher"
    method, i.e. the k-th smallest score). At inference the prediction set holds class 1 when
    ``1 - p <= qhat`` and class 0 when ``p <= qhat``; the label is abstained on ("insufficient
    confidence") unless the set holds exactly one class.

    Guarantee: if the calibration cases and a new case are exchangeable (drawn the same way
    from the same population), the set contains the true class with probability at least
    ``target_coverage`` (and at most ``target_coverage + 1/(n + 1)`` without ties), per label.
    Limits: the coverage is marginal, averaged over cases and over calibration draws, not
    conditional on a patient, a subgroup, a site or a class (a rare label's positives may be
    covered far less often than its negatives); it says nothing after a shift in population,
    scanner, ECG device or prevalence; it holds label by label, not for all labels jointly; and
    it does not make a singleton set correct, only the sets' coverage rate. With too few
    calibration cases for the target (``ceil((n + 1) * coverage) > n``) ``qhat`` is 1 and the
    label is always abstained on.
    """

    target_coverage: float
    qhat: tuple[float, ...]  # per label
    notes: tuple[str, ...] = field(default=())  # per label, empty when nothing to say
    calibration_cases: tuple[int, ...] = field(default=())  # n per label

    def __post_init__(self) -> None:
        if not (0.0 < self.target_coverage < 1.0):
            raise CalibrationError(
                f"Target coverage must lie strictly between 0 and 1; got {self.target_coverage}."
            )
        for name in ("notes", "calibration_cases"):
            if getattr(self, name) and len(getattr(self, name)) != len(self.qhat):
                raise CalibrationError(f"{name} must have one entry per label.")
        if not all(math.isfinite(q) and 0.0 <= q <= 1.0 for q in self.qhat):
            raise CalibrationError("Every conformal threshold must lie between 0 and 1.")

    @classmethod
    def fit(
        cls,
        probabilities: npt.ArrayLike,
        targets: npt.ArrayLike,
        target_coverage: float = 0.9,
    ) -> ConformalAbstainer:
        """Thresholds from calibration probabilities (N, L) and 0/1 targets (NaN = unknown)."""
        probs = _as_matrix("Probabilities", probabilities)
        truth = _as_matrix("Targets", targets)
        _check_targets(truth, probs.shape)
        if not (0.0 < target_coverage < 1.0):
            raise CalibrationError(
                f"Target coverage must lie strictly between 0 and 1; got {target_coverage}."
            )
        qhats, notes, counts = [], [], []
        for j in range(probs.shape[1]):
            known = ~np.isnan(truth[:, j]) & np.isfinite(probs[:, j])
            p, y = probs[known, j], truth[known, j]
            scores = np.sort(np.where(y > 0.5, 1.0 - p, p))
            n = scores.size
            rank = math.ceil((n + 1) * target_coverage - 1e-9)  # 1e-9: float noise, not data
            if rank > n:
                needed = math.ceil(target_coverage / (1.0 - target_coverage) - 1e-9)
                qhats.append(1.0)
                notes.append(
                    f"always abstains: {n} labelled calibration cases are too few for "
                    f"{target_coverage:.0%} coverage (at least {needed} are needed)"
                )
            else:
                qhats.append(float(min(max(scores[rank - 1], 0.0), 1.0)))
                notes.append("")
            counts.append(n)
        return cls(float(target_coverage), tuple(qhats), tuple(notes), tuple(counts))

    def prediction_sets(self, probabilities: npt.ArrayLike) -> tuple[BoolArray, BoolArray]:
        """(contains class 0, contains class 1), each (N, L) bool."""
        probs = np.asarray(probabilities, dtype=np.float64)
        if probs.shape[-1:] != (len(self.qhat),) or probs.ndim not in (1, 2):
            raise CalibrationError(
                f"Expected probabilities shaped (cases, {len(self.qhat)}); got {probs.shape}."
            )
        qhat = np.asarray(self.qhat)
        with np.errstate(invalid="ignore"):
            return probs <= qhat, (1.0 - probs) <= qhat

    def abstain(self, probabilities: npt.ArrayLike) -> BoolArray:
        """(N, L) bool: True where the label should read "insufficient confidence" (the set is
        both classes or empty; NaN probabilities always abstain)."""
        has_zero, has_one = self.prediction_sets(probabilities)
        singleton: BoolArray = has_zero != has_one
        return ~singleton

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (plain floats, ints and strings)."""
        return {
            "format": FORMAT_VERSION,
            "target_coverage": float(self.target_coverage),
            "qhat": [float(q) for q in self.qhat],
            "notes": list(self.notes),
            "calibration_cases": [int(n) for n in self.calibration_cases],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConformalAbstainer:
        """Read what :meth:`to_dict` wrote; a malformed dict raises CalibrationError."""
        if data.get("format") != FORMAT_VERSION:
            raise CalibrationError(
                f"Abstention format {data.get('format')!r} is not supported "
                f"(expected {FORMAT_VERSION})."
            )
        try:
            return cls(
                float(data["target_coverage"]),
                tuple(float(q) for q in data["qhat"]),
                tuple(str(n) for n in data.get("notes", ())),
                tuple(int(n) for n in data.get("calibration_cases", ())),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, CalibrationError):
                raise
            raise CalibrationError(f"The abstention data are malformed ({exc}).") from exc
