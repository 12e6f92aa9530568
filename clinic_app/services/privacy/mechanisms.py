"""Exact samplers for differential privacy: discrete Laplace and discrete Gaussian.

The algorithms are those of Canonne, Kamath & Steinke, "The Discrete Gaussian for Differential
Privacy" (NeurIPS 2020; CKS20): Bernoulli(exp(-gamma)) by von Neumann's alternating-series
trick, discrete Laplace from a uniform and a geometric draw, discrete Gaussian by rejection
from a discrete Laplace. Every parameter is an exact rational and every draw is an integer from
``randbelow``, so there is no floating point anywhere in the sampling path: a float Laplace
sampler leaks the true value through the gaps and rounding of its output (Mironov, CCS 2012).

Pure standard library, no clinic_app imports: the math is testable alone, and the random source
is injectable (:class:`SeededRandom` makes tests reproducible; releases use
:class:`CryptoRandom`, backed by :mod:`secrets`). It sits in ``services`` rather than ``domain``
because only the statistics service uses it and the domain holds records, not algorithms.
"""

from __future__ import annotations

import math
import random
import secrets
from fractions import Fraction
from typing import Protocol


class RandomSource(Protocol):
    """Uniform integers: ``randbelow(n)`` is uniform on ``{0, ..., n-1}`` for ``n >= 1``."""

    def randbelow(self, n: int) -> int: ...


class CryptoRandom:
    """The operating system's CSPRNG via :func:`secrets.randbelow`; the only source for releases."""

    def randbelow(self, n: int) -> int:
        return secrets.randbelow(n)


class SeededRandom:
    """A reproducible (NOT cryptographic) source for tests and benchmarks only."""

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)

    def randbelow(self, n: int) -> int:
        return self._random.randrange(n)


def _as_fraction(value: Fraction | int, name: str, *, positive: bool = True) -> Fraction:
    if isinstance(value, float) or not isinstance(value, Fraction | int):
        raise TypeError(f"{name} must be an int or fractions.Fraction, not {type(value).__name__}")
    exact = Fraction(value)
    if exact < 0 or (positive and exact == 0):
        wanted = "positive" if positive else "non-negative"
        raise ValueError(f"{name} must be {wanted}, got {exact}")
    return exact


def bernoulli(numerator: int, denominator: int, rng: RandomSource) -> bool:
    """True with probability exactly ``numerator / denominator`` (0 <= n <= d)."""
    return rng.randbelow(denominator) < numerator


def _bernoulli_exp_at_most_one(numerator: int, denominator: int, rng: RandomSource) -> bool:
    """Bernoulli(exp(-n/d)) for 0 <= n/d <= 1 (CKS20 Algorithm 1, first case)."""
    k = 1
    while bernoulli(numerator, denominator * k, rng):
        k += 1
    return k % 2 == 1


def bernoulli_exp(gamma: Fraction | int, rng: RandomSource) -> bool:
    """True with probability exactly ``exp(-gamma)`` for rational ``gamma >= 0`` (CKS20 Alg. 1)."""
    gamma = _as_fraction(gamma, "gamma", positive=False)
    numerator, denominator = gamma.numerator, gamma.denominator
    whole = numerator // denominator
    for _ in range(whole):
        if not _bernoulli_exp_at_most_one(1, 1, rng):
            return False
    return _bernoulli_exp_at_most_one(numerator - whole * denominator, denominator, rng)


def _geometric_exp_minus_one(rng: RandomSource) -> int:
    """V >= 0 with P(V = v) = (1 - 1/e) e^-v: count successes of Bernoulli(exp(-1))."""
    count = 0
    while _bernoulli_exp_at_most_one(1, 1, rng):
        count += 1
    return count


def discrete_laplace(scale: Fraction | int, rng: RandomSource) -> int:
    """One draw Y with P(Y = y) proportional to exp(-|y| / scale) (CKS20 Algorithm 2).

    With ``scale = sensitivity / epsilon`` it gives epsilon-DP for an integer query whose
    values change by at most ``sensitivity`` between neighbouring datasets.
    """
    exact = _as_fraction(scale, "scale")
    t, s = exact.numerator, exact.denominator  # scale = t / s
    while True:
        u = rng.randbelow(t)
        if not _bernoulli_exp_at_most_one(u, t, rng):
            continue
        x = u + t * _geometric_exp_minus_one(rng)
        y = x // s
        negative = rng.randbelow(2) == 1
        if negative and y == 0:
            continue
        return -y if negative else y


