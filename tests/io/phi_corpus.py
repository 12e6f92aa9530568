"""A seeded generator of synthetic clinical notes with planted PHI, each planted span recorded.

The notes follow five styles (history and physical, discharge summary, ECG report, pathology
report, referral letter, plus short progress notes). Names come from lists written here, not
from the scrubber's gazetteers: the "world" names (Yoruba, Zulu, Irish, Indian, Polish, Finnish,
Arabic, ...) are mostly absent from the US Census lists and are planted in name contexts
("Dr.", "Patient:", "seen by"); the "census" names are common US names and are also planted
with no context at all ("Michael Johnson was admitted"). Every value is invented.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field

WORLD_FIRST = """
    Oluwaseun Chidinma Thandiwe Siobhan Aoife Niamh Priya Anjali Rajesh Vikram Meiling
    Xiaoling Haruto Yuki Thuy Minh Olamide Kwame Abena Kofi Lindiwe Sipho Bongani Tariq
    Yasmin Leila Dariusz Małgorzata Wojciech Agnieszka Eero Aino Juhani Saoirse Caoimhe
    Ruairí Tadhg Bartosz Nnamdi Ifeoma Chukwuemeka Ngozi Adaeze Obinna Zanele Themba Nomvula
    Kagiso Aarav Ishaan Deepika Sanjeev Lakshmi Arjun Soo-jin Ji-hoon Hyun-woo Seo-yeon
    Rania Khalid Youssef Amira Bilal Zeynep Emre Elif Burak Ioana Bogdan Catalina Radu
    Sigrún Guðrún Ólafur Bjørn Ingrid Eirik Solveig
""".split()  # noqa: SIM905
WORLD_LAST = """
    Adeyemi Okonkwo Nwosu Mokoena Dlamini Nkosi Mensah Asante Boateng Raghunathan Venkatesan
    Chakraborty Bhattacharya Iyer Watanabe Yamamoto Nakamura Kowalczyk Wiśniewska Zieliński
    Szymański O'Sullivan MacGillivray Fitzgerald Kavanagh Haddad Al-Sayed Khoury Mansour
    Papadopoulos Georgiou Lindqvist Bergström Halvorsen Virtanen Korhonen Mäkinen Novák
    Dvořák Horváth Kovács Ivanova Kuznetsov Gutiérrez Castillo Vázquez Ferreira Carvalho
    Gonçalves Bianchi Esposito Ricci Okafor Eze Obi Ogunleye Balogun Adebayo Achebe Mahlangu
    Zulu Khumalo Ndlovu Pillay Naidoo Reddy Subramanian Krishnamurthy Gupta Banerjee
    Mukherjee Sato Kobayashi Tanaka Yoshida Jankowski Wójcik Kamiński Lewandowski Dąbrowski
    Laine Heikkinen Nieminen Hämäläinen Ó'Briain Dhomhnaill Farouk Nasser Saleh Darwish
    Yilmaz Demir Şahin Çelik Popescu Ionescu Constantin Stoica Sigurðsson Jónsdóttir Haugen
    Solberg Fjeld
""".split()  # noqa: SIM905
CENSUS_FIRST = """
    Michael Jennifer David Linda Robert Patricia James Susan Christopher Karen Daniel Nancy
    Matthew Lisa Anthony Betty Donald Sandra Steven Ashley Paul Kimberly Andrew Donna Joshua
    Emily Kenneth Michelle Kevin Dorothy Brian Carol Timothy Amanda Ronald Melissa Jason
    Deborah Jeffrey Stephanie Ryan Rebecca Gary Sharon Jacob Laura Nicholas Cynthia Eric
    Kathleen
""".split()  # noqa: SIM905
CENSUS_LAST = """
    Johnson Williams Garcia Rodriguez Martinez Anderson Thomas Robinson Sanchez Ramirez
    Nguyen Hernandez Lopez Gonzalez Perez Scott Torres Flores Rivera Mitchell Carter Roberts
    Phillips Campbell Parker Evans Collins Stewart Morris Rogers Murphy Peterson Bailey
    Kelly Howard Cooper Richardson Cox Ward Watson Brooks Sanders Bennett Gray Hughes Myers
    Foster Powell
