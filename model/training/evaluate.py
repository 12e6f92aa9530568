"""Evaluate a FusionModel on prepared cases: what ``clinic-app evaluate`` and a bundle's
metrics.json report.

Each batch is encoded once; the fusion and heads are then re-run with the ``present`` mask
restricted to every non-empty subset of the modalities the cases carry, which gives the
missing-modality matrix and the "fused with only this modality" results without encoding any
case twice. Fused probabilities go through the bundle's :class:`Calibration` and abstention
through its :class:`ConformalAbstainer`, exactly as the predictor applies them.

Confidence intervals are percentile bootstraps over patients (``group_id``), not over cases,
because several cases of one patient are not independent evidence. Only what the cases carry
is evaluated: a label with one class among its known targets, a modality no case has, a head
with no targets, reports None with the reason instead of a number.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from model.calibration import Calibration, ConformalAbstainer
from model.errors import ModelPackageError
from model.network import EncodedBranch, FusionModel, collate
from model.preprocess import ModelInputError
from model.training import metrics as M
from model.training.cases import TrainingCase, extra_target_vector, target_matrix

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

FORMAT_VERSION = 1
#: Losing modalities is acceptable for a label when its AUROC drops by at most this much...
MAX_DROP = 0.03
#: ... or when the model abstains on at least this fraction of its cases instead.
MIN_ABSTENTION = 0.9
#: Modalities :func:`model.explain.deletion_check` can delete units from.
DELETION_MODALITIES = ("pathology", "ecg", "note")
RESEARCH_USE = (
    "ClinicFusion is research and demonstration software. It has not been clinically validated "
    "or cleared by any regulator; its suggestions support a qualified clinician who reviews the "
    "evidence, never a diagnosis or a directive. These figures describe the cases evaluated "
    "here and do not establish clinical performance."
)
JSON_NAME = "evaluation.json"
MARKDOWN_NAME = "evaluation.md"
RELIABILITY_NAME = "reliability.png"


class EvaluationError(ModelPackageError, ValueError):
    """The cases or settings given to :func:`evaluate` cannot be evaluated; says why."""


# -- running the model -----------------------------------------------------------------------
@dataclass
class _Outputs:
    """Everything the model produced for the cases, in case order (NaN where not computed)."""

    logits: FloatArray  # (N, L) fused with every modality the case carries
    present: BoolArray  # (N, M) config modality order
    aux: dict[str, FloatArray] = field(default_factory=dict)  # modality -> (N, L)
    subsets: dict[tuple[str, ...], FloatArray] = field(default_factory=dict)  # -> (N, L)
    extra: dict[str, FloatArray] = field(default_factory=dict)  # head -> (N, C)
    extra_available: dict[str, BoolArray] = field(default_factory=dict)  # head -> (N,)


def _take(branch: EncodedBranch, rows: torch.Tensor) -> EncodedBranch:
    attention = None if branch.attention is None else branch.attention[rows]
    return EncodedBranch(branch.tokens[rows], branch.mask[rows], branch.pooled[rows], attention)


def _numpy(tensor: torch.Tensor) -> FloatArray:
    return np.asarray(tensor.detach().float().cpu().numpy(), dtype=np.float64)


def carried_modalities(model: FusionModel, cases: Sequence[TrainingCase]) -> tuple[str, ...]:
    """The model's modalities that at least one case carries, in config order."""
    seen = {m for case in cases for m in case.prepared.modalities()}
    return tuple(m for m in model.config.modalities if m in seen)


def all_subsets(modalities: Sequence[str]) -> list[tuple[str, ...]]:
    """Every non-empty subset, smallest first, each in the given order."""
    return [s for r in range(1, len(modalities) + 1) for s in itertools.combinations(modalities, r)]


