"""Second, blind held-out set of clinical notes with planted PHI, to measure ``scrub_text``.

Written without looking at the scrubber or at the first corpora, so that nobody tuning the
scrubber has seen it. ``generate_notes(seed)`` builds the same notes for the same seed: 13 styles
of EHR text (SOAP progress notes, operative notes, ICU flowsheet comments, letters to GPs, lab,
pathology, radiology and ECG/Holter reports, portal messages, triage notes, discharge summaries,
handovers, telephone encounters) with patients, relatives and staff named from 16 origins in the
formats real notes use, record numbers of many kinds, dates, phones, e-mails, addresses, URLs, IPs
and ages over 89. Clinical terms that are not PHI (drugs, eponyms, anatomy, scores, labs, devices,
codes, vitals, doses, ages up to 89) are planted too, to measure over-scrubbing.
``score(notes, results)`` turns the scrubber's replacements into recall/precision tallies.
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

# --------------------------------------------------------------------------------------------
# Names: (male first names, female first names, surnames) per origin, written for this set.
NAMES: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "english": (
        ("James", "Oliver", "George", "Henry", "Thomas", "Edward", "Nathan", "Gareth"),
        ("Emily", "Charlotte", "Sophie", "Hannah", "Rebecca", "Lucy", "Megan", "Abigail"),
        (
            "Thompson",
            "Wilson",
            "Harrison",
            "Atkinson",
            "Cartwright",
            "Pemberton",
            "Smith-Jones",
            "Whitfield",
            "Holloway",
            "Fairbanks",
        ),
    ),
    "hispanic": (
        ("José", "Alejandro", "Mateo", "Javier", "Diego", "Rodrigo", "Guillermo"),
        ("María", "Lucía", "Ximena", "Guadalupe", "Valentina", "Camila", "Marisol"),
        (
            "García López",
            "Hernández",
            "Núñez",
            "de la Cruz",
            "Villanueva",
            "Gutiérrez",
            "Castillo",
            "Ramírez",
            "Echeverría",
        ),
    ),
    "chinese": (
        ("Wei", "Jianguo", "Haoran", "Zhiwei", "Yusheng", "Junjie", "Chen"),
        ("Xiaoling", "Meiling", "Yanping", "Shu Fen", "Jiayi", "Huimin", "Ling"),
        ("Zhang", "Liu", "Huang", "Zhou", "Xu", "Guo", "Tang", "Li", "Wang"),
    ),
    "south_asian": (
        ("Rajesh", "Arjun", "Vikram", "Sanjay", "Harpreet", "Imran", "Venkatesh"),
        ("Priya", "Ananya", "Lakshmi", "Deepika", "Sunita", "Kavitha", "Nusrat"),
        (
            "Patel",
            "Sharma",
            "Krishnamurthy",
            "Chatterjee",
            "Gill",
            "Reddy",
            "Banerjee",
            "Subramanian",
            "Chowdhury",
        ),
    ),
    "arabic": (
        ("Mohammed", "Ahmed", "Khalid", "Youssef", "Omar", "Tariq", "Hamza"),
        ("Fatima", "Aisha", "Layla", "Mariam", "Noor", "Huda", "Rania"),
        (
            "Al-Rashid",
            "Haddad",
            "El-Sayed",
            "Mansour",
            "Abu-Zaid",
            "Khoury",
            "Nasser",
            "bin Saleh",
            "Aziz",
        ),
    ),
    "west_african": (
        ("Chukwuemeka", "Oluwaseun", "Kwame", "Babatunde", "Obinna", "Kofi", "Ifeanyi"),
        ("Ngozi", "Adaeze", "Folasade", "Chiamaka", "Abena", "Yetunde", "Oluwakemi"),
        (
            "Okafor",
            "Adeyemi",
            "Mensah",
            "Nwosu",
            "Oyelaran",
            "Boateng",
            "Eze",
            "Ogunleye",
            "Asante",
        ),
    ),
    "vietnamese": (
        ("Minh", "Quang", "Duc", "Thanh", "Tuan", "Huy"),
        ("Thi Lan", "Thu Trang", "Ngoc Anh", "Mai", "Hoa", "Phuong"),
        ("Nguyen", "Tran", "Pham", "Hoang", "Vu", "Dang", "Bui", "Truong"),
    ),
    "korean": (
        ("Min-jun", "Seo-jun", "Ji-hoon", "Dong-hyun", "Sung-min", "Jae-won"),
        ("Ji-woo", "Seo-yeon", "Hye-jin", "Eun-ji", "Soo-ah", "Yuna"),
        ("Kim", "Park", "Choi", "Jung", "Kang", "Yoon", "Jang", "Lim"),
    ),
    "japanese": (
        ("Hiroshi", "Takeshi", "Kenji", "Daisuke", "Haruto", "Shota"),
        ("Yuki", "Haruka", "Akiko", "Emiko", "Sakura", "Naomi"),
        ("Tanaka", "Watanabe", "Yamamoto", "Nakamura", "Kobayashi", "Sato", "Inoue", "Matsumoto"),
    ),
    "slavic": (
        ("Dmitri", "Sergei", "Oleksandr", "Mikhail", "Bogdan", "Vladimir"),
        ("Anastasia", "Svetlana", "Oksana", "Yelena", "Tatiana", "Irina"),
        (
            "Ivanova",
            "Petrov",
            "Shevchenko",
            "Kuznetsov",
            "Bondarenko",
            "Sokolova",
            "Popov",
            "Melnyk",
        ),
    ),
    "polish": (
        ("Łukasz", "Tomasz", "Krzysztof", "Wojciech", "Grzegorz", "Paweł"),
        ("Agnieszka", "Małgorzata", "Katarzyna", "Zofia", "Joanna", "Beata"),
        (
            "Kowalski",
            "Wiśniewska",
            "Zieliński",
            "Szymańska",
            "Wróbel",
            "Krawczyk",
            "Grabowski",
            "Jabłońska",
        ),
    ),
    "irish": (
        ("Seán", "Cillian", "Declan", "Padraig", "Eoin", "Ciarán"),
        ("Siobhán", "Aoife", "Niamh", "Caoimhe", "Orla", "Gráinne"),
        (
            "O'Sullivan",
            "McCarthy",
            "Ó Brien",
            "Fitzgerald",
            "Gallagher",
            "Ní Bhriain",
            "Donnelly",
            "Quigley",
        ),
    ),
    "italian": (
        ("Giovanni", "Alessandro", "Luca", "Salvatore", "Francesco", "Matteo"),
        ("Giulia", "Francesca", "Chiara", "Alessia", "Rosaria", "Federica"),
        ("Rossi", "Esposito", "Bianchi", "D'Angelo", "Lombardi", "Ferraro", "Colombo", "De Luca"),
    ),
    "german": (
        ("Jürgen", "Matthias", "Klaus", "Stefan", "Wolfgang", "Henrik"),
        ("Ursula", "Sabine", "Anke", "Jutta", "Heike", "Zoë"),
        ("Müller", "Schneider", "Fischer", "Weiß", "Hoffmann", "Schäfer", "van der Berg", "Krüger"),
    ),
    "greek_turkish": (
        ("Dimitrios", "Konstantinos", "Mehmet", "Emre", "Yiannis", "Burak"),
        ("Eleni", "Despina", "Ayşe", "Zeynep", "Katerina", "Elif"),
        (
            "Papadopoulos",
            "Georgiou",
            "Yılmaz",
            "Çelik",
            "Nikolaidis",
            "Demir",
            "Öztürk",
            "Karamanlis",
        ),
    ),
    "persian_somali": (
        ("Reza", "Farhad", "Dariush", "Abdirahman", "Mahamed", "Cyrus"),
        ("Shirin", "Parisa", "Maryam", "Hodan", "Ubah", "Faduma"),
        ("Hosseini", "Tehrani", "Farahani", "Warsame", "Abdullahi", "Jama", "Rostami", "Hirsi"),
    ),
    # English-language names that are also ordinary words.
    "word_names": (
        ("Will", "Hunter", "Chase", "Rusty", "Sonny", "Cash", "Sterling"),
        ("Rose", "Hope", "Grace", "Joy", "Faith", "Dawn", "Ivy", "Pearl", "Summer", "Iris"),
        (
            "Brown",
            "Gray",
            "Green",
            "Young",
            "King",
            "Baker",
            "Cook",
            "Hill",
            "Wood",
            "Frost",
            "Little",
            "Moody",
            "Fox",
            "Price",
            "Sharp",
            "Stone",
            "Rich",
            "Hale",
        ),
    ),
}

ORIGIN_WEIGHTS: dict[str, int] = {origin: 6 for origin in NAMES} | {"english": 14, "word_names": 9}

# --------------------------------------------------------------------------------------------
# Clinical terms that are NOT PHI.
TERMS: dict[str, tuple[str, ...]] = {
    "drug": (
        "metoprolol",
        "apixaban 5 mg BD",
        "Keppra",
        "furosemide 40mg IV",
        "Lasix",
        "Augmentin",
        "atorvastatin 80",
        "enoxaparin 40 mg SC",
        "Tazocin 4.5 g",
        "ondansetron",
        "levothyroxine 100 mcg",
        "Entresto",
        "Ozempic",
        "tramadol",
        "co-codamol 30/500",
        "vancomycin",
        "Humalog",
        "Lantus 22 units",
        "Ventolin",
        "Seretide",
        "clopidogrel",
        "warfarin",
        "digoxin",
        "amiodarone",
        "Plavix",
        "Xarelto",
        "Zoladex",
        "Herceptin",
    ),
    "eponym": (
        "Parkinson's disease",
        "Crohn's disease",
        "Hodgkin lymphoma",
        "Babinski sign",
        "Murphy's sign",
        "Wells score",
        "Graves' disease",
        "Hashimoto thyroiditis",
        "Foley catheter",
        "Swan-Ganz catheter",
        "Whipple procedure",
        "Nissen fundoplication",
        "Roux-en-Y bypass",
        "Hartmann's procedure",
        "Barrett's oesophagus",
        "Wolff-Parkinson-White pattern",
        "Brugada pattern",
        "Mobitz type II block",
        "Cheyne-Stokes breathing",
        "Kussmaul breathing",
        "Trendelenburg position",
        "Epley manoeuvre",
        "McMurray test",
        "Lachman test",
        "Phalen's test",
        "Tinel's sign",
        "Romberg test",
        "Osler nodes",
        "Janeway lesions",
        "Virchow's node",
        "Guillain-Barré",
        "Alzheimer's dementia",
        "Down syndrome",
        "Kaposi sarcoma",
        "Burkitt lymphoma",
        "Ewing sarcoma",
        "Wilms tumour",
        "Meckel's diverticulum",
        "Addison's disease",
        "Cushing's syndrome",
        "Bell's palsy",
        "Lyme disease",
        "Raynaud's phenomenon",
        "Sjögren's syndrome",
        "Takotsubo cardiomyopathy",
        "Glasgow Coma Scale",
    ),
    "anatomy": (
        "circle of Willis",
        "bundle of His",
        "Purkinje fibres",
        "Broca's area",
        "loop of Henle",
        "Eustachian tube",
        "Achilles tendon",
        "Fallopian tube",
        "islets of Langerhans",
        "sphincter of Oddi",
        "ampulla of Vater",
        "pouch of Douglas",
        "Scarpa's fascia",
        "Hesselbach's triangle",
        "Calot's triangle",
        "Wharton's duct",
    ),
    "score": (
        "CHA2DS2-VASc 4",
        "HAS-BLED 2",
        "NIHSS 6",
        "GCS 14/15",
        "MELD 18",
        "Child-Pugh B",
        "APACHE II 21",
        "SOFA 7",
        "qSOFA 2",
        "CURB-65 3",
        "PHQ-9 of 14",
        "MMSE 24/30",
        "MoCA 22/30",
        "Gleason 3+4=7",
        "BI-RADS 4",
        "ASA III",
        "Mallampati II",
        "Rockall 5",
        "Braden 13",
        "NEWS2 6",
        "TIMI 3",
        "Apgar 9",
        "Bishop score 7",
    ),
    "lab": (
        "HbA1c 58 mmol/mol",
        "eGFR 42",
        "troponin I 0.34",
        "NT-proBNP 3400",
        "CRP 112",
        "ESR 64",
        "INR 2.6",
        "APTT 38 s",
        "ALT 88",
        "LDH 410",
        "TSH 0.02",
        "free T4 31",
        "PSA 9.4",
        "CEA 12",
        "CA-125 340",
        "Ki-67 35%",
        "HER2 2+",
        "ER 8/8",
        "lactate 4.1",
        "Hb 84 g/L",
        "WCC 17.2",
        "platelets 96",
        "Na 128",
        "K 5.9",
        "ferritin 12",
    ),
    "device": (
        "Medtronic Azure pacemaker",
        "Boston Scientific ICD",
        "MitraClip",
        "Dexcom G7",
        "FreeStyle Libre",
        "Impella CP",
        "VA-ECMO",
        "BiPAP",
        "Philips Trilogy ventilator",
        "Omnipod",
        "Hickman line",
        "PICC line",
        "Mirena IUS",
        "Jackson-Pratt drain",
        "Blake drain",
        "Da Vinci Xi",
        "Zio patch",
        "Holter monitor",
        "Optiflow",
    ),
    "code": (
        "ICD-10 I48.0",
        "ICD-10 C50.9",
        "SNOMED CT 22298006",
        "SNOMED 49436004",
        "LOINC 2160-0",
        "CPT 93000",
        "CPT 88305",
        "ICD-10 J18.9",
        "HL7 ORU^R01",
    ),
    "vital": (
        "BP 142/88",
        "BP 98/61",
        "HR 112",
        "RR 24",
        "SpO2 91% on 4L",
        "T 38.4",
        "MAP 63",
        "CVP 12",
        "BP 176/94",
        "HR 48",
        "EF 35%",
        "QTc 472 ms",
        "PR 210 ms",
        "QRS 132 ms",
    ),
    "dose": (
        "1/2 tab nocte",
        "2/7 of IV abx",
        "3/52 course",
        "take 1-2 tabs QDS PRN",
        "5/7 hx",
        "10 mg/kg",
        "0.5 mL/h",
        "7/10 pain",
        "4/12 ago",
        "25 mcg/h",
    ),
    "pain": ("7/10", "4/10 at rest", "8/10 on movement", "3/10 with PRN oxycodone"),
    "interval": ("3/52", "6/52", "2/12", "4-6 weeks", "3 months"),
    "echo": ("LVEF 35%", "EF 55%", "TAPSE 14 mm", "E/e' 16", "AV Vmax 4.2 m/s"),
    "rhythm": (
        "Wolff-Parkinson-White pattern",
        "Brugada pattern",
        "Mobitz type II block",
        "paroxysmal AF",
        "NSVT x3",
        "Wenckebach",
    ),
    "ecg": ("QTc 472 ms", "PR 210 ms", "QRS 132 ms", "HR 48", "QTc 438 ms", "axis -45"),
}

#: Reporting group of each term list.
TERM_GROUP: dict[str, str] = {k: k for k in TERMS} | {
    "pain": "dose/fraction",
    "interval": "dose/fraction",
    "dose": "dose/fraction",
    "echo": "vital",
    "ecg": "vital",
    "rhythm": "eponym",
}


@dataclass(frozen=True, slots=True)
class Planted:
    """A planted PHI span: where it is, its category and how it was planted."""

    start: int
    end: int
    category: str
    value: str
    kind: str = ""  # ID kind, date format, phone/address region, ...
    context: str = ""  # names: title / label / relation / bare
    origin: str = ""  # names: culture of the name lists
    fmt: str = ""  # names: surface format
    role: str = ""  # names: patient / relative / clinician / staff


@dataclass(frozen=True, slots=True)
class Term:
    """A planted clinical term that is NOT PHI and should be left alone."""

    start: int
    end: int
    kind: str
    value: str


@dataclass(frozen=True, slots=True)
class HeldoutNote:
    """One generated note with its planted PHI and non-PHI terms."""

    style: str
    text: str
    phi: tuple[Planted, ...]
    terms: tuple[Term, ...]


@dataclass(slots=True)
class _Person:
    first: str
    last: str
    middle: str
    origin: str
    female: bool
    role: str


_STOP_SURNAME_WORDS = {
    w.strip("'s").lower() for terms in TERMS.values() for t in terms for w in re.split(r"[\s-]", t)
}


def _people_pool() -> None:
    """Names must not be words of planted clinical terms, or a kept term would read as a leak."""
    for male, female, last in NAMES.values():
        for name in (*male, *female, *last):
            assert name.lower() not in _STOP_SURNAME_WORDS, name


_people_pool()

_RELATIONS_F = ("wife", "daughter", "sister", "mother", "niece", "partner", "granddaughter")
_RELATIONS_M = ("husband", "son", "brother", "father", "nephew", "partner", "grandson")

_CONTEXT_FORMATS: dict[str, tuple[str, ...]] = {
    "label": (
        "first_last",
        "first_last",
        "last_comma_first",
        "caps_last_comma_first",
        "caps_full",
        "first_middle_last",
        "initial_last",
        "last_comma_first_middle",
    ),
    "title": ("last", "last", "last", "first_last", "caps_last", "initial_last"),
    "relation": ("first", "first", "first_last", "lower_first", "first_initial"),
    "bare": ("first", "first_last", "lower_first", "first", "last"),
}


class _Builder:
    """Concatenates text while recording where planted PHI and terms land."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.pos = 0
        self.phi: list[Planted] = []
        self.terms: list[Term] = []

    def text(self, s: str) -> None:
        self.parts.append(s)
        self.pos += len(s)

    def plant(self, s: str, category: str, **meta: str) -> None:
        self.phi.append(Planted(self.pos, self.pos + len(s), category, s, **meta))
        self.text(s)

    def term(self, s: str, kind: str) -> None:
        self.terms.append(Term(self.pos, self.pos + len(s), kind, s))
        self.text(s)


