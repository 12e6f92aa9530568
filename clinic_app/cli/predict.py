"""`clinic-app predict`: analyse one case's files (or a batch file) with the model bundle.

Prints one JSON object (or, with ``--batch``, one per line) with the calibrated suggestions,
abstentions, extra heads, modality weights and contributions, ECG measurements, the model's
identity and timings. Nothing is stored. Research and demonstration use only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from clinic_app.config.settings import Settings


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "predict",
        help="analyse one case's files with the model and print the suggestions",
        description="Reads the files safely (as an import would), runs the model bundle and "
        "prints calibrated SNOMED CT suggestions with abstentions, modality weights and "
        "contributions, ECG measurements, the model's name, version and sha256, and timings. "
        "Nothing is stored. Suggestions support a clinician's review; they are not a diagnosis.",
    )
    parser.add_argument("--image", type=Path, metavar="FILE", help="pathology image or slide")
    parser.add_argument("--ecg", type=Path, metavar="FILE", help="ECG (WFDB header or DICOM)")
    notes = parser.add_mutually_exclusive_group()
    notes.add_argument("--note", type=Path, metavar="FILE", help="clinical note (text file)")
    notes.add_argument("--note-text", metavar="TEXT", help="clinical note as text")
    parser.add_argument(
        "--vitals",
        metavar="JSON",
        help='vitals and demographics, e.g. \'{"age": 61, "sex": "F", "heart_rate_bpm": 96}\'',
    )
    parser.add_argument(
        "--batch",
        type=Path,
        metavar="FILE",
        help="CSV or JSONL with columns id, image, ecg, note, note_text, vitals: one JSON "
        "object per line out, an error object for a bad row",
    )
    parser.add_argument("--bundle", type=Path, metavar="DIR", help="model bundle folder")
    parser.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default="auto", help="where to run the model"
    )
    parser.add_argument(
        "--explain", action="store_true", help="add a summary of the top suggestion's explanation"
    )
    parser.add_argument("--json", action="store_true", help="print JSON (the only output form)")
    parser.set_defaults(handler=_predict)


def _predict(settings: Settings, args: argparse.Namespace) -> int:
    from clinic_app.domain.errors import InputError
    from clinic_app.services.analysis import (
        predict_batch,
        predict_files,
        read_batch_file,
        resolve_bundle,
    )

    single = (args.image, args.ecg, args.note, args.note_text, args.vitals)
    if args.batch is not None and any(v is not None for v in single):
        raise InputError("--batch cannot be combined with --image, --ecg, --note or --vitals.")
    bundle = resolve_bundle(settings, args.bundle)
    if args.batch is not None:
        rows = read_batch_file(args.batch)

        def emit(result: dict[str, Any]) -> None:
            print(json.dumps(result, ensure_ascii=False, allow_nan=False), flush=True)

        results = predict_batch(bundle, rows, args.device, explain=args.explain, emit=emit)
        failed = sum(1 for r in results if "error" in r)
        if failed:
            print(f"clinic-app: {failed} of {len(results)} rows failed.", file=sys.stderr)
        return 1 if failed else 0
    vitals = None
    if args.vitals is not None:
        try:
            vitals = json.loads(args.vitals)
        except ValueError as exc:
            raise InputError(f"--vitals is not valid JSON ({exc.args[0]}).") from exc
        if not isinstance(vitals, dict):
            raise InputError('--vitals must be a JSON object such as {"age": 61}.')
    result = predict_files(
        bundle,
        args.image,
        args.ecg,
        args.note,
        args.note_text,
        vitals,
        args.device,
        explain=args.explain,
    )
    print(json.dumps(result, indent=2, ensure_ascii=False, allow_nan=False))
    return 0
