"""After training: calibration, conformal thresholds, evaluation on the test split, cards, bundle.

The validation split is divided by group into two halves: Platt scaling is fitted on one,
the conformal abstention thresholds on the other (the abstainer's coverage guarantee needs
cases the calibration did not see). With fewer than 40 validation cases both use all of them,
and the model card says so. The test split is evaluated once, with the same function
``clinic-app evaluate`` runs, so re-running it on the test split reproduces metrics.json.
"""

from __future__ import annotations

import hashlib
import platform
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.bundle import BundleInfo, save_bundle
from model.calibration import Calibration, ConformalAbstainer
from model.training.cases import TrainingCase, by_split, target_matrix
from model.training.trainer import TrainResult, predict_logits

RESEARCH_USE = (
    "For research and demonstration only. Not a medical device; not validated for clinical "
    "use. Suggestions must be reviewed by a qualified clinician."
)
MIN_SPLIT_VALIDATION = 40


def _half_groups(cases: Sequence[TrainingCase]) -> tuple[list[TrainingCase], list[TrainingCase]]:
    """Split cases into two halves by a hash of the group id (deterministic, groups whole)."""
    first: list[TrainingCase] = []
    second: list[TrainingCase] = []
    for case in cases:
        digest = hashlib.sha256(case.group_id.encode("utf-8")).digest()
        (first if digest[0] % 2 == 0 else second).append(case)
    return first, second


def fit_calibration(
    result: TrainResult, val: Sequence[TrainingCase], coverage: float = 0.9
) -> tuple[Calibration, ConformalAbstainer, dict[str, Any]]:
    """Platt scaling and split-conformal thresholds from the validation split."""
    model = result.model
    labels = model.config.label_names
    if len(val) >= MIN_SPLIT_VALIDATION:
        platt_cases, conformal_cases = _half_groups(val)
        if not platt_cases or not conformal_cases:
            platt_cases = conformal_cases = list(val)
    else:
        platt_cases = conformal_cases = list(val)
    shared = platt_cases is conformal_cases
    logits, _ = predict_logits(model, platt_cases)
    calibration = Calibration.fit(logits, target_matrix(platt_cases, len(labels)), labels)
    conformal_logits, _ = predict_logits(model, conformal_cases)
    abstainer = ConformalAbstainer.fit(
        calibration.apply(conformal_logits),
        target_matrix(conformal_cases, len(labels)),
        target_coverage=coverage,
    )
    info = {
        "method": "platt",
        "calibration_cases": len(platt_cases),
        "conformal_cases": len(conformal_cases),
        "conformal_coverage": coverage,
        "same_cases": shared,
    }
    return calibration, abstainer, info


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _ci(entry: Mapping[str, Any] | None, key: str) -> str:
    from model.training.evaluate import format_interval

    return format_interval(entry.get(key) if entry else None)


def split_summary(cases: Sequence[TrainingCase], labels: Sequence[str]) -> dict[str, Any]:
    """Counts per split: cases, groups, composite/synthetic, modalities, label positives."""
    out: dict[str, Any] = {}
    for split in ("train", "val", "test"):
        chosen = by_split(cases, split)
        targets = target_matrix(chosen, len(labels))
        modalities: Counter[str] = Counter()
        for case in chosen:
            modalities.update(case.prepared.modalities())
        out[split] = {
            "cases": len(chosen),
            "groups": len({c.group_id for c in chosen}),
            "composite": sum(c.composite for c in chosen),
            "synthetic": sum(c.synthetic for c in chosen),
            "modalities": dict(sorted(modalities.items())),
            "positives": {label: int(np.nansum(targets[:, j])) for j, label in enumerate(labels)},
            "known": {
                label: int((~np.isnan(targets[:, j])).sum()) for j, label in enumerate(labels)
            },
        }
    return out


