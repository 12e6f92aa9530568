"""Model latency on the CPU: branches, end to end, batching, int8/pruning, explanation overhead.

Figures (medians after a warm-up), each beside a baseline measured in the same run:

- per-branch forward (one modality per case) at batch 1/8/32
- bare forward (collated inputs, inference mode) vs the Predictor end to end (preparation,
  leave-one-modality-out rows, calibration, abstention) at batch 1/8/32
- batch throughput: predict(32 cases) vs a loop of 32 predict([case]);  goal: >= 3x
- fp32 vs dynamic int8 (nn.Linear) and L1-pruned Linear weights: latency and the largest
  absolute change of any calibrated probability on the same real cases
- one 3-modality case (slide tile + ECG + note) with its explanation through the Predictor vs
  the bare forward + explain_case of the same model;  goals: <= 400 ms and <= 1.5x
- peak resident memory

Inputs are real: pydicom's DICOM 12-lead ECG, a Kather/TCGA H&E tile from ../shared/data
(else scikit-learn's flower photograph), an MTSamples note when ../shared/data has it.
The model is an untrained bundle of the chosen variant written to a temporary folder.

Run: ``python -m bench.model_latency [--variant fusion-tiny] [--threads 2]``.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
NOTE_FALLBACK = (
    "62 year old woman with palpitations and light-headedness for two days; known "
    "hypertension treated with ramipril. No chest pain. On examination an irregular pulse "
    "of 104 per minute, blood pressure 148/90. ECG requested; cardiology review advised."
)


def cpu_busy_fraction(seconds: float = 0.5) -> float:
    """Share of all CPU time used by anything during a short window (from /proc/stat)."""

    def sample() -> tuple[int, int]:
        with Path("/proc/stat").open() as handle:
            values = [int(v) for v in handle.readline().split()[1:]]
        return sum(values), values[3] + values[4]

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except OSError:
        return float("nan")
    return 1.0 - (idle1 - idle0) / max(1, total1 - total0)


def median_ms(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def real_inputs() -> tuple[object, object, list[str]]:
    """(H&E tile, DICOM ECG as EcgInput, notes)."""
    import pydicom
    from pydicom.data import get_testdata_file

    from model.predictor import EcgInput

    dataset = pydicom.dcmread(get_testdata_file("waveform_ecg.dcm"))
    group = dataset.WaveformSequence[0]
    names = tuple(c.ChannelSourceSequence[0].CodeMeaning for c in group.ChannelDefinitionSequence)
    ecg = EcgInput(dataset.waveform_array(0).T / 1000.0, float(group.SamplingFrequency), names)
    tiles = sorted((SHARED / "pathology" / "tiles" / "kather").glob("*.*"))
    if tiles:
        from PIL import Image

        image = np.asarray(Image.open(tiles[0]).convert("RGB"))
    else:
        from sklearn.datasets import load_sample_image

        image = np.asarray(load_sample_image("flower.jpg"))[:224, :224]
    notes = [NOTE_FALLBACK]
    mtsamples = SHARED / "text" / "mtsamples_dev.csv.gz"
    if mtsamples.is_file():
        with gzip.open(mtsamples, "rt", encoding="utf-8") as handle:
            rows = [
                r["transcription"]
                for r in csv.DictReader(handle)
                if len((r["transcription"] or "").split()) >= 50
            ]
        notes = rows[:32]
    return image, ecg, notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="fusion-tiny")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import torch

    from model.bundle import save_bundle
    from model.calibration import Calibration
    from model.explain import explain_case
    from model.network import collate
    from model.predictor import CaseInput, Predictor
    from model.registry import create_model

    torch.set_num_threads(args.threads)
    busy_before = cpu_busy_fraction()
    image, ecg, notes = real_inputs()
    vitals = {"age": 62, "sex": "F", "heart_rate_bpm": 104, "systolic_mmhg": 148}
    workdir = Path(tempfile.mkdtemp(prefix="cf-bench-"))
    torch.manual_seed(0)
    model = create_model(args.variant).eval()
    save_bundle(
        model, workdir / "bundle", name=f"{args.variant}-bench", version="0",
        calibration=Calibration.identity(model.config.label_names), abstainer=None,
        metrics={}, model_card="bench\n", data_card="bench\n",
    )  # fmt: skip
    bundle = workdir / "bundle"
    print(f"variant {args.variant}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"CPU busy before the run (all processes): {busy_before:.0%}")

    def case(
        i: int, modalities: tuple[str, ...] = ("pathology", "ecg", "note", "tabular")
    ) -> CaseInput:
        return CaseInput(
            image=image if "pathology" in modalities else None,
            ecg=ecg if "ecg" in modalities else None,
            note=notes[i % len(notes)] if "note" in modalities else None,
            vitals=vitals if "tabular" in modalities else None,
        )

    fp32 = Predictor(bundle, "cpu", explain=False, max_batch=32)
    config = fp32.config
    r = args.repeats

    print("\nper-branch bare forward, ms per batch (one modality per case)")
    print(f"{'branch':<10} {'b=1':>9} {'b=8':>9} {'b=32':>9}")
    for modality in config.modalities:
        row = []
        for batch in (1, 8, 32):
            prepared = [fp32.prepare(case(i, (modality,))).case for i in range(batch)]
            inputs = collate(prepared, config)
            with torch.inference_mode():
                row.append(median_ms(lambda inputs=inputs: model(inputs), r))
        print(f"{modality:<10} " + " ".join(f"{v:9.1f}" for v in row))

    print("\nend to end (4 modalities), ms per case")
    print(f"{'batch':<6} {'bare fwd':>9} {'predictor':>10} {'ratio':>6}")
    for batch in (1, 8, 32):
        cases = [case(i) for i in range(batch)]
        inputs = collate([fp32.prepare(c).case for c in cases], config)
        with torch.inference_mode():
            bare = median_ms(lambda inputs=inputs: model(inputs), r) / batch
        full = median_ms(lambda cases=cases: fp32.predict(cases), r) / batch
        print(f"{batch:<6} {bare:9.1f} {full:10.1f} {full / bare:6.2f}")

    cases32 = [case(i) for i in range(32)]
    batched = median_ms(lambda: fp32.predict(cases32), max(3, r // 2))
    looped = median_ms(lambda: [fp32.predict([c]) for c in cases32], max(3, r // 2))
    print(
        f"\nthroughput, 32 cases: batched {32000 / batched:.1f} cases/s, per-case loop "
        f"{32000 / looped:.1f} cases/s, ratio {looped / batched:.2f}x (goal >= 3x)"
    )

    reference = fp32.predict(cases32)

    def probs(results: list[object]) -> np.ndarray:
        return np.array(
            [[s.probability for s in sorted(p.suggestions, key=lambda s: s.code)] for p in results]
        )

    print("\nquantisation and pruning (32 real cases)")
    print(f"{'variant':<12} {'b=1 ms':>8} {'b=32 ms/case':>13} {'max |dp|':>9}")
    one = [case(0)]
    base1 = median_ms(lambda: fp32.predict(one), r)
    print(f"{'fp32':<12} {base1:8.1f} {batched / 32:13.1f} {0.0:9.4f}")
    for label, kwargs in (
        ("int8", {"quantize_int8": True}),
        ("prune 20%", {"prune_amount": 0.2}),
        ("prune 50%", {"prune_amount": 0.5}),
        ("int8+pr20%", {"quantize_int8": True, "prune_amount": 0.2}),
    ):
        other = Predictor(bundle, "cpu", explain=False, max_batch=32, **kwargs)  # type: ignore[arg-type]
        t1 = median_ms(lambda other=other: other.predict(one), r)
        t32 = median_ms(lambda other=other: other.predict(cases32), max(3, r // 2)) / 32
        diff = float(np.abs(probs(other.predict(cases32)) - probs(reference)).max())
        print(f"{label:<12} {t1:8.1f} {t32:13.1f} {diff:9.4f}")

    print("\nexplanations: one case with slide tile + ECG + note")
    explaining = Predictor(bundle, "cpu", explain=True)
    three = [case(0, ("pathology", "ecg", "note"))]
    prepared = explaining.prepare(three[0]).case
    inputs = collate([prepared], config)

    def bare_forward_explain() -> None:
        with torch.inference_mode():
            out = model(inputs)
        label = int(out.logits[0].argmax())
        explain_case(model, inputs, prepared, label)

    bare = median_ms(bare_forward_explain, r)
    full = median_ms(lambda: explaining.predict(three), r)
    plain = median_ms(lambda: fp32.predict(three), r)
    print(f"bare forward + explain_case     {bare:8.1f} ms")
    print(f"Predictor without explanation   {plain:8.1f} ms")
    print(
        f"Predictor with explanation      {full:8.1f} ms  (goal <= 400 ms; ratio to bare "
        f"{full / bare:.2f}x, limit 1.5x)"
    )
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak resident memory {peak_mib:.0f} MiB")
    print(f"CPU busy after the run (all processes): {cpu_busy_fraction():.0%}")


if __name__ == "__main__":
    main()
