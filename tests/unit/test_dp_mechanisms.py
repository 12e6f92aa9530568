"""The exact DP samplers: right distributions, no floats accepted, and a measured privacy loss."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from fractions import Fraction

import pytest
from scipy import stats

from clinic_app.services.privacy.mechanisms import (
    CryptoRandom,
    SeededRandom,
    bernoulli_exp,
    discrete_gaussian,
    discrete_gaussian_pmf,
    discrete_laplace,
    discrete_laplace_pmf,
    gaussian_sigma_squared,
    ln_upper_bound,
    stability_threshold,
)


def chi_square_p_value(samples: Sequence[int], pmf: Callable[[int], float]) -> float:
    """Pearson's test of a symmetric integer distribution: one bin per value whose expected
    count is at least 20, each tail pooled into the outermost bin on its side."""
    n = len(samples)
    reach = 0
    while n * pmf(reach + 1) >= 20:
        reach += 1
    central = sum(pmf(y) for y in range(-reach, reach + 1))
    tail = (1 - central) / 2
    counts = Counter(min(max(y, -reach), reach) for y in samples)
    values = range(-reach, reach + 1)
    observed = [counts.get(y, 0) for y in values]
    expected = [n * (pmf(y) + (tail if abs(y) == reach else 0)) for y in values]
    expected = [e * n / sum(expected) for e in expected]  # absorb float rounding of the pmf
    return float(stats.chisquare(observed, expected).pvalue)


@pytest.mark.parametrize("gamma", [Fraction(0), Fraction(1, 3), Fraction(1), Fraction(5, 2)])
def test_bernoulli_exp_has_probability_exp_minus_gamma(gamma: Fraction) -> None:
    rng = SeededRandom(7)
    n = 40_000
    hits = sum(bernoulli_exp(gamma, rng) for _ in range(n))
    assert stats.binomtest(hits, n, math.exp(-gamma)).pvalue > 0.001


@pytest.mark.parametrize("scale", [Fraction(3, 2), Fraction(1, 3), Fraction(4)])
def test_discrete_laplace_matches_its_pmf(scale: Fraction) -> None:
    rng = SeededRandom(20240601)
    samples = [discrete_laplace(scale, rng) for _ in range(50_000)]
    p = chi_square_p_value(samples, lambda y: discrete_laplace_pmf(y, scale))
    assert p > 0.001


@pytest.mark.parametrize("sigma_squared", [Fraction(2), Fraction(1, 4), Fraction(49, 4)])
def test_discrete_gaussian_matches_its_pmf(sigma_squared: Fraction) -> None:
    rng = SeededRandom(31337)
    samples = [discrete_gaussian(sigma_squared, rng) for _ in range(30_000)]
    p = chi_square_p_value(samples, lambda y: discrete_gaussian_pmf(y, sigma_squared))
    assert p > 0.001


def test_the_crypto_source_gives_the_same_distribution() -> None:
    scale = Fraction(2)
    samples = [discrete_laplace(scale, CryptoRandom()) for _ in range(10_000)]
    p = chi_square_p_value(samples, lambda y: discrete_laplace_pmf(y, scale))
    assert p > 1e-6  # not seeded: a looser bound keeps this from flaking


def test_floats_are_refused_in_the_sampling_path() -> None:
    rng = SeededRandom(1)
    with pytest.raises(TypeError):
        discrete_laplace(0.5, rng)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        discrete_gaussian(2.0, rng)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        bernoulli_exp(0.1, rng)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        discrete_laplace(Fraction(0), rng)


def test_samples_are_plain_integers() -> None:
    rng = SeededRandom(3)
    values = [discrete_laplace(Fraction(7, 3), rng) for _ in range(200)]
    values += [discrete_gaussian(Fraction(5, 2), rng) for _ in range(200)]
    assert all(type(value) is int for value in values)


@pytest.mark.parametrize("x", [Fraction(1), Fraction(3, 2), Fraction(10**6), Fraction(10**40, 7)])
def test_ln_upper_bound_is_an_upper_bound_and_tight(x: Fraction) -> None:
    bound = ln_upper_bound(x)
    exact = math.log(x.numerator) - math.log(x.denominator)
    assert bound >= Fraction(exact) - Fraction(1, 10**14)  # float log itself is off by an ulp
    assert float(bound) - exact < 1e-12 * max(1.0, exact)


def test_stability_threshold_bounds_the_chance_of_showing_a_lone_person() -> None:
    epsilon, delta = Fraction(1, 2), Fraction(1, 10**6)
    tau = stability_threshold(epsilon, delta)
    scale = 1 / epsilon
    tail = sum(discrete_laplace_pmf(z, scale) for z in range(tau - 1, tau + 200))
    assert tail <= delta
    looser = sum(discrete_laplace_pmf(z, scale) for z in range(tau - 3, tau + 200))
    assert looser > delta  # and the threshold is not wastefully high


def test_gaussian_calibration_meets_the_zcdp_conversion() -> None:
    epsilon, delta = Fraction(1), Fraction(1, 10**5)
    sigma_squared = gaussian_sigma_squared(epsilon, delta, 1)
    rho = 1 / (2 * float(sigma_squared))
    achieved = rho + 2 * math.sqrt(rho * math.log(1 / float(delta)))
    assert achieved <= float(epsilon)
    assert achieved > 0.999 * float(epsilon)


# -- empirical privacy ------------------------------------------------------------------------
EPSILON = Fraction(1, 2)
SAMPLES = 100_000
MIN_BIN = 2_000
# Each kept bin has >= 2000 samples on one side and so >= ~1200 on the other (the ratio is at
# most e^0.5): the standard error of a log ratio is then <= sqrt(1/2000 + 1/1200) ~ 0.037.
# 0.15 is four of those, so the ~11 bins compared stay below it; a 4x-too-small scale (true
# epsilon 2) or no noise lands far above.
TOLERANCE = 0.15


def estimated_epsilon(first: Sequence[int], second: Sequence[int]) -> float:
    """max |ln P1(x)/P2(x)| over bins that either side fills well (+1 smoothing for empties)."""
    a, b = Counter(first), Counter(second)
    losses = [
        abs(math.log((a.get(x, 0) + 1) / (b.get(x, 0) + 1)))
        for x in set(a) | set(b)
        if max(a.get(x, 0), b.get(x, 0)) >= MIN_BIN
    ]
    return max(losses)


def releases(count: int, mechanism: Callable[[SeededRandom], int], seed: int) -> list[int]:
    rng = SeededRandom(seed)
    return [count + mechanism(rng) for _ in range(SAMPLES)]


def correct(rng: SeededRandom) -> int:
    return discrete_laplace(1 / EPSILON, rng)  # sensitivity 1


def too_little_noise(rng: SeededRandom) -> int:
    return discrete_laplace(1 / (4 * EPSILON), rng)


def no_noise(rng: SeededRandom) -> int:
    return 0


def test_neighbouring_counts_are_indistinguishable_up_to_epsilon() -> None:
    estimate = estimated_epsilon(releases(40, correct, 1), releases(41, correct, 2))
    assert estimate <= float(EPSILON) + TOLERANCE
    assert estimate >= float(EPSILON) - TOLERANCE  # the bound is tight for discrete Laplace


@pytest.mark.parametrize("broken", [too_little_noise, no_noise])
def test_a_broken_mechanism_fails_the_same_test(broken: Callable[[SeededRandom], int]) -> None:
    estimate = estimated_epsilon(releases(40, broken, 1), releases(41, broken, 2))
    assert estimate > float(EPSILON) + TOLERANCE