@dataclass(slots=True)
class _NoteState:
    rng: random.Random
    b: _Builder
    people: dict[str, _Person] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Value generators.


def _pick_origin(rng: random.Random) -> str:
    origins = list(ORIGIN_WEIGHTS)
    return rng.choices(origins, weights=[ORIGIN_WEIGHTS[o] for o in origins])[0]


def _new_person(st: _NoteState, role_key: str) -> _Person:
    rng = st.rng
    role = {"pt": "patient", "rel": "relative", "rel2": "relative", "rn": "staff", "rn2": "staff"}
    origin = _pick_origin(rng)
    male, female, last = NAMES[origin]
    is_female = rng.random() < 0.5
    firsts = female if is_female else male
    first = rng.choice(firsts)
    middle = rng.choice([n for n in firsts if n != first])
    surname = rng.choice(last)
    pt = st.people.get("pt")
    if role_key.startswith("rel") and pt is not None and rng.random() < 0.4:
        origin, surname = pt.origin, pt.last
        male, female, _ = NAMES[origin]
        first = rng.choice(female if is_female else male)
    used = {p.first for p in st.people.values()} | {p.last for p in st.people.values()}
    if first in used and role_key not in ("rel", "rel2"):
        first = rng.choice(firsts)
    return _Person(first, surname, middle, origin, is_female, role.get(role_key, "clinician"))


