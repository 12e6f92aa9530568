"""Evaluation metrics on cases whose answers are known by hand, and against scikit-learn."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from model.training import metrics as M

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# -- AUROC ---------------------------------------------------------------------------------------
def test_auroc_by_hand() -> None:
    # pairs (pos, neg): 0.35>0.1, 0.35<0.4, 0.8>0.1, 0.8>0.4 -> 3 of 4
    assert M.auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert M.auroc([0, 1], [0.2, 0.9]) == 1.0
    assert M.auroc([1, 0], [0.2, 0.9]) == 0.0


def test_auroc_counts_ties_as_one_half() -> None:
    # pos 0.5 vs neg 0.5 ties (1/2); pos 0.5 > 0.2; pos 0.9 beats both -> 3.5 / 4
    assert M.auroc([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9]) == pytest.approx(0.875)
    assert M.auroc([0, 1, 0, 1, 1], [0.3] * 5) == pytest.approx(0.5)


def test_auroc_one_class_is_none_and_unknown_targets_are_dropped() -> None:
    assert M.auroc([1, 1, 1], [0.1, 0.2, 0.3]) is None
    assert M.auroc([0, 0], [0.1, 0.2]) is None
    # the NaN target's score (which would break the ranking) is ignored
    assert M.auroc([0, np.nan, 1], [0.1, 0.99, 0.5]) == 1.0
    with pytest.raises(ValueError, match="0, 1 or NaN"):
        M.auroc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="finite"):
        M.auroc([0, 1], [0.1, np.nan])


# -- average precision -------------------------------------------------------------------------
def test_average_precision_by_hand() -> None:
    # ranked 0.8(+) 0.4(-) 0.35(+) 0.1(-): recall 0.5 at precision 1, recall 1 at 2/3
    assert M.auprc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.5 + 0.5 * 2 / 3)
    # a tied block is one threshold: {0.5: +,-} gives P=1/2 at R=1/2, then P=2/3 at R=1
    assert M.auprc([1, 0, 1], [0.5, 0.5, 0.1]) == pytest.approx(0.25 + 0.5 * 2 / 3)
    # constant scores: AP is the prevalence
    assert M.auprc([1, 0, 0, 0], [0.7] * 4) == pytest.approx(0.25)
    assert M.auprc([0, 0], [0.1, 0.2]) is None


# -- F1, accuracy, macro-F1 --------------------------------------------------------------------
def test_f1_at_threshold_by_hand() -> None:
    y = [1, 1, 0, 0, 1]
    p = [0.9, 0.4, 0.6, 0.1, 0.5]
    assert M.f1_at(y, p) == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))  # tp 2, fp 1, fn 1
    assert M.f1_at(y, p, threshold=0.3) == pytest.approx(6 / 7)  # tp 3, fp 1, fn 0
    assert M.f1_at(y, p, threshold=0.95) == 0.0
    assert M.f1_at([0, 0], [0.1, 0.2]) == 0.0  # nothing to find, nothing called


def test_accuracy_and_macro_f1_by_hand() -> None:
    truth = [0, 0, 1, 1, 2]
    predicted = [0, 1, 1, 1, 0]
    assert M.accuracy(truth, predicted) == pytest.approx(3 / 5)
    # class 0: tp1 fp1 fn1 -> 1/2; class 1: tp2 fp1 fn0 -> 4/5; class 2: 0
    assert M.macro_f1(truth, predicted) == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    # a class only predicted, never true, is not averaged over
    assert M.macro_f1([0, 0], [0, 3]) == pytest.approx(2 / 3)
    assert M.macro_f1([], []) is None


# -- calibration -------------------------------------------------------------------------------
def test_ece_by_hand() -> None:
    # 2 bins: [0.2, 0.2] observed 1/2 (gap 0.3); [0.8, 0.8] observed 1 (gap 0.2)
    assert M.expected_calibration_error([0, 1, 1, 1], [0.2, 0.2, 0.8, 0.8], bins=2) == (
        pytest.approx(0.5 * 0.3 + 0.5 * 0.2)
    )
    # perfectly calibrated bins
    y = [0, 0, 0, 1, 1, 1, 1, 0]
    p = [0.25] * 4 + [0.75] * 4
    assert M.expected_calibration_error(y, p, bins=10) == pytest.approx(0.0)


def test_ece_pools_every_known_case_label_pair() -> None:
    y = np.array([[0, np.nan], [1, 1], [1, 0], [1, np.nan]])
    p = np.array([[0.2, 0.99], [0.2, 0.8], [0.8, 0.8], [0.8, 0.01]])
    # known pairs: (0, .2) (1, .2) (1, .8) (1, .8) (1, .8) (0, .8)
    expected = 2 / 6 * abs(0.5 - 0.2) + 4 / 6 * abs(0.75 - 0.8)
    assert M.expected_calibration_error(y, p, bins=2) == pytest.approx(expected)
    with pytest.raises(ValueError, match="no cases with a known target"):
        M.expected_calibration_error([np.nan], [0.5])


# -- bootstrap ---------------------------------------------------------------------------------
def test_bootstrap_ci_contains_the_estimate_and_is_deterministic() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(size=200)

    def mean(i: np.ndarray) -> float:
        return float(values[i].mean())

    ci = M.bootstrap_ci(mean, values.size, n=300, seed=1)
    lo, hi = ci  # unpacks as a pair
    assert lo is not None and hi is not None
    assert lo < values.mean() < hi
    assert ci.used == ci.requested == 300
    assert M.bootstrap_ci(mean, values.size, n=300, seed=1) == ci
    assert M.bootstrap_ci(mean, values.size, n=300, seed=2) != ci
    # 95 % interval of a mean of 200 standard normals is about +-1.96 / sqrt(200)
    assert hi - lo == pytest.approx(2 * 1.96 / np.sqrt(200), rel=0.25)


def test_bootstrap_skips_undefined_resamples_and_reports_how_many_were_used() -> None:
    y = np.array([1.0] + [0.0] * 9)
    score = np.linspace(0, 1, 10)
    ci = M.bootstrap_ci(lambda i: M.auroc(y[i], score[i]), 10, n=400, seed=0)
    # the single positive is missing from about (9/10)^10 ~ 35 % of resamples
    assert 0 < ci.used < 400
    assert ci.used == pytest.approx(400 * (1 - 0.9**10), rel=0.15)
    empty = M.bootstrap_ci(lambda i: None, 10, n=50)
    assert tuple(empty) == (None, None) and empty.used == 0


def test_group_bootstrap_keeps_groups_whole_and_widens_clustered_intervals() -> None:
    groups = np.repeat(np.arange(10), 20)  # 10 patients, 20 cases each
    values = np.repeat(np.random.default_rng(3).normal(size=10), 20)  # patient-level signal
    for draw in M.resample_indices(values.size, 20, seed=0, groups=groups):
        counts = np.bincount(draw, minlength=values.size).reshape(10, 20)
        assert (counts == counts[:, :1]).all()  # every case of a drawn patient, equally often
        assert draw.size % 20 == 0

    def mean(i: np.ndarray) -> float:
        return float(values[i].mean())

    by_case = M.bootstrap_ci(mean, values.size, n=300, seed=0)
    by_group = M.bootstrap_ci(mean, values.size, n=300, seed=0, groups=groups)
    assert by_group[1] - by_group[0] > 3 * (by_case[1] - by_case[0])
    with pytest.raises(ValueError, match="groups has 3 entries"):
        M.resample_indices(4, 2, groups=["a", "b", "c"])


def test_macro_mean_skips_undefined_labels() -> None:
    assert M.macro_mean([0.5, None, 1.0]) == pytest.approx(0.75)
    assert M.macro_mean([None]) is None


# -- against scikit-learn (a test-time reference only) -----------------------------------------
def test_agrees_with_scikit_learn_on_random_cases() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(7)
    checked = 0
    for _ in range(150):
        n = int(rng.integers(2, 80))
        y = rng.integers(0, 2, n).astype(float)
        if y.min() == y.max():
            continue
        score = np.round(rng.normal(size=n), int(rng.integers(0, 3)))  # rounding makes ties
        prob = 1 / (1 + np.exp(-score))
        assert M.auroc(y, score) == pytest.approx(metrics.roc_auc_score(y, score), abs=1e-12)
        assert M.auprc(y, score) == pytest.approx(
            metrics.average_precision_score(y, score), abs=1e-12
        )
        assert M.f1_at(y, prob) == pytest.approx(
            metrics.f1_score(y, prob >= 0.5, zero_division=0), abs=1e-12
        )
        a, b = rng.integers(0, 5, n), rng.integers(0, 5, n)
        assert M.macro_f1(a, b) == pytest.approx(
            metrics.f1_score(a, b, average="macro", labels=np.unique(a), zero_division=0)
        )
        checked += 1
    assert checked > 100


# -- reliability diagram -----------------------------------------------------------------------
def test_reliability_diagram_writes_a_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(size=300)
    y = (rng.uniform(size=300) < p).astype(float)
    path = M.reliability_diagram(
        y, {"raw": p, "calibrated": p**1.2}, tmp_path / "sub" / "rel.png", title="test"
    )
    assert path == tmp_path / "sub" / "rel.png"
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert path.stat().st_size > 5000


def test_reliability_diagram_never_touches_pyplot_or_the_global_backend(tmp_path: Path) -> None:
    """The GUI may have chosen a Qt backend in the same process; drawing must not change it."""
    code = (
        "import sys, matplotlib\n"
        "matplotlib.use('template')\n"
        "from model.training.metrics import reliability_diagram\n"
        f"reliability_diagram([0, 1, 1], [0.2, 0.7, 0.9], {str(tmp_path / 'r.png')!r})\n"
        "print('matplotlib.pyplot' in sys.modules, matplotlib.get_backend())\n"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["False", "template"]
    assert (tmp_path / "r.png").read_bytes()[:8] == PNG_MAGIC
