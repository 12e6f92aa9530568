"""Evaluation metrics in numpy alone (scikit-learn is not a run-time dependency).

- :func:`auroc`: the Mann-Whitney U statistic with average ranks for ties, i.e. the probability
  that a random positive scores above a random negative, ties counting one half.
- :func:`auprc`: average precision exactly as ``sklearn.metrics.average_precision_score``
  (sum over distinct thresholds of recall increase times precision, no interpolation).
- :func:`f1_at`, :func:`macro_f1`, :func:`accuracy`, :func:`expected_calibration_error`.
- :func:`bootstrap_ci`: percentile bootstrap over cases, or over whole groups (patients) so
  that correlated cases of one patient never make an interval look narrower than it is.
- :func:`reliability_diagram`: a PNG drawn with matplotlib's Agg canvas.

Targets may hold NaN (label not known for a case); every function drops those pairs first.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def _pairs(y: npt.ArrayLike, score: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Flattened (targets, scores) with unknown (NaN) targets removed; checks 0/1 targets."""
    truth = np.asarray(y, dtype=np.float64).reshape(-1)
    values = np.asarray(score, dtype=np.float64).reshape(-1)
    if truth.shape != values.shape:
        raise ValueError(f"Targets ({truth.size}) and scores ({values.size}) differ in length.")
    known = ~np.isnan(truth)
    truth, values = truth[known], values[known]
    if not np.isin(truth, (0.0, 1.0)).all():
        raise ValueError("Targets must be 0, 1 or NaN (unknown).")
    if not np.isfinite(values).all():
        raise ValueError("Scores must be finite numbers where the target is known.")
    return truth, values


def auroc(y: npt.ArrayLike, score: npt.ArrayLike) -> float | None:
    """Area under the ROC curve (Mann-Whitney, ties count 1/2); None with only one class."""
    truth, values = _pairs(y, score)
    positives = float(truth.sum())
    negatives = float(truth.size - positives)
    if positives == 0 or negatives == 0:
        return None
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    upper = np.cumsum(counts).astype(np.float64)
    average_rank = upper - (counts - 1) / 2.0  # 1-based mean rank of each tied block
    rank_sum = float(average_rank[inverse.reshape(-1)][truth == 1].sum())
    u_statistic = rank_sum - positives * (positives + 1) / 2.0
    return u_statistic / (positives * negatives)


def auprc(y: npt.ArrayLike, score: npt.ArrayLike) -> float | None:
    """Average precision as scikit-learn computes it; None with only one class (with no
    negatives it would be trivially 1, with no positives undefined)."""
    truth, values = _pairs(y, score)
    positives = float(truth.sum())
    if positives == 0 or positives == truth.size:
        return None
    order = np.argsort(-values, kind="mergesort")
    ordered, hits = values[order], truth[order]
    distinct = np.flatnonzero(np.diff(ordered))
    last = np.r_[distinct, ordered.size - 1]
    true_positives = np.cumsum(hits)[last]
    predicted = last + 1.0
    precision = true_positives / predicted
    recall = true_positives / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def f1_at(y: npt.ArrayLike, prob: npt.ArrayLike, threshold: float = 0.5) -> float:
    """F1 of the positive class when ``prob >= threshold`` is called positive (0 when there
    are neither positives nor positive calls, as scikit-learn's default)."""
    truth, values = _pairs(y, prob)
    called = values >= threshold
    true_positive = float(np.sum(called & (truth == 1)))
    false_positive = float(np.sum(called & (truth == 0)))
    false_negative = float(np.sum(~called & (truth == 1)))
    denominator = 2 * true_positive + false_positive + false_negative
    return 0.0 if denominator == 0 else 2 * true_positive / denominator