def _person(st: _NoteState, key: str) -> _Person:
    if key not in st.people:
        st.people[key] = _new_person(st, key)
    return st.people[key]


def _initial(name: str) -> str:
    return name[0]


def _render_name(p: _Person, fmt: str, rng: random.Random) -> tuple[str, str]:
    """Return (surface text of the span, suffix text after the span)."""
    dot = "." if rng.random() < 0.5 else ""
    match fmt:
        case "first_last":
            return f"{p.first} {p.last}", ""
        case "first_middle_last":
            return f"{p.first} {p.middle} {p.last}", ""
        case "last_comma_first":
            return f"{p.last}, {p.first}", ""
        case "last_comma_first_middle":
            return f"{p.last}, {p.first} {_initial(p.middle)}{dot}", ""
        case "caps_last_comma_first":
            first = p.first.upper() if rng.random() < 0.5 else p.first
            return f"{p.last.upper()}, {first}", ""
        case "caps_full":
            return f"{p.first.upper()} {p.last.upper()}", ""
        case "initial_last":
            return f"{_initial(p.first)}{dot} {p.last}", ""
        case "first_initial":
            return f"{p.first} {_initial(p.last)}{dot}", ""
        case "first":
            return p.first, ""
        case "last":
            return p.last, ""
        case "caps_last":
            return p.last.upper(), ""
        case "lower_first":
            return p.first.lower(), ""
        case "poss_first":
            return p.first, "'s"
        case "poss_last":
            return p.last, "'s"
    raise ValueError(fmt)


def _digits(rng: random.Random, n: int) -> str:
    return "".join(str(rng.randrange(10)) for _ in range(n))


def _letters(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(n))


def _mrn_value(rng: random.Random) -> str:
    makers: list[Callable[[], str]] = [
        lambda: _digits(rng, 7),
        lambda: _digits(rng, 8),
        lambda: "00" + _digits(rng, 6),
        lambda: _letters(rng, 1) + _digits(rng, 7),
        lambda: _letters(rng, 2) + _digits(rng, 6),
        lambda: f"{_digits(rng, 3)}-{_digits(rng, 2)}-{_digits(rng, 2)}",
        lambda: f"{_letters(rng, 3)}{_digits(rng, 5)}",
        lambda: f"{_digits(rng, 2)}-{_digits(rng, 6)}",
    ]
    return rng.choice(makers)()


