"""De-identification of note text: recall on a planted-PHI set, date shifting, eponyms, offsets.

Run with ``-s`` to see the measured table (recall and precision per category, false positives
on MTSamples); the README quotes those figures.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import gzip
import random
import re
from collections import Counter
from pathlib import Path

import pytest

from clinic_app.domain.notes import PhiReplacement
from clinic_app.io.deid.text import _read_list, date_shift_for, scrub_text
from tests.io.phi_corpus import PlantedNote, generate_corpus

SECRET = b"test-secret-not-for-production"
#: Categories whose planted value must not appear anywhere in the output.
VERBATIM_CATEGORIES = ("NAME", "ID", "PHONE", "EMAIL", "ADDRESS", "IP")


@pytest.fixture(scope="module")
def corpus() -> list[PlantedNote]:
    return generate_corpus()


@pytest.fixture(scope="module")
def scrubbed(corpus: list[PlantedNote]) -> list[tuple[str, tuple[PhiReplacement, ...]]]:
    return [
        scrub_text(note.text, date_shift_days=date_shift_for(note.patient_key, SECRET))
        for note in corpus
    ]


def _covered(note: PlantedNote, replacements: tuple[PhiReplacement, ...], index: int) -> bool:
    span = note.planted[index]
    inside = {i for r in replacements for i in range(r.start, r.end)}
    return all(i in inside for i in range(span.start, span.end) if not note.text[i].isspace())


@functools.cache
def _census_names() -> frozenset[str]:
    """The US Census given names and surnames (not the international lists added later)."""
    return frozenset(
        name.lstrip("~").lower()
        for name in _read_list("first_names.txt") + _read_list("surnames.txt")
    )


def _in_gazetteer(value: str) -> bool:
    names = _census_names()
    return all(part.lower() in names for part in re.findall(r"[^\W\d_]{2,}", value))


def test_corpus_size_and_variety(corpus: list[PlantedNote]) -> None:
    assert len(corpus) >= 300
    assert len({note.style for note in corpus}) >= 5
    categories = Counter(span.category for note in corpus for span in note.planted)
    for category in ("NAME", "DATE", "ID", "PHONE", "EMAIL", "ADDRESS", "AGE>89"):
        assert categories[category] >= 50, category
    assert generate_corpus()[5].text == corpus[5].text  # seeded: the same every run
    world = [s for n in corpus for s in n.planted if s.category == "NAME"]
    outside = [s for s in world if not _in_gazetteer(s.value)]
    assert len(outside) >= 0.3 * len(world)  # many planted names are not in the gazetteer


def test_recall_and_precision_on_planted_phi(
    corpus: list[PlantedNote], scrubbed: list[tuple[str, tuple[PhiReplacement, ...]]]
) -> None:
    found: Counter[str] = Counter()
    total: Counter[str] = Counter()
    outside_found = outside_total = 0
    replaced: Counter[str] = Counter()
    true_replaced: Counter[str] = Counter()
    for note, (_, replacements) in zip(corpus, scrubbed, strict=True):
        for index, span in enumerate(note.planted):
            hit = _covered(note, replacements, index)
            total[span.category] += 1
            found[span.category] += hit
            if span.category == "NAME" and not _in_gazetteer(span.value):
                outside_total += 1
                outside_found += hit
        for replacement in replacements:
            replaced[replacement.category] += 1
            true_replaced[replacement.category] += any(
                replacement.start < s.end and s.start < replacement.end for s in note.planted
            )
    recall = {category: found[category] / total[category] for category in total}
    print(f"\nplanted-PHI set: {len(corpus)} notes, {sum(total.values())} planted spans")
    print(f"{'category':10} {'planted':>8} {'recall':>7} {'precision':>9}")
    for category in sorted(total):
        precision = true_replaced[category] / replaced[category] if replaced[category] else 1.0
        print(f"{category:10} {total[category]:8d} {recall[category]:7.3f} {precision:9.3f}")
    print(f"names not in the gazetteer: {outside_found}/{outside_total}")
    assert recall["NAME"] >= 0.95
    assert recall["ID"] >= 0.95
    assert outside_found / outside_total >= 0.95
    for category in ("DATE", "PHONE", "EMAIL", "ADDRESS", "AGE>89"):
        assert recall[category] >= 0.95, category


def test_no_planted_marker_survives(
    corpus: list[PlantedNote], scrubbed: list[tuple[str, tuple[PhiReplacement, ...]]]
) -> None:
    survivors = []
    for note, (output, replacements) in zip(corpus, scrubbed, strict=True):
        for index, span in enumerate(note.planted):
            if span.category in VERBATIM_CATEGORIES:
                pattern = r"(?<![\w'])" + re.escape(span.value) + r"(?![\w'])"
                if re.search(pattern, output):
                    survivors.append((span.category, span.value))
            elif not _covered(note, replacements, index):
                survivors.append((span.category, span.value))
            else:  # dates and ages: replaced by something else
                covering = [r for r in replacements if r.start <= span.start < r.end]
                assert (
                    covering
                    and covering[0].replacement != note.text[covering[0].start : covering[0].end]
                )
    assert len(survivors) <= 0.05 * sum(s.category == "NAME" for n in corpus for s in n.planted), (
        survivors[:20]
    )
    assert not [s for s in survivors if s[0] != "NAME"]


def test_dates_shift_in_their_own_format() -> None:
    cases = {
        "03/14/2021": "03/24/2021",
        "3/14/2021": "3/24/2021",
        "14.03.2021": "24.03.2021",
        "2021-03-14": "2021-03-24",
        "March 14, 2021": "March 24, 2021",
        "14 Mar 2021": "24 Mar 2021",
        "Mar-14-21": "Mar-24-21",
        "29-Sep-90": "9-Oct-90",
        "Dec 28, 2020": "Jan 7, 2021",
        "on the 3rd of May": "on the 13th of May",
        "SEPT 25 2019": "OCT 5 2019",
        "February 20, 2024": "March 1, 2024",  # 2024 is a leap year
        "12/25/19": "01/04/20",
        "03-May-21": "13-May-21",
        "28-May-21": "7-Jun-21",
        "May. 28, 2021": "Jun. 7, 2021",
        "May 28, 2021": "June 7, 2021",
    }
    for original, expected in cases.items():
        output, replacements = scrub_text(f"Seen {original}.", date_shift_days=10)
        assert output == f"Seen {expected}.", original
        assert [r.category for r in replacements] == ["DATE"]


def test_date_intervals_are_kept() -> None:
    text = "Admitted 03/14/2021 and discharged 2021-03-24; biopsy on April 2, 2021."
    for days in (-365, -200, -1, 1, 45, 365):
        _, replacements = scrub_text(text, date_shift_days=days)
        dates = [r.replacement for r in replacements if r.category == "DATE"]
        first = dt.datetime.strptime(dates[0], "%m/%d/%Y").date()
        second = dt.date.fromisoformat(dates[1])
        third = dt.datetime.strptime(dates[2], "%B %d, %Y").date()
        assert (second - first).days == 10
        assert (third - first).days == 19
        assert (first - dt.date(2021, 3, 14)).days == days


_FORMATS = (
    "%m/%d/%Y",
    "%Y-%m-%d",
    "%d.%m.%Y",
    "%B %d, %Y",
    "%d %b %Y",
    "%b-%d-%y",
    "%d-%b-%y",
    "%m/%d/%y",
    "%b. %d, %Y",
    "%d %B %Y",
)


def _parse(text: str) -> dt.date:
    for form in _FORMATS:
        try:
            parsed = dt.datetime.strptime(text, form).date()
        except ValueError:
            continue
        if parsed.year > 2030:  # strptime puts "63" in 2063; the planted dates end in 2023
            parsed = parsed.replace(year=parsed.year - 100)
        return parsed
    raise AssertionError(f"not a date in a planted format: {text!r}")


def test_intervals_in_the_planted_set(
    corpus: list[PlantedNote], scrubbed: list[tuple[str, tuple[PhiReplacement, ...]]]
) -> None:
    checked = 0
    for note, (_, replacements) in zip(corpus, scrubbed, strict=True):
        by_start = {r.start: r for r in replacements}
        shift = date_shift_for(note.patient_key, SECRET)
        for a, b, days in note.intervals:
            planted_a, planted_b = note.planted[a], note.planted[b]
            shifted_a = _parse(by_start[planted_a.start].replacement)
            shifted_b = _parse(by_start[planted_b.start].replacement)
            assert (shifted_b - shifted_a).days == days
            if "%y" not in planted_a.value:  # two-digit years may change century
                assert abs((shifted_a - _parse(planted_a.value)).days) in (shift, abs(shift))
            checked += 1
    assert checked >= 100


def test_date_shift_is_per_patient_and_keyed() -> None:
    shifts = [date_shift_for(f"patient-{i}".encode(), SECRET) for i in range(2000)]
    assert all(1 <= abs(s) <= 365 for s in shifts)
    assert min(shifts) < -300 and max(shifts) > 300
    assert date_shift_for(b"patient-1", SECRET) == shifts[1]
    other = [date_shift_for(f"patient-{i}".encode(), b"another secret") for i in range(50)]
    assert other != shifts[:50]


def test_ages_over_89() -> None:
    text = "A 94-year-old man, aged 101, and his 67 year old son. Age: 92. age: 81. 90 yo."
    output, replacements = scrub_text(text, date_shift_days=5)
    assert output == (
        "A 90+-year-old man, aged 90+, and his 67 year old son. Age: 90+. age: 81. 90+ yo."
    )
    assert {r.category for r in replacements} == {"AGE>89"}


def test_medical_eponyms_survive() -> None:
    text = (
        "History of Parkinson disease and Hodgkin lymphoma; ECG shows Wolff-Parkinson-White "
        "pattern. Foley catheter and Jackson-Pratt drain in place. Positive Babinski sign, "
        "Graves disease, Crohn's disease, Down syndrome, Bell's palsy, Austin Flint murmur, "
        "Swan-Ganz catheter, Reed-Sternberg cells, Gleason score 7, Apgar 9, Glasgow Coma Scale "
        "15, Homer Wright rosettes, Charcot-Marie-Tooth, Guillain-Barre syndrome, Parkinson's."
    )
    output, replacements = scrub_text(text, date_shift_days=30)
    assert output == text, replacements


def test_offsets_point_at_the_original_text() -> None:
    text = (
        "Patient: Okafor, Chidinma   MRN: 00482913\nSeen by Dr. Eero Virtanen on 03/14/2021. "
        "Call (617) 555-0199 or e-mail c.okafor@example.org. Lives at 12 Birchwood Lane, "
        "Lakeside, MA 02134. Ms. Okafor reports palpitations."
    )
    output, replacements = scrub_text(text, date_shift_days=-3, pseudonym="PSN-0001")
    originals = [(r.category, text[r.start : r.end]) for r in replacements]
    assert originals == [
        ("NAME", "Okafor, Chidinma"),
        ("ID", "00482913"),
        ("NAME", "Eero Virtanen"),
        ("DATE", "03/14/2021"),
        ("PHONE", "(617) 555-0199"),
        ("EMAIL", "c.okafor@example.org"),
        ("ADDRESS", "12 Birchwood Lane, Lakeside, MA 02134"),
        ("NAME", "Okafor"),
    ]
    rebuilt, cursor = [], 0
    for r in replacements:
        assert cursor <= r.start < r.end
        rebuilt += [text[cursor : r.start], r.replacement]
        cursor = r.end
    assert "".join([*rebuilt, text[cursor:]]) == output
    assert output.startswith("Patient: PSN-0001   MRN: [ID]\nSeen by Dr. [NAME] on 03/11/2021.")
    assert "Ms. PSN-0001 reports" in output


def test_other_identifiers() -> None:
    text = (
        "SSN 123-45-6789, acct # A99812345, accession no. S21-4471, encounter 7781234, "
        "member ID XZP88412, device serial number SN4471122, visit number 4412-88; "
        "portal https://portal.example.org/x?id=1 from 192.168.1.20 or fe80::1ff:fe23:4567:890a; "
        "fax 617-555-0100, PO Box 1234. Temp 38.2, BP 140/80, HR 72, pain 5/10, K 4.1."
    )
    output, replacements = scrub_text(text, date_shift_days=12)
    assert output == (
        "SSN [ID], acct # [ID], accession no. [ID], encounter [ID], member ID [ID], device "
        "serial number [ID], visit number [ID]; portal [URL] from [IP] or [IP]; fax [PHONE], "
        "[ADDRESS]. Temp 38.2, BP 140/80, HR 72, pain 5/10, K 4.1."
    )
    assert len(replacements) == 12


@pytest.mark.data
def test_wfdb_header_comments_keep_clinical_value(shared_data: Path) -> None:
    import wfdb

    header = wfdb.rdheader(str(shared_data / "ecg" / "wfdb-samples" / "s0010_re"))
    comments = list(header.comments)
    shift = date_shift_for(b"s0010_re", SECRET)
    cleaned = [scrub_text(line, date_shift_days=shift)[0] for line in comments]
    joined = "\n".join(cleaned)
    for clinical in (
        "age: 81",
        "sex: female",
        "Reason for admission: Myocardial infarction",
        "Additional diagnoses: Diabetes mellitus",
        "Medication pre admission: Isosorbit-Dinitrate Digoxin Glibenclamide",
        "Additional medication: Heparin Isosorbit-Mononitrate ASA Diazepam",
        "Amiloride+Chlorothiazide",
        "Lytic agent: Gamma-TPA",
        "140/80 mmHg",
        "Start lysis therapy (hh.mm): 19:45",
        "RIVA 70% proximal to ramus diagonalis_2",
        "Previous infarction (1) date: n/a",
    ):
        assert clinical in joined, clinical
    for date in ("01/10/1990", "29-Sep-90", "16-Oct-90"):
        assert date not in joined
    admission = next(line for line in cleaned if line.startswith("Admission date:"))
    shifted = dt.datetime.strptime(admission.split(": ")[1], "%d-%b-%y").date()
    assert (shifted - dt.date(1990, 9, 29)).days == shift
    catheter = next(line for line in cleaned if line.startswith("Catheterization date:"))
    assert (dt.datetime.strptime(catheter.split(": ")[1], "%d-%b-%y").date() - shifted).days == 17
    changed = sum(a != b for a, b in zip(comments, cleaned, strict=True))
    assert changed == 6  # the six date lines, nothing else


@pytest.mark.data
def test_false_positives_on_mtsamples(shared_data: Path) -> None:
    """MTSamples holds no real PHI: what the scrubber removes there (beyond its placeholder
    names and dates) measures how much clinical text it destroys."""
    csv.field_size_limit(10_000_000)
    with gzip.open(shared_data / "text" / "mtsamples_dev.csv.gz", "rt", encoding="utf-8") as f:
        texts = sorted({row["transcription"] for row in csv.DictReader(f) if row["transcription"]})
    random.Random(3).shuffle(texts)
    sample = texts[:300]
    words = scrubbed_words = 0
    by_category: Counter[str] = Counter()
    non_date_words = 0
    for text in sample:
        words += len(text.split())
        _, replacements = scrub_text(text, date_shift_days=17)
        for r in replacements:
            count = len(text[r.start : r.end].split())
            scrubbed_words += count
            by_category[r.category] += 1
            if r.category != "DATE":
                non_date_words += count
    rate = non_date_words / words
    print(f"\nMTSamples: {len(sample)} notes, {words:,} words; spans replaced: {dict(by_category)}")
    print(f"words replaced other than dates: {non_date_words} ({rate:.3%} of all words)")
    assert rate < 0.005


@pytest.mark.timeout(120)
def test_hostile_texts_of_the_maximum_size_finish() -> None:
    """No regular expression backtracks quadratically on a note of MAX_NOTE_CHARS."""
    rng = random.Random(5)
    texts = (
        "1" * 200_000,
        "1-" * 100_000,
        "Dr. " * 50_000,
        "A " * 100_000,
        "Mr. Okafor and Ms. Eze. " * 8_000,
        "Okonkwo Adeyemi " * 12_500,  # one long run of context-free name words
        "B. Allen, SMITH, HOPE " * 9_000,
        "".join(rng.choice("Aa1 .,:-/@#\n") for _ in range(200_000)),
    )
    for text in texts:
        output, replacements = scrub_text(text, date_shift_days=9)
        assert len(replacements) < len(text)
        assert output


# -- kinds of PHI that an independent held-out set found missed (issue 3); new sentences ------


def _scrub(text: str) -> str:
    return scrub_text(text, date_shift_days=10)[0]


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("Plan agreed with son Chinedu and wife Bronisława.", ["Chinedu", "Bronisława"]),
        ("Neighbour Eilidh found her; d/w Tomasz, f/u Nkechi in 2 weeks.", ["Eilidh", "Nkechi"]),
        ("Meds given per Thanh, w/ Abdirahman at the bedside; assist Oyelaran.", ["Thanh"]),
        ("Kwabena was at home when the pain began.", ["Kwabena"]),
        ("Pt Radosław understands and agrees.", ["Radosław"]),
        ("Also present: her cousin Mac Giolla Phádraig-Ní Chonaill.", ["Phádraig-Ní"]),
        ("Seen in clinic with Duc Anh Trinh, who speaks Vietnamese.", ["Duc Anh Trinh"]),
        ("Transferred care to Oyinkansola Adewale-Bakare today.", ["Adewale-Bakare"]),
    ],
)
def test_names_without_title_or_label(text: str, names: list[str]) -> None:
    output = _scrub(text)
    for name in names:
        assert name not in output, output
    assert "[NAME]" in output


def test_initials_all_capitals_and_lower_case_names() -> None:
    text = (
        "Slides submitted by K. Abernathy-Oduya and reviewed with R.Quigley.\n"
        "Confirmed by: WOJTASZEK\n"
        "MEDICATION RECONCILIATION  OKORONKWO-ADEYEMI, FOLAKE\n"
        "HISTOLOGY | BRANNIGAN, HOPE | F\n"
        "Patient: SMITH, HOPE\n"
        "overnight: pt robert jackson restless, given haloperidol.\n"
    )
    output = _scrub(text)
    for gone in ("Abernathy", "Quigley", "WOJTASZEK", "OKORONKWO", "FOLAKE", "BRANNIGAN", "HOPE"):
        assert gone not in output, output
    assert "robert" not in output and "jackson" not in output
    assert "MEDICATION RECONCILIATION" in output and "haloperidol" in output


def test_more_name_labels() -> None:
    text = (
        "Caller: Ignatius Obuya   Witness: Delphine Rousseau\n"
        "Reported: Fenella Marchetti. Pathologist: Ruaridh Fyfe\n"
        "Interpreted by: Anneliese Vrbová  Read by: Kofi Antwi-Boasiako\n"
        "Patient Przybylska, Jadwiga (see below)\n"
    )
    output = _scrub(text)
    assert output.count("[NAME]") >= 7, output
    assert "Caller:" in output and "Witness:" in output and "Read by:" in output


def test_ids_without_a_known_label() -> None:
    text = (
        "Ref (027-118-406), tube (QX558120), block KB22-40871, Case M19/55021, case 16-CY-8844, "
        "Rx# RXN338810, Enc# VIS-2016-772019, Order LAB/2017/40412, ref OR990123, "
        "member 7710 338 2201."
    )
    output = _scrub(text)
    for value in (
        "027-118-406",
        "QX558120",
        "KB22-40871",
        "M19/55021",
        "16-CY-8844",
        "RXN338810",
        "2016-772019",
        "LAB/2017/40412",
        "OR990123",
        "7710 338 2201",
    ):
        assert value not in output, (value, output)


def test_clinical_numbers_are_not_ids() -> None:
    text = (
        "Amoxicillin 500mg tid; 12-lead ECG, ST elevation V1-V6, QTc 450ms, BP 140/80, "
        "BP128/76; pT2N0M0; BRCA1 and HER2 negative, CD20 positive; I25.10 chronic IHD; "
        "years 2015-2019; order 500 mg; RR 18."
    )
    assert _scrub(text) == text


def test_more_date_forms() -> None:
    assert _scrub("Collected 07MAR2022 at 10:00.") == "Collected 17MAR2022 at 10:00."
    assert (
        _scrub("See 8/15 for results; Collected: 3/2.") == "See 8/25 for results; Collected: 3/12."
    )
    assert _scrub("Fell on the 8th of December.") == "Fell on the 18th of December."
    assert _scrub("Pain 5/10, took 1/2 tab.") == "Pain 5/10, took 1/2 tab."


def test_international_phones() -> None:
    output = _scrub("Mobile 07700 900461, home 020 7946 0958, office (0161) 496 0734.")
    assert output == "Mobile [PHONE], home [PHONE], office [PHONE]."


def test_more_address_forms() -> None:
    text = (
        "Lives at 77 Calle de Alcalá, Madrid; previously 1456 Sorrel Way, Apt 20D; "
        "farm on County Road 12; mail to 9 Quarry Bank Terrace; Boise, ID 83702."
    )
    output = _scrub(text)
    for value in ("Calle", "Alcal", "Sorrel", "20D", "Road 12", "Quarry", "Boise", "83702"):
        assert value not in output, (value, output)


def test_vocabulary_is_not_taken_for_names() -> None:
    text = (
        "To: Mary Wood, Zosyn clinic. He met King's College criteria. Mr. Brown was admitted. "
        "Brown urine noted. Started Xarelto and Lasix; Klebsiella and Stenotrophomonas "
        "maltophilia in culture; Vietnamese interpreter; Spanish-speaking; Leukemic infiltrate; "
        "Brachytherapy planned."
    )
    output = _scrub(text)
    for kept in (
        "Zosyn clinic",
        "King's College criteria",
        "Brown urine",
        "Xarelto",
        "Lasix",
        "Klebsiella",
        "Vietnamese",
        "Spanish-speaking",
        "Leukemic",
        "Brachytherapy",
    ):
        assert kept in output, (kept, output)
    assert "Mary" not in output and "Mr. [NAME]" in output


# -- kinds a second blind set found missed (issue 3, round 3); new sentences ---------------------


@pytest.mark.parametrize(
    ("text", "gone"),
    [
        ("hello marguerite, just confirming the clinic time", ["marguerite"]),
        ("thanks,\nsvetlana", ["svetlana"]),
        ("Obs done, escalated by dagmar at 14:00.", ["dagmar"]),
        ("her husband, joaquín, is the main carer", ["joaquín"]),
        ("ingrid called to say the sats probe fell off", ["ingrid"]),
        ("Pt's daughter (next of kin) siobhan rang the ward", ["siobhan"]),
    ],
)
def test_lower_case_given_names_in_name_positions(text: str, gone: list[str]) -> None:
    output = _scrub(text)
    for name in gone:
        assert name not in output, output
    assert "[NAME]" in output


def test_lower_case_clinical_words_stay() -> None:
    text = "Given asa by mouth, per protocol; referred to ortho; seen by pt and ot; total dose."
    assert _scrub(text) == text


def test_word_names_shown_by_a_verb_or_possessive() -> None:
    output = _scrub("Joy's mood is low. Faith reports poor sleep. Will review at 4 pm.")
    assert "Joy" not in output and "Faith" not in output
    assert "Will review" in output
    kept = "Brain was soft. Baby was feeding well. Parkinson's disease; Bell's palsy."
    assert _scrub(kept) == kept


@pytest.mark.parametrize(
    "text",
    [
        "FLETCHER, Ivy   Ward 7",
        "Lister-Mwangi, Tobias R",
        "de la Cruz, Marisol T.",
        "O'Dowd, Caoimhe",
        "Scrub: Haverford-Lin, Priya J   Circulator: Okwuosa, Ebele",
        "Tanvir Rahman, RN handed over to ADAEZE OBI, RN",
        "Discharge summary by Lucja Zielinska, PA-C",
        "Name: Thi Mai Pham",
    ],
)
def test_header_credential_and_label_names(text: str) -> None:
    output = _scrub(text)
    for word in re.findall(r"[^\W\d_]{3,}", text):
        if word in {
            "Ward",
            "Scrub",
            "Circulator",
            "handed",
            "over",
            "Discharge",
            "summary",
            "Name",
        }:
            assert word in output, output
        elif word not in {"by", "to", "PA"}:
            assert word not in output, (word, output)


def test_lists_of_drugs_and_brands_are_not_surname_first_name() -> None:
    text = "Weight programmes tried: NutriSystem, Jenny diet; Parkinson's, TIA and CHF."
    assert "NutriSystem" in _scrub(text) and "TIA" in _scrub(text)


def test_weekday_dates_and_date_times() -> None:
    assert _scrub("Review Tuesday 4 March.") == "Review Friday 14 March."
    assert _scrub("Seen Wed, 02/07/2024.") == "Seen Sat, 02/17/2024."
    assert _scrub("Taken 2024-11-30 08:15 in ED.") == "Taken 2024-12-10 08:15 in ED."
    assert _scrub("Admitted 11/30/2024 2215 via ED.") == "Admitted 12/10/2024 2215 via ED."
    assert _scrub("Given 11/30/2024 1000 mL.") == "Given 12/10/2024 1000 mL."
    assert _scrub("Repeat 2024-11-30T23:40:05 trop.") == "Repeat 2024-12-10T23:40:05 trop."


def test_month_year_and_partial_dates_after_tests() -> None:
    assert _scrub("Last colonoscopy Aug-19, again Nov '21.") == (
        "Last colonoscopy Sep-19, again Dec '21."
    )
    assert _scrub("Echo 6/2: EF 55%. Bloods 6/3 normal.") == (
        "Echo 6/12: EF 55%. Bloods 6/13 normal."
    )
    assert _scrub("Pain 7/10 and 1/2 tablet.") == "Pain 7/10 and 1/2 tablet."


def test_ages_over_89_in_words() -> None:
    output = _scrub("A ninety-six-year-old man; wife is aged ninety one; ninety percent stenosis.")
    assert output == "A 90+-year-old man; wife is aged 90+; ninety percent stenosis."
    assert _scrub("One hundred and one years old.") == "90+ years old."


def test_international_postcodes() -> None:
    text = (
        "Flat 12C, 9 Residency Road, Chennai 600017. 4 Rue Cler, 75007 Paris. "
        "Leeds LS1 4DY. Halifax NS B3H 4R2. Not: T2N0M0, 5000 IU, CD4 2.1."
    )
    output = _scrub(text)
    for value in ("600017", "75007", "LS1 4DY", "B3H 4R2", "Residency"):
        assert value not in output, (value, output)
    assert "T2N0M0, 5000 IU, CD4 2.1." in output


def test_terminology_codes_devices_and_vitals_are_kept() -> None:
    text = (
        "Dx SNOMED 22298006 (MI), ICD-10-CM I21.09, LOINC 718-7, CPT 93000, SCTID: 195967001. "
        "Dexcom G7 and Zio XT fitted; Optiflow at 40 L; Seretide 125 inhaler; Vmax 4.1 m/s; "
        "RR 26, HR 104, SpO2 93%."
    )
    assert _scrub(text) == text
    assert _scrub("MRN 55012345") == "MRN [ID]"


def test_label_words_are_not_names() -> None:
    text = "Referrer: Dr Oyelowo. Callback requested. Adm via ED. Hosp course uneventful."
    output = _scrub(text)
    assert output.startswith("Referrer: ") and "Oyelowo" not in output
    assert output.endswith("Callback requested. Adm via ED. Hosp course uneventful.")
