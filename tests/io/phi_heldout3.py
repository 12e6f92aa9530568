"""Third held-out set for the note scrubber: seeded notes with planted PHI and planted clinical
terms, written independently of the scrubber, its word lists and the earlier corpora.

Each note records where every planted PHI value and every planted non-PHI clinical term sits,
so recall (by category, name context/origin/format/shape and ID kind), precision and the
clinical-term false-positive rate can be scored against ``scrub_text``'s replacements.
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

from clinic_app.domain.notes import PhiReplacement

SEED = 20260311
NOTES_PER_STYLE = 30

# --------------------------------------------------------------------------------------------
# Names: (given names, surnames) by origin, written for this set.
ORIGINS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "english": (
        (
            "Oliver",
            "George",
            "Harry",
            "Jack",
            "Charlotte",
            "Emily",
            "Sophie",
            "Jessica",
            "Thomas",
            "Daniel",
            "Sarah",
            "Rebecca",
            "Matthew",
            "Laura",
            "Eleanor",
            "Gareth",
        ),
        (
            "Smith",
            "Jones",
            "Taylor",
            "Williams",
            "Davies",
            "Evans",
            "Thompson",
            "Wright",
            "Robinson",
            "Harrison",
            "Clarke",
            "Mitchell",
            "Pickering",
            "Ashworth",
        ),
    ),
    "irish_scottish": (
        (
            "Siobhan",
            "Niamh",
            "Aoife",
            "Ciaran",
            "Padraig",
            "Eoin",
            "Mairead",
            "Callum",
            "Fiona",
            "Hamish",
            "Grainne",
            "Ruairi",
        ),
        (
            "O'Sullivan",
            "McLaughlin",
            "O'Brien",
            "MacDonald",
            "Fitzgerald",
            "Gallagher",
            "McKenzie",
            "O'Donnell",
            "Cassidy",
            "MacLeod",
        ),
    ),
    "west_african": (
        (
            "Chukwuemeka",
            "Ngozi",
            "Oluwaseun",
            "Adebayo",
            "Folake",
            "Kwame",
            "Abena",
            "Kofi",
            "Yaw",
            "Chiamaka",
            "Tunde",
            "Efua",
        ),
        (
            "Okafor",
            "Adeyemi",
            "Okonkwo",
            "Mensah",
            "Boateng",
            "Oyelaran",
            "Nwosu",
            "Asante",
            "Eze",
            "Adjei-Brown",
        ),
    ),
    "east_african": (
        (
            "Abebe",
            "Tigist",
            "Mekdes",
            "Dawit",
            "Hodan",
            "Abdirahman",
            "Faduma",
            "Wanjiru",
            "Otieno",
            "Achieng",
        ),
        (
            "Tesfaye",
            "Haile",
            "Warsame",
            "Mohamud",
            "Kamau",
            "Odhiambo",
            "Gebremariam",
            "Wolde-Giorgis",
        ),
    ),
    "arabic": (
        (
            "Mohammed",
            "Ahmed",
            "Fatima",
            "Aisha",
            "Omar",
            "Yousef",
            "Layla",
            "Khalid",
            "Noor",
            "Huda",
        ),
        (
            "al-Rashid",
            "El-Sayed",
            "Haddad",
            "Khoury",
            "bin Hamad",
            "Abdullah",
            "Mansour",
            "Al Zahrani",
        ),
    ),
    "south_asian": (
        (
            "Priya",
            "Rahul",
            "Ananya",
            "Vikram",
            "Lakshmi",
            "Arjun",
            "Sunita",
            "Harpreet",
            "Gurpreet",
            "Deepak",
            "Meenakshi",
            "Karthik",
            "Imran",
            "Nasreen",
            "Tariq",
            "Farhana",
        ),
        (
            "Patel",
            "Sharma",
            "Krishnamurthy",
            "Venkataraman",
            "Singh",
            "Gupta",
            "Iyer",
            "Chatterjee",
            "Subramanian",
            "Chaudhry",
            "Rahman",
            "Hussain",
            "Begum",
            "Qureshi",
        ),
    ),
    "east_asian": (
        (
            "Wei",
            "Xiaoling",
            "Jianhua",
            "Mei",
            "Zhiwei",
            "Jun",
            "Ji-woo",
            "Min-jun",
            "Seo-yeon",
            "Haruto",
            "Yuki",
            "Kenji",
            "Aiko",
        ),
        (
            "Zhang",
            "Wang",
            "Chen",
            "Liu",
            "Huang",
            "Zhou",
            "Xu",
            "Kim",
            "Park",
            "Choi",
            "Tanaka",
            "Watanabe",
            "Yamamoto",
            "Nakamura",
        ),
    ),
    "vietnamese_filipino": (
        ("Thanh", "Huong", "Minh", "Linh", "Duc", "Maricel", "Rodrigo", "Jocelyn", "Rosalinda"),
        ("Nguyen", "Tran", "Pham", "Hoang", "Bautista", "Villanueva", "Macapagal", "dela Cruz"),
    ),
    "hispanic_lusophone": (
        (
            "José",
            "María",
            "Guadalupe",
            "Alejandro",
            "Lucía",
            "Jesús",
            "Carmen",
            "Diego",
            "Xiomara",
            "João",
            "Gonçalo",
            "Leonor",
            "Rafaela",
        ),
        (
            "García-López",
            "Hernández",
            "Rodríguez",
            "de la Cruz",
            "Martínez",
            "del Río",
            "Ramírez",
            "dos Santos",
            "Ferreira",
            "da Costa",
            "Oliveira",
        ),
    ),
    "slavic": (
        (
            "Krzysztof",
            "Małgorzata",
            "Agnieszka",
            "Wojciech",
            "Dmitri",
            "Svetlana",
            "Oksana",
            "Bogdan",
            "Katarzyna",
            "Mykola",
        ),
        (
            "Kowalski",
            "Wiśniewska",
            "Nowak",
            "Szczepański",
            "Ivanova",
            "Kovalenko",
            "Petrov",
            "Zielińska",
            "Shevchenko",
        ),
    ),
    "greek_italian": (
        (
            "Giorgos",
            "Eleni",
            "Dimitrios",
            "Konstantina",
            "Giuseppe",
            "Francesca",
            "Salvatore",
            "Chiara",
        ),
        (
            "Papadopoulos",
            "Georgiou",
            "Konstantinidis",
            "Rossi",
            "Esposito",
            "Di Stefano",
            "De Luca",
            "Bianchi",
        ),
    ),
    "germanic_nordic": (
        ("Jürgen", "Annelies", "Sven", "Ingrid", "Maarten", "Birgit", "Lars", "Anneke"),
        (
            "van der Berg",
            "van Dijk",
            "Müller",
            "Schneider",
            "von Hagen",
            "de Vries",
            "Johansson",
            "Lindqvist",
        ),
    ),
    "turkish_persian": (
        ("Mehmet", "Ayşe", "Emre", "Zeynep", "Dariush", "Shirin", "Reza", "Parisa"),
        ("Yılmaz", "Öztürk", "Demir", "Karimi", "Hosseini", "Tehrani", "Ahmadi"),
    ),
    "pacific_maori": (
        ("Aroha", "Tane", "Sione", "Mele", "Wiremu", "Losana"),
        ("Ngata", "Tuilagi", "Fonoti", "Te Whare", "Tupou", "Fifita"),
    ),
    "jewish": (
        ("Moshe", "Yael", "Avraham", "Chaya", "Shira", "Eliezer"),
        ("Goldberg", "Rosenbaum", "Katz", "Ben-David", "Friedman", "Weisz"),
    ),
    "word_names": (
        (
            "Hope",
            "Faith",
            "Grace",
            "Joy",
            "Rose",
            "Will",
            "Mark",
            "Bill",
            "Summer",
            "Dawn",
            "Amber",
            "Ruby",
            "Holly",
            "Ivy",
            "Iris",
            "Sunny",
            "Chase",
            "Hunter",
            "Crystal",
            "Guy",
            "Pat",
            "Frank",
            "Sandy",
            "Bob",
        ),
        (
            "Baker",
            "Brown",
            "White",
            "Young",
            "Long",
            "Wood",
            "Hill",
            "King",
            "Cook",
            "Bishop",
            "Walker",
            "Fox",
            "Bell",
            "Hart",
            "Frost",
            "Stone",
            "Payne",
            "Moody",
            "Little",
            "Strong",
            "Sharp",
            "Best",
            "Love",
            "Church",
            "Waters",
            "Marsh",
            "Swift",
            "Black",
        ),
    ),
}
FEMALE = frozenset(
    [
        "Charlotte",
        "Emily",
        "Sophie",
        "Jessica",
        "Sarah",
        "Rebecca",
        "Laura",
        "Eleanor",
        "Siobhan",
        "Niamh",
        "Aoife",
        "Mairead",
        "Fiona",
        "Grainne",
        "Ngozi",
        "Folake",
        "Abena",
        "Chiamaka",
        "Efua",
        "Tigist",
        "Mekdes",
        "Hodan",
        "Faduma",
        "Wanjiru",
        "Achieng",
        "Fatima",
        "Aisha",
        "Layla",
        "Noor",
        "Huda",
        "Priya",
        "Ananya",
        "Lakshmi",
        "Sunita",
        "Harpreet",
        "Meenakshi",
        "Nasreen",
        "Farhana",
        "Xiaoling",
        "Mei",
        "Seo-yeon",
        "Yuki",
        "Aiko",
        "Huong",
        "Linh",
        "Maricel",
        "Jocelyn",
        "Rosalinda",
        "María",
        "Guadalupe",
        "Lucía",
        "Carmen",
        "Xiomara",
        "Leonor",
        "Rafaela",
        "Małgorzata",
        "Agnieszka",
        "Svetlana",
        "Oksana",
        "Katarzyna",
        "Eleni",
        "Konstantina",
        "Francesca",
        "Chiara",
        "Annelies",
        "Ingrid",
        "Birgit",
        "Anneke",
        "Ayşe",
        "Zeynep",
        "Shirin",
        "Parisa",
        "Aroha",
        "Mele",
        "Losana",
        "Yael",
        "Chaya",
        "Shira",
        "Hope",
        "Faith",
        "Grace",
        "Joy",
        "Rose",
        "Summer",
        "Dawn",
        "Amber",
        "Ruby",
        "Holly",
        "Ivy",
        "Iris",
        "Crystal",
        "Sandy",
        "Ji-woo",
    ]
)
FEMININE_SURNAME = {"Wiśniewska", "Zielińska", "Ivanova", "Begum"}


def name_count() -> int:
    """How many distinct given names and surnames the lists hold."""
    return sum(len(g) + len(s) for g, s in ORIGINS.values())


# --------------------------------------------------------------------------------------------
# Planted non-PHI clinical terms, by kind.
TERMS: dict[str, tuple[str, ...]] = {
    "drug": (
        "metformin",
        "Apixaban",
        "ramipril 5 mg OD",
        "atorvastatin 40mg",
        "Eliquis",
        "Keppra",
        "co-amoxiclav",
        "Tazocin",
        "Oramorph",
        "Lantus",
        "Humalog",
        "sertraline 50 mg",
        "olanzapine",
        "Clozapine",
        "lithium carbonate",
        "Epilim",
        "Ventolin",
        "Seretide",
        "Clexane",
        "levothyroxine",
        "pembrolizumab",
        "Herceptin",
        "FOLFOX",
        "R-CHOP",
        "tamoxifen",
        "methotrexate",
        "Dermovate",
        "isotretinoin",
        "EpiPen",
        "Madopar",
        "Sinemet",
        "Zoladex",
        "Ozempic",
        "Augmentin",
        "Coumadin",
        "Lasix",
        "Entresto",
        "midazolam",
        "Haloperidol",
        "glycopyrronium",
        "Fentanyl patch",
        "Depakote",
    ),
    "device": (
        "PICC line",
        "Foley catheter",
        "Hickman line",
        "Medtronic Azure pacemaker",
        "Boston Scientific ICD",
        "Dexcom G6",
        "FreeStyle Libre",
        "Mirena IUS",
        "NG tube",
        "PEG tube",
        "Swan-Ganz catheter",
        "Port-a-Cath",
        "CPAP",
        "Venturi mask",
        "Guedel airway",
        "Macintosh blade",
        "Holter monitor",
        "Hudson mask",
        "Zimmer prosthesis",
        "Aquacel dressing",
        "Mepilex border",
        "Tegaderm",
        "syringe driver",
        "Pari nebuliser",
    ),
    "eponym": (
        "Parkinson's disease",
        "Crohn's disease",
        "Hashimoto's thyroiditis",
        "Babinski sign",
        "Murphy's sign",
        "Graves' disease",
        "Hodgkin lymphoma",
        "Down syndrome",
        "Bell's palsy",
        "Guillain-Barré syndrome",
        "Alzheimer's dementia",
        "Barrett's oesophagus",
        "Wilms tumour",
        "Kaposi sarcoma",
        "Whipple procedure",
        "Tinel's sign",
        "Phalen's test",
        "Lachman test",
        "McMurray test",
        "Trendelenburg gait",
        "Cushing's syndrome",
        "Addison's disease",
        "Raynaud's phenomenon",
        "Sjögren's syndrome",
        "Bowen's disease",
        "Marfan syndrome",
        "Wolff-Parkinson-White",
        "Brugada pattern",
        "Mobitz type II",
        "Kussmaul breathing",
        "Cheyne-Stokes breathing",
        "Romberg test",
        "Hartmann's solution",
        "Koebner phenomenon",
        "Nikolsky sign",
        "Wickham striae",
        "Braxton Hicks",
        "Lewy body dementia",
        "Huntington's disease",
        "von Willebrand disease",
        "Epstein-Barr virus",
        "Doppler",
        "Fitzpatrick type IV",
        "Mallampati 2",
        "Cormack-Lehane grade 1",
        "Allen test",
        "Naegele's rule",
        "Tanner stage 3",
    ),
    "anatomy": (
        "circle of Willis",
        "bundle of His",
        "Purkinje fibres",
        "islets of Langerhans",
        "Achilles tendon",
        "Broca's area",
        "loop of Henle",
        "Eustachian tube",
        "Fallopian tube",
        "sphincter of Oddi",
        "pouch of Douglas",
        "Calot's triangle",
        "McBurney's point",
        "Wharton's jelly",
        "Sylvian fissure",
        "Scarpa's fascia",
    ),
    "score": (
        "PHQ-9 14",
        "GAD-7 12",
        "MMSE 24/30",
        "MoCA 21/30",
        "NEWS2 5",
        "CURB-65 2",
        "CHA2DS2-VASc 4",
        "HAS-BLED 2",
        "Waterlow 16",
        "Braden 14",
        "ECOG 1",
        "Karnofsky 70%",
        "Apgar 9",
        "Bishop score 6",
        "Gleason 3+4=7",
        "Rockall 3",
        "Wells score 4.5",
        "Barthel 65/100",
        "Clinical Frailty Scale 6",
        "ASA III",
        "NYHA class II",
        "Child-Pugh B",
        "MELD 14",
        "EPDS 11",
        "PASI 12",
        "DLQI 14",
        "Breslow 1.2 mm",
        "Clark level IV",
    ),
    "lab": (
        "HbA1c 58 mmol/mol",
        "eGFR 45",
        "CRP 12",
        "troponin T 34 ng/L",
        "INR 2.4",
        "TSH 4.2",
        "ALT 56",
        "NT-proBNP 1840",
        "D-dimer 0.8",
        "Hb 112 g/L",
        "WCC 11.2",
        "Plt 245",
        "Na 134",
        "K+ 5.1",
        "creatinine 112",
        "lactate 2.1",
        "ferritin 14",
        "PSA 8.4",
        "CA-125 380",
        "CEA 12",
        "beta-hCG 1420",
        "Ki-67 30%",
        "HER2 3+",
        "PD-L1 TPS 60%",
        "BRAF V600E",
        "EGFR exon 19 deletion",
        "PT 14.2",
    ),
    "vital": (
        "BP 142/88",
        "HR 92",
        "RR 18",
        "SpO2 96% RA",
        "T 37.8",
        "GCS 15/15",
        "CBG 7.2",
        "BMI 31.4",
        "wt 82 kg",
        "MAP 65",
        "FHR 140",
        "sats 94%",
        "CRT <2s",
        "P 104",
    ),
    "ecg": (
        "QTc 452 ms",
        "PR 180 ms",
        "QRS 92 ms",
        "axis -30",
        "sinus rhythm 72 bpm",
        "ST elevation V2-V4",
        "LBBB",
        "RBBB",
        "TWI III and aVF",
        "AF 110",
    ),
    "pathology": (
        "pT2 N1a",
        "pT1b N0",
        "grade 2",
        "margins clear by 4 mm",
        "LVI present",
        "R0",
        "ER 8/8",
        "PR 6/8",
        "Nottingham grade 3",
        "ypT0",
    ),
}
CODES: tuple[tuple[str, str], ...] = (
    ("SNOMED CT: ", "22298006"),
    ("SNOMED CT ", "73211009"),
    ("SNOMED: ", "44054006"),
    ("SNOMED CT code ", "254837009"),
    ("ICD-10: ", "I21.4"),
    ("ICD-10 ", "E11.9"),
    ("ICD-10-CM ", "F32.1"),
    ("ICD-10 code ", "C50.912"),
    ("ICD-10: ", "L40.0"),
    ("LOINC ", "4548-4"),
    ("OPCS-4 ", "K40.1"),
    ("CPT ", "93000"),
    ("ICD-O-3 ", "8500/3"),
    ("ICD-11 ", "6A70"),
    ("SNOMED CT: ", "109838007"),
    ("ICD-10 ", "O14.1"),
)

# --------------------------------------------------------------------------------------------
# Data model.


@dataclass(frozen=True, slots=True)
class Planted:
    """A planted PHI value: ``start:end`` must be covered; ``halo_*`` bounds the words around it
    (label, title, credential, weekday, time) that a replacement may also take without counting
    as over-scrubbing."""

    start: int
    end: int
    category: str
    value: str
    kind: str
    context: str = ""
    origin: str = ""
    fmt: str = ""
    shape: str = ""
    halo_start: int = -1
    halo_end: int = -1


@dataclass(frozen=True, slots=True)
class Term:
    """A planted clinical term that is not PHI; any replacement touching it over-scrubs."""

    start: int
    end: int
    value: str
    kind: str


@dataclass(frozen=True, slots=True)
class Note:
    style: str
    text: str
    phi: tuple[Planted, ...]
    terms: tuple[Term, ...]


Seg = tuple[str, Mapping[str, str] | None]
Value = list[Seg]
_HALO: Mapping[str, str] = {"halo": "1"}


@dataclass(frozen=True, slots=True)
class Person:
    given: str
    surname: str
    origin: str
    female: bool


def _shape(p: Person) -> str:
    full = f"{p.given} {p.surname}"
    if " " in p.surname:
        return "particle"
    if "-" in full:
        return "hyphenated"
    if "'" in full:
        return "apostrophe"
    if any(ord(c) > 127 for c in full):
        return "diacritic"
    return "plain"


def _ascii(s: str) -> str:
    return (
        unicodedata.normalize("NFKD", s.replace("ł", "l").replace("ı", "i"))
        .encode("ascii", "ignore")
        .decode()
    )


# --------------------------------------------------------------------------------------------
# Generator.

_TYPO_RE = re.compile(r"[A-Za-z]{5,}")
_PLACE_RE = re.compile(r"\{(\w+)\}")
_MONTHS = [
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
]
_WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_ORD_WORDS = [
    "first",
    "second",
    "third",
    "fourth",
    "fifth",
    "sixth",
    "seventh",
    "eighth",
    "ninth",
    "tenth",
    "eleventh",
    "twelfth",
    "thirteenth",
    "fourteenth",
    "fifteenth",
    "sixteenth",
    "seventeenth",
    "eighteenth",
    "nineteenth",
    "twentieth",
    "twenty-first",
    "twenty-second",
    "twenty-third",
    "twenty-fourth",
    "twenty-fifth",
    "twenty-sixth",
    "twenty-seventh",
    "twenty-eighth",
]
_NUM_WORDS = {
    90: "ninety",
    91: "ninety-one",
    92: "ninety-two",
    93: "ninety-three",
    94: "ninety-four",
    95: "ninety-five",
    96: "ninety-six",
    97: "ninety-seven",
    98: "ninety-eight",
    99: "ninety-nine",
    100: "one hundred",
    101: "one hundred and one",
    102: "one hundred and two",
}


ID_LABELS: Mapping[str, tuple[str, ...]] = {
    "mrn": (
        "MRN: ",
        "MRN ",
        "MRN#",
        "Medical Record Number: ",
        "MR No. ",
        "Med Rec #: ",
        "mrn ",
    ),
    "hospital_no": ("Hosp No: ", "Hospital number ", "Unit No. ", "Hosp. no ", "RN: "),
    "nhs": ("NHS No: ", "NHS number ", "NHS: ", "NHS no. "),
    "chi": ("CHI: ", "CHI no ", "CHI number "),
    "ssn": ("SSN: ", "SSN ", "Social Security #: ", "SS# "),
    "medicare_us": ("Medicare #: ", "MBI ", "Medicare ID: "),
    "medicare_au": ("Medicare no. ", "Medicare card "),
    "insurance": (
        "Member ID: ",
        "Member # ",
        "Insurance ID: ",
        "Policy no. ",
        "Subscriber ID ",
        "BUPA membership ",
    ),
    "encounter": ("Encounter #: ", "CSN ", "FIN: ", "Visit no. ", "Acct # "),
    "accession": ("Specimen no: ", "Lab No. ", "Accession: ", "Our ref: "),
    "ubrn": ("UBRN ", "e-RS UBRN: "),
    "rx_number": ("Rx #: ", "Prescription no. ", "Rx# "),
    "device_serial": ("serial no. ", "SN: ", "S/N "),
    "passport": ("passport no. ", "Passport: "),
    "licence": ("driver's licence ", "DL# "),
}


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


@dataclass
class Gen:
    """Builds one note: literal text (with occasional typos) interleaved with planted spans."""

    rng: random.Random
    parts: list[str] = field(default_factory=list)
    pos: int = 0
    phi: list[Planted] = field(default_factory=list)
    terms: list[Term] = field(default_factory=list)

    # ---- assembly ------------------------------------------------------------------------
    def _typos(self, text: str) -> str:
        def swap(m: re.Match[str]) -> str:
            w = m.group(0)
            if self.rng.random() > 0.025:
                return w
            i = self.rng.randrange(1, len(w) - 2)
            op = self.rng.randrange(3)
            if op == 0:
                return w[:i] + w[i + 1] + w[i] + w[i + 2 :]
            if op == 1:
                return w[:i] + w[i + 1 :]
            return w[:i] + w[i] + w[i:]

        return _TYPO_RE.sub(swap, text)

    def _emit(self, value: Value) -> None:
        first = self.pos
        planted: tuple[int, int, Mapping[str, str]] | None = None
        for text, meta in value:
            start = self.pos
            self.parts.append(text)
            self.pos += len(text)
            if meta is None or "halo" in meta:
                continue
            if "term" in meta:
                self.terms.append(Term(start, self.pos, text, meta["term"]))
            else:
                planted = (start, self.pos, meta)
        if planted is not None:
            start, end, meta = planted
            self.phi.append(
                Planted(
                    start,
                    end,
                    meta["cat"],
                    "".join(self.parts)[start:end],
                    meta["kind"],
                    meta.get("context", ""),
                    meta.get("origin", ""),
                    meta.get("fmt", ""),
                    meta.get("shape", ""),
                    first,
                    self.pos,
                )
            )

    def add(self, template: str, **values: Value | str) -> None:
        """Append ``template`` with ``{key}`` filled from ``values`` (plain text gets typos)."""
        last = 0
        for m in _PLACE_RE.finditer(template):
            self._emit([(self._typos(template[last : m.start()]), None)])
            v = values[m.group(1)]
            self._emit([(v, None)] if isinstance(v, str) else v)
            last = m.end()
        self._emit([(self._typos(template[last:]), None)])

    def note(self, style: str) -> Note:
        return Note(style, "".join(self.parts), tuple(self.phi), tuple(self.terms))

    # ---- choices -------------------------------------------------------------------------
    def pick(self, *options: str) -> str:
        return self.rng.choice(options)

    def maybe(self, p: float = 0.5) -> bool:
        return self.rng.random() < p

    def person(self, origin: str | None = None, female: bool | None = None) -> Person:
        """Someone from ``origin`` (random when None); ``female`` fixes the given name's sex."""
        origin = origin or self.rng.choice(tuple(ORIGINS))
        givens, surnames = ORIGINS[origin]
        if female is not None:
            givens = tuple(n for n in givens if (n in FEMALE) == female) or givens
        given = self.rng.choice(givens)
        surname = self.rng.choice(surnames)
        if female is False:
            surname = self.rng.choice([n for n in surnames if n not in FEMININE_SURNAME])
        female = given in FEMALE or surname in FEMININE_SURNAME
        return Person(given, surname, origin, female)

    def name(self, p: Person, context: str, *fmts: str) -> Value:
        """Render ``p`` in one of ``fmts``; only the name itself is the planted span."""
        fmt = self.rng.choice(fmts)
        meta = {
            "cat": "NAME",
            "kind": "name",
            "context": context,
            "origin": p.origin,
            "fmt": fmt,
            "shape": _shape(p),
        }
        g, s = p.given, p.surname
        title = (
            self.pick("Dr ", "Dr. ", "Dr ", "Prof. ", "Mr ", "Ms ")
            if context == "clinician"
            else ("Mrs ", "Ms ", "Miss ", "Mrs. ")[self.rng.randrange(4)]
            if p.female
            else self.pick("Mr ", "Mr. ", "Mr ")
        )
        if fmt == "bare":
            return [(f"{g} {s}", meta)]
        if fmt == "title":
            return [(title, None), (self.pick(s, s, f"{g} {s}"), meta)]
        if fmt == "label":
            return [(self.pick(f"{g} {s}", f"{g} {s}", f"{s}, {g}"), meta)]
        if fmt == "initials":
            return [(self.pick(f"{g[0]}. {s}", f"{g[0]} {s}", f"{s} {g[0]}."), meta)]
        if fmt == "caps":
            return [(self.pick(f"{g} {s}".upper(), f"{s.upper()}, {g.upper()}"), meta)]
        if fmt == "last_first":
            return [(f"{s}, {g}", meta)]
        if fmt == "lower":
            return [(self.pick(g.lower(), f"{g} {s}".lower()), meta)]
        if fmt == "possessive":
            if self.maybe():
                return [(g, meta), ("'s", None)]
            return [(title, None), (s, meta), ("'s", None)]
        if fmt == "credential":
            cred = (
                self.pick(" MD", ", MD", " MBBS FRCP", ", FRCA", " MRCPCH", " FRCPath", ", DO")
                if context == "clinician"
                else self.pick(
                    ", RN",
                    " RGN",
                    ", PharmD",
                    " MRPharmS",
                    ", DPT",
                    " RMN",
                    ", LCSW",
                    ", CNS",
                    " NP",
                )
            )
            if context == "clinician" and self.maybe():
                return [(title, None), (f"{g[0]} {s}", meta), (cred, None)]
            return [(f"{g} {s}", meta), (cred, None)]
        if fmt == "given":
            return [(g, meta)]
        if fmt == "surname":
            return [(s, meta)]
        raise ValueError(fmt)

    def phi_value(self, text: str, cat: str, kind: str, fmt: str = "") -> Value:
        return [(text, {"cat": cat, "kind": kind, "fmt": fmt})]

    def term(self, kind: str) -> Value:
        return [(self.rng.choice(TERMS[kind]), {"term": kind})]

    def code(self) -> Value:
        label, code = self.rng.choice(CODES)
        return [(label, None), (code, {"term": "code"})]

    def young_age(self) -> Value:
        n = str(self.rng.randint(1, 89))
        form = self.rng.randrange(4)
        if form == 0:
            return [(n, {"term": "age<=89"}), ("-year-old", None)]
        if form == 1:
            return [("aged ", None), (n, {"term": "age<=89"})]
        if form == 2:
            return [(n, {"term": "age<=89"}), (self.pick(" yo", "yo", " y/o", "M", "F"), None)]
        return [("Age: ", None), (n, {"term": "age<=89"})]

    def old_age(self) -> Value:
        n = self.rng.randint(90, 102)
        form = self.rng.randrange(6)
        meta = {"cat": "AGE>89", "kind": "age", "fmt": "digits"}
        words = {"cat": "AGE>89", "kind": "age", "fmt": "words"}
        if form == 0:
            return [(str(n), meta), ("-year-old", None)]
        if form == 1:
            return [(self.pick("aged ", "age ", "Age: "), None), (str(n), meta)]
        if form == 2:
            return [(str(n), meta), (self.pick(" yo", "yo", " y.o.", " yrs", "F", "M"), None)]
        if form == 3:
            return [
                (_NUM_WORDS[n], words),
                (self.pick("-year-old", " year old", " years of age"), None),
            ]
        if form == 4:
            return [("aged ", None), (_NUM_WORDS[n].capitalize(), words)]
        return [(self.pick("is now ", "turned "), None), (str(n), meta)]

    # ---- dates ---------------------------------------------------------------------------
    def _day(self, old: bool = False) -> date:
        if old:
            return date(1922, 1, 1) + timedelta(days=self.rng.randrange(365 * 90))
        return date(2019, 1, 1) + timedelta(days=self.rng.randrange(365 * 7))

    def date(self, *, old: bool = False, fmts: Sequence[str] = ()) -> Value:
        d = self._day(old)
        fmt = self.rng.choice(
            fmts
            or (
                "dmy",
                "dmy_short",
                "mdy",
                "iso",
                "d-mon-y",
                "d_month_y",
                "month_d_y",
                "mon_d_y",
                "ordinal",
                "dots",
                "weekday",
                "datetime",
                "iso_datetime",
                "month_year",
                "mm/yyyy",
                "d_month",
                "words",
                "month_the_ord",
                "compact",
            )
        )
        mon, month = _MONTHS[d.month - 1][:3], _MONTHS[d.month - 1]
        meta = {"cat": "DATE", "kind": "date", "fmt": fmt}
        text = {
            "dmy": f"{d.day:02d}/{d.month:02d}/{d.year}",
            "dmy_short": f"{d.day}/{d.month}/{d.year % 100:02d}",
            "mdy": f"{d.month:02d}/{d.day:02d}/{d.year}",
            "iso": d.isoformat(),
            "d-mon-y": f"{d.day:02d}-{mon}-{d.year}",
            "d_month_y": f"{d.day} {month} {d.year}",
            "month_d_y": f"{month} {d.day}, {d.year}",
            "mon_d_y": f"{mon} {d.day} {d.year}",
            "ordinal": f"{_ordinal(d.day)} {month} {d.year}",
            "dots": f"{d.day:02d}.{d.month:02d}.{d.year}",
            "weekday": self.pick(
                f"{d.day} {month} {d.year}",
                f"{d.day:02d}/{d.month:02d}/{d.year}",
                f"{month} {d.day}",
            ),
            "datetime": self.pick(
                f"{d.day:02d}/{d.month:02d}/{d.year}", f"{d.month}/{d.day}/{d.year}"
            ),
            "iso_datetime": d.isoformat(),
            "month_year": self.pick(
                f"{month} {d.year}", f"{mon} {d.year}", f"{mon}-{d.year % 100}"
            ),
            "mm/yyyy": f"{d.month:02d}/{d.year}",
            "d_month": self.pick(f"{d.day} {month}", f"{d.day} {mon}", f"{_ordinal(d.day)} {mon}"),
            "words": f"the {_ORD_WORDS[min(d.day, 28) - 1]} of {month} {d.year}",
            "month_the_ord": f"{month} the {_ordinal(d.day)}",
            "compact": f"{d.day:02d}{mon.upper()}{d.year}",
        }[fmt]
        if fmt == "weekday":
            wd = _WEEKDAYS[d.weekday()]
            return [(self.pick(wd, wd[:3]) + self.pick(" ", ", "), _HALO), (text, meta)]
        if fmt == "datetime":
            return [
                (text, meta),
                (f" {self.rng.randint(0, 23):02d}:{self.rng.randint(0, 59):02d}", _HALO),
            ]
        if fmt == "iso_datetime":
            return [
                (text, meta),
                (f"T{self.rng.randint(0, 23):02d}:{self.rng.randint(0, 59):02d}", _HALO),
            ]
        return [(text, meta)]

    def dob(self) -> Value:
        return self.date(
            old=True,
            fmts=(
                "dmy",
                "mdy",
                "iso",
                "d-mon-y",
                "d_month_y",
                "dots",
                "month_d_y",
                "compact",
                "dmy_short",
            ),
        )

    # ---- identifiers ---------------------------------------------------------------------
    def _digits(self, n: int) -> str:
        return "".join(str(self.rng.randrange(10)) for _ in range(n))

    def _letters(self, n: int) -> str:
        return "".join(self.rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(n))

    def id_value(self, kind: str) -> str:
        d, L = self._digits, self._letters
        r = self.rng.randrange(3)
        if kind == "mrn":
            return (d(8), "00" + d(6), f"M{d(7)}", f"MR-{d(7)}", d(7))[self.rng.randrange(5)]
        if kind == "hospital_no":
            return (f"{L(1)}{d(7)}", f"RX{d(1)} {d(6)}", f"{L(3)}-{d(6)}")[r]
        if kind == "nhs":
            n = d(10)
            return (f"{n[:3]} {n[3:6]} {n[6:]}", n, f"{n[:3]}-{n[3:6]}-{n[6:]}")[r]
        if kind == "chi":
            day = self._day(old=True)
            return f"{day.day:02d}{day.month:02d}{day.year % 100:02d}{d(4)}"
        if kind == "ssn":
            return (
                f"{self.rng.randint(101, 665)}-{d(2)}-{d(4)}",
                f"{self.rng.randint(101, 665)} {d(2)} {d(4)}",
                f"{self.rng.randint(101, 665)}{d(6)}",
            )[r]
        if kind == "medicare_us":
            a = f"{self.rng.randint(1, 9)}{L(1)}{self.rng.choice('ABC0123')}{d(1)}"
            b = f"{L(1)}{self.rng.choice('DEF456')}{d(1)}"
            c = f"{L(2)}{d(2)}"
            return self.pick(f"{a}-{b}-{c}", f"{a}{b}{c}")
        if kind == "medicare_au":
            return f"{self.rng.randint(2, 6)}{d(3)} {d(5)} {d(1)}"
        if kind == "insurance":
            return (
                f"{L(3)}{d(9)}",
                f"W{d(3)}-{d(3)}-{d(3)}",
                f"{L(3)}{d(8)}-0{d(1)}",
                f"{L(3)} {d(3)} {d(3)} {d(2)}",
                f"U{d(8)}01",
            )[self.rng.randrange(5)]
        if kind == "encounter":
            day = self._day()
            return (f"E{day:%Y%m%d}-{d(4)}", d(10), f"V{d(9)}")[r]
        if kind == "accession":
            y = self.rng.randint(19, 25)
            return (f"S{y}-{d(6)}", f"{y}-HP-{d(5)}", f"H/{y}/{d(5)}")[r]
        if kind == "ubrn":
            return f"{d(4)} {d(4)} {d(4)}"
        if kind == "rx_number":
            return self.pick(d(7), f"RX-{d(7)}", f"{d(6)}-{d(2)}")
        if kind == "device_serial":
            return self.pick(f"{L(3)}{d(6)}{L(1)}", f"{L(3)} {d(6)} H", f"SN{d(9)}")
        if kind == "passport":
            return self.pick(d(9), f"{L(1)}{d(8)}")
        if kind == "licence":
            return self.pick(f"{L(1)}{d(3)}-{d(4)}-{d(4)}", f"{L(5)}{d(6)}{L(2)}{d(1)}{L(2)}")
        raise ValueError(kind)

    def rid(self, kind: str, fmt: str = "labelled") -> Value:
        """A record number of ``kind``; ``fmt`` "labelled" puts its label before it."""
        meta = {"cat": "ID", "kind": kind, "fmt": fmt}
        value = self.id_value(kind)
        if fmt == "labelled":
            return [(self.rng.choice(ID_LABELS[kind]), None), (value, meta)]
        return [(value, meta)]

    # ---- contact details -----------------------------------------------------------------
    def phone(self) -> Value:
        d = self._digits
        kind = self.rng.choice(("us", "us", "uk", "uk_mobile", "intl", "intl", "ext"))
        area = str(self.rng.randint(201, 989))
        text = {
            "us": self.pick(
                f"({area}) {d(3)}-{d(4)}",
                f"{area}-{d(3)}-{d(4)}",
                f"{area}.{d(3)}.{d(4)}",
                f"1-{area}-{d(3)}-{d(4)}",
            ),
            "uk": self.pick(f"020 {d(4)} {d(4)}", f"0113 {d(3)} {d(4)}", f"01{d(3)} {d(6)}"),
            "uk_mobile": self.pick(f"07{d(3)} {d(6)}", f"07{d(9)}", f"+44 7{d(3)} {d(6)}"),
            "intl": self.pick(
                f"+44 20 {d(4)} {d(4)}",
                f"+61 2 {d(4)} {d(4)}",
                f"+91 {d(5)} {d(5)}",
                f"+353 87 {d(3)} {d(4)}",
                f"+1 {area} {d(3)} {d(4)}",
                f"+49 30 {d(8)}",
                f"+234 803 {d(3)} {d(4)}",
                f"+33 6 {d(2)} {d(2)} {d(2)} {d(2)}",
            ),
            "ext": f"({area}) {d(3)}-{d(4)} ext. {d(4)}",
        }[kind]
        return [(text, {"cat": "PHONE", "kind": kind})]

    def email(self, p: Person) -> Value:
        g, s = _ascii(p.given).lower().replace("-", ""), _ascii(p.surname).lower()
        s = s.replace(" ", "").replace("'", "")
        user = self.pick(
            f"{g}.{s}", f"{g[0]}{s}", f"{g}{s}{self.rng.randint(1, 99)}", f"{s}.{g}", f"{g}_{s}"
        )
        dom = self.pick(
            "gmail.com",
            "hotmail.co.uk",
            "outlook.com",
            "yahoo.com",
            "nhs.net",
            "icloud.com",
            "btinternet.com",
            "proton.me",
            "bigpond.com.au",
        )
        return [(f"{user}@{dom}", {"cat": "EMAIL", "kind": "email"})]

    def url(self) -> Value:
        text = self.pick(
            f"https://mychart.riverside-health.org/patient/{self._digits(7)}",
            f"www.gofundme.com/f/help-{self._letters(1).lower()}{self._digits(4)}",
            f"https://portal.northgatecare.co.uk/p?id={self._digits(8)}",
        )
        return [(text, {"cat": "URL", "kind": "url"})]

    def ip(self) -> Value:
        text = f"{self.rng.choice((10, 172, 192))}.{self.rng.randint(0, 255)}." + (
            f"{self.rng.randint(0, 255)}.{self.rng.randint(1, 254)}"
        )
        return [(text, {"cat": "IP", "kind": "ip"})]

    _STREETS = (
        "Mill Lane",
        "Church Road",
        "Willow Creek Rd",
        "Elm Street",
        "Station Road",
        "Grand Concourse",
        "Maple Avenue",
        "Victoria Terrace",
        "Cedar Court",
        "Harbour View Drive",
        "Orchard Close",
        "Pine Ridge Blvd",
        "King Edward St",
        "Brunswick St",
        "Rue Sainte-Catherine",
        "Hauptstraße",
        "Keizersgracht",
    )

    def address(self) -> Value:
        """A one-line postal address (US, UK, Canada, Germany, Australia, India, NL)."""
        n = self.rng.randint(1, 2400)
        st = self.rng.choice(self._STREETS[:13])
        d, L = self._digits, self._letters
        kind = self.rng.choice(("us", "us", "uk", "uk", "ca", "de", "au", "in", "nl"))
        text = {
            "us": self.pick(
                f"{n} {st}, {self.pick('Springfield, IL', 'Bronx, NY', 'Tucson, AZ')} {d(5)}",
                f"{n} {st}, Apt {self.rng.randint(1, 40)}{L(1)}, Columbus, OH {d(5)}-{d(4)}",
            ),
            "uk": self.pick(
                f"{n} {st}, Harrogate HG{self.rng.randint(1, 5)} {d(1)}{L(2)}",
                f"Flat {self.rng.randint(1, 30)}, {n} {st}, Leeds LS{self.rng.randint(1, 29)} "
                f"{d(1)}{L(2)}",
            ),
            "ca": f"{n} Rue Sainte-Catherine, Montréal QC H{d(1)}{L(1)} {d(1)}{L(1)}{d(1)}",
            "de": f"Hauptstraße {self.rng.randint(1, 99)}, {self.rng.randint(10115, 99998)} "
            f"{self.pick('Berlin', 'Köln', 'Bremen')}",
            "au": f"{self.rng.randint(1, 20)}/{n} Brunswick St, Fitzroy VIC 3065",
            "in": f"Flat {self.rng.randint(1, 9)}{L(1)}, {n} MG Road, Bengaluru 5600{d(2)}",
            "nl": f"Keizersgracht {self.rng.randint(1, 700)}, 1016 {L(2)} Amsterdam",
        }[kind]
        return [(text, {"cat": "ADDRESS", "kind": kind})]

    def address_block(self) -> list[Value]:
        """A letter's address, one span a line."""
        n = self.rng.randint(1, 300)
        st = self.rng.choice(self._STREETS[:13])
        town = self.pick("Harrogate", "Rotherham", "Barnsley", "Kirkcaldy", "Stockport")
        pc = f"{self.pick('HG', 'S', 'KY', 'SK')}{self.rng.randint(1, 9)} {self._digits(1)}"
        pc += self._letters(2)
        return [
            [(f"{n} {st}", {"cat": "ADDRESS", "kind": "street"})],
            [(town, {"cat": "ADDRESS", "kind": "town"})],
            [(pc, {"cat": "ADDRESS", "kind": "postcode"})],
        ]


