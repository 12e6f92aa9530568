"""Held-out planted-PHI notes for measuring the text scrubber's recall honestly.

Written without looking at the scrubber or its tuning corpus (tests/io/phi_corpus.py): its own
name lists, note styles and ID formats. Every planted span is recorded with its category and,
for names, whether it sits in an explicit name context (a title or a label) and where the name
comes from (international list, common US names, names that are also English words). Clinical
words that must survive (drugs, eponyms, anatomy, ages <= 89) are recorded as non-PHI spans.
"""

from __future__ import annotations

import datetime as dt
import random
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field


def _words(text: str, sep: str = " ") -> tuple[str, ...]:
    """A long word list written as one string (one ``sep`` between items)."""
    return tuple(text.split(sep))


# --- name lists (written for this set; deliberately not US Census top names) -----------------
# (given names, family names) per origin. Family names may carry particles, hyphens, apostrophes.
_INTL_GIVEN = _words(
    # Nigerian (Igbo, Yoruba, Hausa)
    "Chiamaka Oluwaseun Ngozi Adebayo Emeka Folasade Chukwudi Yetunde Obinna Temitope Ifeoma "
    "Babatunde Amaka Nnamdi Funmilayo Aminu Hauwa Kelechi "
    # Vietnamese
    "Thanh Huong Minh Phuong Quang Linh Tuan Ngoc Duc Hoa Khanh Trinh "
    # Polish
    "Agnieszka Wojciech Grzegorz Małgorzata Krzysztof Zbigniew Jadwiga Bożena Przemysław Katarzyna "
    # Indian
    "Priya Arjun Lakshmi Venkatesh Sunita Rajesh Ananya Kavitha Siddharth Meenakshi Harpreet "
    # Arabic
    "Fatima Youssef Khalid Leila Omar Rania Tariq Yasmin Hamza Noor "
    # Spanish / Latin American
    "Ximena Joaquín Guadalupe Itzel Rodrigo Maricruz Esteban Inmaculada "
    # Irish
    "Siobhán Niamh Pádraig Aoife Cathal Oisín Gráinne Ciarán "
    # Somali, Ethiopian, Turkish, Greek, Korean, Filipino, Portuguese
    "Abdirahman Hodan Tsegaye Meseret Mehmet Elif Dimitrios Eleni Seo-yeon Jae-won Maricel "
    "Rogelio Gonçalo Conceição"
)
_INTL_FAMILY = _words(
    "Okafor Adeyemi Nwosu Eze Obi Balogun Oyelaran Chukwuemeka Abubakar Ogunleye "
    "Nwachukwu Nguyen Tran Pham Hoang Vu Dang Huynh Bui Truong Kowalski Wiśniewska "
    "Zieliński Wójcik Kamińska Lewandowski Szymańska Grabowski Dąbrowski Ramanathan Iyer "
    "Chatterjee Subramaniam Venkataraman Banerjee Gill Reddy Krishnamurthy Al-Hashimi "
    "Haddad Khalil Nasser Abdelrahman El-Amin Bakr Saleh Echeverría Villanueva Ibarra "
    "Quiñones Zubizarreta Castañeda Ó Súilleabháin McGillicuddy Ní Bhriain Mac Giolla "
    "Íosa Breathnach Ó Dálaigh Warsame Tesfaye Yılmaz Öztürk Papadopoulos Karagiannis "
    "Park Choi Dimaculangan Magalhães Nguyen-Tran Adeyemi-Cole O'Halloran D'Souza"
)
_US_GIVEN = _words(
    "John Mary Robert Patricia Michael Jennifer William Linda David Elizabeth James "
    "Barbara Richard Susan Joseph Jessica Thomas Sarah Charles Karen Christopher Nancy "
    "Daniel Lisa Mary-Ellen Billy-Joe"
)
_US_FAMILY = _words(
    "Smith Johnson Williams Jones Miller Davis Wilson Anderson Taylor Thomas Moore "
    "Jackson Martin Thompson Harris Clark Lewis Robinson Walker Allen O'Neil"
)
# Names that are also ordinary English words (lower-case meaning exists).
_WORD_GIVEN = _words("Rose Hope Faith Joy Grace Will Mark Bill Dawn Ruby Ivy Summer Hunter Sky")
_WORD_FAMILY = _words(
    "Young Baker Brown White Green King Long Little Stone Rich Page Fox Hill Wood"
)