def model_card(
    result: TrainResult,
    evaluation: Mapping[str, Any],
    summary: Mapping[str, Any],
    calibration_info: Mapping[str, Any],
    *,
    name: str,
    version: str,
    provenance: Mapping[str, Any],
) -> str:
    config = result.model.config
    frozen = "pretrained, frozen"
    image_state = frozen if config.image.pretrained and config.image.freeze_backbone else "trained"
    text_state = frozen if config.text.pretrained and config.text.freeze else "trained"
    lines = [
        f"# Model card: {name} {version}",
        "",
        f"**Intended use.** {RESEARCH_USE}",
        "",
        "## Model",
        f"- Architecture: `{config.name}` (ClinicFusion FusionModel; d_model {config.d_model}, "
        f"{config.layers} fusion layer(s)); modalities: {', '.join(config.modalities)}.",
        f"- Image branch: {config.image.encoder} ({image_state}), {config.image.tile_size}-px "
        f"tiles, gated-attention MIL over up to {config.image.max_tiles}.",
        f"- ECG branch: 1-D residual CNN at {config.ecg.sampling_rate_hz} Hz, "
        f"{config.ecg.window_s:g}-s windows, plus measured intervals and rate.",
        f"- Note branch: {config.text.model_key} ({text_state}).",
        "",
        "## Outputs",
        "| label | system | code | critical (triage) |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {lab.display} | {lab.system} | {lab.code} | {'yes' if lab.critical else ''} |"
        for lab in config.labels
    ]
    for head in config.extra_heads:
        lines.append("")
        lines.append(
            f"Extra head `{head.name}` ({len(head.classes)} classes, reads "
            f"{', '.join(head.modalities)}): {', '.join(head.classes)}."
        )
    options = result.options
    lines += [
        "",
        "## Training",
        f"- Joint loss: fused {options.loss} + {options.aux_weight:g} x per-modality auxiliary "
        f"losses + extra-head cross-entropy; positive weights: {options.pos_weight}; balanced "
        f"sampling: {options.balanced_sampling}; modality dropout {options.modality_dropout:g}; "
        f"OGM-GE: {options.ogm_ge} (alpha {options.ogm_alpha:g}); augmentation: {options.augment}.",
        f"- Epochs run: {len(result.history)} (best epoch {result.best_epoch + 1}, early "
        f"stopping on validation macro-AUROC, patience {options.patience}); batch "
        f"{options.batch_size}, AdamW lr {options.lr:g}, seed {options.seed}.",
        f"- Time: {result.seconds / 60:.1f} min on {result.world_size} process(es), "
        f"{platform.machine()} {platform.system()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} CPU threads.",
    ]
    if result.dp_epsilon_spent is not None:
        lines.append(
            f"- Differential privacy: DP-SGD (Opacus), epsilon spent {result.dp_epsilon_spent:.3f} "
            f"at delta {result.dp_delta:g}, noise multiplier {result.dp_noise_multiplier:.3f}, "
            f"clipping norm {options.dp_max_grad_norm:g}."
        )
    else:
        lines.append("- Differential privacy: none (trained without DP-SGD).")
    for key, value in provenance.items():
        if isinstance(value, Mapping):
            value = "; ".join(f"{k} {v}" for k, v in value.items())
        lines.append(f"- {key.replace('_', ' ').capitalize()}: {value}")
    lines += [
        "",
        "## Data and splits",
        "| split | cases | groups | composite | synthetic |",
        "|---|---|---|---|---|",
    ]
    for split, entry in summary.items():
        lines.append(
            f"| {split} | {entry['cases']} | {entry['groups']} | {entry['composite']} | "
            f"{entry['synthetic']} |"
        )
    lines += [
        "",
        "See data_card.md for sources, licences and how the splits were made.",
        "",
        "## Calibration and abstention",
        f"- Platt scaling per label on {calibration_info['calibration_cases']} validation cases; "
        f"split-conformal thresholds ({calibration_info['conformal_coverage']:.0%} target "
        f"coverage) on {calibration_info['conformal_cases']} validation cases"
        + (
            " (the same cases: the validation split was too small to halve)."
            if calibration_info["same_cases"]
            else " (the other half, by group)."
        ),
        "",
        "## Test-split results (cases never used for training, early stopping or calibration)",
        "95 % confidence intervals from a group bootstrap.",
        "",
        "| label | n | positives | AUROC | AUPRC | F1 |",
        "|---|---|---|---|---|---|",
    ]
    for entry in evaluation.get("labels", []):
        lines.append(
            f"| {entry.get('display', entry.get('label'))} | {_fmt(entry.get('n'))} | "
            f"{_fmt(entry.get('positives'))} | {_ci(entry, 'auroc')} | {_ci(entry, 'auprc')} | "
            f"{_ci(entry, 'f1')} |"
        )
    macro = evaluation.get("macro", {})
    lines += [
        "",
        f"- Macro AUROC {_ci(macro, 'auroc')}, macro AUPRC {_ci(macro, 'auprc')}, "
        f"macro F1 {_ci(macro, 'f1')}.",
    ]
    calibration = evaluation.get("calibration", {})
    if calibration:
        lines.append(
            f"- ECE: {_fmt(calibration.get('ece_raw'))} before, "
            f"{_fmt(calibration.get('ece_calibrated'))} after calibration."
        )
    for head, entry in evaluation.get("extra_heads", {}).items():
        lines.append(
            f"- Extra head `{head}`: macro-F1 {_ci(entry, 'macro_f1')}, accuracy "
            f"{_ci(entry, 'accuracy')} on {entry.get('n', 'n/a')} cases."
        )
    lines += [
        "",
        "Full per-modality results, the missing-modality matrix and explanation faithfulness "
        "are in metrics.json (section `test`) and in the evaluation report.",
        "",
        "## Limits",
        "- Trained and tested on small public datasets; performance on another site's scanners, "
        "ECG devices, note styles or case mix is unknown until measured there.",
        "- Composite cases pair different real patients; any gain from fusion measured on them "
        "reflects complementary labels, not interactions within one patient.",
        "- Calibration and conformal coverage hold only for cases like the validation split.",
        f"- {RESEARCH_USE}",
        "",
    ]
    return "\n".join(lines)


