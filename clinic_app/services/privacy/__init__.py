"""Differentially private aggregate statistics: exact samplers, the privacy ledger, queries."""

from __future__ import annotations

from clinic_app.services.privacy.ledger import (
    DATASETS,
    DEFAULT_DATASET,
    BudgetStatus,
    Charge,
    budget_status,
    charge,
    exact_text,
    parse_amount,
    set_budget,
)
from clinic_app.services.privacy.mechanisms import (
    CryptoRandom,
    RandomSource,
    SeededRandom,
    discrete_gaussian,
    discrete_laplace,
)
from clinic_app.services.privacy.queries import QUERIES, Query, QueryParams, Release, release

__all__ = [
    "DATASETS",
    "DEFAULT_DATASET",
    "QUERIES",
    "BudgetStatus",
    "Charge",
    "CryptoRandom",
    "Query",
    "QueryParams",
    "RandomSource",
    "Release",
    "SeededRandom",
    "budget_status",
    "charge",
    "discrete_gaussian",
    "discrete_laplace",
    "exact_text",
    "parse_amount",
    "release",
    "set_budget",
]
