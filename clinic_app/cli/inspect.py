"""`clinic-app inspect FILE...`: what ClinicFusion reads from each file, or why it cannot.

Each file is read exactly as an import would read it (in a capped child process), and nothing
is stored. Exit status 0 when every file was read, 1 when any failed with a clear error;
a bad file never produces a traceback.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from clinic_app.config.settings import Settings


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "inspect",
        help="show what ClinicFusion reads from an image, slide, ECG or note file",
        description="Reads each file as an import would (safely, in a child process with a "
        "memory cap and a timeout) and prints what was read: kind, dimensions or leads, rate, "
        "duration, levels and de-identified metadata. Nothing is stored.",
    )
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="files to read")
    parser.add_argument("--json", action="store_true", help="print one JSON array")
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds allowed per file (default: the read_timeout_s setting, 10)",
    )
    parser.set_defaults(handler=_inspect)


def _inspect(settings: Settings, args: argparse.Namespace) -> int:
    from dataclasses import replace

    from clinic_app.domain.errors import InputError
    from clinic_app.services.ingest import inspect_files, read_limits

    limits = read_limits(settings)
    if args.timeout is not None:
        if not 0 < args.timeout <= 3600:
            raise InputError("--timeout must be between 0 and 3600 seconds.")
        limits = replace(limits, child_timeout_s=args.timeout)
    results = inspect_files(list(args.files), limits)
    if args.json:
        print(
            json.dumps(
                [
                    {"file": str(r.path), "ok": r.ok, **(r.summary or {}), "error": r.error}
                    for r in results
                ],
                indent=2,
                ensure_ascii=False,
            )
        )
    else:
        for result in results:
            if result.summary is not None:
                print(f"ok    {result.path}: {one_line(result.summary)}")
            else:
                print(f"error {result.path}: {result.error}")
    return 0 if all(r.ok for r in results) else 1


def one_line(summary: dict[str, Any]) -> str:
    """A person-readable line: 'ECG, 12 leads (I, II, ...), 500 Hz, 10.0 s'."""
    kind = summary["kind"]
    if kind == "ecg":
        leads = summary["leads"]
        shown = ", ".join(leads[:12]) + (", ..." if len(leads) > 12 else "")
        text = (
            f"ECG, {len(leads)} lead{'s' if len(leads) != 1 else ''} ({shown}), "
            f"{summary['sampling_rate_hz']:g} Hz, {summary['duration_s']:,.1f} s"
        )
        if summary.get("annotations"):
            text += f", {summary['annotations']:,} annotations"
        return text
    if kind == "note":
        return (
            f"note, {summary['characters']:,} characters ({summary['encoding']}"
            + (
                f", {summary['replaced_bytes']} undecodable bytes replaced"
                if summary.get("replaced_bytes")
                else ""
            )
            + ")"
        )
    text = (
        f"{'whole-slide image' if kind == 'slide' else 'image'} ({summary['format']}), "
        f"{summary['width']:,} x {summary['height']:,} px"
    )
    if summary["levels"] > 1:
        text += f", {summary['levels']} levels"
    if summary.get("microns_per_pixel"):
        microns = summary["microns_per_pixel"][0]
        text += f", {microns:.3g} µm/px" if microns < 100 else f", {microns / 1000:.3g} mm/px"
    identifying = [n for n in summary.get("associated_images", []) if n in ("label", "macro")]
    if identifying:
        text += f", carries {' and '.join(identifying)} images (never stored)"
    return text