_ID_LABELS: dict[str, tuple[tuple[str, ...], Callable[[random.Random], str]]] = {
    "mrn": (
        (
            "MRN: ",
            "MRN ",
            "MRN#",
            "Med Rec #: ",
            "Hosp No. ",
            "Hospital number ",
            "Unit No: ",
            "UR: ",
            "URN ",
            "Patient ID: ",
            "PID ",
            "mrn ",
            "Chart #",
        ),
        _mrn_value,
    ),
    "nhs_number": (
        ("NHS No: ", "NHS number ", "NHS# ", "NHS: "),
        lambda r: (
            f"{_digits(r, 3)} {_digits(r, 3)} {_digits(r, 4)}"
            if r.random() < 0.7
            else _digits(r, 10)
        ),
    ),
    "ssn": (
        ("SSN: ", "SSN ", "Social Security # ", "SS#: "),
        lambda r: f"{r.randrange(100, 899)}-{_digits(r, 2)}-{_digits(r, 4)}",
    ),
    "accession": (
        ("Acc#: ", "Accession No. ", "Accession: ", "ACC ", "Study ID: "),
        lambda r: r.choice(
            [
                f"RAD-{r.randrange(19, 25)}-{_digits(r, 7)}",
                f"CT{_digits(r, 8)}",
                f"{_letters(r, 2)}{_digits(r, 9)}",
                f"A{_digits(r, 10)}",
            ]
        ),
    ),
    "specimen": (
        ("Specimen: ", "Lab no: ", "Case #: ", "Surgical path no. ", "Block ", "Sample ID "),
        lambda r: r.choice(
            [
                f"S{r.randrange(19, 25)}-{_digits(r, 5)}",
                f"H{r.randrange(19, 25)}/{_digits(r, 5)}",
                f"SP-{r.randrange(2019, 2025)}-{_digits(r, 6)}",
                f"{r.randrange(19, 25)}BX{_digits(r, 5)}",
            ]
        ),
    ),
    "encounter": (
        ("CSN: ", "Encounter #: ", "Visit ID ", "Episode no. ", "FIN ", "Adm no "),
        lambda r: r.choice(
            [
                _digits(r, 9),
                f"E{_digits(r, 9)}",
                f"V{_digits(r, 7)}",
                f"{_digits(r, 4)}-{_digits(r, 6)}",
            ]
        ),
    ),
    "insurance": (
        ("Member ID: ", "Medicare no. ", "Policy # ", "Health card ", "Medicaid ID ", "Ins ID: "),
        lambda r: r.choice(
            [
                f"{_letters(r, 3)}{_digits(r, 9)}",
                f"{_digits(r, 4)} {_digits(r, 5)} {r.randrange(1, 9)}",
                f"{_digits(r, 4)}-{_digits(r, 3)}-{_digits(r, 3)}-{_letters(r, 2)}",
                f"{_digits(r, 1)}{_letters(r, 2)}{_digits(r, 1)}-{_letters(r, 2)}{_digits(r, 1)}-"
                f"{_letters(r, 2)}{_digits(r, 2)}",
            ]
        ),
    ),
    "device_serial": (
        ("serial no. ", "SN: ", "S/N ", "serial # "),
        lambda r: f"{_letters(r, 3)}{_digits(r, 6)}{_letters(r, 1)}",
    ),
    "licence": (
        ("NPI ", "GMC ", "DEA# ", "AHPRA MED", "Lic. "),
        lambda r: r.choice([_digits(r, 10), _digits(r, 7), f"{_letters(r, 2)}{_digits(r, 7)}"]),
    ),
}

_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _date(rng: random.Random, kind: str) -> tuple[str, str]:
    y = rng.randrange(1928, 1990) if kind == "dob" else rng.randrange(2019, 2026)
    m = rng.randrange(1, 13)
    d = rng.randrange(1, 29)
    mon = _MONTHS[m - 1]
    hh, mm = rng.randrange(24), rng.randrange(60)
    choices: list[tuple[str, str]] = [
        (f"{m:02d}/{d:02d}/{y}", "mm/dd/yyyy"),
        (f"{d}/{m}/{y}", "d/m/yyyy"),
        (f"{y}-{m:02d}-{d:02d}", "iso"),
        (f"{d:02d}-{mon[:3]}-{y}", "dd-Mon-yyyy"),
        (f"{mon} {d}, {y}", "Month d, yyyy"),
        (f"{d}{_ordinal(d)} {mon} {y}", "dth Month yyyy"),
        (f"{d:02d}.{m:02d}.{y}", "dd.mm.yyyy"),
        (f"{m}/{d}/{y % 100:02d}", "m/d/yy"),
        (f"{d} {mon[:3].upper()} {y}", "d MON yyyy"),
    ]
    if kind != "dob":
        choices += [
            (f"{mon} {y}", "partial Month yyyy"),
            (f"{m}/{d}", "partial m/d"),
            (f"{d}/{m}", "partial d/m"),
            (f"{d} {mon}", "partial d Month"),
            (f"{mon[:3]} {d}", "partial Mon d"),
            (f"{_WEEKDAYS[rng.randrange(7)]} {d} {mon}", "weekday d Month"),
            (f"{y}-{m:02d}-{d:02d} {hh:02d}:{mm:02d}", "iso datetime"),
            (f"{m:02d}/{d:02d}/{y} {hh:02d}{mm:02d}", "datetime 24h"),
            (f"{mon[:3]}-{y % 100:02d}", "partial Mon-yy"),
        ]
    return rng.choice(choices)


def _ordinal(d: int) -> str:
    if d in (11, 12, 13):
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(d % 10, "th")


def _phone(rng: random.Random, region: str) -> tuple[str, str]:
    a, b = rng.randrange(201, 989), rng.randrange(200, 999)
    c = _digits(rng, 4)
    us = [f"({a}) {b}-{c}", f"{a}-{b}-{c}", f"{a}.{b}.{c}", f"+1 {a} {b} {c}", f"1-{a}-{b}-{c}"]
    intl = [
        f"020 7{_digits(rng, 3)} {_digits(rng, 4)}",
        f"+44 7{_digits(rng, 3)} {_digits(rng, 6)}",
        f"07{_digits(rng, 3)} {_digits(rng, 3)} {_digits(rng, 3)}",
        f"+91 9{_digits(rng, 4)} {_digits(rng, 5)}",
        f"(02) 9{_digits(rng, 3)} {_digits(rng, 4)}",
        f"+61 4{_digits(rng, 2)} {_digits(rng, 3)} {_digits(rng, 3)}",
        f"+49 30 {_digits(rng, 8)}",
        f"+33 1 {_digits(rng, 2)} {_digits(rng, 2)} {_digits(rng, 2)} {_digits(rng, 2)}",
        f"+234 803 {_digits(rng, 3)} {_digits(rng, 4)}",
        f"+353 87 {_digits(rng, 3)} {_digits(rng, 4)}",
    ]
    if region == "us" or (region == "any" and rng.random() < 0.5):
        return rng.choice(us), "us"
    return rng.choice(intl), "international"