def _run(
    model: FusionModel,
    cases: Sequence[TrainingCase],
    subsets: Sequence[tuple[str, ...]],
    batch_size: int,
) -> _Outputs:
    """Encode each batch once; fuse it with all its modalities and with each subset.

    A subset is evaluated on the rows that carry every modality in it, with the others masked
    out, so its result is what the model says when only those inputs are available."""
    config = model.config
    device = next(model.parameters()).device
    labels, count = len(config.labels), len(cases)
    outputs = _Outputs(
        logits=np.full((count, labels), np.nan),
        present=np.zeros((count, len(config.modalities)), dtype=bool),
        aux={m: np.full((count, labels), np.nan) for m in model.aux_heads},
        subsets={s: np.full((count, labels), np.nan) for s in subsets},
        extra={h.name: np.full((count, len(h.classes)), np.nan) for h in config.extra_heads},
        extra_available={h.name: np.zeros(count, dtype=bool) for h in config.extra_heads},
    )
    for start in range(0, count, batch_size):
        chunk = cases[start : start + batch_size]
        span = slice(start, start + len(chunk))
        inputs = collate([case.prepared for case in chunk], config).to(device)
        encoded, present = model.encode(inputs)
        out = model.fuse(encoded, present)
        outputs.logits[span] = _numpy(out.logits)
        outputs.present[span] = present.cpu().numpy()
        for modality, logits in out.aux_logits.items():
            has = present[:, config.modalities.index(modality)].cpu().numpy()
            block = _numpy(logits)
            block[~has] = np.nan
            outputs.aux[modality][span] = block
        for head in config.extra_heads:
            outputs.extra[head.name][span] = _numpy(out.extra_logits[head.name])
            outputs.extra_available[head.name][span] = out.extra_available[head.name].cpu().numpy()
        for subset in subsets:
            columns = [config.modalities.index(m) for m in subset]
            carries = present[:, columns].all(dim=1)
            if not bool(carries.any()):
                continue
            rows = carries.nonzero(as_tuple=True)[0]
            masked = torch.zeros_like(present[rows])
            masked[:, columns] = True
            fused = model.fuse({m: _take(encoded[m], rows) for m in subset}, masked)
            block = np.full((len(chunk), labels), np.nan)
            block[rows.cpu().numpy()] = _numpy(fused.logits)
            outputs.subsets[subset][span] = block
    return outputs


# -- helpers -----------------------------------------------------------------------------------
def _sigmoid(logits: FloatArray) -> FloatArray:
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(1.0 / (1.0 + np.exp(-np.clip(logits, -60.0, 60.0))), dtype=np.float64)


def _softmax(logits: FloatArray) -> FloatArray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return np.asarray(exp / exp.sum(axis=1, keepdims=True), dtype=np.float64)


def _thresholds(thresholds: Any, label_names: Sequence[str]) -> FloatArray:
    """None -> 0.5 each; a number; a sequence (one per label); or a mapping keyed by
    "system|code" or by code (labels it omits keep 0.5)."""
    count = len(label_names)
    if thresholds is None:
        values = np.full(count, 0.5)
    elif isinstance(thresholds, int | float) and not isinstance(thresholds, bool):
        values = np.full(count, float(thresholds))
    elif isinstance(thresholds, Mapping):
        codes = [name.split("|", 1)[-1] for name in label_names]
        unknown = [k for k in thresholds if k not in label_names and k not in codes]
        if unknown:
            raise EvaluationError(f"Thresholds name labels the model does not have: {unknown}.")
        values = np.asarray(
            [
                float(thresholds.get(name, thresholds.get(code, 0.5)))
                for name, code in zip(label_names, codes, strict=True)
            ]
        )
    else:
        values = np.asarray(list(thresholds), dtype=np.float64)
        if values.shape != (count,):
            raise EvaluationError(f"Give one threshold per label ({count}); got {values.size}.")
    if not np.all((values > 0) & (values < 1)):
        raise EvaluationError("Every decision threshold must lie strictly between 0 and 1.")
    return values


def _interval(value: float | None, ci: M.ConfidenceInterval | None) -> dict[str, Any]:
    """{"value", "ci": [lo, hi] | None, "resamples": used}."""
    if ci is None or value is None:
        return {"value": value, "ci": None, "resamples": 0}
    bounds = None if ci.lo is None else [ci.lo, ci.hi]
    return {"value": value, "ci": bounds, "resamples": ci.used}


def _one_class_reason(positives: int, negatives: int) -> str:
    return (
        f"not evaluated: only one class among the cases with a known target ({positives} "
        f"positive, {negatives} negative)"
    )


def _macro(
    targets: FloatArray,
    scores: FloatArray,
    metric: Callable[[FloatArray, FloatArray], float | None],
    columns: Sequence[int],
) -> float | None:
    return M.macro_mean([metric(targets[:, j], scores[:, j]) for j in columns])


def _evaluable(targets: FloatArray) -> list[int]:
    """Columns with at least one positive and one negative known target."""
    out = []
    for j in range(targets.shape[1]):
        column = targets[:, j]
        if np.any(column == 1) and np.any(column == 0):
            out.append(j)
    return out


def _rate(values: BoolArray) -> float | None:
    return float(values.mean()) if values.size else None


Statistic = Callable[[npt.NDArray[np.int64]], float | None]


def _binary_statistics(y: FloatArray, p: FloatArray, threshold: float) -> dict[str, Statistic]:
    """AUROC, AUPRC and F1 of one label on a resample's indices."""
    return {
        "auroc": lambda i: M.auroc(y[i], p[i]),
        "auprc": lambda i: M.auprc(y[i], p[i]),
        "f1": lambda i: M.f1_at(y[i], p[i], threshold),
    }