# --------------------------------------------------------------------------------------------
# Note styles. Each fills one note; names, dates and numbers are drawn fresh per note.

Style = Callable[[Gen], None]
CLIN = ("title", "credential", "initials", "bare", "title", "surname")
STAFF = ("bare", "credential", "given", "title", "initials")
REL = ("bare", "title", "given", "bare", "initials")


def _header(g: Gen, pt: Person, kind: str = "mrn") -> None:
    g.add(
        g.pick(
            "Patient: {n}\nDOB: {dob}   {id}\n",
            "Name: {n}   DOB {dob}\n{id}\n",
            "{n}  {id}  D.O.B. {dob}\n",
            "PATIENT NAME: {n}\nDate of birth: {dob}\n{id}\n",
        ),
        n=g.name(pt, "patient", "label", "caps", "last_first", "caps"),
        dob=g.dob(),
        id=g.rid(kind),
    )


def psychiatry(g: Gen) -> None:
    pt, rel, cons, nurse = g.person(female=False), g.person(), g.person(), g.person()
    g.add("PSYCHIATRY ASSESSMENT - Liaison team\n")
    _header(g, pt, g.pick("mrn", "nhs", "hospital_no"))
    g.add(
        "Seen on ward 7B on {d} at request of {c}. {age}, known to CMHT.\n",
        d=g.date(),
        c=g.name(cons, "clinician", *CLIN),
        age=g.young_age(),
    )
    g.add(
        "HPC: {p} reports low mood since {d2}, poor sleep, wt loss. {s1}. {s2}.\n",
        p=g.name(pt, "patient", "given", "title", "bare"),
        d2=g.date(fmts=("month_year", "d_month", "weekday", "month_the_ord")),
        s1=g.term("score"),
        s2=g.term("score"),
    )
    g.add(
        "Collateral from {r} ({role}), tel {ph}: says {p} has been 'not himself' and "
        "stopped his {drug}.\n",
        r=g.name(rel, "relative", *REL),
        role=g.pick("wife", "son", "daughter", "brother", "partner"),
        ph=g.phone(),
        p=g.name(pt, "patient", "given", "title"),
        drug=g.term("drug"),
    )
    g.add(
        "PMH: {e}; {e2}. Meds: {drug}, {drug2}. NKDA.\n",
        e=g.term("eponym"),
        e2=g.term("eponym"),
        drug=g.term("drug"),
        drug2=g.term("drug"),
    )
    g.add(
        "Risk: no current SI/HI. Lives with {r} at {addr}.\n",
        r=g.name(rel, "relative", "given", "bare"),
        addr=g.address(),
    )
    if g.maybe():
        g.add(
            "Previous admission under {c} at St Jude's, {d}; {id}.\n",
            c=g.name(g.person(), "clinician", *CLIN),
            d=g.date(),
            id=g.rid("hospital_no"),
        )
    g.add(
        "Plan: d/w {c}. Started {drug}. F/U with {n} (CPN) in 2/52. {code}\n",
        c=g.name(cons, "clinician", "title", "surname"),
        drug=g.term("drug"),
        n=g.name(nurse, "staff", *STAFF),
        code=g.code(),
    )
    g.add(
        "{sig}\nST5 Psychiatry, bleep 4411\n",
        sig=g.name(g.person(), "clinician", "credential", "bare", "initials"),
    )