_STREETS = (
    "Elm Street",
    "Maple Ave",
    "Kingsley Road",
    "Wattle Avenue",
    "Jacaranda Crescent",
    "Oak Hollow Dr",
    "Harbour View Terrace",
    "Mill Lane",
    "Pemberton Close",
    "Sycamore Blvd",
)


def _address(rng: random.Random, region: str) -> tuple[str, str]:
    n = rng.randrange(2, 2999)
    st = rng.choice(_STREETS)
    us = [
        f"{n} {st}, Springfield, IL 627{_digits(rng, 2)}",
        f"{n} W {rng.randrange(2, 99)}th St Apt {rng.randrange(1, 20)}B, "
        f"New York, NY 100{_digits(rng, 2)}",
        f"{n} {st}\nAustin, TX 787{_digits(rng, 2)}",
        f"PO Box {rng.randrange(10, 9999)}, Bozeman, MT 597{_digits(rng, 2)}",
    ]
    intl = [
        f"Flat {rng.randrange(1, 30)}, {n} {st}, Leeds LS6 {rng.randrange(1, 9)}AB",
        f"{n} {st}\nFitzroy VIC 30{_digits(rng, 2)}",
        f"{rng.randrange(1, 400)} Rue Sainte-Catherine, Montréal QC H2X 1L4",
        f"Hauptstraße {rng.randrange(1, 200)}, 10115 Berlin",
        f"Flat {rng.randrange(1, 9)}B, {rng.randrange(1, 90)} MG Road, "
        f"Bengaluru 5600{_digits(rng, 2)}",
        f"{n} {st}, Dunedin 90{_digits(rng, 2)}, New Zealand",
    ]
    if region == "us" or (region == "any" and rng.random() < 0.5):
        return rng.choice(us), "us"
    return rng.choice(intl), "international"


_DOMAINS = ("gmail.com", "yahoo.co.uk", "outlook.com", "nhs.net", "hotmail.fr", "icloud.com")


def _email(rng: random.Random, p: _Person) -> str:
    first = _ascii(p.first).lower().replace(" ", "")
    last = _ascii(p.last).lower().replace(" ", "").replace("'", "")
    local = rng.choice(
        [f"{first}.{last}", f"{first[0]}{last}{rng.randrange(10, 99)}", f"{first}_{last[:3]}"]
    )
    return f"{local}@{rng.choice(_DOMAINS)}"


def _ascii(s: str) -> str:
    s = s.replace("ß", "ss").replace("ł", "l").replace("Ł", "L").replace("ı", "i")
    return unicodedata.normalize("NFKD", s).encode("ascii", "ignore").decode("ascii")


def _age_over_89(rng: random.Random) -> tuple[str, str]:
    age = rng.randrange(90, 104)
    words = {
        90: "ninety",
        91: "ninety-one",
        92: "ninety-two",
        93: "ninety-three",
        94: "ninety-four",
        95: "ninety-five",
        96: "ninety-six",
        97: "ninety-seven",
    }
    choices = [
        (f"{age}", f"{age}yo", "yo"),
        (f"{age}", f"{age} y/o", "y/o"),
        (f"{age}", f"{age}-year-old", "-year-old"),
        (f"{age}", f"{age} years", "years"),
    ]
    if age in words:
        choices.append((words[age], f"{words[age]}-year-old", "words"))
    value, _surface, kind = rng.choice(choices)
    return value, kind


# --------------------------------------------------------------------------------------------
# Template expansion: [[a|b|c]] chooses one alternative, {slot} plants a value.

_ALT = re.compile(r"\[\[((?:(?!\[\[|\]\]).)*)\]\]", re.DOTALL)
_SLOT = re.compile(r"\{([^{}]+)\}")
_ROLE_KEYS = ("pt", "rel", "rel2", "dr", "dr2", "dr3", "rn", "rn2")


def _choose_alternatives(tmpl: str, rng: random.Random) -> str:
    while True:
        m = _ALT.search(tmpl)
        if m is None:
            return tmpl
        tmpl = tmpl[: m.start()] + rng.choice(m.group(1).split("|")) + tmpl[m.end() :]


def _fill_slot(st: _NoteState, slot: str) -> None:
    rng, b = st.rng, st.b
    head, *rest = slot.split(":")
    if head in _ROLE_KEYS:
        context, fmt = rest
        p = _person(st, head)
        if fmt == "*":
            fmt = rng.choice(_CONTEXT_FORMATS[context])
        surface, suffix = _render_name(p, fmt, rng)
        b.plant(surface, "NAME", context=context, origin=p.origin, fmt=fmt, role=p.role)
        b.text(suffix)
    elif head == "id":
        kind = rest[0]
        if kind in ("mrn_header", "mrn_paren", "mrn_bare"):
            value = st.ids.setdefault("mrn", _mrn_value(rng))
            b.plant(value, "ID", kind=kind)
        else:
            labels, gen = _ID_LABELS[kind]
            value = st.ids.setdefault(kind, gen(rng)) if kind != "licence" else gen(rng)
            b.text(rng.choice(labels))
            b.plant(value, "ID", kind=kind if kind != "mrn" else "mrn_labelled")
    elif head == "date":
        value, fmt = _date(rng, rest[0] if rest else "any")
        b.plant(value, "DATE", kind=fmt)
    elif head == "phone":
        value, region = _phone(rng, rest[0] if rest else "any")
        b.plant(value, "PHONE", kind=region)
    elif head == "addr":
        value, region = _address(rng, rest[0] if rest else "any")
        b.plant(value, "ADDRESS", kind=region)
    elif head == "street":
        b.plant(rng.choice(_STREETS), "ADDRESS", kind="street only")
    elif head == "email":
        b.plant(_email(rng, _person(st, rest[0] if rest else "pt")), "EMAIL", kind="email")
    elif head == "url":
        host = rng.choice(("mychart.stlukes-health.org", "portal.riverside-clinic.com"))
        value = f"https://{host}/patients/{_digits(rng, 7)}/results"
        b.plant(value, "URL", kind="portal url")
    elif head == "ip":
        b.plant(f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}", "IP")
    elif head == "age90":
        value, kind = _age_over_89(rng)
        b.plant(value, "AGE>89", kind=kind)
        b.text(
            {
                "yo": "yo",
                "y/o": " y/o",
                "-year-old": "-year-old",
                "years": " years",
                "words": "-year-old",
            }[kind]
        )
    elif head == "age":
        age = rng.randrange(18, 90)
        b.term(rng.choice([f"{age}yo", f"{age} y/o", f"{age}-year-old", f"{age}yo"]), "age<=89")
    elif head == "term":
        kind = rest[0] if rest else rng.choice(list(TERMS))
        b.term(rng.choice(TERMS[kind]), TERM_GROUP[kind])
    elif head in ("ptt", "he", "He", "his", "sexw", "relw", "relw2", "him"):
        key = {"relw": "rel", "relw2": "rel2"}.get(head, "pt")
        p = _person(st, key)
        f = p.female
        b.text(
            {
                "ptt": rng.choice(["Mrs", "Ms"]) if f else "Mr",
                "he": "she" if f else "he",
                "He": "She" if f else "He",
                "his": "her" if f else "his",
                "him": "her" if f else "him",
                "sexw": rng.choice(["woman", "lady", "F"])
                if f
                else rng.choice(["man", "gentleman", "M"]),
                "relw": rng.choice(_RELATIONS_F if f else _RELATIONS_M),
                "relw2": rng.choice(_RELATIONS_F if f else _RELATIONS_M),
            }[head]
        )
    else:
        raise ValueError(f"unknown slot {slot!r}")