def _class_statistics(
    truth: npt.NDArray[np.int64], predicted: npt.NDArray[np.int64]
) -> dict[str, Statistic]:
    """Accuracy and macro-F1 of a single-label head on a resample's indices."""
    return {
        "accuracy": lambda i: M.accuracy(truth[i], predicted[i]),
        "macro_f1": lambda i: M.macro_f1(truth[i], predicted[i]),
    }


# -- the parts of the report ------------------------------------------------------------------
@dataclass(frozen=True)
class _Context:
    model: FusionModel
    cases: Sequence[TrainingCase]
    targets: FloatArray  # (N, L)
    groups: npt.NDArray[Any]
    names: tuple[str, ...]
    carried: tuple[str, ...]
    bootstrap: int
    seed: int
    level: float


def _labels_section(
    ctx: _Context,
    probs: FloatArray,
    abstained: BoolArray | None,
    sets: tuple[BoolArray, BoolArray] | None,
    thresholds: FloatArray,
) -> list[dict[str, Any]]:
    rows = []
    for j, spec in enumerate(ctx.model.config.labels):
        y = ctx.targets[:, j]
        known = ~np.isnan(y)
        positives, negatives = int(np.sum(y == 1)), int(np.sum(y == 0))
        entry: dict[str, Any] = {
            "label": ctx.names[j],
            "system": spec.system,
            "code": spec.code,
            "display": spec.display,
            "n": int(known.sum()),
            "positives": positives,
            "negatives": negatives,
            "threshold": float(thresholds[j]),
            "abstention_rate": None if abstained is None else _rate(abstained[known, j]),
            "conformal_coverage": None,
            "reason": None,
        }
        if sets is not None and known.any():
            has_zero, has_one = sets[0][known, j], sets[1][known, j]
            covered = np.where(y[known] == 1, has_one, has_zero)
            entry["conformal_coverage"] = _rate(covered)
        if positives == 0 or negatives == 0:
            entry["reason"] = _one_class_reason(positives, negatives)
            for name in ("auroc", "auprc", "f1"):
                entry[name] = _interval(None, None)
            rows.append(entry)
            continue
        yk, pk, gk, threshold = y[known], probs[known, j], ctx.groups[known], float(thresholds[j])
        cis = M.bootstrap_cis(
            _binary_statistics(yk, pk, threshold),
            int(yk.size),
            n=ctx.bootstrap,
            seed=ctx.seed,
            groups=gk,
            level=ctx.level,
        )
        entry["auroc"] = _interval(M.auroc(yk, pk), cis["auroc"])
        entry["auprc"] = _interval(M.auprc(yk, pk), cis["auprc"])
        entry["f1"] = _interval(M.f1_at(yk, pk, threshold), cis["f1"])
        rows.append(entry)
    return rows


def _macro_section(ctx: _Context, probs: FloatArray, thresholds: FloatArray) -> dict[str, Any]:
    columns = _evaluable(ctx.targets)
    y = ctx.targets

    def f1(j: int) -> Callable[[FloatArray, FloatArray], float | None]:
        return lambda t, p: M.f1_at(t, p, float(thresholds[j]))

    def macro_f1(rows: npt.NDArray[np.int64] | slice) -> float | None:
        values: list[float | None] = []
        for j in columns:
            column = y[rows, j]
            if np.any(column == 1) and np.any(column == 0):
                values.append(f1(j)(column, probs[rows, j]))
        return M.macro_mean(values)

    def macro_of(
        metric: Callable[[FloatArray, FloatArray], float | None],
    ) -> Callable[[npt.NDArray[np.int64]], float | None]:
        return lambda i: _macro(y[i], probs[i], metric, columns)

    out: dict[str, Any] = {
        "labels": [ctx.names[j] for j in columns],
        "not_evaluated": [ctx.names[j] for j in range(y.shape[1]) if j not in columns],
    }
    if not columns:
        out["reason"] = "no label has both classes among the cases"
        for name in ("auroc", "auprc", "f1"):
            out[name] = _interval(None, None)
        return out
    statistics = {"auroc": macro_of(M.auroc), "auprc": macro_of(M.auprc), "f1": macro_f1}
    cis = M.bootstrap_cis(
        statistics, y.shape[0], n=ctx.bootstrap, seed=ctx.seed, groups=ctx.groups, level=ctx.level
    )
    every = slice(None)
    out["auroc"] = _interval(_macro(y, probs, M.auroc, columns), cis["auroc"])
    out["auprc"] = _interval(_macro(y, probs, M.auprc, columns), cis["auprc"])
    out["f1"] = _interval(macro_f1(every), cis["f1"])
    return out