def paediatric_letter(g: Gen) -> None:
    child, mum, gp, cons = g.person(), g.person(female=True), g.person(), g.person()
    g.add(
        "Children's Outpatients, Riverside Hospital\nDictated {d}  Typed {d2}\n",
        d=g.date(),
        d2=g.date(),
    )
    g.add(
        "Dear {gp},\n\nRe: {c}  DOB {dob}  {id}\n",
        gp=g.name(gp, "clinician", "title"),
        c=g.name(child, "patient", "label", "caps", "last_first"),
        dob=g.dob(),
        id=g.rid(g.pick("nhs", "mrn", "chi")),
    )
    block = g.address_block()
    g.add("{a}\n{b}\n{c}\n\n", a=block[0], b=block[1], c=block[2])
    g.add(
        "I reviewed {c} in clinic today with {m}. {c2} is {age} and was referred with "
        "recurrent wheeze. {wt}, {v}. {e}.\n",
        c=g.name(child, "patient", "given", "bare"),
        m=g.name(mum, "relative", "title", "bare", "given"),
        c2=g.name(child, "patient", "given"),
        age=g.young_age(),
        wt=g.term("vital"),
        v=g.term("vital"),
        e=g.term("eponym"),
    )
    g.add(
        "In {m} view the neb ({dev}) helps. School nurse {sn} has a copy of the plan. "
        "Mum's mobile {ph}, email {em}.\n",
        m=g.name(mum, "relative", "possessive"),
        dev=g.term("device"),
        sn=g.name(g.person(), "staff", *STAFF),
        ph=g.phone(),
        em=g.email(mum),
    )
    g.add(
        "Plan: {drug} via spacer, review in 3 months ({d}). {code}\n\nYours sincerely,\n\n{c}\n"
        "Consultant Paediatrician\ncc: {m}, {addr}\n",
        drug=g.term("drug"),
        d=g.date(fmts=("month_year", "mm/yyyy", "d_month_y")),
        code=g.code(),
        c=g.name(cons, "clinician", "credential", "bare"),
        m=g.name(mum, "relative", "title", "bare"),
        addr=g.address(),
    )


