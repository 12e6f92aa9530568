"""GPU throughput: cases per second at batch 64 with bf16 autocast on CUDA.

Figures, each beside its baseline from the same run:

- bare forward: pre-collated 4-modality inputs already on the GPU, bf16 autocast, vs fp32
- Predictor end to end (preparation on the CPU, transfer, forward, leave-one-modality-out
  rows, calibration) at batch 64;  goal: >= 200 cases/s on one data-centre GPU

Inputs are real (pydicom's DICOM ECG, an H&E tile from ../shared/data or scikit-learn's
photograph, a clinical note); the model is an untrained bundle of the chosen variant.
Exits with status 2 and a clear message when torch sees no CUDA device.

Run: ``python -m bench.gpu_throughput [--variant fusion-small] [--batch 64]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="fusion-small")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=10.0, help="time per measurement")
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        print(
            f"No CUDA device: torch {torch.__version__} ("
            f"{'CUDA ' + torch.version.cuda if torch.version.cuda else 'CPU build'}) sees no "
            "GPU, so there is nothing to measure. Run this on a machine with an NVIDIA GPU.",
            file=sys.stderr,
        )
        return 2

    from bench.model_latency import real_inputs
    from model.bundle import save_bundle
    from model.calibration import Calibration
    from model.network import collate
    from model.predictor import CaseInput, Predictor
    from model.registry import create_model

    torch.backends.cudnn.benchmark = True
    image, ecg, notes = real_inputs()
    vitals = {"age": 62, "sex": "F", "heart_rate_bpm": 104, "systolic_mmhg": 148}
    cases = [
        CaseInput(image=image, ecg=ecg, note=notes[i % len(notes)], vitals=vitals)
        for i in range(args.batch)
    ]
    folder = Path(tempfile.mkdtemp(prefix="cf-gpu-")) / "bundle"
    torch.manual_seed(0)
    model = create_model(args.variant).eval()
    save_bundle(
        model, folder, name=f"{args.variant}-bench", version="0",
        calibration=Calibration.identity(model.config.label_names), abstainer=None,
        metrics={}, model_card="bench\n", data_card="bench\n",
    )  # fmt: skip
    predictor = Predictor(folder, "cuda", explain=False, max_batch=args.batch)
    plan = predictor.plan
    bundle = predictor.load()
    name = torch.cuda.get_device_name(0)
    print(f"{name}, torch {torch.__version__}, variant {args.variant}, batch {args.batch}")
    print(f"autocast dtype {plan.autocast_dtype}")
    inputs = collate([predictor.prepare(c).case for c in cases], bundle.config).to("cuda")
    net = bundle.model

    def rate(fn: object, dtype: torch.dtype | None) -> float:
        def once() -> None:
            with torch.inference_mode():
                if dtype is None:
                    fn(inputs)  # type: ignore[operator]
                else:
                    with torch.autocast("cuda", dtype=dtype):
                        fn(inputs)  # type: ignore[operator]

        for _ in range(3):
            once()
        torch.cuda.synchronize()
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < args.seconds:
            once()
            count += 1
        torch.cuda.synchronize()
        return count * args.batch / (time.perf_counter() - start)

    fp32 = rate(net, None)
    amp = rate(net, plan.torch_dtype())
    print(f"bare forward fp32       {fp32:10.1f} cases/s")
    print(f"bare forward {plan.autocast_dtype:<10} {amp:10.1f} cases/s  ({amp / fp32:.2f}x fp32)")
    predictor.predict(cases)
    torch.cuda.synchronize()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        predictor.predict(cases)
        count += 1
    end_to_end = count * args.batch / (time.perf_counter() - start)
    print(
        f"Predictor end to end    {end_to_end:10.1f} cases/s  (goal >= 200; preparation runs "
        "on the CPU)"
    )
    print(f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
