"""`clinic-app evaluate`: evaluate a model bundle on one split of a manifest.

Reads the split's cases with the same loader as training, runs the bundle with its own
calibration and abstention, and writes evaluation.json, evaluation.md and reliability.png:
per label AUROC, AUPRC and F1 with bootstrap 95 % intervals, macro averages, calibration
(ECE), per-modality against fused results, the missing-modality matrix and explanation
faithfulness. Prints a summary. Research and demonstration use only.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from clinic_app.config.settings import Settings


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "evaluate",
        help="evaluate a model bundle on a manifest",
        description="Evaluates a bundle on the cases of one split of a manifest (rows without "
        "a split get the one training gives them with the same seed) and writes a JSON and a "
        "human-readable report with bootstrap 95 %% confidence intervals.",
    )
    parser.add_argument("--bundle", type=Path, required=True, metavar="DIR", help="model bundle")
    parser.add_argument("--manifest", type=Path, required=True, metavar="FILE", help="manifest")
    parser.add_argument(
        "--split",
        default="test",
        choices=("train", "val", "test", "all"),
        help="which cases to evaluate (default test)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="report folder (default: <bundle>-evaluation-<split> beside the bundle)",
    )
    parser.add_argument(
        "--bootstrap", type=int, default=1000, metavar="N", help="bootstrap resamples (0: none)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and splits")
    parser.add_argument("--workers", type=int, default=2, help="threads preparing cases")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--json", action="store_true", help="print the whole report as JSON")
    parser.set_defaults(handler=_evaluate)


def _evaluate(settings: Settings, args: argparse.Namespace) -> int:
    from clinic_app.domain.errors import InputError
    from clinic_app.services.training import run_evaluation

    if args.bootstrap < 0:
        raise InputError("--bootstrap must be 0 or more.")
    report, folder = run_evaluation(
        settings,
        bundle=args.bundle,
        manifest=args.manifest,
        split=None if args.split == "all" else args.split,
        out_dir=args.out,
        bootstrap=args.bootstrap,
        seed=args.seed,
        progress=not args.no_progress,
        workers=args.workers,
    )
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False, default=str))
        return 0
    for line in summary_lines(report, folder, args.split):
        print(line)
    return 0


def value_text(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, int | float):
        return f"{float(value):.{digits}f}"
    return str(value)


def interval_text(item: Any) -> str:
    """'0.912 (95 % CI 0.85–0.96)' from {"value", "ci"}; a bare number as itself."""
    if isinstance(item, Mapping):
        value = item.get("value")
        if value is None:
            return "n/a"
        ci = item.get("ci")
        text = value_text(value)
        if ci and ci[0] is not None and ci[1] is not None:
            text += f" ({ci[0]:.2f}\u2013{ci[1]:.2f})"
        return text
    return value_text(item)


def macro_auroc_text(report: Mapping[str, Any]) -> str | None:
    macro = report.get("macro")
    if not isinstance(macro, Mapping) or "auroc" not in macro:
        return None
    return interval_text(macro["auroc"])


def summary_lines(report: Mapping[str, Any], folder: Path, split: str) -> list[str]:
    """The printed summary: macro results with intervals, ECE, a per-label table, files."""
    cases = report.get("cases") or {}
    about = (report.get("about") or {}).get("bundle") or {}
    title = f"{about.get('name', 'model')} {about.get('version', '')}".strip()
    lines = [
        f"Evaluation of {title} on the {split} split: {cases.get('n', '?')} cases, "
        f"{cases.get('groups', '?')} groups"
        + (f", {cases['composite']} composite" if cases.get("composite") else ""),
    ]
    macro = report.get("macro") or {}
    level = round(100 * float((report.get("settings") or {}).get("level", 0.95)))
    lines.append(
        f"  macro AUROC {interval_text(macro.get('auroc'))}, macro AUPRC "
        f"{interval_text(macro.get('auprc'))}, macro F1 {interval_text(macro.get('f1'))} "
        f"({level} % bootstrap intervals)"
    )
    calibration = report.get("calibration") or {}
    if calibration:
        lines.append(
            f"  ECE {value_text(calibration.get('ece_raw'))} before, "
            f"{value_text(calibration.get('ece_calibrated'))} after calibration"
        )
    labels = report.get("labels") or []
    if labels:
        rows = [
            (
                str(entry.get("display") or entry.get("label")),
                str(entry.get("n", "")),
                str(entry.get("positives", "")),
                interval_text(entry.get("auroc")),
                interval_text(entry.get("auprc")),
                interval_text(entry.get("f1")),
            )
            for entry in labels
        ]
        header = ("label", "n", "pos", "AUROC", "AUPRC", "F1")
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        lines.append("")
        for row in [header, *rows]:
            lines.append("  " + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)))
    for head, entry in (report.get("extra_heads") or {}).items():
        if isinstance(entry, Mapping):
            lines.append(
                f"  {head}: macro-F1 {interval_text(entry.get('macro_f1'))}, accuracy "
                f"{interval_text(entry.get('accuracy'))}"
            )
    lines.append("")
    lines.append(f"Reports: {folder / 'evaluation.md'} and {folder / 'evaluation.json'}")
    if calibration.get("reliability_png"):
        lines.append(f"Reliability diagram: {folder / str(calibration['reliability_png'])}")
    lines.append("Research and demonstration use only; not a validated medical device.")
    return lines