def obstetric_triage(g: Gen) -> None:
    pt, partner, mw = g.person(female=True), g.person(), g.person()
    g.add("MATERNITY TRIAGE  {dt}\n", dt=g.date(fmts=("datetime", "iso_datetime", "dmy")))
    g.add(
        "{n}  {id}  {age}  G2P1 at 34+2\nEDD {edd} (by {rule})\n",
        n=g.name(pt, "patient", "caps", "label", "last_first"),
        id=g.rid(g.pick("mrn", "hospital_no", "medicare_au")),
        age=g.young_age(),
        edd=g.date(),
        rule=[("Naegele's rule", {"term": "eponym"})],
    )
    g.add(
        "Attended with partner {p} c/o reduced FM since {d}. {v}, {v2}, {f}. CTG reactive.\n",
        p=g.name(partner, "relative", *REL),
        d=g.date(fmts=("weekday", "d_month", "month_the_ord")),
        v=g.term("vital"),
        v2=g.term("vital"),
        f=g.term("vital"),
    )
    g.add(
        "Booked at {addr} with community MW {mw} (ph {ph}). {s}. Urine NAD.\n",
        addr=g.address(),
        mw=g.name(mw, "staff", *STAFF),
        ph=g.phone(),
        s=g.term("score"),
    )
    g.add(
        "{lab}. {lab2}. Seen by {reg}. Plan: home, return if concerns. {code}\n",
        lab=g.term("lab"),
        lab2=g.term("lab"),
        reg=g.name(g.person(), "clinician", *CLIN),
        code=g.code(),
    )
    g.add("Triage MW: {s}\n", s=g.name(g.person(), "staff", "credential", "bare", "initials"))