""".split()  # noqa: SIM905
STREETS = """
    Maple Oak Cedar Willow Birchwood Lakeview Hillcrest Sunset Riverside Meadowbrook Orchard
    Chestnut Juniper Magnolia Sycamore Harbor Brookside Fairview Highland Kingsley
""".split()  # noqa: SIM905
STREET_TYPES = ("Street", "St", "Avenue", "Ave", "Road", "Rd", "Lane", "Drive", "Court", "Blvd")
CITIES = (
    "Springfield",
    "Riverton",
    "Fairhaven",
    "Maplewood",
    "Lakeside",
    "Brookfield",
    "Cedar Falls",
    "Port Jervis",
    "Glen Ellyn",
    "Oak Ridge",
)
STATES = ("IL", "MA", "NY", "CA", "TX", "OH", "PA", "WA", "GA", "MN")
HOSPITALS = (
    "Riverside General Hospital",
    "St. Brigid's Hospital",
    "Lakeview Medical Center",
    "Northgate Community Hospital",
    "Harborview Clinic",
    "Mercy Valley Hospital",
)
DOMAINS = ("example.org", "mail.example.com", "clinic.example.net", "hospital.example")
MONTHS = [
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


@dataclass(frozen=True, slots=True)
class Planted:
    """One planted PHI span: ``text[start:end] == value``; ``context`` says how it was written."""

    start: int
    end: int
    category: str
    value: str
    context: str = ""


@dataclass(frozen=True, slots=True)
class PlantedNote:
    text: str
    planted: tuple[Planted, ...]
    style: str
    patient_key: bytes
    #: (planted index a, planted index b, days from a to b) for date pairs with a known interval
    intervals: tuple[tuple[int, int, int], ...] = ()


@dataclass
class _Builder:
    rng: random.Random
    parts: list[str] = field(default_factory=list)
    planted: list[Planted] = field(default_factory=list)
    length: int = 0
    intervals: list[tuple[int, int, int]] = field(default_factory=list)

    def add(self, text: str) -> None:
        self.parts.append(text)
        self.length += len(text)

    def plant(self, category: str, value: str, context: str = "") -> int:
        self.planted.append(
            Planted(self.length, self.length + len(value), category, value, context)
        )
        self.add(value)
        return len(self.planted) - 1

    # -- values ------------------------------------------------------------------------------

    def person(self, world: bool | None = None) -> tuple[str, str]:
        if world is None:
            world = self.rng.random() < 0.5
        first = self.rng.choice(WORLD_FIRST if world else CENSUS_FIRST)
        last = self.rng.choice(WORLD_LAST if world else CENSUS_LAST)
        return first, last

    def date(self) -> dt.date:
        return dt.date(1950, 1, 1) + dt.timedelta(days=self.rng.randrange(0, 73 * 365))

    def date_text(self, day: dt.date) -> str:
        style = self.rng.randrange(11)
        month = MONTHS[day.month - 1]
        if style == 0:
            return f"{day.month:02d}/{day.day:02d}/{day.year}"
        if style == 1:
            return f"{day.month}/{day.day}/{day.year}"
        if style == 2:
            return day.isoformat()
        if style == 3:
            return f"{day.day:02d}.{day.month:02d}.{day.year}"
        if style == 4:
            return f"{month} {day.day}, {day.year}"
        if style == 5:
            return f"{day.day} {month[:3]} {day.year}"
        if style == 6:
            return f"{month[:3]}-{day.day:02d}-{day.year % 100:02d}"
        if style == 7:
            return f"{day.day:02d}-{month[:3]}-{day.year % 100:02d}"
        if style == 8:
            return f"{day.month:02d}/{day.day:02d}/{day.year % 100:02d}"
        if style == 9:
            return f"{month[:3]}. {day.day}, {day.year}"
        return f"{day.day} {month} {day.year}"

    def plant_date(self, day: dt.date | None = None, context: str = "") -> int:
        return self.plant("DATE", self.date_text(day or self.date()), context)

    def mrn(self) -> str:
        kind = self.rng.randrange(5)
        if kind == 0:
            return str(self.rng.randrange(10**6, 10**9))
        if kind == 1:
            return f"{self.rng.randrange(10**7):07d}"
        if kind == 2:
            return f"{self.rng.choice('ABCDEFGHJK')}{self.rng.randrange(10**5, 10**8)}"
        if kind == 3:
            return f"{self.rng.randrange(10, 99)}-{self.rng.randrange(10**4, 10**6)}"
        prefix = self.rng.choice(["S", "SP", "C"])
        return f"{prefix}{self.rng.randrange(10, 24)}-{self.rng.randrange(1, 99999):05d}"

    def phone(self) -> str:
        a, b, c = (
            self.rng.randrange(201, 989),
            self.rng.randrange(200, 999),
            self.rng.randrange(10**4),
        )
        kind = self.rng.randrange(5)
        if kind == 0:
            return f"({a}) {b}-{c:04d}"
        if kind == 1:
            return f"{a}-{b}-{c:04d}"
        if kind == 2:
            return f"{a}.{b}.{c:04d}"
        if kind == 3:
            return f"+1 {a} {b} {c:04d}"
        return f"{a}-{b}-{c:04d} ext. {self.rng.randrange(10, 9999)}"

    def email(self, first: str, last: str) -> str:
        ascii_ = "".join(ch for ch in f"{first}.{last}".lower() if ch.isascii() and ch != "'")
        return f"{ascii_}{self.rng.randrange(100)}@{self.rng.choice(DOMAINS)}"

    def street(self) -> str:
        number = self.rng.randrange(1, 9999)
        line = f"{number} {self.rng.choice(STREETS)} {self.rng.choice(STREET_TYPES)}"
        if self.rng.random() < 0.3:
            line += f", Apt {self.rng.randrange(1, 40)}"
        return line

    def address(self) -> str:
        zip_code = f"{self.rng.randrange(10000, 99999)}"
        return f"{self.street()}, {self.rng.choice(CITIES)}, {self.rng.choice(STATES)} {zip_code}"

    def old_age(self) -> str:
        return str(self.rng.randrange(90, 105))

    def name_in_context(self, world: bool | None = None) -> None:
        """One name written in one of several contexts."""
        first, last = self.person(world)
        form = self.rng.randrange(8)
        if form == 0:
            self.add(self.rng.choice(["Dr. ", "Dr ", "Doctor "]))
            self.plant("NAME", f"{first} {last}", "title")
        elif form == 1:
            self.add(self.rng.choice(["Mr. ", "Mrs. ", "Ms. ", "Miss "]))
            self.plant("NAME", last, "title")
        elif form == 2:
            self.add(self.rng.choice(["seen by ", "discussed with ", "evaluated by "]))
            self.plant("NAME", f"{first} {last}", "phrase")
        elif form == 3:
            self.add(self.rng.choice(["her daughter, ", "his wife, ", "his son, ", "her husband "]))
            self.plant("NAME", first, "phrase")
        elif form == 4:
            self.add("Dr. ")
            self.plant("NAME", last, "title")
        elif form == 5:
            self.add("Prof. ")
            self.plant("NAME", f"{first[0]}. {last}", "title")
        elif form == 6:
            self.add("referred by ")
            self.plant("NAME", f"{first} {last}", "phrase")
        else:
            self.add("Nurse ")
            self.plant("NAME", first, "title")

    def finish(self, style: str, key: bytes) -> PlantedNote:
        return PlantedNote(
            "".join(self.parts), tuple(self.planted), style, key, tuple(self.intervals)
        )


# -- styles ------------------------------------------------------------------------------------


def _history_and_physical(b: _Builder) -> None:
    first, last = b.person()
    b.add("HISTORY AND PHYSICAL\n\nPatient: ")
    if b.rng.random() < 0.5:
        b.plant("NAME", f"{last.upper()}, {first.upper()}", "label")
    else:
        b.plant("NAME", f"{first} {last}", "label")
    b.add("\nMRN: ")
    b.plant("ID", b.mrn(), "label")
    b.add("\nDOB: ")
    b.plant_date(context="label")
    b.add("\nDate of service: ")
    b.plant_date(context="label")
    b.add("\n\nCHIEF COMPLAINT: Chest pain and shortness of breath.\n\nHPI: ")
    b.add(b.rng.choice(["Mr. ", "Ms. ", "Mrs. "]))
    b.plant("NAME", last, "title")
    age_old = b.rng.random() < 0.4
    b.add(" is a ")
    if age_old:
        b.plant("AGE>89", b.old_age(), "age")
    else:
        b.add(str(b.rng.randrange(30, 89)))
    b.add("-year-old with hypertension and type 2 diabetes mellitus who was ")
    b.name_in_context()
    b.add(" at ")
    b.plant("ADDRESS", b.rng.choice(HOSPITALS), "institution")
    b.add(" on ")
    b.plant_date(context="prose")
    b.add(". ")
    b.plant("NAME", last, "repeat")
    b.add(" reports exertional dyspnea for three weeks. Troponin was negative.\n")
    b.add("SOCIAL HISTORY: Lives with family")
    if b.rng.random() < 0.6:
        b.add(" at ")
        b.plant("ADDRESS", b.address(), "street")
    b.add(". Contact: ")
    b.name_in_context()
    b.add(", phone ")
    b.plant("PHONE", b.phone(), "label")
    b.add(
        ".\n\nASSESSMENT AND PLAN: Unstable angina. Start aspirin, metoprolol and heparin; "
        "cardiology consult. Echocardiogram in the morning.\n"
    )


def _discharge(b: _Builder) -> None:
    first, last = b.person()
    b.add("DISCHARGE SUMMARY\nName: ")
    b.plant("NAME", f"{first} {last}", "label")
    b.add("    Acct #: ")
    b.plant("ID", b.mrn(), "label")
    b.add("\nMedical record number: ")
    b.plant("ID", b.mrn(), "label")
    admitted = b.date()
    stay = b.rng.randrange(1, 20)
    b.add("\nAdmission date: ")
    a = b.plant_date(admitted, "label")
    b.add("\nDischarge date: ")
    d = b.plant_date(admitted + dt.timedelta(days=stay), "label")
    b.intervals.append((a, d, stay))
    b.add("\nAttending: ")
    f2, l2 = b.person()
    b.plant("NAME", f"{f2} {l2}", "label")
    b.add(
        ", MD\n\nHOSPITAL COURSE: Admitted with community-acquired pneumonia, treated with "
        "ceftriaxone and azithromycin. Foley catheter removed on day two. History of Parkinson "
        "disease, stable on carbidopa-levodopa.\n\nFOLLOW-UP: With "
    )
    b.name_in_context()
    b.add(" in two weeks; call ")
    b.plant("PHONE", b.phone(), "prose")
    b.add(" with questions.\nHome address: ")
    b.plant("ADDRESS", b.address(), "label")
    b.add("\nE-mail: ")
    b.plant("EMAIL", b.email(first, last), "label")
    b.add("\n")


def _ecg_report(b: _Builder) -> None:
    first, last = b.person()
    b.add("12-LEAD ECG REPORT\nPatient ID: ")
    b.plant("ID", b.mrn(), "label")
    b.add("   Accession number: ")
    b.plant("ID", b.mrn(), "label")
    b.add("\nAcquired: ")
    b.plant_date(context="label")
    b.add(" 10:42\nAge: ")
    if b.rng.random() < 0.5:
        b.plant("AGE>89", b.old_age(), "age")
    else:
        b.add(str(b.rng.randrange(20, 89)))
    b.add(
        "   Sex: F\n\nSinus rhythm at 72 bpm. PR 168 ms, QRS 94 ms, QTc 441 ms. "
        "No Wolff-Parkinson-White pattern. Compared with the tracing of "
    )
    b.plant_date(context="prose")
    b.add(", no significant change.\n\nInterpreted by: ")
    b.plant("NAME", f"{first} {last}", "label")
    b.add(", MD on ")
    b.plant_date(context="prose")
    b.add("\nDevice serial number: ")
    b.plant("ID", f"SN{b.rng.randrange(10**6, 10**8)}", "label")
    b.add("\n")


def _pathology(b: _Builder) -> None:
    first, last = b.person()
    b.add("SURGICAL PATHOLOGY REPORT\nCase number: ")
    b.plant("ID", f"S{b.rng.randrange(10, 24)}-{b.rng.randrange(1000, 99999)}", "label")
    b.add("\nPatient: ")
    b.plant("NAME", f"{last}, {first}", "label")
    b.add(" (MRN ")
    b.plant("ID", b.mrn(), "label")
    b.add(")\nCollected: ")
    collected = b.date()
    c = b.plant_date(collected, "label")
    b.add("   Received: ")
    r = b.plant_date(collected + dt.timedelta(days=1), "label")
    b.intervals.append((c, r, 1))
    b.add("\nPathologist: Dr. ")
    b.plant("NAME", b.person()[1], "title")
    b.add("\nSubmitting physician: ")
    b.name_in_context()
    b.add(
        "\n\nDIAGNOSIS: Lymph node, excision: classical Hodgkin lymphoma, nodular sclerosis "
        "type. Reed-Sternberg cells are CD30 and CD15 positive.\nGleason score not applicable.\n"
    )


def _letter(b: _Builder) -> None:
    first, last = b.person()
    b.plant_date(context="letter")
    b.add("\n\n")
    b.plant("ADDRESS", b.rng.choice(HOSPITALS), "institution")
    b.add("\n")
    b.plant("ADDRESS", b.address(), "street")
    b.add("\n\nDear Dr. ")
    b.plant("NAME", b.person()[1], "title")
    b.add(",\n\nThank you for referring ")
    b.plant("NAME", f"{first} {last}", "phrase" if b.rng.random() < 0.5 else "bare")
    b.add(", a ")
    if b.rng.random() < 0.5:
        b.plant("AGE>89", b.old_age(), "age")
        b.add(" year old")
    else:
        b.add(f"{b.rng.randrange(20, 89)} year old")
    b.add(" woman with palpitations, whom I saw in clinic on ")
    b.plant_date(context="prose")
    b.add(". A Holter monitor showed paroxysmal atrial fibrillation. Her health plan ID is ")
    b.plant("ID", b.mrn(), "label")
    b.add(". She can be reached at ")
    b.plant("EMAIL", b.email(first, last), "prose")
    b.add(" or ")
    b.plant("PHONE", b.phone(), "prose")
    b.add(".\n\nSincerely,\n\n")
    f2, l2 = b.person()
    b.plant("NAME", f"{f2} {l2}", "signature")
    b.add(", MD\nTel ")
    b.plant("PHONE", b.phone(), "label")
    b.add("   Fax ")
    b.plant("PHONE", b.phone(), "label")
    b.add("\n")


def _progress(b: _Builder) -> None:
    first, last = b.person(world=False)
    b.add("PROGRESS NOTE\n")
    b.plant("NAME", f"{first} {last}", "bare")
    b.add(" was seen today for follow-up of heart failure. ")
    b.plant("NAME", first, "repeat")
    b.add(
        " reports improved exercise tolerance and no orthopnea. Weight stable. "
        "Continue furosemide 40 mg daily. Next visit "
    )
    b.plant_date(context="prose")
    b.add(". SSN on file ")
    b.plant(
        "ID",
        f"{b.rng.randrange(100, 899)}-{b.rng.randrange(10, 99)}-{b.rng.randrange(1000, 9999)}",
        "ssn",
    )
    b.add("; portal https://portal.example.org/p/")
    b.plant("ID", str(b.rng.randrange(10**7, 10**9)), "url-id")
    b.add(" from ")
    b.plant(
        "IP", f"10.{b.rng.randrange(256)}.{b.rng.randrange(256)}.{b.rng.randrange(1, 255)}", "ip"
    )
    b.add(". Discussed with ")
    b.name_in_context(world=True)
    b.add(".\n")


STYLES = {
    "history_and_physical": _history_and_physical,
    "discharge_summary": _discharge,
    "ecg_report": _ecg_report,
    "pathology_report": _pathology,
    "letter": _letter,
    "progress_note": _progress,
}


def generate_corpus(count: int = 360, seed: int = 20240601) -> list[PlantedNote]:
    """``count`` notes with planted PHI, the same for the same seed."""
    rng = random.Random(seed)
    notes = []
    names = list(STYLES)
    for index in range(count):
        style = names[index % len(names)]
        builder = _Builder(random.Random(rng.getrandbits(64)))
        STYLES[style](builder)
        note = builder.finish(style, f"patient-{index}".encode())
        for span in note.planted:
            assert note.text[span.start : span.end] == span.value
        notes.append(note)
    return notes
