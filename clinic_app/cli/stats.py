"""`clinic-app stats`: differentially private statistics and the privacy budget.

Until sign-in exists on the command line, the CLI acts as ``Actor.system()`` (role admin), so
it may both release statistics and set budgets; every action is audited as the system user.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from clinic_app.cli._database import open_cli_database
from clinic_app.config.settings import Settings

_QUERY_NAMES = (
    "suggested_diagnosis",
    "accepted_diagnosis",
    "override_rate",
    "analyses_by_role_month",
    "age_histogram",
    "audit_activity",
)


def register(commands: Any) -> None:
    """Add ``stats release`` and ``stats budget`` to the ``clinic-app`` parser."""
    stats = commands.add_parser(
        "stats",
        help="release aggregate statistics under the differential-privacy budget",
        description="Aggregate statistics leave ClinicFusion only with differentially private "
        "noise, charged to a per-dataset privacy budget that an administrator sets.",
    )
    actions = stats.add_subparsers(dest="stats_action", metavar="ACTION", required=True)

    rel = actions.add_parser(
        "release",
        help="release one statistic with noise, spending privacy budget",
        description="Charges the budget first (the charge is kept even if the release then "
        "fails), then prints the noisy counts. Counts can be negative: the noise is unbiased.",
    )
    rel.add_argument("query", choices=_QUERY_NAMES, metavar="QUERY", help=", ".join(_QUERY_NAMES))
    rel.add_argument(
        "--epsilon", required=True, help="privacy cost, e.g. 0.1 or 1/10 (read exactly)"
    )
    rel.add_argument(
        "--delta",
        default="0",
        help="extra cost for the Gaussian mechanism or labels found in the data, e.g. 1/1000000",
    )
    rel.add_argument(
        "--dataset", help="clinical (default), demo, or audit (for audit_activity, its default)"
    )
    rel.add_argument(
        "--mechanism", choices=("laplace", "gaussian"), default="laplace", help="noise kind"
    )
    rel.add_argument(
        "--codes", help="comma-separated public list of diagnosis codes to count (else --delta)"
    )
    rel.add_argument(
        "--event-types", help="comma-separated audit event types to count (else --delta)"
    )
    rel.add_argument("--since", metavar="YYYY-MM", help="first month (default: 11 months back)")
    rel.add_argument("--until", metavar="YYYY-MM", help="last month (default: this month)")
    rel.add_argument(
        "--max-per-patient",
        type=int,
        default=1,
        help="analyses counted per patient (analyses_by_role_month; the sensitivity)",
    )
    rel.add_argument("--json", action="store_true", help="print one JSON object")
    rel.set_defaults(handler=_cmd_release)

    budget = actions.add_parser(
        "budget",
        help="show or set the privacy budget of a dataset",
        description="Without --set-* shows what is spent and left. Setting needs the admin role.",
    )
    budget.add_argument("--dataset", help="clinical, demo or audit (default: all; set: clinical)")
    budget.add_argument("--set-epsilon", metavar="E", help="new total epsilon, e.g. 1 or 3/10")
    budget.add_argument("--set-delta", metavar="D", help="new total delta, e.g. 1/1000000")
    budget.add_argument("--json", action="store_true", help="print JSON")
    budget.set_defaults(handler=_cmd_budget)


def _split(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [part.strip() for part in text.split(",") if part.strip()]


def _cmd_release(settings: Settings, args: argparse.Namespace) -> int:
    from clinic_app.services.context import Actor
    from clinic_app.services.privacy import exact_text, parse_amount, release

    epsilon = parse_amount(args.epsilon, "--epsilon")
    delta = parse_amount(args.delta, "--delta")
    database = open_cli_database(settings)
    try:
        result = release(
            database,
            Actor.system(),
            args.query,
            epsilon,
            dataset=args.dataset,
            delta=delta,
            mechanism=args.mechanism,
            codes=_split(args.codes),
            event_types=_split(args.event_types),
            since=args.since,
            until=args.until,
            max_per_patient=args.max_per_patient,
        )
    finally:
        database.dispose()
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
        return 0
    print(f"{result.title} (dataset {result.dataset})")
    print(
        f"Differentially private: {result.mechanism}, epsilon {exact_text(result.epsilon)}, "
        f"delta {exact_text(result.delta)}; noise {_noise_text(result.noise)}."
    )
    width = max([len(" ".join(cell)) for cell, _ in result.rows] + [len(" ".join(result.columns))])
    print(f"  {' '.join(result.columns).ljust(width)}  count")
    for cell, value in result.rows:
        print(f"  {' '.join(cell).ljust(width)}  {value:>5}")
    if not result.rows:
        print("  (no label reached the threshold)")
    for name, text in result.summary.items():
        print(f"{name.replace('_', ' ')}: {text}")
    left = result.budget_after
    print(
        f"Budget left for '{left.dataset}': epsilon {exact_text(left.epsilon_remaining)} of "
        f"{exact_text(left.epsilon_total)}, delta {exact_text(left.delta_remaining)} of "
        f"{exact_text(left.delta_total)}."
    )
    return 0


def _noise_text(noise: dict[str, str]) -> str:
    from fractions import Fraction

    from clinic_app.services.privacy import exact_text

    parts = []
    for key, value in noise.items():
        try:
            shown = exact_text(Fraction(value))
        except ValueError:
            shown = value
        parts.append(f"{key.replace('_', ' ')} {shown}")
    return ", ".join(parts)


def _cmd_budget(settings: Settings, args: argparse.Namespace) -> int:
    from clinic_app.domain.errors import InputError
    from clinic_app.services.context import Actor
    from clinic_app.services.privacy import (
        DATASETS,
        DEFAULT_DATASET,
        BudgetStatus,
        budget_status,
        exact_text,
        parse_amount,
        set_budget,
    )

    actor = Actor.system()
    setting = args.set_epsilon is not None or args.set_delta is not None
    if setting and (args.set_epsilon is None or args.set_delta is None):
        raise InputError("Give both --set-epsilon and --set-delta to set a budget.")
    database = open_cli_database(settings)
    try:
        statuses: dict[str, BudgetStatus | None] = {}
        if setting:
            dataset = args.dataset or DEFAULT_DATASET
            statuses[dataset] = set_budget(
                database,
                actor,
                dataset,
                parse_amount(args.set_epsilon, "--set-epsilon"),
                parse_amount(args.set_delta, "--set-delta"),
            )
        else:
            for dataset in [args.dataset] if args.dataset else list(DATASETS):
                statuses[dataset] = budget_status(database, actor, dataset)
    finally:
        database.dispose()
    if args.json:
        payload = {name: None if s is None else s.to_json() for name, s in statuses.items()}
        print(json.dumps(payload, indent=2))
        return 0
    for name, status in statuses.items():
        if status is None:
            print(f"{name}: no budget set (nothing can be released)")
            continue
        print(
            f"{name}: epsilon {exact_text(status.epsilon_spent)} spent of "
            f"{exact_text(status.epsilon_total)} ({exact_text(status.epsilon_remaining)} left); "
            f"delta {exact_text(status.delta_spent)} spent of {exact_text(status.delta_total)} "
            f"({exact_text(status.delta_remaining)} left); {status.releases} release(s)"
        )
    return 0