def physio(g: Gen) -> None:
    pt, physio_, rel = g.person(), g.person(), g.person()
    g.add(
        "Physiotherapy outpatient note - {d}\n{n} ({id})\n",
        d=g.date(),
        n=g.name(pt, "patient", "title", "bare", "label"),
        id=g.rid(g.pick("mrn", "nhs", "insurance"), "unlabelled"),
    )
    g.add(
        "S: {p} reports R knee pain after fall on {d} at {addr}. {age}. Works as a "
        "teacher. Pain 6/10.\n",
        p=g.name(pt, "patient", "given", "title"),
        d=g.date(fmts=("d_month", "weekday", "month_the_ord", "dmy")),
        addr=g.address(),
        age=g.young_age(),
    )
    g.add(
        "O: {t}, {t2} neg. {a} tender. ROM 0-95. {dev} in situ since TKR {d}.\n",
        t=g.term("eponym"),
        t2=g.term("eponym"),
        a=g.term("anatomy"),
        dev=g.term("device"),
        d=g.date(fmts=("month_year", "mm/yyyy")),
    )
    g.add(
        "A: likely meniscal. {s}.\nP: HEP given, {r} to help with exercises. Referral to "
        "{c} (ortho). {ins}\n",
        s=g.term("score"),
        r=g.name(rel, "relative", *REL),
        c=g.name(g.person(), "clinician", *CLIN),
        ins=g.rid("insurance"),
    )
    g.add("{sig}\n", sig=g.name(physio_, "staff", "credential"))


