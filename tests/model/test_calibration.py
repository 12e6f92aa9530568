"""Calibration and conformal abstention on seeded simulations whose true probabilities are known.

A simulated world (true logit z, outcome y ~ Bernoulli(sigmoid(z)), a model that outputs a
distorted logit) is the right test bed for statistics: the correct answer is known exactly.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import numpy.typing as npt
import pytest

from model.calibration import (
    MIN_CASES_PER_CLASS,
    Calibration,
    CalibrationError,
    ConformalAbstainer,
    LabelCalibration,
)

Array = npt.NDArray[np.float64]


def simulate(
    n: int, seed: int, slope: float = 3.0, intercept: float = 1.0, labels: int = 1
) -> tuple[Array, Array, Array]:
    """(model logits, outcomes, true probabilities); the model's logit is slope * z + intercept."""
    rng = np.random.default_rng(seed)
    true_logit = rng.normal(0.0, 1.5, size=(n, labels))
    truth = 1.0 / (1.0 + np.exp(-true_logit))
    outcomes = (rng.random((n, labels)) < truth).astype(np.float64)
    return slope * true_logit + intercept, outcomes, truth


def sigmoid(x: Array) -> Array:
    return 1.0 / (1.0 + np.exp(-x))


def expected_calibration_error(probs: Array, outcomes: Array, bins: int = 10) -> float:
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(probs, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        chosen = which == b
        if chosen.any():
            total += chosen.mean() * abs(probs[chosen].mean() - outcomes[chosen].mean())
    return float(total)


def nll(probs: Array, outcomes: Array) -> float:
    p = np.clip(probs, 1e-12, 1 - 1e-12)
    return float(-np.mean(outcomes * np.log(p) + (1 - outcomes) * np.log(1 - p)))


@pytest.mark.parametrize("method", ["platt", "temperature"])
def test_calibration_improves_ece_and_nll_on_held_out_data(method: str) -> None:
    logits, outcomes, _ = simulate(3000, seed=1, intercept=0.0 if method == "temperature" else 1)
    calibration = Calibration.fit(logits, outcomes, ["a"], method=method)
    test_logits, test_outcomes, _ = simulate(
        20000, seed=2, intercept=0.0 if method == "temperature" else 1
    )
    raw = sigmoid(test_logits)
    calibrated = calibration.apply(test_logits)
    assert calibrated.shape == raw.shape
    assert expected_calibration_error(calibrated, test_outcomes) < 0.02
    assert expected_calibration_error(raw, test_outcomes) > 0.05
    assert nll(calibrated, test_outcomes) < nll(raw, test_outcomes) - 0.05


def test_platt_recovers_the_known_distortion() -> None:
    logits, outcomes, _ = simulate(40000, seed=3, slope=3.0, intercept=1.0)
    (fit,) = Calibration.fit(logits, outcomes, ["a"]).per_label
    # The model's logit is 3z + 1, so the truth is sigmoid(logit / 3 - 1/3).
    assert fit.method == "platt" and fit.note == ""
    assert fit.slope == pytest.approx(1 / 3, abs=0.02)
    assert fit.intercept == pytest.approx(-1 / 3, abs=0.05)


def test_temperature_exceeds_one_for_over_confident_logits() -> None:
    logits, outcomes, _ = simulate(20000, seed=4, slope=2.5, intercept=0.0)
    (fit,) = Calibration.fit(logits, outcomes, ["a"], method="temperature").per_label
    assert fit.method == "temperature" and fit.intercept == 0.0
    assert fit.temperature is not None and fit.temperature == pytest.approx(2.5, rel=0.08)
    under_logits, under_outcomes, _ = simulate(20000, seed=5, slope=0.5, intercept=0.0)
    (under,) = Calibration.fit(under_logits, under_outcomes, ["a"], "temperature").per_label
    assert under.temperature is not None and under.temperature < 1.0


def test_separable_validation_data_still_give_a_finite_platt_fit() -> None:
    logits = np.concatenate([np.linspace(-5, -1, 20), np.linspace(1, 5, 20)])
    outcomes = (logits > 0).astype(float)
    (fit,) = Calibration.fit(logits, outcomes, ["a"]).per_label
    assert np.isfinite([fit.slope, fit.intercept]).all() and fit.slope > 0
    probs = Calibration.fit(logits, outcomes, ["a"]).apply(np.array([[-5.0], [5.0]]))
    # Platt's smoothed targets keep the extremes away from 0 and 1.
    assert 0.0 < probs[0, 0] < 0.1 and 0.9 < probs[1, 0] < 1.0


def test_labels_with_too_few_cases_fall_back_to_identity_with_a_reason() -> None:
    logits, outcomes, _ = simulate(500, seed=6, labels=3)
    outcomes[:, 1] = 0.0
    outcomes[: MIN_CASES_PER_CLASS - 2, 1] = 1.0  # only 3 positives
    outcomes[100:, 2] = np.nan  # label 2 is known for 100 cases only: still enough
    calibration = Calibration.fit(logits, outcomes, ["x|1", "x|2", "x|3"])
    first, second, third = calibration.per_label
    assert first.method == third.method == "platt"
    assert second.method == "identity" and (second.slope, second.intercept) == (1.0, 0.0)
    assert "3 positive" in second.note and f"at least {MIN_CASES_PER_CLASS}" in second.note
    probs = calibration.apply(logits)
    np.testing.assert_allclose(probs[:, 1], sigmoid(logits[:, 1]))


def test_identity_and_single_case_apply() -> None:
    identity = Calibration.identity(["a", "b"])
    logits = np.array([-2.0, 3.0])
    np.testing.assert_allclose(identity.apply(logits), sigmoid(logits))
    assert identity.apply(np.array([[1000.0, -1000.0]])).tolist() == [[1.0, 0.0]]
    with pytest.raises(CalibrationError, match=r"\(cases, 2\)"):
        identity.apply(np.zeros((4, 3)))


def test_calibration_round_trips_through_json() -> None:
    logits, outcomes, _ = simulate(400, seed=7, labels=2)
    outcomes[:, 1] = 0.0
    calibration = Calibration.fit(logits, outcomes, ["snomed|1", "snomed|2"])
    data = json.loads(json.dumps(calibration.to_dict()))
    restored = Calibration.from_dict(data)
    assert restored == calibration
    assert restored.per_label[1].note.startswith("not calibrated")
    np.testing.assert_array_equal(restored.apply(logits), calibration.apply(logits))


@pytest.mark.parametrize(
    "data",
    [
        {"format": 99, "labels": []},
        {"format": 1},
        {"format": 1, "labels": [{"label": "a", "method": "magic", "slope": 1, "intercept": 0}]},
        {
            "format": 1,
            "labels": [{"label": "a", "method": "platt", "slope": "nan", "intercept": 0}],
        },
    ],
)
def test_malformed_calibration_data_is_refused(data: dict[str, object]) -> None:
    with pytest.raises(CalibrationError):
        Calibration.from_dict(data)


def test_bad_fit_inputs_are_refused() -> None:
    with pytest.raises(CalibrationError, match="label names"):
        Calibration.fit(np.zeros((10, 2)), np.zeros((10, 2)), ["a"])
    with pytest.raises(CalibrationError, match="0, 1, or NaN"):
        Calibration.fit(np.zeros((10, 1)), np.full((10, 1), 2.0), ["a"])
    with pytest.raises(CalibrationError, match="method"):
        Calibration.fit(np.zeros((10, 1)), np.zeros((10, 1)), ["a"], method="isotonic")
    with pytest.raises(CalibrationError):
        LabelCalibration("platt", float("inf"), 0.0)


# -- conformal abstention ------------------------------------------------------------------
def covered(abstainer: ConformalAbstainer, probs: Array, outcomes: Array) -> Array:
    """Per label: fraction of cases whose prediction set contains the true class."""
    has_zero, has_one = abstainer.prediction_sets(probs)
    hit = np.where(outcomes > 0.5, has_one, has_zero)
    return np.asarray(hit.mean(axis=0), dtype=np.float64)


@pytest.mark.parametrize("coverage", [0.8, 0.9, 0.95])
def test_conformal_coverage_holds_on_fresh_data(coverage: float) -> None:
    rates = []
    for seed in range(20):
        _, outcomes, truth = simulate(300, seed=100 + seed, labels=3)
        abstainer = ConformalAbstainer.fit(truth, outcomes, target_coverage=coverage)
        _, new_outcomes, new_truth = simulate(4000, seed=1000 + seed, labels=3)
        rate = covered(abstainer, new_truth, new_outcomes)
        # Given one calibration draw, coverage varies with sd ~ sqrt(c(1 - c) / n).
        assert (rate >= coverage - 4 * np.sqrt(coverage * (1 - coverage) / 300)).all(), rate
        rates.append(rate)
    # Averaged over calibration draws the guarantee is >= target (upper bound target + 1/(n+1)).
    mean = np.mean(rates, axis=0)
    assert (mean >= coverage - 0.01).all(), mean
    assert (mean <= coverage + 1 / 301 + 0.02).all(), mean


def test_abstention_falls_as_the_model_gets_sharper() -> None:
    rates = []
    for sharpness in (0.5, 1.0, 2.0, 4.0):
        # A calibrated model whose logits spread further apart as it gets sharper.
        rng = np.random.default_rng(11)
        probs = sigmoid(sharpness * rng.normal(0, 1.5, size=(2000, 1)))
        outcomes = (rng.random(probs.shape) < probs).astype(float)
        abstainer = ConformalAbstainer.fit(probs, outcomes, target_coverage=0.9)
        new_probs = sigmoid(sharpness * rng.normal(0, 1.5, size=(4000, 1)))
        rates.append(float(abstainer.abstain(new_probs).mean()))
    assert rates == sorted(rates, reverse=True) and rates[0] > rates[-1] + 0.3, rates


def test_qhat_is_the_higher_empirical_quantile() -> None:
    probs = np.array([[0.95], [0.9], [0.8], [0.3], [0.2], [0.1], [0.6], [0.4], [0.7]])
    outcomes = np.array([[1], [1], [1], [0], [0], [0], [0], [1], [1]], dtype=float)
    # Scores 1 - p(true class): .05 .1 .2 .3 .2 .1 .6 .6 .3 -> sorted .05 .1 .1 .2 .2 .3 .3 .6 .6
    half = ConformalAbstainer.fit(probs, outcomes, target_coverage=0.5)  # rank ceil(10 * .5) = 5
    assert half.qhat[0] == pytest.approx(0.2) and half.calibration_cases == (9,)
    assert half.notes == ("",)
    # qhat = .2: p = .85 -> {1}; p = .1 -> {0}; p = .5 -> empty set; both abstain rules.
    assert half.abstain(np.array([[0.85], [0.1], [0.5]])).tolist() == [[False], [False], [True]]
    wide = ConformalAbstainer.fit(probs, outcomes, target_coverage=0.9)  # rank 9 of 9
    assert len(wide.qhat) == 1 and wide.qhat[0] == pytest.approx(0.6)
    # qhat = .6: p = .5 -> {0, 1} abstains, p = .3 -> {0}, p = .7 -> {1}.
    assert wide.abstain(np.array([0.5, 0.3, 0.7])[:, None]).ravel().tolist() == [
        True,
        False,
        False,
    ]


def test_too_few_calibration_cases_always_abstain_with_a_note() -> None:
    probs = np.array([[0.99], [0.01], [0.98], [0.02], [0.97]])
    outcomes = np.array([[1], [0], [1], [0], [1]], dtype=float)
    abstainer = ConformalAbstainer.fit(probs, outcomes, target_coverage=0.9)  # needs n >= 9
    assert abstainer.qhat == (1.0,)
    assert "always abstains" in abstainer.notes[0] and "at least 9" in abstainer.notes[0]
    assert abstainer.abstain(np.array([[0.0], [0.5], [1.0]])).all()


def test_unlabelled_cases_are_skipped_and_nan_probabilities_abstain() -> None:
    _, outcomes, truth = simulate(200, seed=13, labels=2)
    outcomes[50:, 1] = np.nan
    abstainer = ConformalAbstainer.fit(truth, outcomes, target_coverage=0.8)
    assert abstainer.calibration_cases == (200, 50)
    assert abstainer.abstain(np.array([[np.nan, np.nan]])).tolist() == [[True, True]]


def test_perfect_scores_give_qhat_zero_and_an_empty_set_abstains() -> None:
    probs = np.array([[1.0]] * 10 + [[0.0]] * 10)
    outcomes = probs.copy()
    abstainer = ConformalAbstainer.fit(probs, outcomes, target_coverage=0.9)
    assert abstainer.qhat == (0.0,)
    assert abstainer.abstain(np.array([[1.0], [0.0], [0.7]])).ravel().tolist() == [
        False,
        False,
        True,
    ]


def test_abstainer_round_trips_through_json_and_refuses_bad_data() -> None:
    _, outcomes, truth = simulate(100, seed=14, labels=2)
    abstainer = ConformalAbstainer.fit(truth, outcomes, target_coverage=0.9)
    restored = ConformalAbstainer.from_dict(json.loads(json.dumps(abstainer.to_dict())))
    assert restored == abstainer
    assert ConformalAbstainer.from_dict(
        {"format": 1, "target_coverage": 0.9, "qhat": [0.5]}
    ).qhat == (0.5,)
    for bad in (
        {"format": 1, "target_coverage": 1.0, "qhat": [0.5]},
        {"format": 1, "target_coverage": 0.9, "qhat": [1.5]},
        {"format": 1, "target_coverage": 0.9},
        {"format": 2, "target_coverage": 0.9, "qhat": [0.5]},
    ):
        with pytest.raises(CalibrationError):
            ConformalAbstainer.from_dict(bad)
    with pytest.raises(CalibrationError, match="strictly between"):
        ConformalAbstainer.fit(truth, outcomes, target_coverage=0.0)
    with pytest.raises(CalibrationError, match=r"\(cases, 2\)"):
        abstainer.abstain(np.zeros((3, 5)))


def test_importing_calibration_and_quality_stays_light() -> None:
    code = (
        "import sys, model.calibration, model.quality; "
        "heavy = {'torch', 'scipy.optimize', 'monai', 'transformers'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