def _expand(tmpl: str, rng: random.Random) -> tuple[str, tuple[Planted, ...], tuple[Term, ...]]:
    st = _NoteState(rng, _Builder())
    # Relatives and the patient are created first so that relation words match their sex.
    for key in ("pt", "rel", "rel2"):
        _person(st, key)
    text = _choose_alternatives(tmpl, rng)
    last = 0
    for m in _SLOT.finditer(text):
        st.b.text(text[last : m.start()])
        _fill_slot(st, m.group(1))
        last = m.end()
    st.b.text(text[last:])
    return "".join(st.b.parts), tuple(st.b.phi), tuple(st.b.terms)


# --------------------------------------------------------------------------------------------
# Styles.

STYLES: dict[str, str] = {
    "progress_soap": """\
[[PROGRESS NOTE|Progress Note - Internal Medicine|IM Ward Round]]  {date:any}
[[Patient: {pt:label:*}|Pt: {pt:label:*}|{pt:label:caps_last_comma_first}]]   {id:mrn}   DOB {d\
ate:dob}
[[Attending: {dr:label:*}|Consultant: Dr {dr:title:*}]]

S: {ptt} {pt:title:*} is a {age} {sexw} admitted w/ CAP. [[Reports feeling better today,|c/o on\
going SOB,]] \
[[pain {term:pain}|slept poorly]]. [[{pt:bare:poss_first} appetite poor.|]] {his} {relw} {rel:r\
elation:*} [[visited and|rang and]] is worried re discharge.
O: {term:vital}, {term:vital}. Chest: coarse creps R base. [[Calves SNT.|{term:eponym} negative.]]
   Labs: {term:lab}, {term:lab}. [[CXR {date:any}: improving consolidation.|]]
A: CAP, CURB-65 2, improving. PMHx {term:eponym}, AF on {term:drug}.
P: - cont {term:drug}, switch to PO [[tmrw|if afebrile 24h]]
   - d/w [[Dr {dr2:title:*}|{dr2:bare:first}]] (micro) re abx
   - [[OT/PT review|physio to review mobility]]; f/u clinic in {term:interval}
[[{dr3:label:*}, FY1|Seen with {rn:bare:first} (RN) adn {dr3:bare:first} (FY1)]]
""",
    "operative": """\
OPERATIVE NOTE
Name: {pt:label:*}    {id:mrn}    [[Adm: {date:any}|DOS: {date:any}]]
Surgeon: {dr:label:*}   Assistant: [[{dr2:label:*}|Dr {dr2:title:*} (reg)]]
Anaesthetist: [[Dr {dr3:title:*}|{dr3:label:*}]]   Scrub: {rn:label:*}
Procedure: [[laparoscopic cholecystectomy|{term:eponym}|open right hemicolectomy]]
Indication: [[recurrent biliary colic|{term:eponym}]] in {age} {sexw}, {term:score}.
Findings: inflamed GB, [[{term:anatomy} clearly displayed|adhesions to omentum]]. EBL 150 mL.
Drains: [[seperate |]]{term:device} to [[RUQ|pelvis]]. Specimen sent: {id:specimen}.
Post-op: {term:drug}; [[VTE: {term:drug}|TEDs]]; {term:vital}.
[[Consent obtained by {dr:bare:first_last} on {date:any}.|Family ({relw} {rel:relation:*}) upda\
ted by phone {phone:any}.]]
""",
    "icu_flowsheet": """\
[[ICU Nursing Flowsheet Comment|CCU - nursing note|ITU obs comment]] {date:any} [[0700|1900|2200]]
Bed 7 - {pt:label:caps_full} ({id:mrn_paren})
[[0800|0815]] Pt settled overnight, {term:score}. {term:vital}, {term:vital}.
[[1030|1100]] {term:device} in situ, site clean. Noradrenaline titrated to {term:vital}.
[[1200|1245]] {relw} {rel:relation:*} at bedside, updated by {dr:bare:*}. \
[[Asks to be called on {phone:any}.|NOK contact {phone:any}.]]
[[1400|1430]] {term:lab}. [[Reg {dr2:title:last} informed|{dr2:bare:first} aware]]. {term:drug}\
 given.
[[1600|1700]] [[{pt:bare:*}|{pt:bare:poss_first} BSL 14,]] [[tolerating NG feed|agitated, CAM-I\
CU +ve]]. Telemetry IP {ip}.
Handed over to {rn:bare:*} RN.  {rn2:label:*}, RN
""",
    "gp_letter": """\
{dr:label:caps_full} [[MD FRCP|MBBS MRCP]]
Department of Cardiology
Tel: {phone:any}   Email: {email:dr}

[[Dr {dr2:title:*}|{dr2:label:*}]]
{addr:any}

{date:any}

Re: {pt:label:*}  DOB: {date:dob}  [[{id:nhs_number}|{id:mrn}|Hosp no {id:mrn_bare}]]
{addr:any}

Dear Dr {dr2:title:last},

Thank you for referring this pleasant {age} {sexw} whom I saw in clinic on {date:any}. \
[[{ptt} {pt:title:*}|{pt:bare:*}]] describes palpitations since [[{date:any}|last Christmas]]. \
{He} attended with {his} {relw}, {rel:relation:*}. Holter showed {term:rhythm}; echo {term:echo}.
[[{term:score}; I have started {term:drug}.|I suggest {term:drug} and a {term:device}.]]
[[I will see {him} again in {term:interval}.|We will arrange follow-up.]]

Yours sincerely,

{dr:label:initial_last}
Consultant Cardiologist    [[{id:licence}|]]
cc: {pt:label:*}, {addr:any}
""",
    "lab_report": """\
LABORATORY REPORT                               Printed {date:any}
[[{pt:label:caps_last_comma_first}    {id:mrn_header}    {date:dob}|Patient: {pt:label:*}  {id:\
mrn}  DOB: {date:dob}]]
Requested by: [[Dr {dr:title:*}|{dr:label:*}]]   Location: AMU   {id:encounter}
Collected: {date:any}   Received: {date:any}   {id:accession}

Test                Result    Ref
{term:lab}                     H
{term:lab}
{term:lab}                     L
[[{term:code}|]]
Comment: [[Haemolysed sample, K may be falsely raised.|Result phoned to {rn:bare:*} on ward at \
[[0314|1422]].]]
[[Called to Dr {dr2:title:*} on {phone:us}|Verified by {dr2:label:*}, BMS]]
""",
    "pathology": """\
SURGICAL PATHOLOGY REPORT
[[{id:specimen}|{id:specimen}  ({id:mrn_paren})]]
Patient: {pt:label:*}    Sex: [[F|M]]    Age: {age}    [[{id:insurance}|]]
Clinician: {dr:label:*}     Received: {date:any}
Clinical: [[breast lump, {term:score}|rectal mass, ?{term:eponym}]]
Macro: [[Core biopsies x3 recieved in formalin|Core biopsies x3|Anterior resection specimen 240\
 mm]]. [[{term:anatomy} identified.|]]
Micro: Invasive carcinoma NST, grade 2. {term:lab}; {term:lab}; {term:lab}.
[[{term:code}|{term:code}, {term:code}]]
Reported by: {dr2:label:*}, [[FRCPath|MD]]   {date:any}
[[Discussed with Dr {dr:title:last} at MDT on {date:any}.|]]
""",
    "radiology": """\
[[RADIOLOGY REPORT|CT CHEST/ABDO/PELVIS WITH CONTRAST|MRI BRAIN]]
[[{pt:label:caps_full}|Name: {pt:label:*}]]  [[{id:mrn}|{id:mrn_header}]]  {id:accession}
Exam date: {date:any}    Referrer: [[Dr {dr:title:*}|{dr:label:*}]]
History: {age} {sexw}, [[?PE, Wells 5|headache, ?SAH|staging {term:eponym}]].
Comparison: [[{date:any}|none]].
Findings: [[{term:anatomy} patent.|No abnormality of the {term:anatomy}.]] \
[[{term:device} tip in SVC.|]] 14 mm nodule RLL (series 3, image 112).
Impression: [[Filling defects c/w PE.|No acute findings.]] {term:code}.
[[Findings d/w Dr {dr2:title:*} by phone at [[1615|0930]] on {date:any}.|Urgent result communicate\
d to {dr2:label:*}.]]
Reported: {dr3:label:*}, [[FRCR|MD]]  {date:any}
""",
    "ecg_holter": """\
[[12-LEAD ECG REPORT|24-HOUR HOLTER REPORT|AMBULATORY ECG (Zio) REPORT]]
{pt:label:*}    {id:mrn}    DOB {date:dob}    [[Device {id:device_serial}|]]
Recorded: {date:any}   [[Hook-up by {rn:label:*}|Tech: {rn:label:*}]]
{term:ecg}, {term:ecg}, {term:ecg}. [[{term:rhythm}.|Sinus rhythm.]]
[[Max HR 168 at 14:32, min 41 asleep.|]] [[Pt diary: palpitations while gardening.|]]
[[Previous ECG {date:any}: unchanged.|]]
Interpretation: [[{term:rhythm}|no significant arrhythmia]], {term:ecg}.
[[Upload from {ip}.|]] Reported by {dr:label:*} on {date:any}
""",
    "portal_message": """\
From: {pt:label:*} <{email:pt}>
To: [[Dr {dr:title:*}|{dr:label:*}]]'s care team
Sent: {date:any}
Subject: [[question about my meds|test results|refill]]

hi [[Dr {dr:title:last}|{dr:bare:first}]], its {pt:bare:first} again. [[ive been taking the {te\
rm:drug} since|my {relw} {rel:relation:*} says i should ask about the]] \
[[{date:any}|last week]] and [[feel dizzy|my sugars are high]]. [[can you call me on {phone:any\
}|my new number is {phone:any}]]? \
[[also i moved, new address is {addr:any}.|]] [[my {relw2} {rel2:relation:*} can pick up the sc\
ript.|]]
thanks
{pt:bare:lower_first}

--- Reply ---
[[Hi {pt:bare:first}|Dear {ptt} {pt:title:last}]], [[your {term:lab} is fine|please keep taking\
 {term:drug}]]. \
[[Results at {url}|Call the clinic if worse]]. {rn:label:*}, RN for [[Dr {dr:title:last}|{dr:ba\
re:first}]]
""",
    "triage": """\
ED TRIAGE  {date:any} [[0342|1517|2208]]   [[Triage RN {rn:label:*}|triaged by {rn:bare:*}]]
{pt:label:caps_last_comma_first}  {id:mrn_header}  [[{age}|{age90}]] [[F|M]]  [[{id:encounter}|]]
PC: [[chest pain|fall at home|SOB]] [[x2/7|since this am]]. BIBA [[w/ {relw} {rel:relation:*}|a\
lone]]. \
[[Lives at {addr:any}.|Lives alone on {street}.]]
Obs: [[|abdo soft, ]]{term:vital} {term:vital} {term:vital}. Pain {term:pain}. ATS 3.
PMH: {term:eponym}, {term:eponym}. Meds: {term:drug}, {term:drug}. NKDA.
[[Pts {relw} {rel:relation:lower_first} reachable on {phone:any}.|NOK {rel:label:*} {phone:any}]]
[[Seen by Dr {dr:title:*} (ED reg).|To resus, {dr:bare:first} aware.]]
""",
    "discharge": """\
DISCHARGE SUMMARY
[[Patient Name: {pt:label:*}|Patient: {pt:label:caps_last_comma_first}]]   {id:mrn}   [[{id:nhs\
_number}|{id:ssn}|{id:insurance}]]
Address: {addr:any}   Phone: {phone:any}
Admitted: {date:any}   Discharged: {date:any}
Consultant: [[{dr:label:*}|Dr {dr:title:*}]]   GP: [[Dr {dr2:title:*}|{dr2:label:*}]]
Diagnosis: [[NSTEMI|Decompensated HF|{term:eponym}]]
Course: {ptt} {pt:title:last}, a [[{age}|{age90}]] {sexw}, presented with {term:eponym}. \
[[Angiogram on {date:any} showed LAD lesion, stented.|Treated with {term:drug}.]] \
[[{his} stay was complicated by AKI ({term:lab}).|Uncomplicated stay.]] \
[[{pt:bare:poss_first} {relw} {rel:relation:*} will stay with {him}.|]] [[{ptt} {pt:title:*}'s \
mobility improved with physio.|]]
Discharge meds: {term:drug}, {term:drug}, {term:drug}, [[paracetamol|oxycodone]] {term:dose}.
Follow-up: clinic with Dr {dr:title:*} on {date:any}. [[Community nurse {rn:label:*} to visit.|]]
Completed by {dr3:label:*} (FY2)  {date:any}  [[{id:licence}|]]
""",
    "handover": """\
[[Night handover|Weekend handover list|SBAR handover]] {date:any}
Bed 12 {pt:label:caps_last} [[({id:mrn_paren})|{id:mrn_bare}]] [[{age}|{age90}]] {term:eponym}
S: [[new AF, {term:vital}|desat to {term:vital}]]
B: admitted {date:any}, [[on {term:drug}|{term:score}]]
A: [[? sepsis, {term:lab}|stable]]
R: [[chase {term:lab}|review in am]], [[pls call {relw} {rel:relation:*} on {phone:any} if dete\
riorates|DNACPR in place, discussed w/ {relw} {rel:relation:*}]]
Bed 14 [[{pt:bare:lower_first}|{pt:bare:first}|{pt:bare:poss_first} cannula]] - [[{term:device}\
 alarming, pls check|for OGD tmrw, NBM from midnight]]
From {dr:bare:*} to {dr2:bare:*}[[ (SHO)|]].  [[{rn:bare:*} is nurse in charge.|]]
""",
    "telephone": """\
TELEPHONE ENCOUNTER   {date:any}
Caller: [[{rel:label:*} ({relw})|{pt:label:*} (self)]]  Callback: {phone:any}
Re: {pt:label:*} [[{id:mrn}|({id:mrn_paren})]] [[DOB {date:dob}|]]
[[{relw} {rel:relation:*}|Caller]] reports pt [[more confused since {date:any}|not eating]], \
[[now {age90}|{age}]]. [[Asked if {term:drug} can be stopped.|On {term:drug} and {term:drug}.]]
[[Advised to attend UTC.|Message sent to Dr {dr:title:*} for callback.]] \
[[Email copy to {email:rel}.|]] [[{id:insurance} verified.|{id:ssn} confirmed w/ caller.]]
{rn:label:*}, [[LPN|RN|CMA]]   [[{date:any}|]]
""",
}