def accuracy(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float | None:
    """Fraction of correct class predictions; None when there are no cases."""
    truth = np.asarray(y_true).reshape(-1)
    predicted = np.asarray(y_pred).reshape(-1)
    if truth.shape != predicted.shape:
        raise ValueError("True and predicted classes differ in length.")
    return None if truth.size == 0 else float(np.mean(truth == predicted))


def macro_f1(
    y_true: npt.ArrayLike, y_pred: npt.ArrayLike, classes: Sequence[int] | None = None
) -> float | None:
    """Unweighted mean of per-class F1 over ``classes`` (default: the classes present in the
    truth, i.e. scikit-learn's ``f1_score(average="macro", labels=np.unique(y_true))``; a
    class that is only ever predicted still costs through the others' precision); None when
    there are no cases."""
    truth = np.asarray(y_true).reshape(-1)
    predicted = np.asarray(y_pred).reshape(-1)
    if truth.shape != predicted.shape:
        raise ValueError("True and predicted classes differ in length.")
    if truth.size == 0:
        return None
    present = np.unique(truth) if classes is None else np.asarray(classes)
    scores = []
    for cls in present:
        tp = float(np.sum((predicted == cls) & (truth == cls)))
        fp = float(np.sum((predicted == cls) & (truth != cls)))
        fn = float(np.sum((predicted != cls) & (truth == cls)))
        denominator = 2 * tp + fp + fn
        scores.append(0.0 if denominator == 0 else 2 * tp / denominator)
    return float(np.mean(scores)) if scores else None


def _bin_index(prob: FloatArray, bins: int) -> IntArray:
    """Equal-width bins over [0, 1], (lo, hi] (0 falls in the first bin)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    return np.clip(np.searchsorted(edges[1:-1], prob, side="left"), 0, bins - 1).astype(np.int64)


def calibration_bins(
    y: npt.ArrayLike, prob: npt.ArrayLike, bins: int = 15
) -> tuple[FloatArray, FloatArray, IntArray]:
    """Per equal-width bin: mean predicted probability, observed positive rate, count
    (NaN means for empty bins); pairs with unknown targets are dropped."""
    if bins < 1:
        raise ValueError("The number of bins must be at least 1.")
    truth, values = _pairs(y, prob)
    if ((values < 0) | (values > 1)).any():
        raise ValueError("Probabilities must lie between 0 and 1.")
    index = _bin_index(values, bins)
    counts = np.bincount(index, minlength=bins).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_prob = np.bincount(index, weights=values, minlength=bins) / counts
        observed = np.bincount(index, weights=truth, minlength=bins) / counts
    return mean_prob, observed, counts


def expected_calibration_error(y: npt.ArrayLike, prob: npt.ArrayLike, bins: int = 15) -> float:
    """ECE: sum over equal-width bins of (bin count / all) * |observed rate - mean probability|,
    over every (case, label) pair with a known target (2-D inputs are flattened)."""
    mean_prob, observed, counts = calibration_bins(y, prob, bins)
    total = int(counts.sum())
    if total == 0:
        raise ValueError("There are no cases with a known target to measure calibration on.")
    filled = counts > 0
    gaps = np.abs(observed[filled] - mean_prob[filled])
    return float(np.sum(counts[filled] / total * gaps))


class ConfidenceInterval(tuple[float | None, float | None]):
    """``(lo, hi)`` of a percentile bootstrap, plus how many resamples it rests on.

    ``used`` resamples gave a value (a resample where the statistic is undefined, e.g. AUROC
    with one class, is skipped) out of ``requested``. ``(None, None)`` when none did."""

    used: int
    requested: int

    def __new__(
        cls, lo: float | None, hi: float | None, used: int = 0, requested: int = 0
    ) -> ConfidenceInterval:
        interval = super().__new__(cls, (lo, hi))
        interval.used = used
        interval.requested = requested
        return interval

    @property
    def lo(self) -> float | None:
        return self[0]

    @property
    def hi(self) -> float | None:
        return self[1]


def resample_indices(
    n_cases: int,
    n: int,
    seed: int = 0,
    groups: Sequence[Any] | npt.NDArray[Any] | None = None,
) -> list[IntArray]:
    """``n`` bootstrap resamples of case indices; with ``groups`` (one id per case), whole
    groups are drawn with replacement and all their cases go in together."""
    if n_cases < 0 or n < 0:
        raise ValueError("Case and resample counts cannot be negative.")
    rng = np.random.default_rng(seed)
    if groups is None:
        return [rng.integers(0, n_cases, size=n_cases) for _ in range(n)] if n_cases else []
    ids = np.asarray(groups, dtype=object).reshape(-1)
    if ids.size != n_cases:
        raise ValueError(f"groups has {ids.size} entries but there are {n_cases} cases.")
    if n_cases == 0:
        return []
    _, inverse = np.unique(ids.astype(str), return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")  # cases grouped, each group's in case order
    sizes = np.bincount(inverse)
    starts = np.cumsum(sizes) - sizes
    draws = []
    for _ in range(n):
        chosen = rng.integers(0, sizes.size, size=sizes.size)
        lengths = sizes[chosen]
        # position k of the draw reads order[start of its group + its offset inside the group]
        firsts = np.repeat(starts[chosen] - (np.cumsum(lengths) - lengths), lengths)
        draws.append(order[firsts + np.arange(int(lengths.sum()))].astype(np.int64))
    return draws


def bootstrap_cis(
    statistics: Mapping[str, Callable[[IntArray], float | None]],
    n_cases: int,
    *,
    n: int = 1000,
    seed: int = 0,
    groups: Sequence[Any] | npt.NDArray[Any] | None = None,
    level: float = 0.95,
) -> dict[str, ConfidenceInterval]:
    """Percentile intervals of several statistics over the SAME resamples (each statistic
    takes an index array into the cases and returns a value or None)."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"The confidence level must lie between 0 and 1; got {level}.")
    draws = resample_indices(n_cases, n, seed, groups)
    values: dict[str, list[float]] = {name: [] for name in statistics}
    for indices in draws:
        for name, statistic in statistics.items():
            value = statistic(indices)
            if value is not None and math.isfinite(value):
                values[name].append(float(value))
    tail = (1.0 - level) / 2.0
    out: dict[str, ConfidenceInterval] = {}
    for name, found in values.items():
        if not found:
            out[name] = ConfidenceInterval(None, None, 0, n)
            continue
        lo, hi = np.quantile(np.asarray(found), [tail, 1.0 - tail])
        out[name] = ConfidenceInterval(float(lo), float(hi), len(found), n)
    return out


def bootstrap_ci(
    statistic: Callable[[IntArray], float | None],
    n_cases: int,
    *,
    n: int = 1000,
    seed: int = 0,
    groups: Sequence[Any] | npt.NDArray[Any] | None = None,
    level: float = 0.95,
) -> ConfidenceInterval:
    """Percentile bootstrap ``(lo, hi)`` of ``statistic(indices)``, resampling case indices
    (or whole groups when ``groups`` is given); deterministic for a seed."""
    return bootstrap_cis({"value": statistic}, n_cases, n=n, seed=seed, groups=groups, level=level)[
        "value"
    ]


def macro_mean(values: Sequence[float | None]) -> float | None:
    """Mean of the defined values (labels that have both classes); None when there are none."""
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None


def reliability_diagram(
    y: npt.ArrayLike,
    prob: npt.ArrayLike | Mapping[str, npt.ArrayLike],
    path: str | Path,
    bins: int = 15,
    title: str = "",
) -> Path:
    """Write a reliability diagram PNG: observed positive rate against mean predicted
    probability per bin (one curve per entry when ``prob`` is a mapping, e.g. raw and
    calibrated), the diagonal, and the bin counts below.

    Drawn on matplotlib's Agg canvas directly (``Figure`` + ``FigureCanvasAgg``), never through
    pyplot, so a Qt backend the GUI selected in the same process is left untouched."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    curves = dict(prob) if isinstance(prob, Mapping) else {"model": prob}
    figure = Figure(figsize=(5.5, 6.5), dpi=100)
    FigureCanvasAgg(figure)
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect")
    width = 1.0 / bins
    centres = (np.arange(bins) + 0.5) * width
    offset = width / max(len(curves), 1)
    for k, (name, values) in enumerate(curves.items()):
        mean_prob, observed, counts = calibration_bins(y, values, bins)
        filled = counts > 0
        ece = expected_calibration_error(y, values, bins) if counts.sum() else float("nan")
        top.plot(mean_prob[filled], observed[filled], marker="o", label=f"{name} (ECE {ece:.3f})")
        bottom.bar(
            centres - width / 2 + offset * (k + 0.5), counts, width=offset, label=name, alpha=0.8
        )
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("Observed positive rate")
    top.set_title(title or "Reliability diagram")
    top.legend(loc="upper left", fontsize="small")
    bottom.set_xlabel("Predicted probability")
    bottom.set_ylabel("Pairs")
    figure.tight_layout()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, format="png")
    return target