_MULTIWORD_FAMILY = {"Ó Súilleabháin", "Ní Bhriain", "Mac Giolla Íosa", "Ó Dálaigh"}


def _family_list() -> list[str]:
    """Re-join the particle surnames that the whitespace split broke apart."""
    text = " ".join(_INTL_FAMILY)
    found: list[str] = []
    for multi in _MULTIWORD_FAMILY:
        text = text.replace(multi, multi.replace(" ", "_"))
    for token in text.split():
        found.append(token.replace("_", " "))
    return found


INTL_FAMILY = tuple(_family_list())
INTL_GIVEN = tuple(_INTL_GIVEN)

# --- non-PHI clinical vocabulary that must survive --------------------------------------------
DRUGS = _words(
    "metformin apixaban warfarin furosemide amiodarone levothyroxine atorvastatin "
    "lisinopril Keppra Lasix Coumadin Eliquis Xarelto Zosyn vancomycin ceftriaxone "
    "Augmentin prednisolone Humalog Lantus tramadol ondansetron Zofran morphine Haldol "
    "lorazepam Seroquel Tylenol Bactrim gabapentin digoxin Entresto Jardiance"
)
EPONYMS = _words(
    "Parkinson's disease|Hodgkin lymphoma|Crohn's disease|Addison's disease|"
    "Cushing's syndrome|Bell's palsy|Graves' disease|Wilson's disease|Down syndrome|"
    "Babinski sign|Murphy's sign|Homans' sign|Foley catheter|Swan-Ganz catheter|"
    "Glasgow Coma Scale|Apgar score|Whipple procedure|Barrett's oesophagus|"
    "Hashimoto's thyroiditis|Guillain-Barré syndrome|Wolff-Parkinson-White pattern|"
    "Mobitz type II block|Brugada pattern|Romberg test|Kussmaul breathing|"
    "Cheyne-Stokes respiration|Virchow's node|Gleason score|Breslow thickness|"
    "Bristol stool chart|Wells score|Nissen fundoplication|Alzheimer's dementia|"
    "Kaposi sarcoma",
    "|",
)
ANATOMY = _words(
    "left ventricle|right lower lobe|sigmoid colon|femoral neck|carotid bifurcation|"
    "Achilles tendon|Broca's area|circle of Willis|islets of Langerhans|bundle of His|"
    "loop of Henle|Purkinje fibres|Eustachian tube|fallopian tube|sternum|"
    "left anterior descending artery|inferior vena cava|posterior fossa",
    "|",
)
# Ordinary words that double as names, used here in their ordinary sense.
WORD_USES = _words(
    "White cell count|Green sputum|Brown urine|Young adult|Hope to discharge|Will review|"
    "Mark the site|Bill to insurance|Long QT|Little change|Stone in the CBD|"
    "King's College criteria|Faith-based support declined|Rose bengal stain",
    "|",
)


@dataclass(frozen=True, slots=True)
class PlantedSpan:
    """One planted span: PHI (``category`` set) or a clinical term that must survive ("KEEP")."""

    start: int
    end: int
    category: str  # NAME, ID, DATE, PHONE, EMAIL, ADDRESS, AGE>89, URL, KEEP, NEUTRAL
    value: str
    kind: str = ""  # format or sub-kind, e.g. "LAST, FIRST", "MRN", "d Month yyyy"
    context: str = ""  # names: title, label, relation, bare
    origin: str = ""  # names: intl, us, word
    role: str = ""  # names: patient, family, staff


@dataclass(slots=True)
class HeldoutNote:
    """A generated note and every span planted in it."""

    style: str
    text: str = ""
    spans: list[PlantedSpan] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Person:
    given: str
    family: str
    origin: str
    sex: str


_MONTHS = _words(
    "January February March April May June July August September October November December"
)