def _calibration_section(
    ctx: _Context, raw: FloatArray, probs: FloatArray, calibrated: bool, out_dir: Path | None
) -> dict[str, Any]:
    known = ~np.isnan(ctx.targets)
    bins = 15
    out: dict[str, Any] = {
        "bins": bins,
        "pairs": int(known.sum()),
        "ece_raw": None,
        "ece_calibrated": None,
        "calibrated": calibrated,
        "reliability_png": None,
    }
    if not known.any():
        out["reason"] = "no (case, label) pair has a known target"
        return out
    out["ece_raw"] = M.expected_calibration_error(ctx.targets, raw, bins)
    out["ece_calibrated"] = M.expected_calibration_error(ctx.targets, probs, bins)
    if out_dir is not None:
        curves = {"raw": raw, "calibrated": probs} if calibrated else {"raw (uncalibrated)": raw}
        M.reliability_diagram(
            ctx.targets,
            curves,
            out_dir / RELIABILITY_NAME,
            bins=bins,
            title=f"{ctx.model.config.name}: all labels, {int(known.sum())} pairs",
        )
        out["reliability_png"] = RELIABILITY_NAME
    return out


def _per_label_auroc(
    ctx: _Context, rows: BoolArray, scores: FloatArray, columns: Sequence[int]
) -> dict[str, float | None]:
    return {ctx.names[j]: M.auroc(ctx.targets[rows, j], scores[rows, j]) for j in columns}


def _modalities_section(
    ctx: _Context, outputs: _Outputs, probs: FloatArray, calibration: Calibration | None
) -> dict[str, Any]:
    config = ctx.model.config
    per_modality: dict[str, Any] = {}
    best: tuple[float, str, str] | None = None
    for modality in ctx.carried:
        rows = outputs.present[:, config.modalities.index(modality)]
        columns = _evaluable(ctx.targets[rows])
        alone_probs = _apply(calibration, outputs.subsets[(modality,)])
        entry: dict[str, Any] = {"n": int(rows.sum())}
        heads: dict[str, FloatArray | None] = {
            "aux": _sigmoid(outputs.aux[modality]) if modality in outputs.aux else None,
            "alone": alone_probs,
            "fused": probs,
        }
        for head, scores in heads.items():
            if scores is None:
                entry[head] = None
                continue
            entry[head] = {
                "macro_auroc": _macro(ctx.targets[rows], scores[rows], M.auroc, columns),
                "macro_auprc": _macro(ctx.targets[rows], scores[rows], M.auprc, columns),
                "per_label_auroc": _per_label_auroc(ctx, rows, scores, columns),
            }
        fused = entry["fused"]["macro_auroc"]
        for head in ("aux", "alone"):
            single = entry[head]["macro_auroc"] if entry[head] is not None else None
            gain = None if fused is None or single is None else fused - single
            entry[f"fusion_gain_over_{head}"] = gain
            if single is not None and (best is None or single > best[0]):
                best = (single, modality, head)
        if not columns:
            entry["reason"] = "no label has both classes among the cases with this modality"
        per_modality[modality] = entry
    columns = _evaluable(ctx.targets)
    fused_all = _macro(ctx.targets, probs, M.auroc, columns)
    return {
        "per_modality": per_modality,
        "fused_macro_auroc": fused_all,
        "best_single": None
        if best is None
        else {"macro_auroc": best[0], "modality": best[1], "head": best[2]},
        "fusion_gain": None if best is None or fused_all is None else fused_all - best[0],
    }


def _apply(calibration: Calibration | None, logits: FloatArray) -> FloatArray:
    if calibration is None:
        return _sigmoid(logits)
    return np.asarray(calibration.apply(logits), dtype=np.float64)


def _abstain(abstainer: ConformalAbstainer | None, probs: FloatArray) -> BoolArray | None:
    if abstainer is None:
        return None
    return np.asarray(abstainer.abstain(probs), dtype=bool)


