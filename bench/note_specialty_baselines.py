"""Note specialty baselines on the demo cohort: TF-IDF + linear SVM and the majority class.

MTSamples as the demo cohort splits it (``model.training.demo_data``): one specialty per
unique transcription, split by unique text. Both baselines train on the train split's unique
notes and are scored (macro-F1 over the specialties present in the truth, accuracy) on the test
split's unique notes, and on the test cases as the model is scored (a note may serve two
cases). With ``--metrics bundle/metrics.json`` the model's specialty head is printed beside
them. Fixed settings, never tuned on the test split.

Run: ``python -m bench.note_specialty_baselines [--manifest M] [--metrics metrics.json]``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def load_rows(manifest: Path | None) -> list[dict[str, Any]]:
    """Rows of the given manifest, or of a demo manifest built now into a temp folder."""
    if manifest is None:
        from model.training.demo_data import build_demo_manifest

        with tempfile.TemporaryDirectory(prefix="demo-cohort-") as folder:
            built = build_demo_manifest(SHARED, Path(folder)).manifest
            return [json.loads(line) for line in built.read_text("utf-8").splitlines() if line]
    with manifest.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def notes_of(rows: list[dict[str, Any]], split: str) -> tuple[list[str], list[str], list[str]]:
    """(unique texts, their specialty, specialty of every case) of one split."""
    unique: dict[str, str] = {}
    per_case = []
    for row in rows:
        if row.get("split") != split or not row.get("note_text"):
            continue
        specialty = (row.get("heads") or {}).get("specialty")
        if specialty is None:
            continue
        unique.setdefault(" ".join(row["note_text"].split()), specialty)
        per_case.append(" ".join(row["note_text"].split()))
    texts = sorted(unique)
    return texts, [unique[t] for t in texts], per_case


def macro_f1(truth: list[str], predicted: list[str]) -> float:
    """Macro-F1 over the classes present in the truth (as model.training.metrics.macro_f1)."""
    from sklearn.metrics import f1_score

    labels = sorted(set(truth))
    return float(f1_score(truth, predicted, labels=labels, average="macro", zero_division=0))


def model_number(metrics: Path | None) -> str:
    if metrics is None:
        return "(no --metrics)"
    data = json.loads(metrics.read_text(encoding="utf-8"))
    for report in (data, data.get("test", {}), data.get("evaluation", {})):
        head = (
            (report.get("extra_heads") or {}).get("specialty") if isinstance(report, dict) else None
        )
        if head:
            value = head["macro_f1"]["value"]
            ci = head["macro_f1"].get("ci")
            return f"{value:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
    return "(no specialty head in metrics)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, default=None)
    parser.add_argument("--metrics", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.manifest is None and not SHARED.is_dir():
        print(f"{SHARED} is absent and no --manifest given; nothing to measure")
        return 1
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.svm import LinearSVC

    rows = load_rows(args.manifest)
    train_x, train_y, _ = notes_of(rows, "train")
    test_x, test_y, test_cases = notes_of(rows, "test")
    label_of = dict(zip(test_x, test_y, strict=True))
    case_truth = [label_of[t] for t in test_cases]
    started = time.perf_counter()
    vectorizer = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2)
    classifier = LinearSVC(C=1.0, class_weight="balanced")
    classifier.fit(vectorizer.fit_transform(train_x), train_y)
    predicted = list(classifier.predict(vectorizer.transform(test_x)))
    seconds = time.perf_counter() - started
    by_text = dict(zip(test_x, predicted, strict=True))
    case_predicted = [by_text[t] for t in test_cases]
    values, counts = np.unique(train_y, return_counts=True)
    majority = str(values[int(np.argmax(counts))])

    def accuracy(truth: list[str], guess: list[str]) -> float:
        return float(np.mean([a == b for a, b in zip(truth, guess, strict=True)]))

    print(
        f"MTSamples specialty, one label per unique text: {len(train_x)} train / "
        f"{len(test_x)} test unique notes, {len(set(train_y))} train classes, "
        f"{len(set(test_y))} in test truth; {len(test_cases)} test cases"
    )
    print(f"{'method':<34} {'macro-F1 uniq':>13} {'acc uniq':>9} {'macro-F1 cases':>15}")
    table = [
        (
            "majority class (" + majority + ")",
            [majority] * len(test_y),
            [majority] * len(case_truth),
        ),
        ("TF-IDF (1-2 gram) + LinearSVC", predicted, case_predicted),
    ]
    for name, guess, case_guess in table:
        print(
            f"{name:<34} {macro_f1(test_y, guess):>13.3f} {accuracy(test_y, guess):>9.3f} "
            f"{macro_f1(case_truth, case_guess):>15.3f}"
        )
    print(f"{'model (specialty head, test cases)':<34} {model_number(args.metrics):>13}")
    print(f"SVM fit + predict: {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