def data_card(
    summary: Mapping[str, Any],
    labels: Sequence[str],
    *,
    extra: str = "",
    build_report: Mapping[str, Any] | None = None,
) -> str:
    lines = [
        "# Data card",
        "",
        f"**Intended use of the model.** {RESEARCH_USE}",
        "",
        "## Splits",
        "| split | cases | groups | composite | synthetic | modalities |",
        "|---|---|---|---|---|---|",
    ]
    for split, entry in summary.items():
        modalities = ", ".join(f"{k} {v}" for k, v in entry["modalities"].items())
        lines.append(
            f"| {split} | {entry['cases']} | {entry['groups']} | {entry['composite']} | "
            f"{entry['synthetic']} | {modalities} |"
        )
    lines += ["", "## Label positives / known per split", ""]
    lines.append("| label | " + " | ".join(summary) + " |")
    lines.append("|---|" + "---|" * len(summary))
    for label in labels:
        cells = [
            f"{entry['positives'][label]} / {entry['known'][label]}" for entry in summary.values()
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if build_report:
        dropped = build_report.get("dropped_inputs") or {}
        if dropped:
            lines += ["", "## Inputs left out by the quality checks", ""]
            for modality, reasons in dropped.items():
                for reason, count in reasons.items():
                    lines.append(f"- {modality}: {count} x {reason}")
    if extra:
        lines += ["", extra.strip(), ""]
    return "\n".join(lines) + "\n"


def finalize_bundle(
    result: TrainResult,
    cases: Sequence[TrainingCase],
    out_dir: str | Path,
    *,
    name: str,
    version: str,
    data_card_extra: str = "",
    provenance: Mapping[str, Any] | None = None,
    build_report: Mapping[str, Any] | None = None,
    bootstrap: int = 1000,
    coverage: float = 0.9,
    evaluation_dir: str | Path | None = None,
    model_card_extra: Callable[[Mapping[str, Any]], str] | None = None,
) -> tuple[BundleInfo, dict[str, Any]]:
    """Calibrate, evaluate on the test split, write cards and the bundle. Returns the bundle
    info and the test evaluation (also stored as metrics.json's ``test``)."""
    from model.training.evaluate import evaluate

    model = result.model
    labels = model.config.label_names
    val, test = by_split(cases, "val"), by_split(cases, "test")
    calibration, abstainer, calibration_info = fit_calibration(result, val, coverage)
    evaluation: dict[str, Any] = {}
    if test:
        evaluation = evaluate(
            model,
            test,
            calibration=calibration,
            abstainer=abstainer,
            bootstrap=bootstrap,
            out_dir=Path(evaluation_dir) if evaluation_dir is not None else None,
        )
    summary = split_summary(cases, labels)
    metrics = {
        "test": evaluation,
        "training": {
            "best_epoch": result.best_epoch,
            "best_val_macro_auroc": result.best_val_macro_auroc,
            "epochs_run": len(result.history),
            "seconds": result.seconds,
            "world_size": result.world_size,
            "history": result.history,
            "dp_epsilon_spent": result.dp_epsilon_spent,
            "dp_delta": result.dp_delta,
            "feature_cache": result.cache_stats,
        },
        "calibration": calibration_info,
        "splits": summary,
    }
    provenance = dict(provenance or {})
    card = model_card(
        result,
        evaluation,
        summary,
        calibration_info,
        name=name,
        version=version,
        provenance=provenance,
    )
    if model_card_extra is not None:
        card = card.replace("## Limits", model_card_extra(evaluation).rstrip() + "\n\n## Limits", 1)
    info = save_bundle(
        model,
        out_dir,
        name=name,
        version=version,
        calibration=calibration,
        abstainer=abstainer,
        metrics=metrics,
        model_card=card,
        data_card=data_card(summary, labels, extra=data_card_extra, build_report=build_report),
        extra={
            "training": {
                "dp_epsilon_spent": result.dp_epsilon_spent,
                "dp_delta": result.dp_delta,
                "seconds": result.seconds,
                **{k: str(v) for k, v in provenance.items()},
            },
            "composite_cases": any(c.composite for c in cases),
        },
    )
    return info, evaluation