def _missing_section(
    ctx: _Context,
    outputs: _Outputs,
    probs: FloatArray,
    calibration: Calibration | None,
    abstainer: ConformalAbstainer | None,
) -> dict[str, Any]:
    entries = []
    for subset in all_subsets(ctx.carried):
        logits = outputs.subsets[subset]
        rows = ~np.isnan(logits).any(axis=1)
        entry: dict[str, Any] = {
            "modalities": list(subset),
            "missing": [m for m in ctx.carried if m not in subset],
            "n": int(rows.sum()),
        }
        if not rows.any():
            entry.update(
                macro_auroc=None,
                full_macro_auroc=None,
                cost=None,
                per_label={},
                all_acceptable=None,
                reason="no case carries all of " + ", ".join(subset),
            )
            entries.append(entry)
            continue
        sub_probs = np.full_like(logits, np.nan)
        sub_probs[rows] = _apply(calibration, logits[rows])
        abstained = _abstain(abstainer, sub_probs[rows])
        targets = ctx.targets[rows]
        columns = _evaluable(targets)
        per_label: dict[str, Any] = {}
        for j in range(targets.shape[1]):
            known = ~np.isnan(targets[:, j])
            sub = M.auroc(targets[:, j], sub_probs[rows, j]) if j in columns else None
            full = M.auroc(targets[:, j], probs[rows, j]) if j in columns else None
            drop = None if sub is None or full is None else full - sub
            rate = None if abstained is None else _rate(abstained[known, j])
            acceptable = None
            if drop is not None:
                acceptable = bool(
                    drop <= MAX_DROP + 1e-12 or (rate is not None and rate >= MIN_ABSTENTION)
                )
            per_label[ctx.names[j]] = {
                "auroc": sub,
                "full_auroc": full,
                "drop": drop,
                "abstention_rate": rate,
                "acceptable": acceptable,
                "reason": None if j in columns else "only one class among these cases",
            }
        sub_macro = _macro(targets, sub_probs[rows], M.auroc, columns)
        full_macro = _macro(targets, probs[rows], M.auroc, columns)
        verdicts = [v["acceptable"] for v in per_label.values() if v["acceptable"] is not None]
        entry.update(
            macro_auroc=sub_macro,
            full_macro_auroc=full_macro,
            cost=None if sub_macro is None or full_macro is None else full_macro - sub_macro,
            per_label=per_label,
            all_acceptable=all(verdicts) if verdicts else None,
        )
        entries.append(entry)
    one_missing = {
        entry["missing"][0]: entry["all_acceptable"]
        for entry in entries
        if len(entry["missing"]) == 1
    }
    return {
        "modalities": list(ctx.carried),
        "rule": (
            f"A label is acceptable without the missing modalities when its AUROC drops by at "
            f"most {MAX_DROP} or the model abstains on at least {MIN_ABSTENTION:.0%} of its cases"
        ),
        "subsets": entries,
        "one_missing_acceptable": one_missing,
    }


def _extra_heads_section(ctx: _Context, outputs: _Outputs) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for head in ctx.model.config.extra_heads:
        targets = extra_target_vector(ctx.cases, head.name)
        if targets.size and int(targets.max()) >= len(head.classes):
            raise EvaluationError(
                f"A case's {head.name} target is class {int(targets.max())}, but the head has "
                f"only {len(head.classes)} classes."
            )
        with_target = targets >= 0
        rows = with_target & outputs.extra_available[head.name]
        entry: dict[str, Any] = {
            "n": int(rows.sum()),
            "without_input": int((with_target & ~rows).sum()),
            "classes": len(head.classes),
            "classes_in_truth": sorted({head.classes[int(t)] for t in targets[rows]}),
            "reason": None,
        }
        if not rows.any():
            entry.update(
                accuracy=_interval(None, None),
                macro_f1=_interval(None, None),
                reason="no case has both a target for this head and an input it reads",
            )
            out[head.name] = entry
            continue
        truth = targets[rows]
        predicted = np.argmax(_softmax(outputs.extra[head.name][rows]), axis=1)
        cis = M.bootstrap_cis(
            _class_statistics(truth, predicted),
            int(truth.size),
            n=ctx.bootstrap,
            seed=ctx.seed,
            groups=ctx.groups[rows],
            level=ctx.level,
        )
        entry["accuracy"] = _interval(M.accuracy(truth, predicted), cis["accuracy"])
        entry["macro_f1"] = _interval(M.macro_f1(truth, predicted), cis["macro_f1"])
        out[head.name] = entry
    return out


def _faithfulness_section(
    ctx: _Context, outputs: _Outputs, probs: FloatArray, per_modality: int
) -> dict[str, Any]:
    from model.explain import deletion_check

    config = ctx.model.config
    rng = np.random.default_rng(ctx.seed)
    out: dict[str, Any] = {}
    for modality in ctx.carried:
        if modality not in DELETION_MODALITIES or per_modality <= 0:
            continue
        candidates = np.flatnonzero(outputs.present[:, config.modalities.index(modality)])
        chosen = sorted(rng.permutation(candidates)[:per_modality].tolist())
        results, skipped = [], []
        for index in chosen:
            case = ctx.cases[index]
            label = int(np.argmax(probs[index]))
            try:
                result = deletion_check(
                    ctx.model,
                    collate([case.prepared], config),
                    case.prepared,
                    label,
                    modality,
                    seed=ctx.seed,
                )
            except ModelInputError as exc:
                skipped.append({"case_id": case.case_id, "reason": str(exc)})
                continue
            results.append(
                {
                    "case_id": case.case_id,
                    "label": ctx.names[label],
                    "units": result.units,
                    "removed": result.removed,
                    "top_drop": result.top_drop,
                    "random_drop": result.random_drop,
                    "top_greater": result.passed,
                }
            )
        top = [r["top_drop"] for r in results]
        random = [r["random_drop"] for r in results]
        out[modality] = {
            "cases": len(results),
            "mean_top_drop": float(np.mean(top)) if top else None,
            "mean_random_drop": float(np.mean(random)) if random else None,
            "fraction_top_greater": _rate(np.asarray([r["top_greater"] for r in results])),
            "per_case": results,
            "skipped": skipped,
        }
    return out