class _Writer:
    """Expands one template, recording each planted span at its offset."""

    def __init__(self, rng: random.Random, style: str) -> None:
        self.rng = rng
        self.note = HeldoutNote(style)
        self.people: dict[str, _Person] = {}

    def text(self, s: str) -> None:
        self.note.text += s

    def plant(self, value: str, category: str, **meta: str) -> None:
        start = len(self.note.text)
        self.note.text += value
        self.note.spans.append(PlantedSpan(start, start + len(value), category, value, **meta))

    # --- people ---
    def person(self, role: str) -> _Person:
        if role not in self.people:
            r = self.rng.random()
            if r < 0.55:
                origin, given, family = "intl", INTL_GIVEN, INTL_FAMILY
            elif r < 0.8:
                origin, given, family = "us", tuple(_US_GIVEN), tuple(_US_FAMILY)
            else:
                origin = "word"
                given = tuple(_WORD_GIVEN) + tuple(_US_GIVEN[:6])
                family = tuple(_WORD_FAMILY)
                if self.rng.random() < 0.5:
                    given = tuple(_WORD_GIVEN)
                    family = tuple(_US_FAMILY) + tuple(_INTL_FAMILY[:10])
            self.people[role] = _Person(
                self.rng.choice(given), self.rng.choice(family), origin, self.rng.choice("FM")
            )
        return self.people[role]

    def name(self, role: str, fmt: str, context: str) -> None:
        p = self.person(role)
        given, family = p.given, p.family
        forms = {
            "first last": f"{given} {family}",
            "F. Last": f"{given[0]}. {family}",
            "LAST, FIRST": f"{family.upper()}, {given.upper()}",
            "Last, First": f"{family}, {given}",
            "First M. Last": f"{given} {self.rng.choice('ABCDEHJKLMNPRST')}. {family}",
            "Last": family,
            "First": given,
            "LAST": family.upper(),
            "lower": f"{given.lower()} {family.lower()}",
            "F.Last": f"{given[0]}.{family}",
        }
        shown = {"Last": (family,), "LAST": (family,), "First": (given,)}.get(fmt, (given, family))
        who = {"pt": "patient", "rel": "family", "rel2": "family"}.get(role, "staff")
        self.plant(forms[fmt], "NAME", kind=fmt, context=context, origin=_origin(*shown), role=who)

    # --- identifiers ---
    def ident(self, kind: str) -> None:
        rng = self.rng

        def digits(n: int) -> str:
            return "".join(rng.choice("0123456789") for _ in range(n))

        def letters(n: int) -> str:
            return "".join(rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(n))

        yy = rng.randint(15, 24)
        makers: dict[str, list[Callable[[], str]]] = {
            "MRN": [
                lambda: digits(8),
                lambda: "00" + digits(6),
                lambda: letters(1) + digits(7),
                lambda: f"{digits(3)}-{digits(3)}-{digits(3)}",
                lambda: f"{letters(2)}{digits(6)}",
            ],
            "ACCOUNT": [
                lambda: digits(10),
                lambda: f"{digits(2)}-{digits(3)}-{digits(4)}",
                lambda: f"ACC{digits(7)}",
            ],
            "ACCESSION": [
                lambda: f"S{yy}-{digits(5)}",
                lambda: f"CY{yy}-{digits(4)}",
                lambda: f"{yy}-SP-{digits(4)}",
                lambda: f"RAD{digits(8)}",
                lambda: f"H{yy}/{digits(5)}",
            ],
            "ENCOUNTER": [
                lambda: f"ENC-20{yy}-{digits(6)}",
                lambda: f"V{digits(8)}",
                lambda: f"{digits(9)}",
            ],
            "MEMBER": [
                lambda: f"{letters(3)}{digits(9)}",
                lambda: f"{letters(2)}-{digits(5)}-{digits(3)}",
                lambda: f"{digits(4)} {digits(3)} {digits(4)}",
                lambda: f"W{digits(8)}{letters(2)}",
            ],
            "SERIAL": [
                lambda: f"{letters(3)}{digits(6)}{letters(1)}",
                lambda: f"{digits(1)}{letters(2)}{digits(6)}",
                lambda: f"SN-{digits(4)}-{letters(2)}{digits(2)}",
            ],
            "SSN": [lambda: f"{digits(3)}-{digits(2)}-{digits(4)}"],
            "NHS": [lambda: f"{digits(3)} {digits(3)} {digits(4)}"],
            "ORDER": [
                lambda: f"ORD{digits(6)}",
                lambda: f"{digits(7)}",
                lambda: f"LR/20{yy}/{digits(5)}",
            ],
        }
        self.plant(rng.choice(makers[kind])(), "ID", kind=kind)

    # --- dates ---
    def date(self, kind: str = "any") -> None:
        rng = self.rng
        if kind == "dob":
            d = dt.date(rng.randint(1925, 2005), rng.randint(1, 12), rng.randint(1, 28))
        else:
            d = dt.date(rng.randint(2016, 2024), rng.randint(1, 12), rng.randint(1, 28))
        mon = _MONTHS[d.month - 1]
        suffix = {1: "st", 2: "nd", 3: "rd", 21: "st", 22: "nd", 23: "rd"}.get(d.day, "th")
        forms = {
            "mm/dd/yyyy": f"{d.month:02d}/{d.day:02d}/{d.year}",
            "m/d/yy": f"{d.month}/{d.day}/{d.year % 100:02d}",
            "iso": d.isoformat(),
            "d Month yyyy": f"{d.day} {mon} {d.year}",
            "Month d, yyyy": f"{mon} {d.day}, {d.year}",
            "Mon dth yyyy": f"{mon[:3]} {d.day}{suffix}, {d.year}",
            "dd-Mon-yyyy": f"{d.day:02d}-{mon[:3]}-{d.year}",
            "ddMONyyyy": f"{d.day:02d}{mon[:3].upper()}{d.year}",
            "d.m.yyyy": f"{d.day}.{d.month}.{d.year}",
            "the dth of Month": f"the {d.day}{suffix} of {mon}",
            "Month d": f"{mon} {d.day}",
            "m/d": f"{d.month}/{d.day}",
            "yyyymmdd": d.strftime("%Y%m%d"),
            "Mon yyyy": f"{mon[:3]} {d.year}",
        }
        if kind in ("dob", "any"):
            fmt = rng.choice(list(forms))
            if kind == "dob" and fmt in ("the dth of Month", "Month d", "m/d", "Mon yyyy"):
                fmt = "mm/dd/yyyy"
        else:
            fmt = kind
        value = forms[fmt]
        if fmt == "the dth of Month":  # "the" is not part of the date
            self.text("the ")
            value = value[4:]
        self.plant(value, "DATE", kind=fmt)

    def phone(self) -> None:
        rng = self.rng
        a, b, c = rng.randint(201, 989), rng.randint(200, 989), rng.randint(1000, 9999)
        fmt, value = rng.choice(
            [
                ("(aaa) bbb-cccc", f"({a}) {b}-{c}"),
                ("aaa-bbb-cccc", f"{a}-{b}-{c}"),
                ("aaa.bbb.cccc", f"{a}.{b}.{c}"),
                ("+1 aaa bbb cccc", f"+1 {a} {b} {c}"),
                ("aaa bbb cccc", f"{a} {b} {c}"),
                ("+44", f"+44 {rng.randint(20, 79)} {rng.randint(1000, 9999)} {c}"),
                ("07xxx", f"07{rng.randint(700, 999)} {rng.randint(100000, 999999)}"),
                ("+234", f"+234 80{rng.randint(1, 9)} {b} {c}"),
            ]
        )
        self.plant(value, "PHONE", kind=fmt)

    def email(self, role: str) -> None:
        p = self.person(role)
        g = _ascii(p.given).lower()
        f = _ascii(p.family).lower().replace(" ", "").replace("'", "")
        host = self.rng.choice(
            ["gmail.com", "yahoo.co.uk", "outlook.com", "stlukes-health.org", "mail.ng"]
        )
        value = self.rng.choice([f"{g}.{f}@{host}", f"{g[0]}{f}{self.rng.randint(1, 99)}@{host}"])
        self.plant(value, "EMAIL", kind="email")

    def address(self) -> None:
        rng = self.rng
        street_name = rng.choice(
            [
                "Kowalski Lane", "Adeola Odeku Street", "Baker Street", "Elm Avenue",
                "Ballymun Road", "Nguyen Trai Blvd", "Calle de Alcalá", "Maple Drive",
                "Orchard Way", "Rosewood Court", "Harbour View Terrace", "County Road 12",
            ]
        )  # fmt: skip
        number = rng.choice([str(rng.randint(2, 9800)), f"{rng.randint(2, 300)}B"])
        if rng.random() < 0.25:
            self.plant(f"Apt {rng.randint(1, 40)}{rng.choice('ABCD')}", "ADDRESS", kind="unit")
            self.text(", ")
        if rng.random() < 0.12:
            self.plant(f"PO Box {rng.randint(100, 9999)}", "ADDRESS", kind="po box")
        else:
            self.plant(f"{number} {street_name}", "ADDRESS", kind="street")
        city, state = rng.choice(
            [
                ("Dayton", "OH"), ("Lowell", "MA"), ("Fresno", "CA"), ("Duluth", "MN"),
                ("Tulsa", "OK"), ("Savannah", "GA"), ("Bismarck", "ND"), ("Scranton", "PA"),
                ("Boise", "ID"), ("Bend", "OR"),
            ]
        )  # fmt: skip
        self.text(", ")
        self.plant(city, "ADDRESS", kind="city")
        self.text(", ")
        self.plant(state, "NEUTRAL", kind="state")
        self.text(" ")
        zip_code = f"{rng.randint(10000, 99950)}"
        if rng.random() < 0.3:
            zip_code += f"-{rng.randint(1000, 9999)}"
        self.plant(zip_code, "ADDRESS", kind="zip")

    def age(self, old: bool) -> None:
        rng = self.rng
        n = rng.randint(90, 104) if old else rng.randint(19, 89)
        fmt = rng.choice(["N y/o", "N-year-old", "aged N", "N yo", "Nyo", "N yrs", "N years"])
        before, after = fmt.split("N")
        self.text(before)  # the number is the identifier; "y/o" is not
        if old:
            self.plant(str(n), "AGE>89", kind=fmt)
        else:
            self.plant(str(n), "KEEP", kind="age<=89")
        self.text(after)

    def keep(self, value: str, kind: str) -> None:
        self.plant(value, "KEEP", kind=kind)


