"""`clinic-app train`: train a model bundle from a manifest, or fine-tune one on signed cases.

The same command runs on one CPU, one GPU or many under ``torchrun --nproc-per-node N -m
clinic_app train ...``: the trainer handles distribution and only rank 0 writes the bundle and
prints. The manifest is validated completely before anything trains; every bad row is listed.
Until the command line has sign-in, training acts as the system user in the data-scientist
role (``model.train`` and ``stats.release``), and every read of case data is audited.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from clinic_app.config.settings import Settings

LOSSES = ("bce", "focal", "class-balanced")


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "train",
        help="train or fine-tune a model bundle",
        description="Trains the fusion model on a manifest (CSV or JSONL: case and group ids, "
        "split, image, ECG and note files, vitals, SNOMED CT labels) and writes a new bundle "
        "with calibration, conformal thresholds, metrics.json, model_card.md and data_card.md. "
        "With --from-bundle B --cases signed, fine-tunes B on the cases clinicians signed since "
        "B was made (their decisions are the labels) into a new folder and version. Works the "
        "same under torchrun for several GPUs or nodes. For research and demonstration use.",
    )
    data = parser.add_argument_group("data")
    data.add_argument("--manifest", type=Path, metavar="FILE", help="CSV or JSONL manifest")
    data.add_argument(
        "--demo-data",
        type=Path,
        metavar="DIR",
        help="rebuild the shipped demo bundle: build the documented composite demo cohort from "
        "this public data folder (shared/data) and train the demo model on it",
    )
    data.add_argument(
        "--from-bundle",
        type=Path,
        metavar="DIR",
        help="start from this bundle's weights, configuration and labels",
    )
    data.add_argument(
        "--cases",
        choices=("signed",),
        help="with --from-bundle: train on the cases signed since that bundle was made",
    )
    out = parser.add_argument_group("output")
    out.add_argument("--out", type=Path, required=True, metavar="DIR", help="new bundle folder")
    out.add_argument("--name", help="bundle name (default: the model's, or the old bundle's)")
    out.add_argument(
        "--version", help="bundle version (default 1.0.0, or the old bundle's version + 1)"
    )
    out.add_argument(
        "--run-dir",
        type=Path,
        metavar="DIR",
        help="checkpoints and metrics logs (default: <out>-run beside the bundle)",
    )
    out.add_argument(
        "--resume", action="store_true", help="continue from the run folder's last checkpoint"
    )
    model = parser.add_argument_group("model")
    choice = model.add_mutually_exclusive_group()
    choice.add_argument(
        "--variant", metavar="NAME", help="registered model variant (default fusion-small)"
    )
    choice.add_argument(
        "--config", type=Path, metavar="FILE", help="model config.json (with its labels)"
    )
    opt = parser.add_argument_group("optimisation (defaults: the trainer's)")
    opt.add_argument("--epochs", type=int)
    opt.add_argument("--batch-size", type=int)
    opt.add_argument("--lr", type=float, help="learning rate")
    opt.add_argument("--weight-decay", type=float)
    opt.add_argument("--seed", type=int, help="seed for splits, sampling and initialisation")
    opt.add_argument("--patience", type=int, help="epochs without a better val macro-AUROC")
    opt.add_argument("--loss", choices=LOSSES, help="diagnosis loss (default bce)")
    opt.add_argument("--no-pos-weight", action="store_true", help="no positive class weights")
    opt.add_argument(
        "--balanced-sampling", action="store_true", help="sample rare labels more often"
    )
    opt.add_argument(
        "--no-ogm-ge",
        action="store_true",
        help="switch off gradient modulation between modalities (OGM-GE)",
    )
    opt.add_argument("--ogm-alpha", type=float, help="strength of the gradient modulation")
    opt.add_argument("--no-augment", action="store_true", help="no per-modality augmentation")
    opt.add_argument(
        "--modality-dropout", type=float, metavar="P", help="probability of hiding a modality"
    )
    opt.add_argument(
        "--aux-weight", type=float, metavar="W", help="weight of each modality's auxiliary loss"
    )
    opt.add_argument("--max-minutes", type=float, metavar="M", help="stop after M minutes")
    opt.add_argument(
        "--no-deterministic", action="store_true", help="allow non-deterministic kernels"
    )
    opt.add_argument("--workers", type=int, default=2, help="threads preparing cases")
    opt.add_argument(
        "--bootstrap",
        type=int,
        default=1000,
        metavar="N",
        help="bootstrap resamples for the test split's confidence intervals (0: none)",
    )
    privacy = parser.add_argument_group("differential privacy (DP-SGD through Opacus)")
    privacy.add_argument("--dp-epsilon", type=float, metavar="E", help="target epsilon")
    privacy.add_argument("--dp-delta", type=float, metavar="D", help="delta (default 1e-5)")
    privacy.add_argument(
        "--dp-max-grad-norm", type=float, metavar="C", help="per-sample gradient clip"
    )
    privacy.add_argument(
        "--dp-dataset",
        metavar="NAME",
        help="privacy-ledger dataset to charge (default: clinical for signed cases; a "
        "manifest's outside data are charged only when this is given)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--json", action="store_true", help="print one JSON summary")
    parser.set_defaults(handler=_train)


def _options(args: argparse.Namespace) -> Any:
    from dataclasses import replace

    from model.training.trainer import TrainOptions

    given: dict[str, Any] = {}
    for name in (
        "epochs",
        "batch_size",
        "lr",
        "weight_decay",
        "seed",
        "patience",
        "loss",
        "ogm_alpha",
        "modality_dropout",
        "aux_weight",
        "max_minutes",
        "dp_epsilon",
        "dp_delta",
        "dp_max_grad_norm",
    ):
        value = getattr(args, name)
        if value is not None:
            given[name] = value
    flags = {
        "pos_weight": not args.no_pos_weight,
        "balanced_sampling": args.balanced_sampling,
        "ogm_ge": not args.no_ogm_ge,
        "augment": not args.no_augment,
        "deterministic": not args.no_deterministic,
        "progress": not args.no_progress,
    }
    base = TrainOptions()
    if args.demo_data is not None:
        from model.training.demo import DEMO_OPTIONS

        base = DEMO_OPTIONS
    return replace(base, **flags, **given)


def _train(settings: Settings, args: argparse.Namespace) -> int:
    from clinic_app.domain.errors import InputError
    from clinic_app.services.training import run_training, training_actor

    if args.manifest is not None and args.cases is not None:
        raise InputError("Give either --manifest or --cases signed, not both.")
    options = _options(args)
    try:
        options.check()
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    database = None
    actor = training_actor()
    if args.cases == "signed" or (args.dp_epsilon is not None and args.dp_dataset is not None):
        from clinic_app.cli._database import open_cli_database

        database = open_cli_database(settings)
    try:
        outcome = run_training(
            settings,
            actor,
            manifest=args.manifest,
            out_dir=args.out,
            options=options,
            from_bundle=args.from_bundle,
            cases=args.cases,
            variant=args.variant,
            config_path=args.config,
            name=args.name,
            version=args.version,
            run_dir=args.run_dir,
            resume=args.resume,
            dp_ledger_dataset=args.dp_dataset,
            database=database,
            workers=args.workers,
            bootstrap=args.bootstrap,
            demo_data=args.demo_data,
        )
    finally:
        if database is not None:
            database.dispose()
    if outcome.rank != 0 or outcome.bundle is None:
        return 0
    bundle = outcome.bundle
    result = outcome.result
    summary = {
        "bundle": str(bundle.path),
        "name": bundle.name,
        "version": bundle.version,
        "sha256": bundle.sha256,
        "cases": outcome.cases,
        "best_epoch": result.best_epoch,
        "best_val_macro_auroc": result.best_val_macro_auroc,
        "epochs_run": len(result.history),
        "seconds": round(result.seconds, 1),
        "world_size": result.world_size,
        "run_dir": str(outcome.run_dir),
        "differential_privacy": outcome.privacy or None,
        "test": _headline(outcome.evaluation),
    }
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
        return 0
    print(f"Wrote bundle {bundle.name} {bundle.version} to {bundle.path}")
    print(f"  sha256 {bundle.sha256}")
    counts = outcome.cases
    print(
        f"  cases: {counts.get('train', 0)} train, {counts.get('val', 0)} val, "
        f"{counts.get('test', 0)} test; {result.world_size} process(es)"
    )
    best = result.best_val_macro_auroc
    print(
        f"  trained {len(result.history)} epochs in {_duration(result.seconds)}; best epoch "
        f"{result.best_epoch}, validation macro-AUROC "
        f"{'n/a' if best is None else f'{best:.3f}'}"
    )
    headline = summary["test"]
    if headline:
        print("  test split: " + ", ".join(f"{k} {v}" for k, v in headline.items()))
    if outcome.privacy:
        spent = outcome.privacy.get("epsilon_spent")
        where = outcome.privacy.get("dataset")
        print(
            f"  DP-SGD: epsilon spent {spent if spent is None else f'{spent:.4g}'}"
            + (f", charged to the privacy ledger of '{where}'" if where else "")
        )
    if outcome.signed is not None:
        print(
            f"  fine-tuned on {len(outcome.signed.rows)} cases signed since "
            f"{outcome.signed.since.isoformat(timespec='seconds')}"
            + (
                f" ({len(outcome.signed.without_labels)} without decisions left out)"
                if outcome.signed.without_labels
                else ""
            )
        )
    print(f"  checkpoints and logs: {outcome.run_dir}")
    print("Research and demonstration use only; not a validated medical device.")
    return 0


def _headline(evaluation: dict[str, Any]) -> dict[str, str]:
    """Macro AUROC and ECE of the test evaluation, as text (whatever keys it has)."""
    from clinic_app.cli.evaluate import macro_auroc_text, value_text

    out: dict[str, str] = {}
    if not evaluation:
        return out
    auroc = macro_auroc_text(evaluation)
    if auroc is not None:
        out["macro-AUROC"] = auroc
    calibration = evaluation.get("calibration")
    if isinstance(calibration, dict):
        ece = calibration.get("ece_calibrated", calibration.get("ece_raw"))
        if ece is not None:
            out["ECE"] = value_text(ece)
    return out


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"
