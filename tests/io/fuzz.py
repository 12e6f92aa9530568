"""Seeded mutation fuzzing of the input readers, as the app calls them (in the capped child).

Seeds are real files: DICOM images and a DICOM ECG shipped in pydicom, WFDB records (from
../shared/data when present, else written here with wfdb's own writer), and a slide (the
OpenSlide CMU-1 SVS excerpt when present, else a tiled pyramidal TIFF written with tifffile).
Mutations: bit flips, truncation, length-field inflation and header edits. Every mutated
file must end in a result or one ``InputError``; a reader bug, a hang past the timeout or a
child over the memory cap fails the campaign.

Used by tests/io/test_fuzz.py (a short run by default, >= 2,000 mutations in the slow run) and
by tests/io/atheris_harness.py (coverage-guided, for nightly use).
"""

from __future__ import annotations

import random
import re
import shutil
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from clinic_app.domain.errors import InputError
from clinic_app.io.limits import DEFAULT_LIMITS, ReadLimits
from clinic_app.io.readers import read_input_isolated
from clinic_app.io.sandbox import ChildReport

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


@dataclass(frozen=True)
class Seed:
    """A real input: ``files`` are copied together; ``target`` is the one handed to the reader."""

    name: str
    files: tuple[Path, ...]
    target: str  # file name within files handed to read_input
    mutable: tuple[str, ...]  # file names that mutations may change


def _pydicom_file(name: str) -> Path:
    from pydicom.data import get_testdata_file

    found = get_testdata_file(name)
    if found is None:
        raise FileNotFoundError(name)
    return Path(str(found))


def build_seeds(work: Path) -> list[Seed]:
    """Real files to mutate; generated stand-ins only where ../shared/data is absent."""
    seeds: list[Seed] = []
    for name in ("CT_small.dcm", "SC_rgb_jpeg_dcmtk.dcm", "waveform_ecg.dcm", "MR_small_RLE.dcm"):
        try:
            path = _pydicom_file(name)
        except FileNotFoundError:
            continue
        seeds.append(Seed(name, (path,), path.name, (path.name,)))
    ecg = SHARED / "ecg"
    cinc = sorted((ecg / "cinc2021").glob("*.hea"))[:1]
    cpsc = sorted((ecg / "cpsc2021").glob("*.hea"))[:1]
    for header in [*cinc, *cpsc]:
        files = tuple(sorted(p for p in header.parent.glob(header.stem + ".*")))
        seeds.append(Seed(header.name, files, header.name, tuple(p.name for p in files)))
    if not cinc:
        seeds.append(_written_wfdb(work))
    svs = SHARED / "pathology" / "slides" / "cmu-1-small-region.svs"
    if svs.is_file():
        seeds.append(Seed(svs.name, (svs,), svs.name, (svs.name,)))
    seeds.append(_written_pyramid(work))
    return seeds


def _written_wfdb(work: Path) -> Seed:
    import wfdb

    folder = work / "wfdb-seed"
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(0, 4, 1 / 250)
    signal = np.stack([np.sin(2 * np.pi * 1.2 * t), np.cos(2 * np.pi * 1.2 * t)], axis=1)
    wfdb.wrsamp(
        "seed",
        fs=250,
        units=["mV", "mV"],
        sig_name=["I", "II"],
        p_signal=signal,
        fmt=["212", "212"],
        write_dir=str(folder),
        comments=["Age: 61", "Sex: Female", "Dx: 426783006"],
    )
    files = (folder / "seed.hea", folder / "seed.dat")
    return Seed("seed.hea", files, "seed.hea", ("seed.hea", "seed.dat"))


def _written_pyramid(work: Path) -> Seed:
    import tifffile

    rng = np.random.default_rng(7)
    base = rng.integers(120, 255, size=(512, 768, 3), dtype=np.uint8)
    work.mkdir(parents=True, exist_ok=True)
    path = work / "pyramid.tiff"
    with tifffile.TiffWriter(path) as tif:
        tif.write(base, tile=(128, 128), subifds=2, photometric="rgb", compression="deflate")
        tif.write(base[::2, ::2], tile=(128, 128), subfiletype=1, compression="deflate")
        tif.write(base[::4, ::4], tile=(128, 128), subfiletype=1, compression="deflate")
    return Seed(path.name, (path,), path.name, (path.name,))