def _ascii(s: str) -> str:
    """Fold accents for e-mail local parts (ł has no decomposition, so it is mapped by hand)."""
    folded = unicodedata.normalize("NFKD", s.replace("ł", "l").replace("Ł", "L"))
    return "".join(c for c in folded if c.isascii() and (c.isalnum() or c in " -'"))


def _origin(*parts: str) -> str:
    """Where the shown name parts come from: "word" wins over "intl", which wins over "us"."""
    if any(p in _WORD_GIVEN or p in _WORD_FAMILY for p in parts):
        return "word"
    if any(p in INTL_GIVEN or p in INTL_FAMILY for p in parts):
        return "intl"
    return "us"


# --- templates: text with {directives}; directive syntax below ---------------------------------
# {n:ROLE:FORMAT:CONTEXT} name     {id:KIND} record number   {d} / {d:dob} / {d:FORMAT} date
# {ph} phone  {em:ROLE} email  {addr} address  {age} age <= 89 (keep)  {old} age > 89
# {drug} {epo} {anat} {word} clinical terms that must survive
_STYLES: dict[str, tuple[str, ...]] = {
    "nursing": (
        "NURSING NOTE {d} 0700-1900\nPt {n:pt:first last:bare} ({id:MRN}), {age}, on {drug} "
        "and {drug}. Alert, GCS 15. Wife {n:rel:First:relation} visited, updated on plan. "
        "{word} noted. Pressure areas intact over {anat}. Handover given to "
        "{n:rn:First:bare} {n:rn:Last:bare} RN at 1900.\nSigned: {n:rn2:F. Last:label}, RN",
        "Nursing progress {d:m/d/yy}: Mrs. {n:pt:Last:title} settled overnight. {epo} "
        "chart reviewed. Daughter {n:rel:first last:relation} phoned on {ph} asking for update. "
        "Next dose {drug} due 14:00. Bed 12, MRN {id:MRN}. {n:rn:First:bare} to review at 1600.",
        "0200 pt {n:pt:lower:bare} restless, pulled at {epo}. {drug} 0.5 mg given per "
        "{n:doc:F.Last:bare}. son {n:rel:First:relation} at bedside. acct {id:ACCOUNT}.",
    ),
    "radiology": (
        "RADIOLOGY REPORT\nPatient: {n:pt:LAST, FIRST:label}   DOB: {d:dob}   MRN: {id:MRN}\n"
        "Accession: {id:ACCESSION}   Exam date: {d}\nReferring: Dr. {n:doc:First M. Last:title}\n"
        "CT CHEST WITH CONTRAST. Findings: nodule in the {anat}, 6 mm. No {epo}. "
        "IMPRESSION: stable since {d}. Read by {n:rad:first last:bare}, MD.",
        "XR PELVIS {d:dd-Mon-yyyy} acc# {id:ACCESSION}\nName: {n:pt:Last, First:label}\n"
        "Fracture of the {anat}. Discussed with Dr {n:doc:Last:title} by phone at 15:10 "
        "(on {ph}). Reported: {n:rad:F. Last:label}",
        "MRI BRAIN. {old} female. Hx {epo}. {word}. Compared with outside study from "
        "{d:Mon yyyy}. Dictated by {n:rad:Last:bare} / transcribed {d:mm/dd/yyyy}. "
        "Order {id:ORDER}.",
    ),
    "pathology": (
        "SURGICAL PATHOLOGY  Case {id:ACCESSION}\nPatient name: {n:pt:first last:label}  "
        "Med Rec #: {id:MRN}  Collected: {d}  Received: {d}\nSpecimen: {anat}, biopsy. "
        "Diagnosis: adenocarcinoma, {epo} 3+4=7. Pathologist: {n:path:First M. Last:label}, MD",
        "CYTOLOGY {id:ACCESSION} | {n:pt:LAST, FIRST:bare} | DOB {d:dob} | submitted by "
        "{n:doc:F. Last:bare} | {epo} reviewed. Comment: consulted with {n:path:Last:bare} "
        "on {d:Month d}. Specimen ID {id:ORDER}.",
    ),
    "referral": (
        "{n:doc2:First M. Last:bare}\nConsultant Cardiologist\n{addr}\n\n{d:d Month yyyy}\n\n"
        "Dear Dr {n:doc:Last:title},\n\nRe: {n:pt:first last:label}, DOB {d:dob}, NHS no "
        "{id:NHS}\n\nThank you for seeing this {age} man with {epo} on {drug}. His wife "
        "{n:rel:First:relation} can be reached on {ph} or {em:rel}. {word}.\n\nYours sincerely,"
        "\n\n{n:doc2:first last:bare}",
        "Referral letter {d}\nTo: {n:doc:first last:label}, {drug} clinic\nFrom: "
        "Dr. {n:doc2:Last:title}\nPatient {n:pt:Last, First:label} ({id:MRN}), lives at {addr}. "
        "Insurance member ID {id:MEMBER}. Please assess for {epo}. Many thanks, "
        "{n:doc2:First:bare}",
    ),
    "telephone": (
        "TELEPHONE ENCOUNTER {d:m/d/yy} 10:42\nCaller: {n:rel:first last:label} (daughter) "
        "{ph}\nRe pt {n:pt:first last:bare}, MRN {id:MRN}. Reports {word}. Advised to hold {drug}. "
        "Callback number {ph}. Message taken by {n:rn:First:bare}.",
        "Phone call from {n:pt:First:bare} re refill of {drug}. Confirmed DOB {d:dob}. "
        "Spoke with pharmacist {n:rn:first last:bare} at {ph}. {n:doc:F. Last:bare} aware.",
        "TC: pt's son {n:rel:First:relation} called, says mum fell on {d:Month d}. "
        "Encounter {id:ENCOUNTER}. Will see Thursday.",
    ),
    "medrec": (
        "MEDICATION RECONCILIATION  {n:pt:LAST, FIRST:bare}  {id:MRN}  {d}\n"
        "1. {drug} 20 mg daily\n2. {drug} 40 mg BID\n3. {drug} PRN\nSource: patient and "
        "pharmacy ({n:rn:First:bare} at Walgreens, {ph}). Rx# {id:ORDER}. Reviewed by "
        "{n:doc:first last:bare} PharmD.",
        "Med rec for {n:pt:first last:bare} ({age}) done with wife {n:rel:First:relation}. "
        "Stopped {drug} ({epo}). Continue {drug}. Member ID {id:MEMBER}.",
    ),
    "triage": (
        "ED TRIAGE {d:iso} 03:12  {n:pt:LAST, FIRST:bare}  {old}  ESI 2\nCC: chest pain. "
        "Hx {epo}, meds {drug}. BIBA from {addr}. NOK: {n:rel:first last:label} {ph}. "
        "Enc# {id:ENCOUNTER}. Triage RN {n:rn:F. Last:bare}.",
        "triage - {age} M, {n:pt:lower:bare}, c/o SOB x3d. {word}. allergic to {drug}. "
        "came w/ neighbour {n:rel:First:bare}. SSN on file {id:SSN}.",
    ),
    "discharge": (
        "DISCHARGE INSTRUCTIONS for {n:pt:first last:bare}\nDate: {d}\nYou were treated for "
        "{epo}. Take {drug} twice a day. Your follow-up is with Dr. {n:doc:first last:title} on "
        "{d:Month d, yyyy} at {addr}. Questions? Call {ph} or email {em:doc}. Account: "
        "{id:ACCOUNT}.",
        "Discharged home {d:mm/dd/yyyy} with {epo}. Going home to {addr} with her husband "
        "{n:rel:first last:relation}. {word}. Pt {n:pt:Last:bare} understands plan.",
    ),
    "ecg": (
        "12-LEAD ECG  {d:ddMONyyyy} 08:14  ID {id:MRN}  {n:pt:LAST, FIRST:bare}\n"
        "Sinus rhythm 72 bpm. {epo}. Confirmed by: {n:doc:LAST:label}",
        "HOLTER REPORT\nPatient: {n:pt:first last:label}, {old}. Recorder serial "
        "{id:SERIAL}. Hookup {d} 09:00, 48 h. {epo} during sleep. Pacemaker serial no. "
        "{id:SERIAL}. Interpreted by {n:doc:F. Last:bare} on {d:yyyymmdd}.",
    ),
    "shorthand": (
        "f/u {n:pt:Last:bare} - doing ok on {drug}, bp fine. {word}. see {d:m/d}. "
        "d/w {n:doc:First:bare}",
        "pt {n:pt:First:bare} {n:pt:Last:bare} seen w/ {n:rel:First:bare}, {epo} stable, "
        "cont {drug}. ph {ph}. ref {id:ORDER}",
        "{n:pt:F. Last:bare} {age} hx {epo}, {drug}. lives alone {addr}. dtr "
        "{n:rel:First:relation} checks daily. next appt {d:d.m.yyyy}.",
    ),
    "consent": (
        "Consent obtained from {n:pt:first last:bare} ({old}) for {epo}. Witness: "
        "{n:rn:first last:label}. Interpreter {n:rel:First M. Last:bare} (Vietnamese), "
        "insulin pump serial {id:SERIAL}. {d:Mon dth yyyy}.",
        "Procedure: {epo}. Operator Dr {n:doc:Last:title}, assist {n:rn:First:bare}. "
        "Patient {n:pt:LAST:bare} tolerated well. Patient portal: {em:pt}. Encounter "
        "{id:ENCOUNTER}, member {id:MEMBER}, DOB {d:dob}.",
    ),
    "social": (
        "SOCIAL WORK NOTE {d}\nMet with Ms. {n:pt:Last:title} and her partner "
        "{n:rel:first last:relation}. Lives at {addr}, {word}. {old}, widowed. "
        "Contact: {ph}, {em:pt}. Plan reviewed with {n:doc:first last:bare}.",
        "Home visit {d:the dth of Month}: {n:pt:First:bare} was at home with carer "
        "{n:rel:First:bare}. Mr. {n:rel2:Last:title} next door holds a key. {drug} blister "
        "packs in date.",
    ),
}


