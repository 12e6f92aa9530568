"""ECG rhythm baseline on the demo cohort: a heart-rate and RR-irregularity rule.

Each unique ECG sample of the test split (a whole record or a 10 s window, as the demo
manifest names it) is measured with ``model.ecg_features.measure_ecg``; fixed scores (never
fitted, never tuned on the test split) come from the heart rate (HR, bpm) and the RR
irregularity (rr_cv = SDNN / mean RR, rmssd_ms / mean RR):

- sinus rhythm: -|HR - 80| / 20 - rr_cv / 0.1      (a regular rhythm at 60-100 bpm)
- sinus tachycardia: (HR - 100) / 20 - rr_cv / 0.1
- sinus bradycardia: (60 - HR) / 20 - rr_cv / 0.1
- atrial fibrillation: rr_cv
- premature atrial / ventricular contractions: rmssd / mean RR (an early beat and its pause)

Per-label AUROC and their macro mean on the unique samples, and on the test cases as the model
is scored (ECG samples repeat across composite cases). With ``--metrics bundle/metrics.json``
the model's per-label AUROC is printed beside the rule.

Run: ``python -m bench.ecg_rule_baseline [--manifest M] [--metrics metrics.json] [--split test]``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from bench.note_specialty_baselines import SHARED, load_rows
from model.ecg_features import measure_ecg
from model.training.demo_data import ECG_LABELS, LABEL_NAMES


def read_window(
    path: Path, start_s: float | None, duration_s: float | None
) -> tuple[np.ndarray, float]:
    """(lead, time) mV signal of a WFDB record window or a DICOM ECG, and its sampling rate."""
    if path.suffix.lower() == ".dcm":
        import pydicom

        dataset = pydicom.dcmread(path)
        group = dataset.WaveformSequence[0]
        fs = float(group.SamplingFrequency)
        signal = dataset.waveform_array(0).T / 1000.0  # uV -> mV
    else:
        import wfdb

        record = str(path.with_suffix(""))
        fs = float(wfdb.rdheader(record).fs)
        start = round((start_s or 0.0) * fs)
        stop = None if duration_s is None else start + round(duration_s * fs)
        signal = wfdb.rdrecord(record, sampfrom=start, sampto=stop, physical=True).p_signal.T
    return np.nan_to_num(np.asarray(signal, dtype=np.float64)), fs


def rule_scores(signal: np.ndarray, fs: float) -> dict[str, float]:
    """The fixed rule's score per ECG label (higher = more likely)."""
    found = measure_ecg(signal, fs)
    rate = found.heart_rate_bpm if found.heart_rate_bpm is not None else 80.0
    cv = found.rr_cv if found.rr_cv is not None else 0.0
    rmssd = found.rmssd_ms if found.rmssd_ms is not None else 0.0
    rr_mean = found.rr_mean_ms if found.rr_mean_ms else 800.0
    ectopy = rmssd / rr_mean
    sr, tachy, brady, af, pac, pvc = ECG_LABELS
    return {
        sr: -abs(rate - 80.0) / 20.0 - cv / 0.1,
        tachy: (rate - 100.0) / 20.0 - cv / 0.1,
        brady: (60.0 - rate) / 20.0 - cv / 0.1,
        af: cv,
        pac: ectopy,
        pvc: ectopy,
    }


def auroc(y: np.ndarray, score: np.ndarray) -> float | None:
    """Area under the ROC curve (ties count half); None when one class is missing."""
    from sklearn.metrics import roc_auc_score

    if len(set(y.tolist())) < 2:
        return None
    return float(roc_auc_score(y, score))


def model_aurocs(metrics: Path | None) -> dict[str, float | None]:
    if metrics is None:
        return {}
    data = json.loads(metrics.read_text(encoding="utf-8"))
    for report in (data, data.get("test", {}), data.get("evaluation", {})):
        labels = report.get("labels") if isinstance(report, dict) else None
        if isinstance(labels, list) and labels and isinstance(labels[0], dict):
            out = {}
            for entry in labels:
                key = f"{entry.get('system')}|{entry.get('code')}"
                value = (entry.get("auroc") or {}).get("value")
                out[key] = value
                out[str(entry.get("label"))] = value
            return out
    return {}


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, default=None)
    parser.add_argument("--metrics", type=Path, default=None)
    parser.add_argument("--split", default="test")
    args = parser.parse_args(argv)
    if args.manifest is None and not SHARED.is_dir():
        print(f"{SHARED} is absent and no --manifest given; nothing to measure")
        return 1
    rows = load_rows(args.manifest)
    base = args.manifest.parent if args.manifest is not None else Path()
    samples: dict[tuple[str, float | None], dict[str, Any]] = {}
    case_keys = []
    for row in rows:
        if row.get("split") != args.split or not row.get("ecg"):
            continue
        path = Path(row["ecg"])
        path = path if path.is_absolute() else base / path
        key = (str(path), row.get("ecg_start_s"))
        samples.setdefault(key, {"path": path, "row": row})
        case_keys.append(key)
    started = time.perf_counter()
    warnings.simplefilter("ignore")
    for sample in samples.values():
        row = sample["row"]
        signal, fs = read_window(sample["path"], row.get("ecg_start_s"), row.get("ecg_duration_s"))
        sample["scores"] = rule_scores(signal, fs)
    seconds = time.perf_counter() - started
    model = model_aurocs(args.metrics)
    print(
        f"ECG rule baseline on the {args.split} split: {len(samples)} unique ECG samples, "
        f"{len(case_keys)} cases with an ECG (measure_ecg: {seconds:.1f} s)"
    )
    print(f"{'label':<36} {'pos/n uniq':>11} {'AUROC uniq':>10} {'AUROC cases':>11} {'model':>7}")
    macro_u: list[float] = []
    macro_c: list[float] = []
    macro_m: list[float] = []
    for label in ECG_LABELS:
        known = [k for k, s in samples.items() if label not in s["row"]["unknown_labels"]]
        y = np.asarray([label in samples[k]["row"]["labels"] for k in known], dtype=int)
        score = np.asarray([samples[k]["scores"][label] for k in known])
        unique_auc = auroc(y, score)
        cases = [k for k in case_keys if label not in samples[k]["row"]["unknown_labels"]]
        yc = np.asarray([label in samples[k]["row"]["labels"] for k in cases], dtype=int)
        sc = np.asarray([samples[k]["scores"][label] for k in cases])
        case_auc = auroc(yc, sc)
        model_auc = model.get(label)
        for bucket, value in ((macro_u, unique_auc), (macro_c, case_auc), (macro_m, model_auc)):
            if value is not None:
                bucket.append(value)
        print(
            f"{LABEL_NAMES[label]:<36} {f'{int(y.sum())}/{y.size}':>11} {_fmt(unique_auc):>10} "
            f"{_fmt(case_auc):>11} {_fmt(model_auc):>7}"
        )

    def mean(values: list[float]) -> float | None:
        return float(np.mean(values)) if values else None

    print(
        f"{'macro (labels with both classes)':<36} {'':>11} {_fmt(mean(macro_u)):>10} "
        f"{_fmt(mean(macro_c)):>11} {_fmt(mean(macro_m)):>7}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