# -- mutations ------------------------------------------------------------------------------
def flip_bits(data: bytearray, rng: random.Random) -> str:
    for _ in range(rng.randint(1, 16)):
        position = rng.randrange(len(data))
        data[position] ^= 1 << rng.randrange(8)
    return "bit flips"


def truncate(data: bytearray, rng: random.Random) -> str:
    cut = rng.randrange(len(data))
    del data[cut:]
    return "truncation"


_BIG = (b"\xff\xff\xff\x7f", b"\xff\xff\xff\xff", b"\x00\x00\x00\x40", b"\xfe\xff\x00\x00")


def inflate_length(data: bytearray, rng: random.Random) -> str:
    """Overwrite a 2- or 4-byte field in the header region with a huge value."""
    window = min(len(data), 4096)
    if window < 4:
        return flip_bits(data, rng)
    position = rng.randrange(0, window - 3) & ~1
    data[position : position + 4] = rng.choice(_BIG)
    return "length inflation"


_NUMBER = re.compile(rb"\d+")


def edit_header(data: bytearray, rng: random.Random) -> str:
    """Text headers: replace a number with an extreme one; binary: rewrite a header word."""
    if data[:1].isalnum() and b"\x00" not in data[:256]:
        numbers = list(_NUMBER.finditer(bytes(data[:4096])))
        if numbers:
            match = rng.choice(numbers)
            value = rng.choice([b"0", b"-1", b"999999999999", b"65536", b"1e308", b"nan", b"x"])
            data[match.start() : match.end()] = value
            return "header edit"
    return inflate_length(data, rng)


MUTATORS: tuple[Callable[[bytearray, random.Random], str], ...] = (
    flip_bits,
    truncate,
    inflate_length,
    edit_header,
)


@dataclass
class CampaignResult:
    cases: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    peak_rss_bytes: int = 0
    over_cap: int = 0

    def summary(self) -> str:
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(self.outcomes.items()))
        return (
            f"{self.cases} mutated files; {counts}; peak child memory "
            f"{self.peak_rss_bytes / 1024**2:,.0f} MiB"
        )


def classify(error: InputError) -> str:
    """Which outcome an InputError stands for (hangs, caps and reader bugs are failures)."""
    text = str(error)
    if "took longer than" in text:
        return "hang"
    if "the reader failed unexpectedly" in text:
        return "reader bug"
    if "needs more than" in text:
        return "memory cap"
    if "decoder crashed" in text:
        return "decoder crash"
    return "clear error"


def run_campaign(
    seeds: list[Seed],
    count: int,
    work: Path,
    *,
    seed: int = 2026,
    limits: ReadLimits = DEFAULT_LIMITS,
    workers: int = 2,
) -> CampaignResult:
    """Mutate the seeds ``count`` times (round robin) and read each mutant in the sandbox."""
    rng = random.Random(seed)
    plans = []
    for index in range(count):
        chosen = seeds[index % len(seeds)]
        plans.append(
            (index, chosen, rng.choice(chosen.mutable), rng.choice(MUTATORS), rng.random())
        )
    result = CampaignResult()

    def one(plan: tuple[int, Seed, str, Callable[[bytearray, random.Random], str], float]) -> None:
        index, chosen, victim, mutator, salt = plan
        folder = work / f"case-{index:05d}"
        folder.mkdir(parents=True)
        for source in chosen.files:
            shutil.copyfile(source, folder / source.name)
        data = bytearray((folder / victim).read_bytes())
        if not data:
            return
        how = mutator(data, random.Random(salt))
        (folder / victim).write_bytes(bytes(data))
        reports: list[ChildReport] = []
        label = f"{chosen.name} [{how} of {victim}, case {index}]"
        try:
            read_input_isolated(folder / chosen.target, limits, report=reports)
            outcome = "read"
        except InputError as exc:
            outcome = classify(exc)
            if outcome in ("hang", "reader bug"):
                result.failures.append(f"{label}: {exc}")
        except Exception as exc:  # an exception escaping the sandbox is the worst failure
            outcome = "uncaught"
            result.failures.append(f"{label}: uncaught {type(exc).__name__}: {exc}")
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        result.outcomes[outcome] += 1
        result.cases += 1
        for report in reports:
            result.peak_rss_bytes = max(result.peak_rss_bytes, report.peak_rss_bytes)
            if report.peak_rss_bytes > limits.child_memory_bytes:
                result.over_cap += 1

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, plans))
    return result