def generate_notes(seed: int = 20240611, per_style: int = 34) -> tuple[HeldoutNote, ...]:
    """Build ``per_style`` notes of every style, the same ones for the same seed."""
    rng = random.Random(seed)
    notes: list[HeldoutNote] = []
    for i in range(per_style):
        for style, tmpl in STYLES.items():
            local = random.Random(rng.randrange(2**63) ^ i)
            text, phi, terms = _expand(tmpl, local)
            notes.append(HeldoutNote(style, text, phi, terms))
    return tuple(notes)


# --------------------------------------------------------------------------------------------
# Scoring.


@dataclass(slots=True)
class Tally:
    """Counts caught/total for one group."""

    caught: int = 0
    total: int = 0

    def add(self, ok: bool) -> None:
        self.caught += int(ok)
        self.total += 1

    @property
    def rate(self) -> float:
        return self.caught / self.total if self.total else float("nan")


@dataclass(slots=True)
class Scores:
    """Everything the held-out-2 test prints and asserts on."""

    by_category: dict[str, Tally] = field(default_factory=dict)
    names_by: dict[str, dict[str, Tally]] = field(default_factory=dict)
    ids_by_kind: dict[str, Tally] = field(default_factory=dict)
    other_by_kind: dict[str, Tally] = field(default_factory=dict)
    terms_by_kind: dict[str, Tally] = field(default_factory=dict)  # caught = wrongly scrubbed
    replacements: int = 0
    replacements_on_phi: int = 0
    fp_by_category: dict[str, int] = field(default_factory=dict)
    misses: list[str] = field(default_factory=list)
    false_positives: list[str] = field(default_factory=list)
    reconstruct_mismatch: int = 0