def pharmacy(g: Gen) -> None:
    pt, pharm, presc = g.person(), g.person(), g.person()
    g.add(
        "PHARMACY INTERVENTION\nPt: {n}  {id}  {age}\n{rx}\n",
        n=g.name(pt, "patient", "last_first", "caps", "label"),
        id=g.rid(g.pick("mrn", "hospital_no", "encounter")),
        age=g.young_age(),
        rx=g.rid("rx_number"),
    )
    g.add(
        "{drug} and {drug2} co-prescribed by {c} on {d}; {lab}, {lab2}. "
        "Risk of QT prolongation ({e}).\n",
        drug=g.term("drug"),
        drug2=g.term("drug"),
        c=g.name(presc, "clinician", *CLIN),
        d=g.date(),
        lab=g.term("lab"),
        lab2=g.term("lab"),
        e=g.term("ecg"),
    )
    g.add(
        "Discussed with {c}, dose reduced. Pt's daughter {r} confirmed OTC meds by phone ({ph}).\n",
        c=g.name(presc, "clinician", "title", "surname"),
        r=g.name(g.person(female=True), "relative", *REL),
        ph=g.phone(),
    )
    if g.maybe(0.4):
        g.add(
            "Logged from workstation {ip}. Insurer notified: {ins}.\n",
            ip=g.ip(),
            ins=g.rid(g.pick("insurance", "medicare_us")),
        )
    g.add(
        "{code}\n{s}, ward pharmacist, {em}\n",
        code=g.code(),
        s=g.name(pharm, "staff", "credential", "bare"),
        em=g.email(pharm),
    )


def palliative(g: Gen) -> None:
    pt, son, dau = g.person(), g.person(female=False), g.person(female=True)
    cons, sw = g.person(), g.person()
    g.add("Palliative care - family meeting {d}\n", d=g.date(fmts=("weekday", "dmy", "d_month_y")))
    g.add(
        "Re {n}, {age}, {id}\n",
        n=g.name(pt, "patient", "title", "label", "caps"),
        age=g.old_age() if g.maybe(0.7) else g.young_age(),
        id=g.rid(g.pick("nhs", "mrn")),
    )
    g.add(
        "Present: {s} (son), {d} (daughter, NOK), {c}, {w} (SW), interpreter.\n",
        s=g.name(son, "relative", *REL),
        d=g.name(dau, "relative", *REL),
        c=g.name(cons, "clinician", *CLIN),
        w=g.name(sw, "staff", *STAFF),
    )
    g.add(
        "Discussed progression of {e} despite {drug}. {s}. {p} has been sleeping most of "
        "the day. {d} asked about {dev}.\n",
        e=g.term("eponym"),
        drug=g.term("drug"),
        s=g.term("score"),
        p=g.name(pt, "patient", "given", "title"),
        d=g.name(dau, "relative", "given", "lower"),
        dev=g.term("device"),
    )
    g.add(
        "DNACPR confirmed. Preferred place of death: home ({addr}). {p} wishes honoured.\n",
        addr=g.address(),
        p=g.name(pt, "patient", "possessive"),
    )
    g.add(
        "Contact {s} on {ph} or {ph2} day or night. {em}\n",
        s=g.name(son, "relative", "given", "title"),
        ph=g.phone(),
        ph2=g.phone(),
        em=g.email(son),
    )
    if g.maybe(0.4):
        g.add("Family have set up {u}.\n", u=g.url())
    g.add("{c}\n", c=g.name(cons, "clinician", "credential", "bare"))


def oncology_mdt(g: Gen) -> None:
    pt, cons, cns = g.person(), g.person(), g.person()
    g.add("UPPER GI / BREAST MDT OUTCOME - {d}\n", d=g.date(fmts=("d-mon-y", "dmy", "iso")))
    g.add(
        "{n}   {id}   {id2}   DOB {dob}\n",
        n=g.name(pt, "patient", "caps", "last_first"),
        id=g.rid(g.pick("nhs", "mrn", "chi")),
        id2=g.rid("hospital_no", "unlabelled"),
        dob=g.dob(),
    )
    g.add(
        "Lead clinician: {c}. CNS: {n}.\n",
        c=g.name(cons, "clinician", *CLIN),
        n=g.name(cns, "staff", *STAFF),
    )
    g.add(
        "Histology ({acc}): {p}, {p2}, {lab}, {lab2}. {code}\n",
        acc=g.rid("accession"),
        p=g.term("pathology"),
        p2=g.term("pathology"),
        lab=g.term("lab"),
        lab2=g.term("lab"),
        code=g.code(),
    )
    g.add(
        "Imaging: CT TAP {d} - no distant mets. {s}.\nOutcome: {drug} then surgery "
        "({e}) with {c}. {p} to be informed by {cns}.\n",
        d=g.date(),
        s=g.term("score"),
        drug=g.term("drug"),
        e=g.term("eponym"),
        c=g.name(g.person(), "clinician", *CLIN),
        p=g.name(pt, "patient", "title", "given", "bare"),
        cns=g.name(cns, "staff", "given", "title"),
    )
    g.add(
        "Trial: screened for KEYNOTE; {id}.\n", id=g.rid(g.pick("insurance", "ubrn", "encounter"))
    )


def dermatology(g: Gen) -> None:
    pt, derm = g.person(), g.person()
    g.add(
        "Dermatology - clinical photography note\n{n}  {id}\nPhotos taken {dt} by {ph} "
        "(medical photographer).\n",
        n=g.name(pt, "patient", "label", "caps", "bare"),
        id=g.rid(g.pick("mrn", "hospital_no", "nhs")),
        dt=g.date(fmts=("datetime", "iso_datetime", "dmy")),
        ph=g.name(g.person(), "staff", *STAFF),
    )
    g.add(
        "{age}, {f}. Lesion on L forearm, 8 mm, irregular border, noticed by {r} in {d}. {e}.\n",
        age=g.young_age() if g.maybe(0.8) else g.old_age(),
        f=g.term("eponym"),
        r=g.name(g.person(), "relative", *REL),
        d=g.date(fmts=("month_year", "d_month")),
        e=g.term("eponym"),
    )
    g.add(
        "Dermoscopy: atypical network. {s}. Previous {drug}.\nImages uploaded to "
        "{u} (consent signed {d}).\n",
        s=g.term("score"),
        drug=g.term("drug"),
        u=g.url() if g.maybe(0.3) else [("PACS", None)],
        d=g.date(),
    )
    g.add(
        "Plan: excision under {c}. Pt contact {ph} / {em}. {code}\n",
        c=g.name(derm, "clinician", *CLIN),
        ph=g.phone(),
        em=g.email(pt),
        code=g.code(),
    )