# -- JSON and Markdown ---------------------------------------------------------------------------
def _json_safe(value: Any) -> Any:
    """Plain JSON types: numpy scalars to Python, NaN/inf to None, tuples to lists."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_json_safe(v) for v in value.tolist()]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, Path):
        return str(value)
    return value


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def format_interval(item: Mapping[str, Any] | None) -> str:
    """'0.912 (0.85–0.96)'; 'n/a' without a value; the value alone without an interval."""
    if not item or item.get("value") is None:
        return "n/a"
    text = _num(item["value"])
    ci = item.get("ci")
    if ci and ci[0] is not None and ci[1] is not None:
        text += f" ({ci[0]:.2f}\u2013{ci[1]:.2f})"
    return text


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f} %"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return [*lines, ""]


def render_markdown(report: Mapping[str, Any]) -> str:
    """The human-readable report of :func:`evaluate`'s result."""
    cases, settings = report["cases"], report["settings"]
    level = round(100 * settings["level"])
    display = {entry["label"]: entry["display"] for entry in report["labels"]}
    lines = [f"# Evaluation of {report['model']['name']}", "", f"> {RESEARCH_USE}", ""]
    about = report.get("about") or {}
    bundle = about.get("bundle")
    if bundle:
        lines += [
            f"Bundle: {bundle.get('name')} {bundle.get('version')} "
            f"(sha256 {str(bundle.get('sha256'))[:12]}...).",
            "",
        ]
    splits = ", ".join(f"{k}: {v}" for k, v in sorted(cases["splits"].items()))
    lines += [
        "## Cases",
        "",
        f"{cases['n']} cases from {cases['groups']} patients (groups); splits: {splits}. "
        "Modalities carried: "
        + ", ".join(f"{m} {n}" for m, n in cases["modalities"].items())
        + ".",
        "",
    ]
    composite = cases["composite"]
    if composite:
        lines += [
            f"**{composite} of {cases['n']} cases are composite**: each pairs real inputs from "
            "different patients (the data card says how they were paired), because no public "
            "data set holds one patient's slide, ECG and note together. Results on composite "
            "cases describe the model on such pairings, not on real patients seen with every "
            "modality.",
            "",
        ]
    else:
        lines += ["No case is composite: every case's inputs come from one patient.", ""]
    if cases["synthetic"]:
        lines += [f"{cases['synthetic']} cases are synthetic (simulated inputs).", ""]
    lines += [
        f"Intervals are {level} % percentile bootstrap intervals over patients "
        f"({settings['bootstrap']} resamples, seed {settings['seed']}). Probabilities are "
        + ("calibrated" if settings["calibrated"] else "uncalibrated (no calibration given)")
        + "; F1 uses each label's threshold.",
        "",
        "## Per label",
        "",
    ]
    rows = []
    for entry in report["labels"]:
        rows.append(
            [
                entry["display"],
                entry["code"],
                str(entry["n"]),
                str(entry["positives"]),
                format_interval(entry["auroc"]),
                format_interval(entry["auprc"]),
                f"{format_interval(entry['f1'])} @ {entry['threshold']:.2f}",
                _percent(entry["abstention_rate"]),
            ]
        )
    lines += _table(["Label", "Code", "n", "Positive", "AUROC", "AUPRC", "F1", "Abstained"], rows)
    reasons = [f"- {e['display']}: {e['reason']}." for e in report["labels"] if e["reason"]]
    if reasons:
        lines += [*reasons, ""]
    macro = report["macro"]
    lines += [
        "## Macro averages",
        "",
        f"Over {len(macro['labels'])} labels with both classes.",
        "",
    ]
    lines += _table(
        ["Metric", "Value"],
        [
            ["Macro-AUROC", format_interval(macro["auroc"])],
            ["Macro-AUPRC", format_interval(macro["auprc"])],
            ["Macro-F1", format_interval(macro["f1"])],
        ],
    )
    calibration = report["calibration"]
    lines += [
        "## Calibration",
        "",
        f"Expected calibration error over {calibration['pairs']} (case, label) pairs, "
        f"{calibration['bins']} equal-width bins: raw {_num(calibration['ece_raw'])}, "
        f"calibrated {_num(calibration['ece_calibrated'])}.",
        "",
    ]
    if calibration["reliability_png"]:
        lines += [f"![Reliability diagram]({calibration['reliability_png']})", ""]
    modalities = report["modalities"]
    lines += ["## Each modality against the fused model", ""]
    rows = []
    for modality, entry in modalities["per_modality"].items():

        def macro_of(head: str, e: Mapping[str, Any] = entry) -> str:
            part = e.get(head)
            return "n/a" if part is None else _num(part["macro_auroc"])

        rows.append(
            [
                modality,
                str(entry["n"]),
                macro_of("aux"),
                macro_of("alone"),
                macro_of("fused"),
            ]
        )
    lines += _table(
        [
            "Modality",
            "n",
            "Own head (aux)",
            "Fused, only this modality",
            "Fused, all the case carries",
        ],
        rows,
    )
    best = modalities["best_single"]
    if best:
        lines += [
            f"Macro-AUROC, fused on all cases: {_num(modalities['fused_macro_auroc'])}; best "
            f"single modality: {best['modality']} ({best['head']}) {_num(best['macro_auroc'])}; "
            f"fusion gain {_num(modalities['fusion_gain'])}.",
            "",
        ]
    missing = report["missing_modality"]
    lines += ["## Missing-modality matrix", "", missing["rule"] + ".", ""]
    rows = []
    for entry in missing["subsets"]:
        acceptable = entry["all_acceptable"]
        rows.append(
            [
                " + ".join(entry["modalities"]),
                ", ".join(entry["missing"]) or "none",
                str(entry["n"]),
                _num(entry["macro_auroc"]),
                _num(entry["cost"]),
                "n/a" if acceptable is None else ("yes" if acceptable else "no"),
            ]
        )
    lines += _table(
        ["Present", "Missing", "n", "Macro-AUROC", "Cost", "Every label acceptable"], rows
    )
    label_names = [e["label"] for e in report["labels"]]
    rows = []
    for entry in missing["subsets"]:
        cells = [" + ".join(entry["modalities"])]
        for name in label_names:
            item = entry["per_label"].get(name)
            if not item or item["auroc"] is None:
                cells.append("n/a")
                continue
            cell = _num(item["auroc"])
            if item["abstention_rate"] is not None:
                cell += f" ({_percent(item['abstention_rate'])} abst.)"
            cells.append(cell)
        rows.append(cells)
    lines += ["Per label AUROC (abstention rate):", ""]
    lines += _table(["Present"] + [display[name] for name in label_names], rows)
    if report["extra_heads"]:
        lines += ["## Other heads", ""]
        rows = [
            [
                name,
                str(entry["n"]),
                str(len(entry["classes_in_truth"])),
                format_interval(entry["accuracy"]),
                format_interval(entry["macro_f1"]),
            ]
            for name, entry in report["extra_heads"].items()
        ]
        lines += _table(["Head", "n", "Classes present", "Accuracy", "Macro-F1"], rows)
        lines += ["Macro-F1 averages over the classes present in the truth.", ""]
    faithfulness = report["faithfulness"]
    if faithfulness:
        lines += [
            "## Explanation faithfulness",
            "",
            "Deleting the most relevant units (tiles, ECG segments, note tokens) for the case's "
            "top label should lower its logit more than deleting as many random units.",
            "",
        ]
        rows = [
            [
                modality,
                str(entry["cases"]),
                _num(entry["mean_top_drop"]),
                _num(entry["mean_random_drop"]),
                _percent(entry["fraction_top_greater"]),
                str(len(entry["skipped"])),
            ]
            for modality, entry in faithfulness.items()
        ]
        lines += _table(
            ["Modality", "Cases", "Top drop", "Random drop", "Top > random", "Skipped"], rows
        )
    return "\n".join(lines).rstrip() + "\n"