def _tally(d: dict[str, Tally], key: str) -> Tally:
    return d.setdefault(key, Tally())


_NAME_SEPARATORS = set(",.")
_TITLE_TOKENS = {"de", "la", "van", "der", "bin", "ó", "ní"}


def _leak_tokens(p: Planted) -> list[str]:
    if p.category == "NAME":
        return [
            t
            for t in re.split(r"[\s,]+", p.value)
            if len(t.rstrip(".")) > 1 and t.lower() not in _TITLE_TOKENS
        ]
    return [p.value]


def _output_free_regions(
    text: str, out: str, reps: Sequence[tuple[int, int, str]]
) -> list[tuple[int, int, int]] | None:
    """Map original text not covered by replacements to output offsets: (orig_start, end, out).

    None when applying the replacements does not reproduce the output."""
    pieces: list[str] = []
    regions: list[tuple[int, int, int]] = []
    cursor = 0
    out_pos = 0
    for start, end, repl in sorted(reps):
        if start < cursor:
            return None
        pieces.append(text[cursor:start])
        regions.append((cursor, start, out_pos))
        out_pos += start - cursor
        pieces.append(repl)
        out_pos += len(repl)
        cursor = end
    pieces.append(text[cursor:])
    regions.append((cursor, len(text), out_pos))
    return regions if "".join(pieces) == out else None


def _free_text_has(
    note: HeldoutNote,
    out: str,
    regions: list[tuple[int, int, int]] | None,
    token: str,
    own: Planted,
) -> bool:
    """Whether ``token`` survives in output text that no replacement produced."""
    pattern = re.compile(rf"(?<!\w){re.escape(token)}(?!\w)")
    if regions is None:
        return pattern.search(out) is not None
    for o_start, o_end, _out_pos in regions:
        for m in pattern.finditer(note.text, o_start, o_end):
            # An uncovered copy inside another planted span is that span's miss, not this one's.
            inside_other = any(
                q is not own and q.start <= m.start() and m.end() <= q.end for q in note.phi
            )
            if not inside_other:
                return True
    return False


def score(notes: Sequence[HeldoutNote], results: Sequence[tuple[str, Sequence[object]]]) -> Scores:
    """Score scrubber output ``(text, replacements)`` per note (replacements need start, end,
    category and replacement attributes)."""
    s = Scores()
    for note, (out, reps_obj) in zip(notes, results, strict=True):
        reps = [
            (int(r.start), int(r.end), str(r.category), str(r.replacement))  # type: ignore[attr-defined]
            for r in reps_obj
        ]
        covered = bytearray(len(note.text))
        for start, end, _c, _r in reps:
            for i in range(max(start, 0), min(end, len(note.text))):
                covered[i] = 1
        regions = _output_free_regions(note.text, out, [(a, b, r) for a, b, _c, r in reps])
        if regions is None:
            s.reconstruct_mismatch += 1
        phi_mask = bytearray(len(note.text))
        for p in note.phi:
            for i in range(p.start, p.end):
                phi_mask[i] = 1

        for p in note.phi:
            need = [
                i
                for i in range(p.start, p.end)
                if not note.text[i].isspace()
                and not (p.category == "NAME" and note.text[i] in _NAME_SEPARATORS)
            ]
            ok = all(covered[i] for i in need)
            why = "not covered" if not ok else ""
            if ok and p.category not in ("DATE", "AGE>89"):
                own_reps = [r for a, b, _c, r in reps if a < p.end and b > p.start]
                for tok in _leak_tokens(p):
                    if any(tok in r for r in own_reps) or _free_text_has(
                        note, out, regions, tok, p
                    ):
                        ok, why = False, f"value {tok!r} still in output"
                        break
            _tally(s.by_category, p.category).add(ok)
            if p.category == "NAME":
                for axis, key in (
                    ("context", p.context),
                    ("origin", p.origin),
                    ("format", p.fmt),
                    ("role", p.role),
                ):
                    _tally(s.names_by.setdefault(axis, {}), key).add(ok)
            elif p.category == "ID":
                _tally(s.ids_by_kind, p.kind).add(ok)
            else:
                _tally(s.other_by_kind, f"{p.category}/{p.kind}").add(ok)
            if not ok:
                line_start = note.text.rfind("\n", 0, p.start) + 1
                line_end = note.text.find("\n", p.end)
                line = note.text[line_start : line_end if line_end >= 0 else None]
                desc = f"{p.category}/{p.context or p.kind}/{p.fmt or '-'}/{p.origin or '-'}"
                s.misses.append(f"[{note.style}] {desc} {p.value!r} ({why}) in: {line.strip()!r}")
        for start, end, cat, _r in reps:
            s.replacements += 1
            if any(phi_mask[i] for i in range(max(start, 0), min(end, len(note.text)))):
                s.replacements_on_phi += 1
            else:
                s.fp_by_category[cat] = s.fp_by_category.get(cat, 0) + 1
                s.false_positives.append(f"[{note.style}] {cat} {note.text[start:end]!r}")
        for t in note.terms:
            hit = any(a < t.end and b > t.start for a, b, _c, _r in reps)
            _tally(s.terms_by_kind, t.kind).add(hit)
    return s