def cardiology_letter(g: Gen) -> None:
    pt, gp, cons, wife = g.person(female=False), g.person(), g.person(), g.person(female=True)
    g.add(
        "Cardiology Clinic, Heart Centre\n{dd}\n\n",
        dd=g.date(fmts=("d_month_y", "month_d_y", "ordinal")),
    )
    g.add(
        "{gp}\n{practice}\n{addr}\n\n",
        gp=g.name(gp, "clinician", "title", "credential"),
        practice=g.pick("Oakwood Surgery", "Parkside Medical Practice", "Hilltop Family Medicine"),
        addr=g.address(),
    )
    g.add(
        "Dear Dr {gp},\nRe: {n}, DOB {dob}, {id}\n",
        gp=g.name(gp, "clinician", "surname"),
        n=g.name(pt, "patient", "title", "label", "caps"),
        dob=g.dob(),
        id=g.rid(g.pick("mrn", "nhs", "medicare_us", "ssn")),
    )
    g.add(
        "Thank you for referring this {age} with palpitations. He attended with his wife "
        "{w}. {v}, {v2}.\n",
        age=g.young_age() if g.maybe(0.75) else g.old_age(),
        w=g.name(wife, "relative", *REL),
        v=g.term("vital"),
        v2=g.term("vital"),
    )
    g.add(
        "ECG: {e1}, {e2}, {e3}. {ep}. Echo ({d}) EF 45%. {lab}.\n",
        e1=g.term("ecg"),
        e2=g.term("ecg"),
        e3=g.term("ecg"),
        ep=g.term("eponym"),
        d=g.date(),
        lab=g.term("lab"),
    )
    g.add(
        "Device check: {dev}, {sn}. {s}.\nPlan: {drug}; Holter via {tech}. {code}\n",
        dev=g.term("device"),
        sn=g.rid("device_serial"),
        s=g.term("score"),
        drug=g.term("drug"),
        tech=g.name(g.person(), "staff", *STAFF),
        code=g.code(),
    )
    g.add(
        "Yours sincerely\n\n{c}\nConsultant Cardiologist\nSecretary: {sec}, tel {ph}\n",
        c=g.name(cons, "clinician", "credential", "bare"),
        sec=g.name(g.person(), "staff", "bare", "given", "title"),
        ph=g.phone(),
    )


def histopathology(g: Gen) -> None:
    pt, path, surg = g.person(), g.person(), g.person()
    g.add(
        "HISTOPATHOLOGY REPORT\nLab no: {acc}\nSURNAME: {s}  FORENAME: {f}\n"
        "DOB: {dob}  Sex: {sex}  {id}\n",
        acc=g.rid("accession", "unlabelled"),
        s=[
            (
                pt.surname.upper(),
                {
                    "cat": "NAME",
                    "kind": "name",
                    "context": "patient",
                    "origin": pt.origin,
                    "fmt": "caps",
                    "shape": _shape(pt),
                },
            )
        ],
        f=[
            (
                pt.given.upper(),
                {
                    "cat": "NAME",
                    "kind": "name",
                    "context": "patient",
                    "origin": pt.origin,
                    "fmt": "caps",
                    "shape": _shape(pt),
                },
            )
        ],
        dob=g.dob(),
        sex=g.pick("F", "M"),
        id=g.rid(g.pick("nhs", "mrn", "chi", "hospital_no")),
    )
    g.add(
        "Requested by: {c}   Received: {d}   Reported: {d2}\n",
        c=g.name(surg, "clinician", *CLIN),
        d=g.date(fmts=("dmy", "d-mon-y", "datetime")),
        d2=g.date(fmts=("dmy", "d-mon-y", "compact")),
    )
    g.add(
        "Clinical details: {age}, {e}. ?malignancy.\nMacro: skin ellipse 32x14x6 mm, "
        "inked. Blocks A1-A4.\nMicro: {p}, {p2}, {s}. {lab}. {a}.\n",
        age=g.young_age(),
        e=g.term("eponym"),
        p=g.term("pathology"),
        p2=g.term("pathology"),
        s=g.term("score"),
        lab=g.term("lab"),
        a=g.term("anatomy"),
    )
    g.add(
        "{code}\nReported by {p} / checked {c2}\n",
        code=g.code(),
        p=g.name(path, "clinician", "credential", "initials"),
        c2=g.name(g.person(), "clinician", "initials", "surname", "title"),
    )


def anaesthetic(g: Gen) -> None:
    pt = g.person()
    g.add("Anaesthetic pre-op assessment  {d}\n", d=g.date(fmts=("weekday", "dmy", "iso")))
    _header(g, pt, g.pick("mrn", "hospital_no", "encounter"))
    g.add(
        "For {e} on list of {c}. {age}. {s}, {s2}. {e2}.\n",
        e=g.term("eponym"),
        c=g.name(g.person(), "clinician", *CLIN),
        age=g.young_age(),
        s=g.term("score"),
        s2=g.term("score"),
        e2=g.term("eponym"),
    )
    g.add(
        "Airway: {m}, {cl}, mouth opening >3 FB. Prev GA {d} uneventful (notes from "
        "{hosp}). {v}. {lab}.\n",
        m=[("Mallampati 2", {"term": "eponym"})],
        cl=[("Cormack-Lehane grade 1", {"term": "eponym"})],
        d=g.date(fmts=("month_year", "mm/yyyy", "dmy")),
        hosp=g.pick("St Mary's", "Royal Infirmary", "Mercy General"),
        v=g.term("vital"),
        lab=g.term("lab"),
    )
    g.add(
        "Meds: {drug}, {drug2} (withhold {dd}). Allergy: penicillin.\n",
        drug=g.term("drug"),
        drug2=g.term("drug"),
        dd=g.date(fmts=("d_month", "weekday")),
    )
    g.add(
        "NOK {r} ({rel}) {ph}. Plan GA + {dev}. {code}\nAnaesthetist {a}\n",
        r=g.name(g.person(), "relative", *REL),
        rel=g.pick("husband", "mother", "niece"),
        ph=g.phone(),
        dev=g.term("device"),
        code=g.code(),
        a=g.name(g.person(), "clinician", "credential", "bare", "initials"),
    )


def community_nursing(g: Gen) -> None:
    pt, dn, carer = g.person(), g.person(), g.person()
    g.add(
        "District nursing visit {d}\nVisited {n} at home, {addr}. Key safe code given by {c}.\n",
        d=g.date(fmts=("weekday", "dmy", "dmy_short")),
        n=g.name(pt, "patient", "title", "bare"),
        addr=g.address(),
        c=g.name(carer, "relative", *REL),
    )
    g.add(
        "{p} is {age}, lives alone, carers QDS. {s}, {s2}.\n",
        p=g.name(pt, "patient", "given", "title"),
        age=g.old_age() if g.maybe(0.6) else g.young_age(),
        s=g.term("score"),
        s2=g.term("score"),
    )
    g.add(
        "Wound L heel: dressed with {d1} and {d2}. {v}. {dev} draining clear.\n",
        d1=g.term("device"),
        d2=g.term("device"),
        v=g.term("vital"),
        dev=g.term("device"),
    )
    g.add(
        "Msg left for GP {gp} re {drug}. Daughter {r} ({ph}) updated - she said "
        "'{lr} is ok but mum is confused'.\n",
        gp=g.name(g.person(), "clinician", *CLIN),
        drug=g.term("drug"),
        r=g.name(g.person(female=True), "relative", "given", "bare"),
        ph=g.phone(),
        lr=g.name(carer, "relative", "lower"),
    )
    g.add(
        "Next visit {d}. {n}\n",
        d=g.date(fmts=("weekday", "d_month", "dmy")),
        n=g.name(dn, "staff", "credential", "bare", "given"),
    )


def transfer_letter(g: Gen) -> None:
    pt, sender, receiver = g.person(female=False), g.person(), g.person()
    wife = g.person(female=True)
    g.add(
        "INTER-HOSPITAL TRANSFER\nFrom: {s}, ICU, Mercy General\nTo: {r}, Regional "
        "Cardiothoracic Centre\nDate/time: {dt}\n",
        s=g.name(sender, "clinician", *CLIN),
        r=g.name(receiver, "clinician", *CLIN),
        dt=g.date(fmts=("datetime", "iso_datetime")),
    )
    g.add(
        "Patient: {n}  {id}  {id2}  {age}\n",
        n=g.name(pt, "patient", "label", "caps", "last_first"),
        id=g.rid(g.pick("mrn", "ssn", "medicare_us", "nhs")),
        id2=g.rid(g.pick("insurance", "encounter", "passport", "licence")),
        age=g.young_age() if g.maybe(0.8) else g.old_age(),
    )
    g.add(
        "Admitted {d} with {e}. {v}, {v2}, {v3}. {lab}. Intubated; {dev}. {drug}.\n",
        d=g.date(),
        e=g.term("eponym"),
        v=g.term("vital"),
        v2=g.term("vital"),
        v3=g.term("vital"),
        lab=g.term("lab"),
        dev=g.term("device"),
        drug=g.term("drug"),
    )
    g.add(
        "Bed confirmed with {c} (ph {ph}). Wife {w} travelling separately, mobile {ph2}, "
        "address {addr}.\n",
        c=g.name(g.person(), "staff", *STAFF),
        ph=g.phone(),
        w=g.name(wife, "relative", *REL),
        ph2=g.phone(),
        addr=g.address(),
    )
    g.add(
        "Previously treated at {hosp} ({id}). {code}\n",
        hosp=g.pick("Royal Free", "Cedars Regional", "St Vincent's"),
        id=g.rid(g.pick("mrn", "hospital_no"), "unlabelled"),
        code=g.code(),
    )