def discrete_gaussian(sigma_squared: Fraction | int, rng: RandomSource) -> int:
    """One draw Y with P(Y = y) proportional to exp(-y^2 / (2 sigma^2)) (CKS20 Algorithm 3).

    Satisfies (Delta^2 / (2 sigma^2))-zCDP for an integer query of L2 sensitivity Delta.
    """
    variance = _as_fraction(sigma_squared, "sigma_squared")
    a, b = variance.numerator, variance.denominator  # sigma^2 = a / b
    t = math.isqrt(a // b) + 1  # floor(sigma) + 1, exactly
    while True:
        y = discrete_laplace(t, rng)
        # gamma = (|y| - sigma^2/t)^2 / (2 sigma^2) = (|y| b t - a)^2 / (2 a b t^2)
        offset = abs(y) * b * t - a
        if bernoulli_exp(Fraction(offset * offset, 2 * a * b * t * t), rng):
            return y


# -- exact pmfs (for goodness-of-fit tests and documentation; floats are fine here) -----------
def discrete_laplace_pmf(y: int, scale: Fraction | int) -> float:
    """P(Y = y) of :func:`discrete_laplace`: (1 - q) / (1 + q) * q^|y| with q = exp(-1/scale)."""
    q = math.exp(-1 / Fraction(scale))
    return (1 - q) / (1 + q) * q ** abs(y)


def discrete_gaussian_pmf(y: int, sigma_squared: Fraction | int) -> float:
    """P(Y = y) of :func:`discrete_gaussian`, normalised over a range of +/- 40 sigma."""
    variance = float(Fraction(sigma_squared))
    reach = math.ceil(40 * math.sqrt(variance)) + 1
    total = sum(math.exp(-(k * k) / (2 * variance)) for k in range(-reach, reach + 1))
    return math.exp(-(y * y) / (2 * variance)) / total


# -- calibration --------------------------------------------------------------------------
_LN2_UPPER = Fraction(6931471805599454, 10**16)  # ln 2 = 0.69314718055994530941... < this


def ln_upper_bound(x: Fraction | int, *, terms: int = 40) -> Fraction:
    """A rational upper bound on ln(x) for x >= 1, tight to about 1e-15 relative.

    ln(x) = k ln 2 + ln(m) with m in [1, 2), and ln(m) = 2 atanh(z), z = (m-1)/(m+1) <= 1/3, a
    series of positive terms whose tail after ``terms`` terms is bounded by a geometric sum.
    """
    value = _as_fraction(x, "x")
    if value < 1:
        raise ValueError("ln_upper_bound needs x >= 1")
    k = max(value.numerator.bit_length() - value.denominator.bit_length() - 1, 0)
    m = value / 2**k
    while m >= 2:
        m /= 2
        k += 1
    z = (m - 1) / (m + 1)
    z2 = z * z
    total, power = Fraction(0), z
    for n in range(terms):
        total += power / (2 * n + 1)
        power *= z2
    tail = power / ((2 * terms + 1) * (1 - z2))  # sum_{n >= terms} z^(2n+1)/(2n+1) <= this
    bound = k * _LN2_UPPER + 2 * (total + tail)
    return Fraction(math.ceil(bound * 10**18), 10**18)  # rounded up: still a bound, short


def stability_threshold(epsilon: Fraction, delta: Fraction, sensitivity: int = 1) -> int:
    """Smallest integer tau with P(Z >= tau - sensitivity) <= delta, Z ~ DLap(sensitivity/eps).

    A histogram whose categories come from the data releases only the cells whose noisy count
    reaches tau: a cell that exists only because of one person then shows with probability at
    most delta (P(Z >= m) = q^m / (1 + q) <= exp(-m eps / sensitivity)), giving (eps, delta)-DP.
    """
    if not 0 < delta < 1:
        raise ValueError("a data-dependent histogram needs 0 < delta < 1")
    bound = ln_upper_bound(1 / delta) * sensitivity / epsilon
    return sensitivity + math.ceil(bound)


def gaussian_sigma_squared(
    epsilon: Fraction, delta: Fraction, l2_sensitivity_squared: Fraction | int
) -> Fraction:
    """A rational sigma^2 for which the discrete Gaussian is (epsilon, delta)-DP.

    rho-zCDP implies (rho + 2 sqrt(rho ln(1/delta)), delta)-DP (Bun & Steinke 2016, Prop. 1.3)
    and the discrete Gaussian is (Delta^2 / (2 sigma^2))-zCDP (CKS20, Thm. 4). The largest rho
    is found in floating point and then checked, and shrunk until it passes, in exact
    arithmetic against an upper bound of ln(1/delta), so the guarantee never rests on a float.
    """
    if not 0 < delta < 1:
        raise ValueError("the Gaussian mechanism needs 0 < delta < 1")
    log_term = ln_upper_bound(1 / delta)
    approx = (math.sqrt(float(log_term) + float(epsilon)) - math.sqrt(float(log_term))) ** 2
    rho = Fraction(approx).limit_denominator(10**12)
    while not (rho <= epsilon and 4 * rho * log_term <= (epsilon - rho) ** 2):
        rho = rho * Fraction(999_999, 1_000_000)
    sigma_squared = Fraction(l2_sensitivity_squared) / (2 * rho)
    return Fraction(math.ceil(sigma_squared * 10**6), 10**6)  # rounded up: more noise, shorter
