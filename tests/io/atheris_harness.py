"""Coverage-guided fuzzing of the readers with atheris (nightly; not part of the test run).

    pip install -e ".[fuzz]"      # atheris 3.0.0
    python -m tests.io.atheris_harness CORPUS_DIR -max_total_time=3600 -rss_limit_mb=4096

The corpus starts from the real seed files of tests/io/fuzz.py (copied into CORPUS_DIR on the
first run). Readers run in-process here (atheris needs their coverage), with the same
ReadLimits as the app; anything but a result or an InputError is a finding.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from pathlib import Path


def main() -> None:
    import atheris  # type: ignore[import-not-found]

    with atheris.instrument_imports():
        # Imported here so that atheris instruments them (the readers import them lazily).
        import clinic_app.io.dicom_images
        import clinic_app.io.ecg_dicom
        import clinic_app.io.ecg_wfdb
        import clinic_app.io.notes
        import clinic_app.io.slides  # noqa: F401
        from clinic_app.domain.errors import InputError
        from clinic_app.io.readers import read_input

    work = Path(tempfile.mkdtemp(prefix="cf-atheris-"))
    corpus = Path(sys.argv[1]) if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else None
    if corpus is not None and not any(corpus.glob("*")):
        from tests.io.fuzz import build_seeds

        corpus.mkdir(parents=True, exist_ok=True)
        for seed in build_seeds(work):
            for path in seed.files:
                if path.name == seed.target or len(seed.files) == 1:
                    (corpus / path.name).write_bytes(path.read_bytes())

    suffixes = (".dcm", ".tiff", ".svs", ".png", ".txt")

    def one_input(data: bytes) -> None:
        provider = atheris.FuzzedDataProvider(data)
        suffix = suffixes[provider.ConsumeIntInRange(0, len(suffixes) - 1)]
        target = work / f"input{suffix}"
        target.write_bytes(provider.ConsumeBytes(len(data)))
        with contextlib.suppress(InputError):
            read_input(target)

    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