def message_thread(g: Gen) -> None:
    pt, dau, nurse, gp = g.person(), g.person(female=True), g.person(), g.person()
    g.add(
        "Patient portal messages - {n} ({id})\n",
        n=g.name(pt, "patient", "label", "bare"),
        id=g.rid(g.pick("mrn", "nhs", "encounter"), "unlabelled"),
    )
    g.add(
        "[{d}] from daughter: hi its {r} here, {p} had another fall last nite, bruise on "
        "hip, on {drug} still. can {gp} call me on {ph} thx\n",
        d=g.date(fmts=("datetime", "dmy_short", "iso_datetime")),
        r=g.name(dau, "relative", "lower"),
        p=g.pick("mum", "dad", "nan"),
        drug=g.term("drug"),
        gp=g.name(gp, "clinician", "lower", "title"),
        ph=g.phone(),
    )
    g.add(
        "[{d}] reply {n}: Hi {r}, thanks for letting us know. {gp} will ring after clinic. "
        "If {p} has new confusion please call 111. {s}\n",
        d=g.date(fmts=("datetime", "dmy")),
        n=g.name(nurse, "staff", "credential", "bare", "given"),
        r=g.name(dau, "relative", "given"),
        gp=g.name(gp, "clinician", "title"),
        p=g.name(pt, "patient", "given", "title"),
        s=g.term("vital"),
    )
    g.add(
        "[{d}] {r}: ok thanks {nn}. my email is {em} if easier\n",
        d=g.date(fmts=("datetime", "dmy_short")),
        r=g.name(dau, "relative", "lower", "given"),
        nn=g.name(nurse, "staff", "lower", "given"),
        em=g.email(dau),
    )
    g.add(
        "Telephone note: spoke to {r}, {p} is {age} and has {e}. {lab}. {code} {h} husband "
        "will collect the TTOs.\n",
        r=g.name(dau, "relative", "given", "bare"),
        h=g.name(dau, "relative", "possessive"),
        p=g.name(pt, "patient", "given", "title"),
        age=g.old_age() if g.maybe(0.6) else g.young_age(),
        e=g.term("eponym"),
        lab=g.term("lab"),
        code=g.code(),
    )


STYLES: dict[str, Style] = {
    "psychiatry": psychiatry,
    "paediatric_letter": paediatric_letter,
    "obstetric_triage": obstetric_triage,
    "physiotherapy": physio,
    "pharmacy": pharmacy,
    "palliative_meeting": palliative,
    "oncology_mdt": oncology_mdt,
    "dermatology_photo": dermatology,
    "cardiology_letter": cardiology_letter,
    "histopathology": histopathology,
    "anaesthetic_preop": anaesthetic,
    "community_nursing": community_nursing,
    "transfer_letter": transfer_letter,
    "message_thread": message_thread,
}


def build_corpus(seed: int = SEED, per_style: int = NOTES_PER_STYLE) -> list[Note]:
    """All notes, the same for the same seed."""
    rng = random.Random(seed)
    notes = []
    for _ in range(per_style):
        for style, fill in STYLES.items():
            g = Gen(random.Random(rng.getrandbits(64)))
            fill(g)
            notes.append(g.note(style))
    return notes


# --------------------------------------------------------------------------------------------
# Scoring.


@dataclass
class Tally:
    caught: int = 0
    total: int = 0

    @property
    def recall(self) -> float:
        return self.caught / self.total if self.total else 1.0

    def add(self, hit: bool) -> None:
        self.total += 1
        self.caught += int(hit)


@dataclass
class Score:
    by_category: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    names_by: dict[str, dict[str, Tally]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(Tally))
    )
    ids_by: dict[str, dict[str, Tally]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(Tally))
    )
    other_by_kind: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    terms_by_kind: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    replacements: int = 0
    on_phi: int = 0
    inconsistent_notes: int = 0
    misses: list[tuple[str, Planted, str]] = field(default_factory=list)
    term_hits: list[tuple[str, Term, str]] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.on_phi / self.replacements if self.replacements else 1.0

    @property
    def term_fp_rate(self) -> float:
        scrubbed = sum(t.caught for t in self.terms_by_kind.values())
        total = sum(t.total for t in self.terms_by_kind.values())
        return scrubbed / total if total else 0.0


def _rebuild(text: str, reps: Sequence[PhiReplacement]) -> str:
    out, last = [], 0
    for r in sorted(reps, key=lambda r: r.start):
        if r.start < last:
            return ""
        out.append(text[last : r.start])
        out.append(r.replacement)
        last = r.end
    out.append(text[last:])
    return "".join(out)


def _tokens(value: str) -> list[str]:
    return [t for t in re.findall(r"\w+", value) if len(t) > 1]


def _count(token: str, text: str) -> int:
    return len(re.findall(rf"(?<!\w){re.escape(token)}(?!\w)", text))


def score_note(note: Note, out: str, reps: Iterable[PhiReplacement], score: Score) -> None:
    """Add one note's results to ``score``."""
    reps = list(reps)
    covered = bytearray(len(note.text))
    for r in reps:
        covered[max(r.start, 0) : max(r.end, 0)] = b"\x01" * (max(r.end, 0) - max(r.start, 0))
    consistent = _rebuild(note.text, reps) == out
    score.inconsistent_notes += int(not consistent)
    baseline_parts, last = [], 0
    for p in sorted(note.phi, key=lambda p: p.start):
        baseline_parts += [note.text[last : p.start], " [PHI] "]
        last = p.end
    baseline = "".join([*baseline_parts, note.text[last:]])
    for p in note.phi:
        full = all(covered[i] or note.text[i].isspace() for i in range(p.start, p.end))
        overlapping = [r for r in reps if r.start < p.end and r.end > p.start]
        leaked = False
        if p.category not in ("DATE", "AGE>89"):
            toks = _tokens(p.value)
            if consistent:
                echoed = " ".join(r.replacement for r in overlapping)
                leaked = any(_count(t, echoed) for t in toks)
            else:
                leaked = any(_count(t, out) > _count(t, baseline) for t in toks)
        hit = full and not leaked
        score.by_category[p.category].add(hit)
        if p.category == "NAME":
            for axis, key in (
                ("context", p.context),
                ("origin", p.origin),
                ("format", p.fmt),
                ("shape", p.shape),
            ):
                score.names_by[axis][key].add(hit)
        elif p.category == "ID":
            score.ids_by["kind"][p.kind].add(hit)
            score.ids_by["label"][p.fmt].add(hit)
        else:
            score.other_by_kind[f"{p.category}:{p.kind}{'/' + p.fmt if p.fmt else ''}"].add(hit)
        if not hit:
            lo, hi = max(0, p.start - 30), min(len(note.text), p.end + 30)
            why = "leaked in replacement" if full else "not covered"
            score.misses.append((note.style, p, f"{why}: ...{note.text[lo:hi]!r}..."))
    for t in note.terms:
        touched = [r for r in reps if r.start < t.end and r.end > t.start]
        score.terms_by_kind[t.kind].add(bool(touched))
        if touched:
            lo, hi = max(0, t.start - 25), min(len(note.text), t.end + 25)
            score.term_hits.append(
                (note.style, t, f"...{note.text[lo:hi]!r}... as {touched[0].category}")
            )
    for r in reps:
        score.replacements += 1
        if any(r.start < p.halo_end and r.end > p.halo_start for p in note.phi):
            score.on_phi += 1


def format_table(score: Score, notes: Sequence[Note], seconds: float) -> str:
    """A plain-text report of every figure."""
    lines = [
        f"held-out-3: {len(notes)} notes, {len(STYLES)} styles, "
        f"{sum(len(n.phi) for n in notes)} planted PHI, "
        f"{sum(len(n.terms) for n in notes)} planted clinical terms, {seconds:.1f} s"
    ]

    def block(title: str, table: Mapping[str, Tally]) -> None:
        lines.append(f"\n{title}")
        for key, t in sorted(table.items(), key=lambda kv: (kv[1].recall, kv[0])):
            lines.append(f"  {key:<34} {t.caught:>5}/{t.total:<5} {t.recall:7.3f}")

    block("Recall by category", score.by_category)
    for axis in ("context", "origin", "format", "shape"):
        block(f"Names by {axis}", score.names_by[axis])
    block("IDs by kind", score.ids_by["kind"])
    block("IDs labelled/unlabelled", score.ids_by["label"])
    block("Other PHI by kind/format", score.other_by_kind)
    lines.append(f"\nPrecision: {score.on_phi}/{score.replacements} = {score.precision:.3f}")
    lines.append(
        f"Notes whose output differs from the replacements applied: {score.inconsistent_notes}"
    )
    lines.append("\nClinical terms scrubbed (false positives) by kind")
    for key, t in sorted(score.terms_by_kind.items()):
        lines.append(f"  {key:<34} {t.caught:>5}/{t.total:<5} {t.recall:7.3f}")
    total = sum(t.total for t in score.terms_by_kind.values())
    lines.append(
        f"  {'ALL':<34} {sum(t.caught for t in score.terms_by_kind.values()):>5}/"
        f"{total:<5} {score.term_fp_rate:7.3f}"
    )
    lines.append(f"\nMisses ({len(score.misses)}), first 40:")
    for style, p, why in score.misses[:40]:
        lines.append(f"  [{style}] {p.category}/{p.kind}/{p.context}/{p.fmt} {p.value!r}: {why}")
    lines.append(f"\nClinical terms scrubbed ({len(score.term_hits)}), first 25:")
    for style, term, why in score.term_hits[:25]:
        lines.append(f"  [{style}] {term.kind} {term.value!r}: {why}")
    return "\n".join(lines)