def _expand(w: _Writer, template: str) -> None:
    """Write ``template`` into ``w``, planting one span per directive."""
    rng = w.rng
    for piece in re.split(r"(\{[^}]+\})", template):
        if not (piece.startswith("{") and piece.endswith("}")):
            w.text(piece)
            continue
        parts = piece[1:-1].split(":")
        head = parts[0]
        if head == "n":
            w.name(parts[1], parts[2], parts[3])
        elif head == "id":
            w.ident(parts[1])
        elif head == "d":
            w.date(parts[1] if len(parts) > 1 else "any")
        elif head == "ph":
            w.phone()
        elif head == "em":
            w.email(parts[1])
        elif head == "addr":
            w.address()
        elif head == "age":
            w.age(old=False)
        elif head == "old":
            w.age(old=True)
        elif head == "drug":
            w.keep(rng.choice(DRUGS), "drug")
        elif head == "epo":
            w.keep(rng.choice(EPONYMS), "eponym")
        elif head == "anat":
            w.keep(rng.choice(ANATOMY), "anatomy")
        elif head == "word":
            w.keep(rng.choice(WORD_USES), "word-use")
        else:  # pragma: no cover - a template typo
            raise ValueError(f"unknown directive {piece}")


def generate_heldout(n_notes: int = 360, seed: int = 20240611) -> list[HeldoutNote]:
    """``n_notes`` notes cycling through the styles, each with fresh people and values."""
    rng = random.Random(seed)
    styles = sorted(_STYLES)
    notes = []
    for i in range(n_notes):
        style = styles[i % len(styles)]
        w = _Writer(rng, style)
        _expand(w, rng.choice(_STYLES[style]))
        notes.append(w.note)
    return notes