def write_report(report: Mapping[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """evaluation.json (sorted keys) and evaluation.md in ``out_dir``."""
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    json_path, md_path = folder / JSON_NAME, folder / MARKDOWN_NAME
    text = json.dumps(report, sort_keys=True, indent=2, allow_nan=False, ensure_ascii=False)
    json_path.write_text(text + "\n", encoding="utf-8")
    md_path.write_text(render_markdown(report), encoding="utf-8")
    return json_path, md_path


# -- entry points --------------------------------------------------------------------------------
def evaluate(
    model: FusionModel,
    cases: Sequence[TrainingCase],
    *,
    calibration: Calibration | None = None,
    abstainer: ConformalAbstainer | None = None,
    thresholds: float | Sequence[float] | Mapping[str, float] | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    batch_size: int = 32,
    faithfulness_cases: int = 8,
    out_dir: str | Path | None = None,
    level: float = 0.95,
    about: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate ``model`` on ``cases`` (normally the test split); a JSON-safe dict.

    Per label AUROC/AUPRC/F1 at ``thresholds`` (default 0.5 on calibrated probabilities) with
    group-bootstrap intervals; macro averages; ECE raw and calibrated; each modality's own head
    and the fused head with only it against the fused model; the missing-modality matrix over
    every non-empty subset of the modalities the cases carry; extra heads; deletion-based
    explanation faithfulness on up to ``faithfulness_cases`` cases per modality. With
    ``out_dir``, writes evaluation.json, evaluation.md and reliability.png there. ``about``
    is stored as is (e.g. the bundle's name and sha256)."""
    config = model.config
    names = config.label_names
    if not cases:
        raise EvaluationError("There are no cases to evaluate.")
    if batch_size < 1 or bootstrap < 0:
        raise EvaluationError("batch_size must be at least 1 and bootstrap at least 0.")
    if calibration is not None and tuple(calibration.labels) != tuple(names):
        raise EvaluationError("The calibration's labels differ from the model's labels.")
    if abstainer is not None and len(abstainer.qhat) != len(names):
        raise EvaluationError("The abstainer has a different number of labels than the model.")
    targets = np.asarray(target_matrix(cases, len(names)), dtype=np.float64)
    if targets.shape != (len(cases), len(names)):
        raise EvaluationError(
            f"Case targets are shaped {targets.shape}; the model has {len(names)} labels."
        )
    cut = _thresholds(thresholds, names)
    carried = carried_modalities(model, cases)
    folder = None if out_dir is None else Path(out_dir)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    ctx = _Context(
        model=model,
        cases=cases,
        targets=targets,
        groups=np.asarray([case.group_id for case in cases], dtype=object),
        names=names,
        carried=carried,
        bootstrap=bootstrap,
        seed=seed,
        level=level,
    )
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            outputs = _run(model, cases, all_subsets(carried), batch_size)
        raw = _sigmoid(outputs.logits)
        probs = _apply(calibration, outputs.logits)
        abstained = _abstain(abstainer, probs)
        sets = None if abstainer is None else abstainer.prediction_sets(probs)
        report: dict[str, Any] = {
            "format": FORMAT_VERSION,
            "research_use": RESEARCH_USE,
            "about": dict(about or {}),
            "model": {
                "name": config.name,
                "labels": list(names),
                "modalities": list(config.modalities),
                "extra_heads": [h.name for h in config.extra_heads],
            },
            "cases": {
                "n": len(cases),
                "groups": len({case.group_id for case in cases}),
                "splits": dict(Counter(case.split for case in cases)),
                "composite": sum(case.composite for case in cases),
                "synthetic": sum(case.synthetic for case in cases),
                "modalities": {
                    m: int(outputs.present[:, config.modalities.index(m)].sum()) for m in carried
                },
            },
            "settings": {
                "bootstrap": bootstrap,
                "seed": seed,
                "level": level,
                "group_bootstrap": True,
                "calibrated": calibration is not None,
                "abstainer": abstainer is not None,
                "thresholds": {name: float(t) for name, t in zip(names, cut, strict=True)},
                "faithfulness_cases": faithfulness_cases,
            },
            "labels": _labels_section(ctx, probs, abstained, sets, cut),
            "macro": _macro_section(ctx, probs, cut),
            "calibration": _calibration_section(ctx, raw, probs, calibration is not None, folder),
            "modalities": _modalities_section(ctx, outputs, probs, calibration),
            "missing_modality": _missing_section(ctx, outputs, probs, calibration, abstainer),
            "extra_heads": _extra_heads_section(ctx, outputs),
        }
        report["faithfulness"] = _faithfulness_section(ctx, outputs, probs, faithfulness_cases)
    finally:
        if was_training:
            model.train()
    safe: dict[str, Any] = _json_safe(report)
    if folder is not None:
        write_report(safe, folder)
    return safe


def evaluate_bundle(
    bundle_dir: str | Path,
    cases: Sequence[TrainingCase],
    out_dir: str | Path | None,
    *,
    device: str = "cpu",
    **kwargs: Any,
) -> dict[str, Any]:
    """Load a bundle (verified) and evaluate it with its own calibration and abstainer
    (``calibration=`` / ``abstainer=`` in ``kwargs`` override them)."""
    from model.bundle import load_bundle

    loaded = load_bundle(bundle_dir, device=device)
    kwargs.setdefault("calibration", loaded.calibration)
    kwargs.setdefault("abstainer", loaded.abstainer)
    about = dict(kwargs.pop("about", None) or {})
    about["bundle"] = {
        "name": loaded.info.name,
        "version": loaded.info.version,
        "sha256": loaded.info.sha256,
    }
    return evaluate(loaded.model, cases, out_dir=out_dir, about=about, **kwargs)
